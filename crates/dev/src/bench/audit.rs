//! The API server's audit log as the bench's source of truth: every request of every identity,
//! counted at the server whatever client sent it.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

/// One audit event (Metadata level), the fields the bench reads.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// `ResponseStarted` (a watch opened) or `ResponseComplete`.
    pub stage: String,
    /// `create`, `patch`, `watch`, ...
    pub verb: String,
    /// Who sent the request.
    pub user: User,
    /// What it was about.
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    /// The answer's code.
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
    /// When the API server received the request.
    pub request_received_timestamp: Timestamp,
    /// When this stage was reached.
    pub stage_timestamp: Timestamp,
}

/// The requesting identity.
#[derive(Clone, Debug, Deserialize)]
pub struct User {
    /// e.g. `system:serviceaccount:cocoon-system:cocoon-operator`.
    #[serde(default)]
    pub username: String,
}

/// The object of a request.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ObjectRef {
    /// Plural resource.
    #[serde(default)]
    pub resource: String,
    /// `status`, ...
    #[serde(default)]
    pub subresource: Option<String>,
    /// Namespace, if namespaced.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name, unless a collection request.
    #[serde(default)]
    pub name: Option<String>,
}

/// HTTP code of the answer.
#[derive(Clone, Debug, Deserialize)]
pub struct ResponseStatus {
    /// The code.
    #[serde(default)]
    pub code: u16,
}

impl AuditEvent {
    /// A request that changes something (not get/list/watch).
    pub fn is_write(&self) -> bool {
        !matches!(self.verb.as_str(), "get" | "list" | "watch")
    }

    /// `resource` or `resource/subresource`.
    pub fn resource(&self) -> String {
        match &self.object_ref {
            Some(o) => match &o.subresource {
                Some(sub) => format!("{}/{sub}", o.resource),
                None => o.resource.clone(),
            },
            None => "-".into(),
        }
    }

    fn code(&self) -> u16 {
        self.response_status.as_ref().map(|s| s.code).unwrap_or(0)
    }
}

/// Reads the audit log incrementally.
pub struct AuditLog {
    path: PathBuf,
    offset: u64,
    /// Every event read so far, in log order.
    pub events: Vec<AuditEvent>,
}

impl AuditLog {
    /// A reader of `path` from its start.
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), offset: 0, events: Vec::new() }
    }

    /// Reads what was appended since the last call; returns the index of the first new event.
    pub fn catch_up(&mut self) -> std::io::Result<usize> {
        let first = self.events.len();
        let Ok(file) = std::fs::File::open(&self.path) else { return Ok(first) };
        let length = file.metadata()?.len();
        if length < self.offset {
            // Rotated or truncated: what was written since is lost to us, and counting on from
            // here would report too few requests.
            return Err(std::io::Error::other(format!(
                "audit log {} shrank from {} to {length} bytes (rotated?); counts would be wrong",
                self.path.display(),
                self.offset
            )));
        }
        let mut reader = std::io::BufReader::new(file);
        reader.seek(SeekFrom::Start(self.offset))?;
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break; // a line still being written is read next time
            }
            self.offset += n as u64;
            if let Ok(event) = serde_json::from_str::<AuditEvent>(&line) {
                self.events.push(event);
            }
        }
        Ok(first)
    }
}

/// Requests of one identity over a window of the log.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Tally {
    /// Completed requests, watches excluded (they are connections, counted apart).
    pub requests: u64,
    /// Of them, writes (create, patch, update, delete, deletecollection).
    pub writes: u64,
    /// By verb.
    pub by_verb: BTreeMap<String, u64>,
    /// By `verb resource` (e.g. `patch cocoonsets/status`).
    pub by_verb_resource: BTreeMap<String, u64>,
    /// Non-2xx answers by code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Watches opened in the window.
    pub watches_opened: u64,
}

impl Tally {
    /// Tallies the events of `user` in `events`.
    pub fn of<'a>(events: impl IntoIterator<Item = &'a AuditEvent>, user: &str) -> Self {
        let mut t = Self::default();
        for e in events.into_iter().filter(|e| e.user.username == user) {
            if e.verb == "watch" {
                if e.stage == "ResponseStarted" {
                    t.watches_opened += 1;
                }
                continue;
            }
            if e.stage != "ResponseComplete" {
                continue;
            }
            t.requests += 1;
            if e.is_write() {
                t.writes += 1;
            }
            *t.by_verb.entry(e.verb.clone()).or_default() += 1;
            *t.by_verb_resource.entry(format!("{} {}", e.verb, e.resource())).or_default() += 1;
            let code = e.code();
            if !(200..300).contains(&code) {
                *t.errors_by_code.entry(code.to_string()).or_default() += 1;
            }
        }
        t
    }
}

/// The scheduler's identity in the audit log.
pub const SCHEDULER: &str = "system:kube-scheduler";

/// For every pod created (by anyone) and then bound by `scheduler` in `events`: the time from
/// the create's answer to the binding request.
pub fn binding_latencies(events: &[AuditEvent], scheduler: &str) -> Vec<f64> {
    let mut created: HashMap<(String, String), Timestamp> = HashMap::new();
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.stage == "ResponseComplete" && e.verb == "create") {
        let Some(o) = e.object_ref.as_ref().filter(|o| o.resource == "pods") else { continue };
        let key = (o.namespace.clone().unwrap_or_default(), o.name.clone().unwrap_or_default());
        match o.subresource.as_deref() {
            None if (200..300).contains(&e.code()) => {
                created.insert(key, e.stage_timestamp);
            }
            Some("binding") if e.user.username == scheduler => {
                if let Some(since) = created.remove(&key) {
                    let took = since.duration_until(e.request_received_timestamp);
                    out.push(took.as_secs_f64().max(0.0));
                }
            }
            _ => {}
        }
    }
    out
}

/// Watches of `user` open at the end of `events` (opened and not completed).
pub fn open_watches(events: &[AuditEvent], user: &str) -> i64 {
    let mut open = 0i64;
    for e in events.iter().filter(|e| e.user.username == user && e.verb == "watch") {
        match e.stage.as_str() {
            "ResponseStarted" => open += 1,
            "ResponseComplete" => open -= 1,
            _ => {}
        }
    }
    open.max(0)
}

/// For every write of `driver` on an object the scenario cares about, the time until the first
/// write of `operator` on the same object (after the driver's write completed). `owner` maps
/// an object of a request (resource, name) to the object it concerns (e.g. a pod to its set),
/// or `None` to ignore it.
pub fn first_write_latencies(
    events: &[AuditEvent],
    driver: &str,
    operator: &str,
    owner: &dyn Fn(&str, &str) -> Option<String>,
) -> Vec<f64> {
    let mut waiting: HashMap<String, Timestamp> = HashMap::new();
    let mut out = Vec::new();
    let key = |e: &AuditEvent| -> Option<String> {
        let o = e.object_ref.as_ref()?;
        owner(&o.resource, o.name.as_deref()?)
    };
    for e in events.iter().filter(|e| e.stage == "ResponseComplete" && e.is_write()) {
        let Some(k) = key(e) else { continue };
        if e.user.username == driver {
            waiting.entry(k).or_insert(e.stage_timestamp);
        } else if e.user.username == operator
            && let Some(since) = waiting.remove(&k)
        {
            let took = since.duration_until(e.request_received_timestamp);
            out.push(took.as_secs_f64().max(0.0));
        }
    }
    out
}

/// The `q`-quantile (0..=1) of `values`, by nearest rank.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> AuditEvent {
        serde_json::from_str(json).unwrap()
    }

    fn line(user: &str, verb: &str, stage: &str, resource: &str, name: &str, at: &str) -> String {
        format!(
            r#"{{"kind":"Event","level":"Metadata","stage":"{stage}","verb":"{verb}","user":{{"username":"{user}"}},"objectRef":{{"resource":"{resource}","namespace":"ns","name":"{name}"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"{at}","stageTimestamp":"{at}"}}"#
        )
    }

    #[test]
    fn a_log_that_shrank_is_an_error_not_a_silent_undercount() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let entry = line("op", "create", "ResponseComplete", "pods", "a-0", "2026-01-01T00:00:01Z");
        std::fs::write(&path, format!("{entry}\n{entry}\n")).unwrap();
        let mut log = AuditLog::new(&path);
        assert_eq!(log.catch_up().unwrap(), 0);
        assert_eq!(log.events.len(), 2);
        std::fs::write(&path, format!("{entry}\n")).unwrap();
        let error = log.catch_up().unwrap_err().to_string();
        assert!(error.contains("shrank"), "{error}");
    }

    #[test]
    fn requests_are_counted_by_identity_and_watches_apart() {
        let events: Vec<AuditEvent> = [
            line("op", "create", "ResponseComplete", "pods", "a-0", "2026-01-01T00:00:01Z"),
            line("op", "watch", "ResponseStarted", "pods", "", "2026-01-01T00:00:01Z"),
            line("op", "get", "ResponseComplete", "pods", "a-0", "2026-01-01T00:00:01Z"),
            line("sim", "patch", "ResponseComplete", "pods", "a-0", "2026-01-01T00:00:02Z"),
        ]
        .iter()
        .map(|l| event(l))
        .collect();
        let t = Tally::of(&events, "op");
        assert_eq!((t.requests, t.writes, t.watches_opened), (2, 1, 1));
        assert_eq!(t.by_verb_resource.get("create pods"), Some(&1));
        assert_eq!(open_watches(&events, "op"), 1);
        assert_eq!(Tally::of(&events, "sim").writes, 1);
    }

    #[test]
    fn first_write_latency_pairs_a_driver_write_with_the_operators_next_write_on_it() {
        let events: Vec<AuditEvent> = [
            line("me", "create", "ResponseComplete", "cocoonsets", "a", "2026-01-01T00:00:01Z"),
            line("op", "patch", "ResponseComplete", "cocoonsets", "a", "2026-01-01T00:00:01.02Z"),
            line("op", "create", "ResponseComplete", "pods", "a-0", "2026-01-01T00:00:01.03Z"),
        ]
        .iter()
        .map(|l| event(l))
        .collect();
        let owner = |_: &str, name: &str| Some(name.split('-').next().unwrap_or(name).to_string());
        let l = first_write_latencies(&events, "me", "op", &owner);
        assert_eq!(l.len(), 1);
        assert!((l[0] - 0.02).abs() < 1e-6, "{l:?}");
        assert_eq!(quantile(&[3.0, 1.0, 2.0, 4.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0, 4.0], 0.99), Some(4.0));
    }
}

//! Events (`events.k8s.io/v1`) on our objects. Repeats of the *same* event (object, type,
//! reason and note) within a few minutes become one Event with a growing series count; events
//! with a different note stay separate, so `kubectl describe` never shows one message for
//! another (kube-runtime's `Recorder` keys on the reason alone and keeps the first note).
//! RBAC: events create and patch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch};
use kube::{Api, Client};
use std::sync::Mutex;

use super::{merge_params, post_params};
use crate::k8s::error::{Error, Result};

/// How long an Event is extended by identical repeats instead of a new one being created.
const SERIES_WINDOW: Duration = Duration::from_secs(360);
/// Cached series beyond this many are forgotten (oldest first), bounding memory.
const CACHE_LIMIT: usize = 4096;

/// Recent Events by what they say (object, type, reason, note), so that an identical repeat
/// within the window bumps a series instead of creating another Event.
///
/// A key is one string (its parts joined by NUL, which no kind, namespace, name or reason
/// holds), so an entry is two allocations. Expired entries are swept a few times a window,
/// not on every publish, and a full cache drops its oldest quarter at once: a burst of a
/// thousand distinct Events costs a thousand inserts, not a scan of the cache for each.
struct SeriesCache {
    entries: HashMap<Box<str>, Series>,
    limit: usize,
    window: Duration,
    next_sweep: Option<Instant>,
}

struct Series {
    name: Box<str>,
    count: i32,
    last: Instant,
}

impl SeriesCache {
    fn new(limit: usize, window: Duration) -> Self {
        Self { entries: HashMap::new(), limit: limit.max(1), window, next_sweep: None }
    }

    fn key(regarding: (&str, &str, &str), warning: bool, reason: &str, note: &str) -> Box<str> {
        let (kind, namespace, name) = regarding;
        let kind_of = if warning { "W" } else { "N" };
        [kind, namespace, name, kind_of, reason, note].join("\0").into_boxed_str()
    }

    /// An identical Event seen within the window: its name and its new count.
    fn repeat(&mut self, key: &str, now: Instant) -> Option<(String, i32)> {
        self.sweep(now);
        let window = self.window;
        let series = self.entries.get_mut(key)?;
        if now.saturating_duration_since(series.last) >= window {
            self.entries.remove(key);
            return None;
        }
        series.count += 1;
        series.last = now;
        Some((series.name.to_string(), series.count))
    }

    /// A new Event was created under `name`.
    fn started(&mut self, key: Box<str>, name: &str, now: Instant) {
        self.sweep(now);
        if self.entries.len() >= self.limit {
            self.drop_oldest_quarter();
        }
        self.entries.insert(key, Series { name: name.into(), count: 1, last: now });
    }

    fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        let window = self.window;
        self.entries.retain(|_, s| now.saturating_duration_since(s.last) < window);
        self.next_sweep = Some(now + window / 8);
    }

    fn drop_oldest_quarter(&mut self) {
        let mut lasts: Vec<Instant> = self.entries.values().map(|s| s.last).collect();
        let quarter = (lasts.len() / 4).max(1);
        let (_, cutoff, _) = lasts.select_nth_unstable(quarter - 1);
        let cutoff = *cutoff;
        self.entries.retain(|_, s| s.last > cutoff);
    }
}

/// Publishes Events for one controller instance.
pub struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<SeriesCache>,
}

impl EventPublisher {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            series: Mutex::new(SeriesCache::new(CACHE_LIMIT, SERIES_WINDOW)),
        }
    }

    /// Creates the Event, or bumps the series of an identical recent one.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<()> {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let key = SeriesCache::key(
            (
                regarding.kind.as_deref().unwrap_or_default(),
                &namespace,
                regarding.name.as_deref().unwrap_or_default(),
            ),
            warning,
            reason,
            note,
        );
        let now = Timestamp::now();
        // Decide under the lock, talk to the API server without it: actors publish concurrently.
        let existing = self.cache().repeat(&key, Instant::now());
        if let Some((name, count)) = existing {
            let patch = serde_json::json!({
                "series": EventSeries { count, last_observed_time: MicroTime(now) }
            });
            return match api.patch(&name, &merge_params(), &Patch::Merge(&patch)).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    // Gone (expired by the API server): the next repeat starts a new Event.
                    self.cache().forget(&key);
                    Err(Error::api("patch", format!("event {namespace}/{name}"), e))
                }
            };
        }
        let base = regarding.name.clone().unwrap_or_else(|| self.controller.clone());
        let name = format!("{base}.{:x}", now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            note: Some(note.to_string()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_string()),
            ..Default::default()
        };
        api.create(&post_params(), &event)
            .await
            .map_err(|e| Error::api("create", format!("event {namespace}/{name}"), e))?;
        self.cache().started(key, &name, Instant::now());
        Ok(())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, SeriesCache> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(360);

    fn key(name: &str, note: &str) -> Box<str> {
        SeriesCache::key(("Hibernation", "ns", name), false, "Hibernated", note)
    }

    #[test]
    fn an_identical_event_within_the_window_bumps_its_series_and_a_different_note_does_not() {
        let mut cache = SeriesCache::new(16, WINDOW);
        let t0 = Instant::now();
        assert_eq!(cache.repeat(&key("a", "slept"), t0), None);
        cache.started(key("a", "slept"), "a.1", t0);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(cache.repeat(&key("a", "slept"), t1), Some(("a.1".to_string(), 2)));
        assert_eq!(cache.repeat(&key("a", "slept again"), t1), None);
        assert_eq!(cache.repeat(&key("b", "slept"), t1), None);
        let warning = SeriesCache::key(("Hibernation", "ns", "a"), true, "Hibernated", "slept");
        assert_eq!(cache.repeat(&warning, t1), None);
        // The window counts from the last repeat.
        let t2 = t1 + WINDOW - Duration::from_secs(1);
        assert_eq!(cache.repeat(&key("a", "slept"), t2), Some(("a.1".to_string(), 3)));
    }

    #[test]
    fn a_repeat_after_the_window_starts_a_new_event() {
        let mut cache = SeriesCache::new(16, WINDOW);
        let t0 = Instant::now();
        cache.started(key("a", "slept"), "a.1", t0);
        assert_eq!(cache.repeat(&key("a", "slept"), t0 + WINDOW), None);
        assert!(cache.entries.is_empty());
    }

    #[test]
    fn expired_series_are_swept_without_a_scan_on_every_publish() {
        let mut cache = SeriesCache::new(64, WINDOW);
        let t0 = Instant::now();
        for i in 0..10 {
            cache.started(key(&format!("old-{i}"), "n"), "x", t0);
        }
        // Within an eighth of the window nothing is swept, even what has expired.
        let later = t0 + WINDOW + Duration::from_secs(1);
        cache.next_sweep = Some(later + Duration::from_secs(1));
        cache.started(key("new", "n"), "y", later);
        assert_eq!(cache.entries.len(), 11);
        // Then the sweep drops every expired series and keeps the live one.
        cache.started(key("newer", "n"), "z", later + Duration::from_secs(1));
        let mut left: Vec<&str> = cache.entries.values().map(|s| &*s.name).collect();
        left.sort();
        assert_eq!(left, ["y", "z"]);
    }

    #[test]
    fn a_full_cache_drops_its_oldest_quarter_and_stays_bounded() {
        let mut cache = SeriesCache::new(8, WINDOW);
        let t0 = Instant::now();
        for i in 0..100u64 {
            let at = t0 + Duration::from_millis(i);
            cache.started(key(&format!("p-{i}"), "n"), &format!("e-{i}"), at);
            assert!(cache.entries.len() <= 8);
        }
        // The newest survive; the oldest went first.
        assert!(cache.entries.contains_key(&key("p-99", "n")));
        assert!(cache.entries.contains_key(&key("p-98", "n")));
        assert!(!cache.entries.contains_key(&key("p-0", "n")));
        // A repeat of a kept series still bumps it.
        let at = t0 + Duration::from_millis(200);
        assert_eq!(cache.repeat(&key("p-99", "n"), at), Some(("e-99".to_string(), 2)));
    }
}

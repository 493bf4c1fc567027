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
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::sync::Mutex;

use super::error::{Error, Result};

/// How long an Event is extended by identical repeats instead of a new one being created.
const SERIES_WINDOW: Duration = Duration::from_secs(360);
/// Cached series beyond this many are forgotten (oldest first), bounding memory.
const CACHE_LIMIT: usize = 4096;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    regarding: (String, String, String),
    warning: bool,
    reason: String,
    note: String,
}

struct Series {
    name: String,
    count: i32,
    last: Instant,
}

/// Publishes Events for one controller instance.
pub struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<HashMap<Key, Series>>,
}

impl EventPublisher {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            series: Mutex::new(HashMap::new()),
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
        let key = Key {
            regarding: (
                regarding.kind.clone().unwrap_or_default(),
                namespace.clone(),
                regarding.name.clone().unwrap_or_default(),
            ),
            warning,
            reason: reason.to_string(),
            note: note.to_string(),
        };
        let now = Timestamp::now();
        // Decide under the lock, talk to the API server without it: actors publish concurrently.
        let existing = {
            let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
            series.retain(|_, s| s.last.elapsed() < SERIES_WINDOW);
            series.get_mut(&key).map(|s| {
                s.count += 1;
                s.last = Instant::now();
                (s.name.clone(), s.count)
            })
        };
        if let Some((name, count)) = existing {
            let patch = serde_json::json!({
                "series": EventSeries { count, last_observed_time: MicroTime(now) }
            });
            return match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    // Gone (expired by the API server): the next repeat starts a new Event.
                    self.series.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
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
        api.create(&PostParams::default(), &event)
            .await
            .map_err(|e| Error::api("create", format!("event {namespace}/{name}"), e))?;
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if series.len() >= CACHE_LIMIT
            && let Some(oldest) = series.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| k.clone())
        {
            series.remove(&oldest);
        }
        series.insert(key, Series { name, count: 1, last: Instant::now() });
        Ok(())
    }
}

//! The snapshot ConfigMap watch's events on their way to the index, the latest version per
//! namespace only.
//!
//! A provider writes its namespace's `cocoon-vm-snapshots` ConfigMap once per VM it snapshots
//! or forgets, and the whole map (one entry per VM of the namespace) arrives with every write.
//! Queued one event per version behind a busy index, a teardown of a thousand sets would keep
//! hundreds of whole copies alive at once; the index needs only the newest. So the watch task
//! turns each event into its entries at once ([`NsSnapshots`]) and puts it here, where a newer
//! version of a namespace replaces the one still waiting, and tells the index only when the
//! queue was empty. A re-list (`Init`, `InitApply`, `InitDone`) is kept in order, and nothing
//! is merged across its boundaries: what vanished during a re-list is decided by the events
//! within it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::runtime::watcher::Event;

use crate::plan::Snapshots;

/// One namespace's snapshot entries as one version of its ConfigMap gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct NsSnapshots {
    pub namespace: String,
    pub entries: Arc<Snapshots>,
    /// The ConfigMap exists (a deleted one, and one never created, have no entries).
    pub exists: bool,
}

impl NsSnapshots {
    /// The entries of `cm` (the object itself is dropped).
    pub fn of(cm: ConfigMap) -> Self {
        let namespace = cm.namespace().unwrap_or_default();
        Self { namespace, entries: Arc::new(cm.data.unwrap_or_default()), exists: true }
    }

    /// A ConfigMap watch event as the index takes it: a deleted map has no entries.
    pub fn event(event: Event<ConfigMap>) -> Event<NsSnapshots> {
        match event {
            Event::Apply(cm) => Event::Apply(Self::of(cm)),
            Event::InitApply(cm) => Event::InitApply(Self::of(cm)),
            Event::Delete(cm) => {
                let namespace = cm.namespace().unwrap_or_default();
                Event::Delete(Self { namespace, entries: Arc::default(), exists: false })
            }
            Event::Init => Event::Init,
            Event::InitDone => Event::InitDone,
        }
    }
}

/// The events not yet applied by the index, a newer version of a namespace in place of an
/// older one that still waits.
#[derive(Debug, Default)]
pub struct SnapshotQueue(Mutex<VecDeque<Event<NsSnapshots>>>);

impl SnapshotQueue {
    /// Queues `event`; `true` when the queue was empty, so the index must be told.
    pub fn push(&self, event: Event<NsSnapshots>) -> bool {
        let mut queue = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = queue.is_empty();
        if let Event::Apply(new) | Event::Delete(new) = &event {
            // The last waiting steady-state event of this namespace, unless a re-list boundary
            // lies between it and now.
            for waiting in queue.iter_mut().rev() {
                match waiting {
                    Event::Apply(old) | Event::Delete(old) if old.namespace == new.namespace => {
                        *waiting = event;
                        return was_empty;
                    }
                    Event::Apply(_) | Event::Delete(_) => {}
                    Event::Init | Event::InitApply(_) | Event::InitDone => break,
                }
            }
        }
        queue.push_back(event);
        was_empty
    }

    /// Takes every waiting event, in order.
    pub fn drain(&self) -> Vec<Event<NsSnapshots>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect()
    }

    /// Events waiting now.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(ns: &str, vms: &[&str]) -> NsSnapshots {
        let entries = vms.iter().map(|vm| (vm.to_string(), "snap".to_string())).collect();
        NsSnapshots { namespace: ns.into(), entries: Arc::new(entries), exists: true }
    }

    fn shown(events: &[Event<NsSnapshots>]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Apply(s) => format!("apply {} {:?}", s.namespace, s.entries.keys()),
                Event::Delete(s) => format!("delete {}", s.namespace),
                Event::InitApply(s) => format!("init-apply {} {:?}", s.namespace, s.entries.keys()),
                Event::Init => "init".into(),
                Event::InitDone => "init-done".into(),
            })
            .collect()
    }

    #[test]
    fn a_newer_version_of_a_namespace_replaces_the_one_still_waiting() {
        let queue = SnapshotQueue::default();
        assert!(queue.push(Event::Apply(entries("a", &["vm-1"]))), "the first tells the index");
        assert!(!queue.push(Event::Apply(entries("b", &["vm-9"]))));
        assert!(!queue.push(Event::Apply(entries("a", &["vm-1", "vm-2"]))));
        assert!(!queue.push(Event::Delete(entries("b", &[]))));
        assert!(!queue.push(Event::Apply(entries("a", &["vm-1", "vm-2", "vm-3"]))));
        assert_eq!(queue.len(), 2, "one waiting version per namespace");
        assert_eq!(
            shown(&queue.drain()),
            ["apply a [\"vm-1\", \"vm-2\", \"vm-3\"]", "delete b"],
            "each namespace at its latest version, in the order they first waited"
        );
        assert!(queue.is_empty());
        assert!(queue.push(Event::Apply(entries("a", &[]))), "after a drain the next one tells");
    }

    #[test]
    fn nothing_is_merged_across_a_relist() {
        let queue = SnapshotQueue::default();
        queue.push(Event::Apply(entries("a", &["vm-1"])));
        queue.push(Event::Init);
        queue.push(Event::InitApply(entries("a", &["vm-2"])));
        queue.push(Event::Apply(entries("a", &["vm-3"])));
        queue.push(Event::InitDone);
        queue.push(Event::Apply(entries("a", &["vm-4"])));
        queue.push(Event::Apply(entries("a", &["vm-5"])));
        assert_eq!(
            shown(&queue.drain()),
            [
                "apply a [\"vm-1\"]",
                "init",
                "init-apply a [\"vm-2\"]",
                "apply a [\"vm-3\"]",
                "init-done",
                "apply a [\"vm-5\"]",
            ]
        );
    }

    #[test]
    fn a_deleted_config_map_has_no_entries() {
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("cocoon-vm-snapshots".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            data: Some([("vm-1".to_string(), "snap".to_string())].into()),
            ..Default::default()
        };
        let Event::Apply(applied) = NsSnapshots::event(Event::Apply(cm.clone())) else { panic!() };
        assert_eq!(applied, entries("ns", &["vm-1"]));
        let Event::Delete(deleted) = NsSnapshots::event(Event::Delete(cm)) else { panic!() };
        assert_eq!(deleted, NsSnapshots { exists: false, ..entries("ns", &[]) });
    }
}

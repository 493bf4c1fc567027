//! Snapshot entries: each change wakes the actors of its VM; all read the shared copy.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::Event;

use super::*;
use crate::k8s::snapshot_queue::{NsSnapshots, SnapshotQueue};

fn snapshots_event(entries: &[(&str, &str)]) -> Input {
    let mut cm = snapshot_map("ns", &[]);
    cm.data = Some(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let queue = Arc::new(SnapshotQueue::default());
    queue.push(NsSnapshots::event(Event::Apply(cm)));
    Input::Watch(Box::new(WatchEvent::Snapshots(queue)))
}

/// `(key, cell)` of every delivery carrying the namespace's snapshot entries.
fn snapshot_cells(deliveries: &[Delivery]) -> Vec<(String, Arc<SnapshotCell>)> {
    let mut out = Vec::new();
    for d in deliveries {
        if let Delivery::Update { key, updates } | Delivery::Spawn { key, updates, .. } = d {
            for u in updates {
                if let Update::Snapshots(s) = u {
                    out.push((key.to_string(), s.clone()));
                }
            }
        }
    }
    out
}

/// `(key, entries)` of every delivery carrying snapshot entries.
fn snapshot_updates(deliveries: &[Delivery]) -> Vec<(String, Vec<String>)> {
    snapshot_cells(deliveries)
        .into_iter()
        .map(|(key, s)| (key, s.current().keys().cloned().collect()))
        .collect()
}

#[test]
fn a_snapshot_entry_wakes_only_the_actors_of_its_vm_and_the_others_read_it_at_their_next_pass() {
    let mut index = Index::default();
    index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    index.apply(set_event(Event::Apply(set("a-b", "uid-ab"))));
    let c_spawn = index.apply(set_event(Event::Apply(set("c", "uid-c"))));
    index.apply(hib_event(Event::Apply(hib("h1", "bot"))));
    let mut other = set("a", "uid-elsewhere");
    other.metadata.namespace = Some("elsewhere".into());
    index.apply(set_event(Event::Apply(other)));

    // The entry of set a's main: set a only (not c, not h1, not the other namespace's "a").
    let one = index.apply(snapshots_event(&[("vk-ns-a-0", "s")]));
    assert_eq!(snapshot_updates(&one), vec![("cs/ns/a".to_string(), vec!["vk-ns-a-0".into()])]);
    // A name that two sets' prefixes fit (a, a-b): both are told (more is harmless).
    let both = index.apply(snapshots_event(&[("vk-ns-a-0", "s"), ("vk-ns-a-b-1", "s")]));
    let told: Vec<String> = snapshot_updates(&both).into_iter().map(|(k, _)| k).collect();
    assert_eq!(told, vec!["cs/ns/a".to_string(), "cs/ns/a-b".to_string()]);
    // The entry of the pod a Hibernation names: that Hibernation; a removed entry counts too
    // (vk-ns-a-b-1 fits both a and a-b).
    let hib_entry = index.apply(snapshots_event(&[("vk-ns-a-0", "s"), ("vk-ns-bot", "s")]));
    let told: Vec<String> = snapshot_updates(&hib_entry).into_iter().map(|(k, _)| k).collect();
    assert_eq!(told, ["cs/ns/a", "cs/ns/a-b", "hib/ns/h1"].map(String::from));
    // An entry named after no known actor: everyone in the namespace is told.
    let unknown =
        index.apply(snapshots_event(&[("vk-ns-a-0", "s"), ("vk-ns-bot", "s"), ("vm-7", "s")]));
    let told: Vec<String> = snapshot_updates(&unknown).into_iter().map(|(k, _)| k).collect();
    assert_eq!(told, ["cs/ns/a", "cs/ns/a-b", "cs/ns/c", "hib/ns/h1"].map(String::from));
    let again =
        index.apply(snapshots_event(&[("vk-ns-a-0", "s"), ("vk-ns-bot", "s"), ("vm-7", "s")]));
    assert!(again.is_empty(), "the same entries again are no news");

    // c was not told about its neighbours' entries changing since; the entries it reads are the
    // namespace's one shared copy, so its next pass plans on the current ones all the same, and
    // its next update does not carry them again.
    let [(_, c_entries)] =
        snapshot_cells(&c_spawn).try_into().expect("c is spawned with its namespace's entries");
    index.apply(snapshots_event(&[("vk-ns-a-0", "t"), ("vk-ns-bot", "s"), ("vm-7", "s")]));
    assert_eq!(c_entries.current().get("vk-ns-a-0").map(String::as_str), Some("t"));
    let next = index.apply(pod_event(Event::Apply(pod("c-0", "uid-c", "c"))));
    assert!(snapshot_updates(&next).is_empty(), "{next:?}");
    // A new actor starts with the current entries.
    let spawn = index.apply(set_event(Event::Apply(set("d", "uid-d"))));
    assert_eq!(snapshot_updates(&spawn).len(), 1);
}

fn snapshot_map(ns: &str, entries: &[&str]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some("cocoon-vm-snapshots".into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        data: Some(entries.iter().map(|vm| (vm.to_string(), "s".to_string())).collect()),
        ..Default::default()
    }
}

#[test]
fn versions_of_the_entries_that_waited_behind_a_busy_index_are_applied_once_at_the_latest() {
    let mut index = Index::default();
    index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    index.apply(set_event(Event::Apply(set("c", "uid-c"))));
    let queue = Arc::new(SnapshotQueue::default());
    // Three versions written while the index was busy: only the first tells it.
    assert!(queue.push(NsSnapshots::event(Event::Apply(snapshot_map("ns", &["vk-ns-a-0"])))));
    for entries in [&["vk-ns-a-0", "vk-ns-a-1"][..], &["vk-ns-a-1", "vk-ns-c-0"]] {
        assert!(!queue.push(NsSnapshots::event(Event::Apply(snapshot_map("ns", entries)))));
    }
    let told = index.apply(Input::Watch(Box::new(WatchEvent::Snapshots(queue.clone()))));
    assert_eq!(
        snapshot_updates(&told),
        [("cs/ns/a", ["vk-ns-a-1", "vk-ns-c-0"]), ("cs/ns/c", ["vk-ns-a-1", "vk-ns-c-0"])]
            .map(|(k, e)| (k.to_string(), e.map(String::from).to_vec())),
        "each actor whose entries changed is told once, of the latest version"
    );
    assert!(queue.is_empty());

    // A re-list that no longer shows the map: its entries are gone, and the actors are told.
    queue.push(Event::Init);
    queue.push(Event::InitDone);
    let relisted = index.apply(Input::Watch(Box::new(WatchEvent::Snapshots(queue.clone()))));
    assert_eq!(
        snapshot_updates(&relisted),
        [("cs/ns/a".to_string(), vec![]), ("cs/ns/c".to_string(), vec![])]
    );
    let nothing = index.apply(Input::Watch(Box::new(WatchEvent::Snapshots(queue))));
    assert!(nothing.is_empty(), "an empty queue is no news");
}

//! The index without a client or a runtime: inputs in, deliveries out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::watcher::Event;

use super::snapshot_queue::SnapshotQueue;
use super::*;
use crate::api::{CocoonSetSpec, HibernationAction, HibernationSpec};

fn set(name: &str, uid: &str) -> CocoonSet {
    let spec: CocoonSetSpec =
        serde_json::from_value(serde_json::json!({"agent": {"image": "x"}})).unwrap();
    let mut set = CocoonSet::new(name, spec);
    set.metadata.namespace = Some("ns".into());
    set.metadata.uid = Some(uid.into());
    set
}

fn hib(name: &str, pod: &str) -> Hibernation {
    let spec = HibernationSpec { pod_name: pod.into(), action: HibernationAction::Hibernate };
    let mut h = Hibernation::new(name, spec);
    h.metadata.namespace = Some("ns".into());
    h.metadata.uid = Some(format!("uid-{name}"));
    h
}

fn pod(name: &str, owner_uid: &str, label_set: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            labels: Some(BTreeMap::from([(
                "cocoon.cis/cocoonset".to_string(),
                label_set.to_string(),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: "cocoon.cis/v1alpha1".into(),
                kind: "CocoonSet".into(),
                name: label_set.into(),
                uid: owner_uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn set_event(e: Event<CocoonSet>) -> Input {
    Input::Watch(Box::new(WatchEvent::CocoonSet(e)))
}

fn pod_event(e: Event<Pod>) -> Input {
    Input::Watch(Box::new(WatchEvent::OwnedPod(crate::k8s::watch::viewed(e))))
}

fn hib_event(e: Event<Hibernation>) -> Input {
    Input::Watch(Box::new(WatchEvent::Hibernation(e)))
}

fn target_event(pod: &str, event: Event<Pod>) -> Input {
    Input::Watch(Box::new(WatchEvent::TargetPod {
        namespace: "ns".into(),
        name: pod.into(),
        event: crate::k8s::watch::viewed(event),
    }))
}

/// `(key, pod names)` of every delivery that carries pod updates.
fn pod_updates(deliveries: &[Delivery]) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for d in deliveries {
        let (key, updates) = match d {
            Delivery::Update { key, updates } | Delivery::Spawn { key, updates, .. } => {
                (key, updates)
            }
            _ => continue,
        };
        for u in updates {
            if let Update::Pod { name, pod } = u {
                out.push((key.to_string(), name.clone(), pod.is_some()));
            }
        }
    }
    out
}

fn spawns(deliveries: &[Delivery]) -> Vec<(String, Incarnation)> {
    deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::Spawn { key, incarnation, .. } => Some((key.to_string(), *incarnation)),
            _ => None,
        })
        .collect()
}

#[test]
fn pods_are_routed_by_controller_uid_never_by_label() {
    let mut index = Index::default();
    index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    let ours = index.apply(pod_event(Event::Apply(pod("a-0", "uid-a", "a"))));
    assert_eq!(pod_updates(&ours), vec![("cs/ns/a".into(), "a-0".into(), true)]);
    // Labelled for "a" but controlled by another set: the label lies.
    let impostor = index.apply(pod_event(Event::Apply(pod("impostor", "uid-other", "a"))));
    assert!(impostor.is_empty(), "{impostor:?}");
}

#[test]
fn a_relist_reports_pods_that_vanished_meanwhile_as_deleted() {
    let mut index = Index::default();
    index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    index.apply(pod_event(Event::Apply(pod("a-0", "uid-a", "a"))));
    index.apply(pod_event(Event::Init));
    index.apply(pod_event(Event::InitApply(pod("impostor", "uid-other", "a"))));
    let done = index.apply(pod_event(Event::InitDone));
    assert_eq!(pod_updates(&done), vec![("cs/ns/a".into(), "a-0".into(), false)]);
}

#[test]
fn a_new_set_spawns_one_actor_with_its_whole_view_and_pods_never_spawn_one() {
    let mut index = Index::default();
    let early = index.apply(pod_event(Event::Apply(pod("a-0", "uid-a", "a"))));
    assert!(early.is_empty(), "a pod alone spawns nothing");
    let first = index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    assert_eq!(spawns(&first), vec![("cs/ns/a".to_string(), 1)]);
    assert_eq!(
        pod_updates(&first),
        vec![("cs/ns/a".into(), "a-0".into(), true)],
        "the pod seen before"
    );
    let again = index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    assert!(spawns(&again).is_empty(), "the live actor gets an update instead");
    assert!(matches!(again.as_slice(), [Delivery::Update { .. }]));
}

#[test]
fn a_set_recreated_under_the_same_name_gets_a_new_actor_that_inherits_nothing() {
    let mut index = Index::default();
    index.apply(set_event(Event::Apply(set("a", "uid-old"))));
    index.apply(pod_event(Event::Apply(pod("a-0", "uid-old", "a"))));
    // The delete was missed; the next event shows the same name with a new UID.
    let out = index.apply(set_event(Event::Apply(set("a", "uid-new"))));
    assert!(matches!(&out[0], Delivery::Retire { update: Update::CocoonSet(None), .. }), "{out:?}");
    assert_eq!(spawns(&out), vec![("cs/ns/a".to_string(), 2)]);
    assert!(pod_updates(&out).is_empty(), "the old set's pod is not the new set's");
    // The old incarnation stopping later changes nothing for the new one.
    let stale =
        index.apply(Input::ActorStopped { key: ActorKey::cocoon_set("ns", "a"), incarnation: 1 });
    assert!(stale.is_empty(), "{stale:?}");
}

#[test]
fn an_actor_that_stopped_while_its_object_exists_starts_again_and_a_gone_one_is_forgotten() {
    let mut index = Index::default();
    let key = ActorKey::cocoon_set("ns", "a");
    index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    let respawn = index.apply(Input::ActorStopped { key: key.clone(), incarnation: 1 });
    assert_eq!(spawns(&respawn), vec![("cs/ns/a".to_string(), 2)]);
    let restart = index.apply(Input::RestartDue { key: key.clone(), incarnation: 2 });
    assert_eq!(spawns(&restart), vec![("cs/ns/a".to_string(), 3)], "a restart gets the whole view");
    let deleted = index.apply(set_event(Event::Delete(set("a", "uid-a"))));
    assert!(matches!(deleted.as_slice(), [Delivery::Retire { .. }]));
    assert!(index.live().next().is_none());
    let stopped = index.apply(Input::ActorStopped { key, incarnation: 3 });
    assert!(stopped.is_empty(), "retired already: {stopped:?}");
}

#[test]
fn a_hibernation_target_is_watched_once_and_unwatched_with_its_last_hibernation() {
    let mut index = Index::default();
    index.apply(Input::Synced);
    let first = index.apply(hib_event(Event::Apply(hib("h1", "bot"))));
    let watches = |ds: &[Delivery]| {
        ds.iter()
            .filter_map(|d| match d {
                Delivery::Target(c) => Some(c.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let watch = TargetCommand::Watch { namespace: "ns".into(), pod: "bot".into() };
    assert_eq!(watches(&first), vec![watch]);
    index.apply(target_event("bot", Event::Init));
    index.apply(target_event("bot", Event::InitApply(pod("bot", "rs-uid", "x"))));
    let listed = index.apply(target_event("bot", Event::InitDone));
    assert!(listed.iter().any(|d| matches!(d, Delivery::Update { updates, .. }
        if updates.iter().any(|u| matches!(u, Update::TargetListed(n) if n == "bot")))));
    // A second Hibernation on the same pod: no second watch, and its first view already has
    // what the watch has seen (or it would wait for an event forever).
    let second = index.apply(hib_event(Event::Apply(hib("h2", "bot"))));
    assert!(watches(&second).is_empty());
    let Some(Delivery::Spawn { updates, .. }) =
        second.iter().find(|d| matches!(d, Delivery::Spawn { .. }))
    else {
        panic!("{second:?}")
    };
    assert!(updates.iter().any(|u| matches!(u, Update::Pod { pod: Some(_), .. })));
    assert!(updates.iter().any(|u| matches!(u, Update::TargetListed(_))));
    let competitors: Vec<usize> = second
        .iter()
        .filter_map(|d| match d {
            Delivery::Update { updates, .. } => updates.iter().find_map(|u| match u {
                Update::Competitors(c) => Some(c.len()),
                _ => None,
            }),
            _ => None,
        })
        .collect();
    assert_eq!(competitors, vec![2, 2], "both learn there are two");
    index.apply(hib_event(Event::Delete(hib("h1", "bot"))));
    let last = index.apply(hib_event(Event::Delete(hib("h2", "bot"))));
    assert_eq!(
        watches(&last),
        vec![TargetCommand::Unwatch { namespace: "ns".into(), pod: "bot".into() }]
    );
}

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

#[test]
fn a_pod_whose_controller_changed_leaves_its_former_owners_view() {
    let mut index = Index::default();
    index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    index.apply(set_event(Event::Apply(set("b", "uid-b"))));
    index.apply(pod_event(Event::Apply(pod("a-0", "uid-a", "a"))));
    let moved = index.apply(pod_event(Event::Apply(pod("a-0", "uid-b", "a"))));
    assert_eq!(
        pod_updates(&moved),
        vec![("cs/ns/a".into(), "a-0".into(), false), ("cs/ns/b".into(), "a-0".into(), true)]
    );
}

#[test]
fn the_watches_having_synced_wakes_every_actor() {
    let mut index = Index::default();
    assert!(matches!(index.apply(Input::Synced).as_slice(), [Delivery::WakeAll]));
}

#[test]
fn a_pod_that_left_the_label_watch_stays_in_its_owners_view_without_the_label() {
    let mut index = Index::default();
    index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    index.apply(pod_event(Event::Apply(pod("a-0", "uid-a", "a"))));
    // The API server reports the *previous* object when one stops matching the selector.
    let left = index.apply(pod_event(Event::Delete(pod("a-0", "uid-a", "a"))));
    assert_eq!(pod_updates(&left), vec![("cs/ns/a".into(), "a-0".into(), true)]);
    let Delivery::Update { updates, .. } = &left[0] else { panic!("{left:?}") };
    let Update::Pod { pod: Some(p), .. } = &updates[0] else { panic!("{updates:?}") };
    assert!(!p.labels.contains_key("cocoon.cis/cocoonset"), "the owner will put it back");
    // A re-list does not show it; it is still not taken for gone.
    index.apply(pod_event(Event::Init));
    let relisted = index.apply(pod_event(Event::InitDone));
    assert!(pod_updates(&relisted).is_empty(), "{relisted:?}");
    // A pod that was being deleted is gone when its delete event comes.
    index.apply(pod_event(Event::Apply(pod("a-1", "uid-a", "a"))));
    let mut deleting = pod("a-1", "uid-a", "a");
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let gone = index.apply(pod_event(Event::Delete(deleting)));
    assert_eq!(pod_updates(&gone), vec![("cs/ns/a".into(), "a-1".into(), false)]);
    // A failed pod is deleted at once by the API server, without a deletionTimestamp.
    index.apply(pod_event(Event::Apply(pod("a-2", "uid-a", "a"))));
    let mut failed = pod("a-2", "uid-a", "a");
    failed.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Failed".into()),
        ..Default::default()
    });
    let gone = index.apply(pod_event(Event::Delete(failed)));
    assert_eq!(pod_updates(&gone), vec![("cs/ns/a".into(), "a-2".into(), false)]);
}

/// The first pod (present, not gone) that a live actor is handed in `deliveries`.
fn first_pod_seen(deliveries: &[Delivery]) -> Option<Arc<PodView>> {
    deliveries.iter().find_map(|d| match d {
        Delivery::Update { updates, .. } => updates.iter().find_map(|u| match u {
            Update::Pod { pod: Some(p), .. } => Some(p.clone()),
            _ => None,
        }),
        _ => None,
    })
}

fn targeted(name: &str) -> Pod {
    let mut p = pod(name, "rs-uid", "x");
    p.metadata.labels = Some(BTreeMap::from([(
        crate::contract::LABEL_HIBERNATION_TARGET.to_string(),
        "true".to_string(),
    )]));
    p
}

fn labelled_event(e: Event<Pod>) -> Input {
    Input::Watch(Box::new(WatchEvent::LabelledTarget(crate::k8s::watch::viewed(e))))
}

fn commands(ds: &[Delivery]) -> Vec<TargetCommand> {
    ds.iter()
        .filter_map(|d| match d {
            Delivery::Target(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn watch(pod: &str) -> TargetCommand {
    TargetCommand::Watch { namespace: "ns".into(), pod: pod.into() }
}

fn unwatch(pod: &str) -> TargetCommand {
    TargetCommand::Unwatch { namespace: "ns".into(), pod: pod.into() }
}

#[test]
fn labelled_targets_need_no_watch_of_their_own_and_unlabelled_ones_one_until_labelled() {
    let mut index = Index::default();
    // Before the watches synced, no narrow watch: the label watch may not have listed yet.
    assert!(commands(&index.apply(hib_event(Event::Apply(hib("h1", "bot"))))).is_empty());
    index.apply(labelled_event(Event::Init));
    index.apply(labelled_event(Event::InitApply(targeted("bot"))));
    index.apply(labelled_event(Event::InitDone));
    assert!(commands(&index.apply(hib_event(Event::Apply(hib("h2", "late"))))).is_empty());
    // Synced: a narrow watch only for the pod the label watch does not show.
    let synced = index.apply(Input::Synced);
    assert_eq!(commands(&synced), vec![watch("late")]);
    // h1's first view has its pod from the label watch, listed.
    let Some(Delivery::Spawn { updates, .. }) = index
        .apply(Input::ActorStopped { key: ActorKey::hibernation("ns", "h1"), incarnation: 1 })
        .into_iter()
        .next()
    else {
        panic!("h1 restarts with its view")
    };
    assert!(updates.iter().any(|u| matches!(u, Update::Pod { pod: Some(_), .. })));
    assert!(updates.iter().any(|u| matches!(u, Update::TargetListed(n) if n == "bot")));
    // The late pod appears and is labelled by its Hibernation: its narrow watch stops.
    let labelled = index.apply(labelled_event(Event::Apply(targeted("late"))));
    assert_eq!(commands(&labelled), vec![unwatch("late")]);
    assert!(pod_updates(&labelled).contains(&("hib/ns/h2".into(), "late".into(), true)));
    // A late event of the stopped narrow watch changes nothing.
    assert!(index.apply(target_event("late", Event::Delete(targeted("late")))).is_empty());
}

#[test]
fn a_pod_that_left_the_label_watch_is_kept_unlabelled_or_gone_and_watched_by_name() {
    let mut index = Index::default();
    index.apply(hib_event(Event::Apply(hib("h1", "bot"))));
    index.apply(hib_event(Event::Apply(hib("h2", "late"))));
    index.apply(labelled_event(Event::Apply(targeted("bot"))));
    index.apply(labelled_event(Event::Apply(targeted("late"))));
    assert!(commands(&index.apply(Input::Synced)).is_empty(), "both labelled: no narrow watch");
    // A user removed the label: the pod stays in view, unlabelled, so it is labelled again.
    let unlabelled = index.apply(labelled_event(Event::Delete(targeted("bot"))));
    assert_eq!(commands(&unlabelled), vec![watch("bot")]);
    let kept = first_pod_seen(&unlabelled);
    let kept = kept.expect("the pod stays in h1's view");
    assert!(!kept.labels.contains_key(crate::contract::LABEL_HIBERNATION_TARGET));
    // A pod deleted for real is gone for its Hibernation, whose narrow watch waits for a new one.
    let mut deleted = targeted("late");
    deleted.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    let gone = index.apply(labelled_event(Event::Delete(deleted)));
    assert_eq!(commands(&gone), vec![watch("late")]);
    assert!(pod_updates(&gone).contains(&("hib/ns/h2".into(), "late".into(), false)));
    // The last Hibernation of a name stops its narrow watch.
    assert_eq!(
        commands(&index.apply(hib_event(Event::Delete(hib("h2", "late"))))),
        vec![unwatch("late")]
    );
}

#[test]
fn a_label_taken_away_by_a_hibernation_being_deleted_is_not_followed() {
    let mut index = Index::default();
    index.apply(hib_event(Event::Apply(hib("h1", "bot"))));
    index.apply(labelled_event(Event::Apply(targeted("bot"))));
    index.apply(Input::Synced);
    let mut deleting = hib("h1", "bot");
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    index.apply(hib_event(Event::Apply(deleting)));
    let unlabelled = index.apply(labelled_event(Event::Delete(targeted("bot"))));
    assert!(commands(&unlabelled).is_empty(), "no following for a Hibernation on its way out");
    assert!(pod_updates(&unlabelled).contains(&("hib/ns/h1".into(), "bot".into(), false)));
}

/// Pod `name` of set `a` (uid `uid-a`), also carrying the target label when `labelled`.
fn set_pod(name: &str, labelled: bool) -> Pod {
    let mut p = pod(name, "uid-a", "a");
    if labelled {
        p.metadata.labels.get_or_insert_default().insert(
            crate::contract::LABEL_HIBERNATION_TARGET.to_string(),
            crate::contract::HIBERNATION_TARGET_VALUE.to_string(),
        );
    }
    p
}

fn listed(ds: &[Delivery], key: &str) -> bool {
    ds.iter().any(|d| match d {
        Delivery::Update { key: k, updates } | Delivery::Spawn { key: k, updates, .. } => {
            k.to_string() == key
                && updates.iter().any(|u| matches!(u, Update::TargetListed(n) if n == "a-1"))
        }
        _ => false,
    })
}

#[test]
fn a_sets_pod_named_by_a_hibernation_needs_no_following_until_its_label_watch_shows_it() {
    let mut index = Index::default();
    index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    index.apply(pod_event(Event::Apply(set_pod("a-1", false))));
    let named = index.apply(hib_event(Event::Apply(hib("h1", "a-1"))));
    // Its first view holds the pod, listed, as the set's watch shows it: it can plan (and label
    // the pod in its own first patch) without a label patch of the index's.
    assert!(pod_updates(&named).contains(&("hib/ns/h1".into(), "a-1".into(), true)));
    assert!(listed(&named, "hib/ns/h1"));
    assert!(commands(&index.apply(Input::Synced)).is_empty(), "no label patch, no narrow watch");
    // Changes reach it through the set's watch meanwhile.
    let changed = index.apply(pod_event(Event::Apply(set_pod("a-1", false))));
    assert!(pod_updates(&changed).contains(&("hib/ns/h1".into(), "a-1".into(), true)));
    assert!(pod_updates(&changed).contains(&("cs/ns/a".into(), "a-1".into(), true)));
    // Once labelled, the label watch alone speaks for the Hibernation: an event of the set's
    // watch (which may be older) reaches only the set.
    let labelled = index.apply(labelled_event(Event::Apply(set_pod("a-1", true))));
    assert_eq!(pod_updates(&labelled), vec![("hib/ns/h1".into(), "a-1".into(), true)]);
    assert!(commands(&labelled).is_empty());
    let late = index.apply(pod_event(Event::Apply(set_pod("a-1", false))));
    assert_eq!(pod_updates(&late), vec![("cs/ns/a".into(), "a-1".into(), true)]);
}

#[test]
fn a_sets_pod_named_by_a_hibernation_that_leaves_the_set_or_goes_is_followed_by_name() {
    let mut index = Index::default();
    index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    index.apply(pod_event(Event::Apply(set_pod("a-1", false))));
    index.apply(hib_event(Event::Apply(hib("h1", "a-1"))));
    index.apply(Input::Synced);
    // Someone took the set's label away (or deleted it at once): still in view, unlabelled,
    // and followed by name from now on.
    let left = index.apply(pod_event(Event::Delete(set_pod("a-1", false))));
    assert!(pod_updates(&left).contains(&("hib/ns/h1".into(), "a-1".into(), true)));
    assert_eq!(commands(&left), vec![watch("a-1")]);
    // Back in the set's watch: the following stops.
    let back = index.apply(pod_event(Event::Apply(set_pod("a-1", false))));
    assert_eq!(commands(&back), vec![unwatch("a-1")]);
    assert!(listed(&back, "hib/ns/h1"));
    // Deleted for real: gone for the Hibernation, which waits by name for a pod of that name.
    let mut deleted = set_pod("a-1", false);
    deleted.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    let gone = index.apply(pod_event(Event::Delete(deleted)));
    assert!(pod_updates(&gone).contains(&("hib/ns/h1".into(), "a-1".into(), false)));
    assert_eq!(commands(&gone), vec![watch("a-1")]);
}

#[test]
fn a_target_label_taken_off_a_sets_pod_leaves_it_in_view_as_the_sets_watch_shows_it() {
    let mut index = Index::default();
    index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    index.apply(pod_event(Event::Apply(set_pod("a-1", true))));
    index.apply(labelled_event(Event::Apply(set_pod("a-1", true))));
    index.apply(hib_event(Event::Apply(hib("h1", "a-1"))));
    index.apply(Input::Synced);
    // A user removed the target label: the set's watch has the pod as it is now, without it.
    index.apply(pod_event(Event::Apply(set_pod("a-1", false))));
    let unlabelled = index.apply(labelled_event(Event::Delete(set_pod("a-1", true))));
    assert!(commands(&unlabelled).is_empty(), "the set's watch still shows it");
    let seen = first_pod_seen(&unlabelled);
    let seen = seen.expect("the pod stays in h1's view");
    assert!(!seen.labels.contains_key(crate::contract::LABEL_HIBERNATION_TARGET));
    assert!(seen.labels.contains_key(crate::contract::LABEL_COCOONSET));
}

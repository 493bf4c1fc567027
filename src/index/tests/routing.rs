//! Sets, their pods and the actors' lives: routing by controller UID, re-lists, incarnations.

use kube::runtime::watcher::Event;

use super::*;

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
fn a_relist_retires_the_sets_deleted_meanwhile_and_keeps_those_it_shows() {
    let mut index = Index::default();
    index.apply(set_event(Event::Apply(set("a", "uid-a"))));
    index.apply(set_event(Event::Apply(set("b", "uid-b"))));
    index.apply(set_event(Event::Init));
    index.apply(set_event(Event::InitApply(set("b", "uid-b"))));
    let done = index.apply(set_event(Event::InitDone));
    assert!(
        matches!(done.as_slice(), [Delivery::Retire { key, update: Update::CocoonSet(None) }]
            if *key == ActorKey::cocoon_set("ns", "a")),
        "{done:?}"
    );
    let live: Vec<String> = index.live().map(ToString::to_string).collect();
    assert_eq!(live, vec!["cs/ns/b".to_string()]);
    // The retired set is forgotten: the next re-list has nothing more to retire.
    index.apply(set_event(Event::Init));
    index.apply(set_event(Event::InitApply(set("b", "uid-b"))));
    assert!(index.apply(set_event(Event::InitDone)).is_empty());
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
    assert!(matches!(index.apply(synced()).as_slice(), [Delivery::WakeAll]));
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

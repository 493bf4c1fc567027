//! The pods Hibernations name: one label watch, the owned-pod watch, and a narrow watch only
//! for a named pod neither shows.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;

use super::*;

#[test]
fn a_hibernation_target_is_watched_once_and_unwatched_with_its_last_hibernation() {
    let mut index = Index::default();
    index.apply(synced());
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
    let synced = index.apply(synced());
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
    assert!(commands(&index.apply(synced())).is_empty(), "both labelled: no narrow watch");
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
    index.apply(synced());
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
    assert!(commands(&index.apply(synced())).is_empty(), "no label patch, no narrow watch");
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
    index.apply(synced());
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
    index.apply(synced());
    // A user removed the target label: the set's watch has the pod as it is now, without it.
    index.apply(pod_event(Event::Apply(set_pod("a-1", false))));
    let unlabelled = index.apply(labelled_event(Event::Delete(set_pod("a-1", true))));
    assert!(commands(&unlabelled).is_empty(), "the set's watch still shows it");
    let seen = first_pod_seen(&unlabelled);
    let seen = seen.expect("the pod stays in h1's view");
    assert!(!seen.labels.contains_key(crate::contract::LABEL_HIBERNATION_TARGET));
    assert!(seen.labels.contains_key(crate::contract::LABEL_COCOONSET));
}

//! Correct when others write: users editing labels or ownerReferences, `--cascade=orphan`, the
//! garbage collector, and a provider that never answers (LESSONS 16–19).

use crate::contract::dialect::seed;
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{PodAction, SetMemory, SetSettings, SetView, plan_set_pass, record_set};
use crate::api::conditions::{ConditionType, SUSPEND_DEADLINE_EXCEEDED};
use crate::api::{CocoonSet, CocoonSetPhase};
use crate::contract;
use crate::plan::fixtures::*;
use crate::plan::{Backoff, Outcome, PodView, Step};

fn settings() -> SetSettings {
    SetSettings {
        backoff: Backoff::retry(Duration::from_secs(60)),
        suspend_timeout: Duration::from_secs(180),
        status_batch: Duration::ZERO,
    }
}

fn set_object(replicas: i32) -> CocoonSet {
    let mut set = CocoonSet::new("demo", spec(replicas));
    set.metadata.namespace = Some("prod".into());
    set.metadata.uid = Some(UID.into());
    set.metadata.generation = Some(1);
    set.metadata.finalizers = Some(vec![contract::FINALIZER_TEARDOWN.to_string()]);
    set
}

/// A pod as the API server shows it: labelled as the operator wrote it, role/slot unknown until
/// the pass identifies it by name.
fn as_listed(mut pod: PodView) -> PodView {
    pod.role = None;
    pod.slot = None;
    pod.uid = Some(format!("uid-{}", pod.name).into());
    pod
}

fn pass(set: &CocoonSet, pods: &[PodView], memory: &mut SetMemory, now: i64) -> super::SetPlanned {
    let snapshots = super::Snapshots::new();
    let nodes = crate::plan::Nodes::default();
    let view = SetView {
        set,
        status: set.status.as_ref(),
        pods,
        snapshots: &snapshots,
        snapshot_record: true,
        nodes: &nodes,
        registry: false,
    };
    plan_set_pass(&view, memory, &settings(), at(now))
}

fn pod_actions(planned: &super::SetPlanned) -> Vec<PodAction> {
    planned
        .pass
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Pod(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_edited_slot_label_never_moves_or_deletes_a_vm_and_is_put_back() {
    let set = set_object(2);
    let mut edited = as_listed(agent(1));
    edited.labels.insert(contract::LABEL_SLOT, "7".into());
    edited.labels.insert(contract::LABEL_ROLE, "toolbox".into());
    let pods = vec![as_listed(agent(0)), edited, as_listed(agent(2))];
    let planned = pass(&set, &pods, &mut SetMemory::default(), 100);
    let actions = pod_actions(&planned);
    assert_eq!(
        actions,
        vec![PodAction::RepairLabels {
            pod_name: "demo-1".into(),
            uid: Some("uid-demo-1".into()),
            labels: BTreeMap::from([
                (contract::LABEL_ROLE.to_string(), Some(contract::ROLE_SUB_AGENT.to_string())),
                (contract::LABEL_SLOT.to_string(), Some("1".to_string())),
            ]),
        }],
        "no delete, no create: only the labels go back"
    );
    assert_eq!(planned.status.phase, Some(CocoonSetPhase::Running), "repairs never hold a phase");
}

#[test]
fn a_removed_set_label_is_put_back_and_the_pod_still_counts() {
    let set = set_object(0);
    let mut bare = as_listed(agent(0));
    bare.labels.clear();
    let planned = pass(&set, &[bare], &mut SetMemory::default(), 100);
    let actions = pod_actions(&planned);
    let [PodAction::RepairLabels { labels, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(labels.get(contract::LABEL_COCOONSET), Some(&Some("demo".to_string())));
    assert_eq!(planned.status.ready_agents, 1);
}

#[test]
fn a_pod_that_vanished_while_out_of_the_watch_is_recreated() {
    let set = set_object(0);
    let mut bare = as_listed(agent(0));
    bare.labels.clear();
    let mut memory = SetMemory::default();
    let planned = pass(&set, std::slice::from_ref(&bare), &mut memory, 100);
    let step = planned.pass.steps.iter().find(|s| matches!(s, Step::Pod(_))).unwrap().clone();
    record_set(&mut memory, Some(1), &step, &Outcome::NotFound, &settings(), at(100));
    let again = pass(&set, &[bare], &mut memory, 100);
    assert!(
        pod_actions(&again).iter().any(|a| matches!(a, PodAction::CreateMain { .. })),
        "the API server said it is gone: recreate it"
    );
}

#[test]
fn a_pod_another_controller_took_over_is_not_counted_and_its_name_waits() {
    let set = set_object(1);
    let mut taken = as_listed(agent(1));
    taken.controller_uid = None; // a user removed the ownerReference
    let planned = pass(&set, &[as_listed(agent(0)), taken], &mut SetMemory::default(), 100);
    assert_eq!(planned.status.ready_agents, 1);
    assert_eq!(planned.pod_count, 1);
    // Its slot is created again; the API server answers AlreadyExists and the name waits.
    assert!(pod_actions(&planned).iter().any(|a| a.pod_name() == "demo-1" && a.is_create()));
}

#[test]
fn a_set_deleted_with_cascade_orphan_keeps_every_pod_and_goes_once_they_are_orphaned() {
    let mut set = set_object(1);
    set.metadata.deletion_timestamp = Some(Time(at(90)));
    set.metadata.finalizers =
        Some(vec![contract::FINALIZER_ORPHAN.into(), contract::FINALIZER_TEARDOWN.into()]);
    let pods = vec![as_listed(agent(0)), as_listed(agent(1))];
    let planned = pass(&set, &pods, &mut SetMemory::default(), 100);
    assert!(pod_actions(&planned).is_empty(), "no pod is deleted: {:?}", planned.pass.steps);
    // The garbage collector removed the ownerReferences and its own finalizer.
    set.metadata.finalizers = Some(vec![contract::FINALIZER_TEARDOWN.into()]);
    let orphaned: Vec<PodView> = pods
        .into_iter()
        .map(|mut p| {
            p.controller_uid = None;
            p
        })
        .collect();
    let released = pass(&set, &orphaned, &mut SetMemory::default(), 101);
    assert_eq!(
        released.pass.steps,
        vec![Step::SetFinalizers { finalizers: Vec::new(), guard: None }]
    );
}

#[test]
fn an_agent_snapshot_ref_is_shown_only_while_its_vm_is_hibernated() {
    let mut w = World::new(spec(0), vec![agent(0)]);
    let vm = contract::agent_vm_name("prod", "demo", 0);
    w.snapshots.insert(vm.clone(), contract::snapshot_value(&vm));
    assert_eq!(w.plan().status.agents[0].snapshot_ref, None, "a running VM has no snapshot");
    w.pods = vec![hibernated(agent(0), 50)];
    w.spec.suspend = true;
    assert!(w.plan().status.agents[0].snapshot_ref.is_some());
}

#[test]
fn suspended_needs_reports_newer_than_the_request() {
    let mut w = World::new(spec(0), vec![hibernated(agent(0), 40)]);
    w.spec.suspend = true;
    w.suspend_asked.insert("demo-0".into(), at(50));
    assert_eq!(w.plan().status.phase, Some(CocoonSetPhase::Suspending), "a report from before");
    w.pods = vec![hibernated(agent(0), 50)];
    assert_eq!(w.plan().status.phase, Some(CocoonSetPhase::Suspended));
}

#[test]
fn a_suspend_nobody_answers_names_the_pods_past_its_deadline_and_still_completes() {
    let mut set = set_object(1);
    set.spec.suspend = true;
    let mut main_asked = as_listed(agent(0));
    main_asked.hibernate_requested = true; // a provider that refuses to hibernate a main
    let sub = as_listed(hibernated(agent(1), 101));
    let pods = vec![main_asked.clone(), sub.clone()];
    let mut memory = SetMemory::default();
    let progressing = |status: &crate::api::CocoonSetStatus| {
        let c = ConditionType::Progressing.find(&status.conditions).expect("Progressing");
        (c.status.clone(), c.reason.clone())
    };
    let first = pass(&set, &pods, &mut memory, 100);
    assert_eq!(first.status.phase, Some(CocoonSetPhase::Suspending));
    assert_eq!(progressing(&first.status), ("True".into(), "Suspending".into()));
    assert_eq!(
        first.pass.wake_after,
        Some(Duration::from_secs(180)),
        "looks again at the deadline"
    );
    let late = pass(&set, &pods, &mut memory, 281);
    let message = late.status.message.clone().unwrap_or_default();
    assert!(message.contains("demo-0 did not report hibernated within 180s"), "{message}");
    assert!(!message.contains("demo-1"), "{message}");
    assert_eq!(late.status.phase, Some(CocoonSetPhase::Suspending), "it keeps waiting");
    assert_eq!(
        progressing(&late.status),
        ("False".into(), SUSPEND_DEADLINE_EXCEEDED.into()),
        "a client can tell a suspend past its deadline without reading the message"
    );
    assert!(pod_actions(&late).is_empty(), "without extra writes");
    let answered = vec![as_listed(hibernated(agent(0), 290)), sub];
    let done = pass(&set, &answered, &mut memory, 291);
    assert_eq!(done.status.phase, Some(CocoonSetPhase::Suspended));
    assert_eq!(progressing(&done.status), ("False".into(), "Suspended".into()));
}

#[test]
fn a_deleted_pod_the_view_still_shows_is_probed_and_recreated() {
    // Our delete of a failed pod went through; the watch reported it in a way that looks like
    // it only left the label watch, so the view still shows it, unlabelled.
    let set = set_object(0);
    let mut stale = as_listed(crate::plan::fixtures::failed(agent(0)));
    stale.labels.remove(contract::LABEL_COCOONSET);
    let mut memory = SetMemory::default();
    memory.expectations.expect_delete("demo-0", at(99));
    let planned = pass(&set, std::slice::from_ref(&stale), &mut memory, 100);
    let probe = planned
        .pass
        .steps
        .iter()
        .find(|s| matches!(s, Step::Pod(PodAction::RepairLabels { .. })))
        .cloned()
        .expect("the pod is probed although its delete is pending");
    record_set(&mut memory, Some(1), &probe, &Outcome::NotFound, &settings(), at(100));
    memory.expectations = super::Expectations::default();
    let again = pass(&set, &[stale], &mut memory, 100);
    assert!(pod_actions(&again).iter().any(|a| matches!(a, PodAction::CreateMain { .. })));
}

#[test]
fn teardown_completes_when_the_api_server_says_a_viewed_pod_is_gone() {
    let mut set = set_object(0);
    set.metadata.deletion_timestamp = Some(Time(at(90)));
    let stale = as_listed(agent(0));
    let mut memory = SetMemory::default();
    let planned = pass(&set, std::slice::from_ref(&stale), &mut memory, 100);
    let delete = planned.pass.steps.iter().find(|s| matches!(s, Step::Pod(_))).cloned().unwrap();
    record_set(&mut memory, Some(1), &delete, &Outcome::NotFound, &settings(), at(100));
    let released = pass(&set, &[stale], &mut memory, 101);
    assert_eq!(
        released.pass.steps,
        vec![Step::SetFinalizers { finalizers: Vec::new(), guard: None }]
    );
}

#[test]
fn values_users_write_into_the_contracts_annotations_never_panic_or_mislead() {
    use k8s_openapi::api::core::v1::Pod;
    let annotations: std::collections::BTreeMap<String, String> = [
        (seed::KEYS.hibernate, "yes"),
        (seed::KEYS.vnc_port, "fifty-nine hundred"),
        (seed::KEYS.vm_name, ""),
        (contract::ANN_POD_DELETION_COST, "cheap"),
        (contract::ANN_HIBERNATED_BY, ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut pod = Pod::default();
    pod.metadata.name = Some("demo-1".into());
    pod.metadata.annotations = Some(annotations);
    let mut view = PodView::from_pod(&pod);
    view.identify("demo");
    assert!(!view.hibernate_requested, "only \"true\" asks for hibernation");
    assert_eq!(view.vnc_port, None);
    assert_eq!(view.vm_name, None, "an empty VM name is no name");
    assert_eq!(view.rare.hibernated_by, None);
    assert_eq!((view.role, view.slot), (Some(crate::plan::PodRole::SubAgent), Some(1)));
    // Planning with it is as with any other unready pod of the set.
    let mut w = World::new(spec(1), vec![agent(0), view]);
    w.pods[1].controller_uid = Some(UID.into());
    let plan = w.plan();
    assert!(!plan.actions.iter().any(|a| matches!(a, PodAction::Delete { .. })));
}

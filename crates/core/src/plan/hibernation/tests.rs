//! Table-driven tests of the Hibernation state machine (SPEC §3.4, LESSONS 1–5).

use crate::contract::dialect::seed;
use std::time::Duration;

use super::{Competitor, HibAction, HibInput, HibPlan, RoundWitness, plan_hibernation, witness};
use crate::api::conditions::wire_time;
use crate::api::{HibernationAction, HibernationPhase, HibernationSpec, HibernationStatus};
use crate::contract;
use crate::plan::fixtures::{at, hibernated, serving, starting};
use crate::plan::{PodView, Snapshots};

const VM: &str = "vk-prod-bot";

/// The target pod, labelled as the operator labels every pod a Hibernation names.
fn pod() -> PodView {
    let mut p = PodView::new("sre-agent-xxx");
    p.vm_name = Some(VM.into());
    p.labels.insert(contract::LABEL_HIBERNATION_TARGET, contract::HIBERNATION_TARGET_VALUE.into());
    serving(p)
}

/// The pod after our hibernate request landed (marker and deletion cost in place).
fn asked() -> PodView {
    let mut p = pod();
    p.hibernate_requested = true;
    p.rare.hibernated_by = Some("hibernate-bot-1".into());
    p.rare.deletion_cost = Some("1000".into());
    p.rare.previous_deletion_cost = Some("".into());
    p
}

fn entry() -> Snapshots {
    Snapshots::from([(VM.to_string(), contract::snapshot_value(VM))])
}

struct Case {
    action: HibernationAction,
    status: HibernationStatus,
    pod: Option<PodView>,
    snapshots: Snapshots,
    competitors: Vec<Competitor>,
    deleting: bool,
    witness: RoundWitness,
    generation: i64,
    dialect: crate::contract::Dialect,
    now: i64,
}

impl Case {
    fn new(action: HibernationAction, pod: Option<PodView>) -> Self {
        Self {
            action,
            status: HibernationStatus::default(),
            pod,
            snapshots: Snapshots::new(),
            competitors: Vec::new(),
            deleting: false,
            witness: RoundWitness::default(),
            generation: 1,
            dialect: crate::contract::Dialect::Seed,
            now: 100,
        }
    }

    fn in_flight(mut self, phase: HibernationPhase, action: HibernationAction, since: i64) -> Self {
        self.status.phase = Some(phase);
        self.status.action = Some(action);
        self.status.last_transition_time = Some(wire_time(at(since)));
        self.status.observed_generation = Some(self.generation);
        self
    }

    fn plan(&self) -> HibPlan {
        let settings = crate::plan::fixtures::hibernation_settings();
        let spec = HibernationSpec { pod_name: "sre-agent-xxx".into(), action: self.action };
        plan_hibernation(&HibInput {
            name: "hibernate-bot-1",
            generation: Some(self.generation),
            created: Some(at(0)),
            spec: &spec,
            status: &self.status,
            pod: self.pod.as_ref(),
            snapshots: &self.snapshots,
            dialect: self.dialect,
            competitors: &self.competitors,
            deleting: self.deleting,
            witness: self.witness,
            replaced: None,
            settings: &settings,
            now: at(self.now),
        })
    }
}

fn patch(plan: &HibPlan) -> std::collections::BTreeMap<String, Option<String>> {
    match plan.actions.as_slice() {
        [HibAction::PatchPod { annotations, .. }] => annotations.clone(),
        other => panic!("expected one pod patch, got {other:?}"),
    }
}

fn phase(plan: &HibPlan) -> HibernationPhase {
    plan.status.phase.unwrap()
}

#[test]
fn hibernate_records_the_round_and_asks_the_pod_with_marker_and_deletion_cost() {
    let mut p = pod();
    p.rare.deletion_cost = Some("5".into());
    let plan = Case::new(HibernationAction::Hibernate, Some(p)).plan();
    assert_eq!(phase(&plan), HibernationPhase::Hibernating);
    assert_eq!(plan.status.last_transition_time, Some(wire_time(at(100))));
    let a = patch(&plan);
    assert_eq!(a[seed::KEYS.hibernate].as_deref(), Some("true"));
    assert_eq!(a[contract::ANN_HIBERNATED_BY].as_deref(), Some("hibernate-bot-1"));
    assert_eq!(a[contract::ANN_POD_DELETION_COST].as_deref(), Some("1000"));
    assert_eq!(a[contract::ANN_PREVIOUS_DELETION_COST].as_deref(), Some("5"));
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(180)));
}

#[test]
fn hibernated_only_when_the_pod_reports_it_and_the_snapshot_entry_exists() {
    let mut asked = pod();
    asked.hibernate_requested = true;
    asked.rare.hibernated_by = Some("hibernate-bot-1".into());
    let base = || {
        Case::new(HibernationAction::Hibernate, None).in_flight(
            HibernationPhase::Hibernating,
            HibernationAction::Hibernate,
            100,
        )
    };
    let mut c = base();
    c.pod = Some(asked.clone());
    c.now = 110;
    assert_eq!(phase(&c.plan()), HibernationPhase::Hibernating, "VM still running");
    let mut h = hibernated(asked, 105);
    h.rare.hibernated_by = Some("hibernate-bot-1".into());
    let mut c = base();
    c.pod = Some(h.clone());
    c.now = 110;
    assert_eq!(phase(&c.plan()), HibernationPhase::Hibernating, "no snapshot entry yet");
    c.snapshots = entry();
    let plan = c.plan();
    assert_eq!(phase(&plan), HibernationPhase::Hibernated);
    assert_eq!(plan.status.snapshot_ref.as_deref(), Some("vk-prod-bot-suspend"));
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.conditions[0].status, "True");
}

#[test]
fn a_stale_snapshot_entry_and_stale_hibernated_status_never_complete_a_new_round() {
    // The pod shows Hibernated and the entry exists, but both date from before this round.
    let mut stale = hibernated(pod(), 50);
    stale.rare.hibernated_by = Some("hibernate-bot-1".into());
    let mut c = Case::new(HibernationAction::Hibernate, Some(stale)).in_flight(
        HibernationPhase::Hibernating,
        HibernationAction::Hibernate,
        100,
    );
    c.snapshots = entry();
    c.now = 120;
    assert_eq!(phase(&c.plan()), HibernationPhase::Hibernating);
}

#[test]
fn wake_removes_request_and_marker_and_restores_the_previous_deletion_cost() {
    let mut h = hibernated(pod(), 10);
    h.rare.hibernated_by = Some("hibernate-bot-1".into());
    h.rare.deletion_cost = Some("1000".into());
    h.rare.previous_deletion_cost = Some("5".into());
    let mut c = Case::new(HibernationAction::Wake, Some(h));
    c.status.phase = Some(HibernationPhase::Hibernated);
    c.snapshots = entry();
    let plan = c.plan();
    assert_eq!(phase(&plan), HibernationPhase::Waking);
    let a = patch(&plan);
    assert_eq!(a[seed::KEYS.hibernate], None);
    assert_eq!(a[contract::ANN_HIBERNATED_BY], None);
    assert_eq!(a[contract::ANN_POD_DELETION_COST].as_deref(), Some("5"));
    assert_eq!(a[contract::ANN_PREVIOUS_DELETION_COST], None);
}

#[test]
fn a_pod_without_a_previous_deletion_cost_gets_the_key_removed_on_wake() {
    let mut h = hibernated(pod(), 10);
    h.rare.deletion_cost = Some("1000".into());
    h.rare.previous_deletion_cost = Some("".into());
    let plan = Case::new(HibernationAction::Wake, Some(h)).plan();
    assert_eq!(patch(&plan)[contract::ANN_POD_DELETION_COST], None);
}

#[test]
fn active_when_the_pod_serves_again_after_the_round_started_whatever_entry_is_left() {
    let base = |p: PodView, snaps: Snapshots| {
        let mut c = Case::new(HibernationAction::Wake, Some(p)).in_flight(
            HibernationPhase::Waking,
            HibernationAction::Wake,
            100,
        );
        c.snapshots = snaps;
        c.now = 120;
        c.plan()
    };
    let mut woken = pod();
    woken.ready_changed_at = Some(at(110));
    assert_eq!(phase(&base(starting(pod()), Snapshots::new())), HibernationPhase::Waking);
    // An entry left behind (by a delete, a restore) never blocks the wake.
    assert_eq!(phase(&base(woken.clone(), entry())), HibernationPhase::Active, "left-over entry");
    let stale = pod(); // Ready since t=0, before the round
    assert_eq!(phase(&base(stale, Snapshots::new())), HibernationPhase::Waking, "stale Ready");
    assert_eq!(phase(&base(woken, Snapshots::new())), HibernationPhase::Active);
}

#[test]
fn a_reverse_desire_waits_for_the_round_in_flight() {
    let mut c = Case::new(HibernationAction::Wake, Some(asked())).in_flight(
        HibernationPhase::Hibernating,
        HibernationAction::Hibernate,
        100,
    );
    c.generation = 2;
    c.now = 105;
    let plan = c.plan();
    assert_eq!(phase(&plan), HibernationPhase::Hibernating, "the hibernate round goes on");
    assert!(plan.actions.is_empty(), "no wake may touch a half-hibernated VM: {:?}", plan.actions);
    // The round completes; the wake starts right after, in the same pass.
    c.pod = Some(hibernated(asked(), 104));
    c.snapshots = entry();
    let plan = c.plan();
    assert_eq!(phase(&plan), HibernationPhase::Waking);
    assert_eq!(patch(&plan)[seed::KEYS.hibernate], None);
    assert!(plan.events.iter().any(|e| e.reason == "Hibernated"));
}

#[test]
fn a_missing_pod_fails_clearly_and_recovers_when_it_appears() {
    let plan = Case::new(HibernationAction::Hibernate, None).plan();
    assert_eq!(phase(&plan), HibernationPhase::Failed);
    assert!(plan.status.message.as_deref().unwrap().contains("pod sre-agent-xxx not found"));
    assert!(plan.events.iter().any(|e| e.warning && e.reason == "PodMissing"));
    let mut c = Case::new(HibernationAction::Hibernate, Some(pod()));
    c.status = plan.status;
    c.now = 101;
    assert_eq!(phase(&c.plan()), HibernationPhase::Hibernating);
}

#[test]
fn a_round_times_out_into_failed_even_while_the_pod_never_answers() {
    let mut asked = pod();
    asked.hibernate_requested = true;
    asked.rare.hibernated_by = Some("hibernate-bot-1".into());
    let mut c = Case::new(HibernationAction::Hibernate, Some(asked)).in_flight(
        HibernationPhase::Hibernating,
        HibernationAction::Hibernate,
        100,
    );
    c.now = 279;
    assert_eq!(phase(&c.plan()), HibernationPhase::Hibernating);
    assert_eq!(c.plan().requeue_after, Some(Duration::from_secs(1)), "wakes up at the deadline");
    c.now = 280;
    let plan = c.plan();
    assert_eq!(phase(&plan), HibernationPhase::Failed);
    assert!(plan.events.iter().any(|e| e.warning && e.reason == "Timeout"));
    assert!(plan.status.message.as_deref().unwrap().contains("did not complete within 180s"));
}

#[test]
fn a_timed_out_round_whose_request_is_on_the_pod_keeps_waiting_without_writes() {
    let mut c = Case::new(HibernationAction::Hibernate, Some(asked())).in_flight(
        HibernationPhase::Hibernating,
        HibernationAction::Hibernate,
        0,
    );
    c.now = 180;
    let failed = c.plan();
    assert_eq!(phase(&failed), HibernationPhase::Failed);
    assert_eq!(failed.status.conditions[0].reason, "Timeout", "the kind is kept in the condition");
    c.status = failed.status;
    c.now = 2_000;
    let waiting = c.plan();
    assert_eq!(phase(&waiting), HibernationPhase::Failed);
    assert!(waiting.actions.is_empty() && waiting.events.is_empty(), "{waiting:?}");
    assert_eq!(waiting.status, c.status, "no status churn either");
    // The provider answers late: the failed round looks again and reports it.
    c.pod = Some(hibernated(asked(), 1_990));
    c.snapshots = entry();
    assert_eq!(phase(&c.plan()), HibernationPhase::Hibernated);
}

#[test]
fn a_retry_after_a_timeout_gets_a_fresh_deadline() {
    let mut c = Case::new(HibernationAction::Hibernate, Some(asked())).in_flight(
        HibernationPhase::Hibernating,
        HibernationAction::Hibernate,
        0,
    );
    c.now = 180;
    let failed = c.plan();
    c.status = failed.status;
    // Someone took the request off the pod meanwhile: it is asked again after a rest.
    c.pod = Some(pod());
    c.now = 190;
    assert_eq!(phase(&c.plan()), HibernationPhase::Failed, "rests before retrying");
    c.now = 300;
    let plan = c.plan();
    assert_eq!(phase(&plan), HibernationPhase::Hibernating);
    assert_eq!(plan.status.last_transition_time, Some(wire_time(at(300))));
}

#[test]
fn a_pod_removed_by_its_owner_is_reported_keeps_its_snapshot_and_resumes_when_one_appears() {
    let mut c = Case::new(HibernationAction::Hibernate, None);
    c.status.phase = Some(HibernationPhase::Hibernated);
    c.status.vm_name = Some(VM.into());
    c.status.snapshot_ref = Some(contract::snapshot_value(VM));
    c.status.observed_generation = Some(1);
    c.snapshots = entry();
    let plan = c.plan();
    assert_eq!(phase(&plan), HibernationPhase::Failed);
    assert_eq!(plan.status.conditions[0].reason, "PodRemoved");
    assert!(plan.status.message.as_deref().unwrap().contains("was removed"));
    assert!(plan.events.iter().any(|e| e.warning && e.reason == "PodRemoved"));
    assert_eq!(
        plan.status.snapshot_ref,
        Some(contract::snapshot_value(VM)),
        "kept while the entry is"
    );
    c.status = plan.status;
    c.snapshots = Snapshots::new();
    assert_eq!(c.plan().status.snapshot_ref, None, "the entry went");
    // A pod of that name appears again: hibernated as asked.
    c.pod = Some(pod());
    assert_eq!(phase(&c.plan()), HibernationPhase::Hibernating);
}

#[test]
fn a_failure_is_told_by_its_typed_reason_not_by_its_wording() {
    // The same words with another kind: a Timeout rests and retries, whatever the message says.
    let mut c = Case::new(HibernationAction::Hibernate, Some(pod()));
    c.status.phase = Some(HibernationPhase::Failed);
    c.status.message = Some("another writer changed the pod".into());
    c.status.last_transition_time = Some(wire_time(at(0)));
    c.status.observed_generation = Some(1);
    c.status.conditions = vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: "Ready".into(),
        status: "False".into(),
        reason: "Timeout".into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: wire_time(at(0)),
    }];
    c.now = 100;
    assert_eq!(phase(&c.plan()), HibernationPhase::Hibernating, "a rested timeout is retried");
    c.status.conditions[0].reason = "Overridden".into();
    c.status.message = Some("did not complete".into());
    assert_eq!(
        phase(&c.plan()),
        HibernationPhase::Failed,
        "an overridden round waits for the spec"
    );
}

#[test]
fn of_two_hibernations_on_one_pod_the_oldest_wins() {
    let mut c = Case::new(HibernationAction::Hibernate, Some(pod()));
    c.competitors = vec![
        Competitor { name: "hibernate-bot-1".into(), created: Some(at(0)) },
        Competitor { name: "older".into(), created: Some(at(-10)) },
    ];
    let plan = c.plan();
    assert_eq!(phase(&plan), HibernationPhase::Failed);
    assert!(plan.status.message.as_deref().unwrap().contains("Hibernation older"));
    assert!(plan.actions.is_empty(), "the loser never touches the pod");
    c.competitors = vec![Competitor { name: "younger".into(), created: Some(at(10)) }];
    assert_eq!(phase(&c.plan()), HibernationPhase::Hibernating);
}

#[test]
fn deleting_removes_only_the_marker_then_releases() {
    let mut h = hibernated(pod(), 10);
    h.rare.hibernated_by = Some("hibernate-bot-1".into());
    let mut c = Case::new(HibernationAction::Hibernate, Some(h));
    c.deleting = true;
    let plan = c.plan();
    let a = patch(&plan);
    assert_eq!(a.len(), 1);
    assert_eq!(a[contract::ANN_HIBERNATED_BY], None);
    assert_eq!(labels(&plan), target_label(None), "the last one out takes the label too");
    assert!(!plan.release);
    let mut unmarked = hibernated(pod(), 10);
    unmarked.rare.hibernated_by = None;
    unmarked.labels.clear();
    c.pod = Some(unmarked);
    assert!(c.plan().release);
}

fn labels(plan: &HibPlan) -> std::collections::BTreeMap<String, Option<String>> {
    match plan.actions.as_slice() {
        [HibAction::PatchPod { labels, .. }] => labels.clone(),
        other => panic!("expected one pod patch, got {other:?}"),
    }
}

fn target_label(value: Option<&str>) -> std::collections::BTreeMap<String, Option<String>> {
    std::collections::BTreeMap::from([(
        contract::LABEL_HIBERNATION_TARGET.to_string(),
        value.map(str::to_string),
    )])
}

fn unlabelled(mut p: PodView) -> PodView {
    p.labels.clear();
    p
}

#[test]
fn the_first_write_labels_the_pod_in_the_same_patch() {
    let plan = Case::new(HibernationAction::Hibernate, Some(unlabelled(pod()))).plan();
    assert_eq!(phase(&plan), HibernationPhase::Hibernating);
    assert_eq!(labels(&plan), target_label(Some("true")), "one request: label and annotations");
    assert_eq!(patch(&plan)[seed::KEYS.hibernate].as_deref(), Some("true"));
}

#[test]
fn a_view_from_before_our_labelled_request_does_not_label_the_pod_again() {
    // Our first patch (request and label) went through; the next pass still sees the pod as it
    // was before it: nothing to write, not even the label.
    let mut c = Case::new(HibernationAction::Hibernate, Some(unlabelled(pod()))).in_flight(
        HibernationPhase::Hibernating,
        HibernationAction::Hibernate,
        100,
    );
    c.now = 101;
    c.witness = RoundWitness { request_seen: true, pending_seen: true };
    assert!(c.plan().actions.is_empty(), "{:?}", c.plan().actions);
    // The same for a wake whose request the view does not show yet.
    let mut c = Case::new(HibernationAction::Wake, Some(unlabelled(hibernated(asked(), 90))))
        .in_flight(HibernationPhase::Waking, HibernationAction::Wake, 100);
    c.now = 101;
    c.witness = RoundWitness { request_seen: true, pending_seen: true };
    assert!(c.plan().actions.is_empty(), "{:?}", c.plan().actions);
    // Once the view shows the request, a missing label was taken away since: it is put back.
    let mut c = Case::new(HibernationAction::Hibernate, Some(unlabelled(asked()))).in_flight(
        HibernationPhase::Hibernating,
        HibernationAction::Hibernate,
        100,
    );
    c.now = 101;
    c.witness = RoundWitness { request_seen: true, pending_seen: true };
    assert_eq!(labels(&c.plan()), target_label(Some("true")));
    assert!(patch(&c.plan()).is_empty(), "only the label");
}

#[test]
fn a_pod_that_needs_no_round_is_still_labelled_so_one_watch_sees_it() {
    let plan = Case::new(HibernationAction::Wake, Some(unlabelled(pod()))).plan();
    assert_eq!(phase(&plan), HibernationPhase::Active);
    assert!(patch(&plan).is_empty(), "no annotation changes");
    assert_eq!(labels(&plan), target_label(Some("true")));
    // A user who removes the label gets it back; a pod being deleted is left alone.
    let plan = Case::new(HibernationAction::Wake, Some(pod())).plan();
    assert!(plan.actions.is_empty());
    let mut going = unlabelled(pod());
    going.terminating = true;
    assert!(Case::new(HibernationAction::Wake, Some(going)).plan().actions.is_empty());
}

#[test]
fn a_deleted_hibernation_leaves_the_label_to_another_that_names_the_pod() {
    let mut c = Case::new(HibernationAction::Wake, Some(pod()));
    c.deleting = true;
    c.competitors = vec![
        Competitor { name: "hibernate-bot-1".into(), created: Some(at(0)) },
        Competitor { name: "younger".into(), created: Some(at(10)) },
    ];
    let plan = c.plan();
    assert!(plan.actions.is_empty());
    assert!(plan.release);
}

#[test]
fn an_already_hibernated_pod_is_adopted_without_a_round() {
    let mut c = Case::new(HibernationAction::Hibernate, Some(hibernated(pod(), 10)));
    c.snapshots = entry();
    let plan = c.plan();
    assert_eq!(phase(&plan), HibernationPhase::Hibernated);
    assert_eq!(patch(&plan)[contract::ANN_HIBERNATED_BY].as_deref(), Some("hibernate-bot-1"));
}

#[test]
fn waking_an_active_pod_is_immediately_active() {
    let plan = Case::new(HibernationAction::Wake, Some(pod())).plan();
    assert_eq!(phase(&plan), HibernationPhase::Active);
    assert!(plan.actions.is_empty());
}

#[test]
fn an_active_hibernation_does_not_fight_a_suspended_set() {
    let mut c = Case::new(HibernationAction::Wake, Some(hibernated(pod(), 200)));
    c.status.phase = Some(HibernationPhase::Active);
    c.status.observed_generation = Some(1);
    c.snapshots = entry();
    c.now = 300;
    assert!(c.plan().actions.is_empty());
}

#[test]
fn unchanged_inputs_produce_an_identical_status() {
    let c = Case::new(HibernationAction::Hibernate, Some(pod()));
    let first = c.plan();
    let mut again = Case::new(HibernationAction::Hibernate, Some(pod())).in_flight(
        HibernationPhase::Hibernating,
        HibernationAction::Hibernate,
        100,
    );
    again.status = first.status.clone();
    again.now = 150;
    let mut asked = pod();
    asked.hibernate_requested = true;
    asked.rare.hibernated_by = Some("hibernate-bot-1".into());
    asked.rare.deletion_cost = Some("1000".into());
    asked.rare.previous_deletion_cost = Some("".into());
    again.pod = Some(asked);
    let second = again.plan();
    assert_eq!(second.status, first.status);
    assert!(second.actions.is_empty(), "the request is already on the pod");
}

#[test]
fn deleting_also_restores_the_deletion_cost_it_raised() {
    let mut h = hibernated(asked(), 10);
    h.rare.previous_deletion_cost = Some("7".into());
    let mut c = Case::new(HibernationAction::Hibernate, Some(h));
    c.deleting = true;
    let a = patch(&c.plan());
    assert_eq!(a[contract::ANN_HIBERNATED_BY], None);
    assert_eq!(a[contract::ANN_POD_DELETION_COST].as_deref(), Some("7"));
    assert_eq!(a[contract::ANN_PREVIOUS_DELETION_COST], None);
    assert!(!a.contains_key(seed::KEYS.hibernate), "the pod stays hibernated");
}

#[test]
fn a_round_does_not_fight_another_writer_once_its_request_was_seen() {
    // Waking, and the request was on the pod once; now a suspended set put hibernate=true back.
    let mut c = Case::new(HibernationAction::Wake, Some(hibernated(pod(), 100))).in_flight(
        HibernationPhase::Waking,
        HibernationAction::Wake,
        100,
    );
    c.now = 110;
    c.witness = RoundWitness { request_seen: true, pending_seen: true };
    assert!(c.plan().actions.is_empty(), "no wake patch against the other writer");
    c.now = 400;
    let plan = c.plan();
    assert_eq!(phase(&plan), HibernationPhase::Failed);
    assert!(plan.status.message.as_deref().unwrap().contains("another writer"));
    // And it does not retry on its own: only a spec change does.
    let mut after = Case::new(HibernationAction::Wake, Some(hibernated(pod(), 100)));
    after.status = plan.status;
    after.now = 2_000;
    assert!(after.plan().actions.is_empty());
    assert_eq!(phase(&after.plan()), HibernationPhase::Failed);
}

#[test]
fn a_lost_request_is_written_again_until_it_is_seen() {
    let mut c = Case::new(HibernationAction::Hibernate, Some(pod())).in_flight(
        HibernationPhase::Hibernating,
        HibernationAction::Hibernate,
        100,
    );
    c.now = 105;
    assert_eq!(patch(&c.plan())[seed::KEYS.hibernate].as_deref(), Some("true"));
}

#[test]
fn a_transition_seen_by_the_actor_completes_even_without_a_new_ready_time() {
    // Hibernate asked while the pod was still starting (Ready already False): the Ready time
    // never moves, but the actor saw the pod pending, then hibernated.
    let mut c = Case::new(HibernationAction::Hibernate, Some(hibernated(asked(), 50))).in_flight(
        HibernationPhase::Hibernating,
        HibernationAction::Hibernate,
        100,
    );
    c.snapshots = entry();
    c.now = 110;
    assert_eq!(phase(&c.plan()), HibernationPhase::Hibernating, "stale without a witness");
    c.witness = RoundWitness { request_seen: true, pending_seen: true };
    assert_eq!(phase(&c.plan()), HibernationPhase::Hibernated);
}

#[test]
fn the_witness_reads_request_and_pending_state_of_the_round_in_flight() {
    let mut status =
        HibernationStatus { phase: Some(HibernationPhase::Hibernating), ..Default::default() };
    let (_, w) = witness(&status, "hibernate-bot-1", Some(&asked()), &Snapshots::new()).unwrap();
    assert_eq!(w, RoundWitness { request_seen: true, pending_seen: true });
    status.phase = Some(HibernationPhase::Hibernated);
    assert!(witness(&status, "hibernate-bot-1", Some(&asked()), &Snapshots::new()).is_none());
}

/// The target pod in a cocoonstack dialect.
fn pod_in(dialect: crate::contract::Dialect) -> PodView {
    let mut p = pod();
    p.dialect = Some(dialect);
    p.vm_id = Some("vm-1".into());
    p
}

/// The pod as a cocoonstack provider shows it hibernated: Pending, no VM.
fn cocoonstack_hibernated(mut p: PodView) -> PodView {
    p.phase = crate::plan::observe::PodPhase::Pending;
    p.ready = false;
    p.ready_changed_at = None;
    p.vm_id = None;
    p.hibernated = true;
    p.hibernate_requested = true;
    p.rare.hibernated_by = Some("hibernate-bot-1".into());
    p
}

#[test]
fn a_v02_pod_is_asked_in_its_keys_and_hibernated_on_its_shape_with_its_registry_snapshot() {
    use crate::contract::Dialect;
    let mut c = Case::new(HibernationAction::Hibernate, Some(pod_in(Dialect::V02)));
    c.dialect = Dialect::V02;
    let a = patch(&c.plan());
    assert_eq!(a["vm.cocoonstack.io/hibernate"].as_deref(), Some("true"));
    assert!(!a.contains_key(seed::KEYS.hibernate));
    let mut c = Case::new(HibernationAction::Hibernate, None).in_flight(
        HibernationPhase::Hibernating,
        HibernationAction::Hibernate,
        100,
    );
    c.dialect = Dialect::V02;
    c.pod = Some(cocoonstack_hibernated(pod_in(Dialect::V02)));
    c.now = 110;
    // No ConfigMap entry and no Ready transition: neither exists in v0.2.
    let plan = c.plan();
    assert_eq!(phase(&plan), HibernationPhase::Hibernated);
    assert_eq!(plan.status.snapshot_ref.as_deref(), Some("vk-prod-bot:hibernate"));
}

#[test]
fn a_current_round_completes_only_on_the_answer_to_its_own_stamp() {
    use crate::contract::{Dialect, LifecycleState};
    use crate::plan::observe::Lifecycle;
    let mut fresh = pod_in(Dialect::Current);
    fresh.stamp = Some(4);
    let mut c = Case::new(HibernationAction::Hibernate, Some(fresh));
    c.dialect = Dialect::Current;
    let a = patch(&c.plan());
    assert_eq!(a["cocoonset.cocoonstack.io/generation"].as_deref(), Some("5"));
    let answered = |observed| {
        let mut p = cocoonstack_hibernated(pod_in(Dialect::Current));
        p.stamp = Some(5);
        p.rare.lifecycle = Some(Lifecycle {
            state: LifecycleState::Hibernated,
            observed: Some(observed),
            message: None,
        });
        let mut c = Case::new(HibernationAction::Hibernate, Some(p)).in_flight(
            HibernationPhase::Hibernating,
            HibernationAction::Hibernate,
            100,
        );
        c.dialect = Dialect::Current;
        c.now = 110;
        phase(&c.plan())
    };
    assert_eq!(answered(4), HibernationPhase::Hibernating, "an answer to an older request");
    assert_eq!(answered(5), HibernationPhase::Hibernated);
}

#[test]
fn a_pod_without_provider_keys_is_asked_in_its_nodes_dialect() {
    let mut c = Case::new(HibernationAction::Hibernate, Some(pod()));
    c.dialect = crate::contract::Dialect::V02;
    let a = patch(&c.plan());
    assert_eq!(a["vm.cocoonstack.io/hibernate"].as_deref(), Some("true"));
}

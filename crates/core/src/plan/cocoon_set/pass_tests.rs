//! Tests of the whole CocoonSet pass: steps in order, outcomes recorded, convergence.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::SignedDuration;
use proptest::prelude::*;

use super::*;
use crate::api::VmPhase;
use crate::api::{CocoonSetPhase, CocoonSetSpec};
use crate::contract::Dialect;
use crate::plan::fixtures::{UID, agent, at, pending, pool_nodes, spec, starting, terminating};
use crate::plan::pass::{CONFLICT_RETRY, Next};

fn settings() -> SetSettings {
    SetSettings {
        backoff: Backoff::retry(Duration::from_secs(60)),
        suspend_timeout: Duration::from_secs(180),
        status_batch: Duration::ZERO,
    }
}

fn set_object(spec: CocoonSetSpec, held: bool) -> CocoonSet {
    let mut set = CocoonSet::new("demo", spec);
    set.metadata.namespace = Some("prod".into());
    set.metadata.uid = Some(UID.into());
    set.metadata.generation = Some(1);
    if held {
        set.metadata.finalizers = Some(vec![contract::FINALIZER_TEARDOWN.to_string()]);
    }
    set
}

/// A set, its pods and the actor's memory; `pass` runs one pass with the given answers.
struct Harness {
    set: CocoonSet,
    pods: Vec<PodView>,
    snapshots: Snapshots,
    memory: SetMemory,
    nodes: crate::plan::Nodes,
    registry: bool,
    now: Timestamp,
    settings: SetSettings,
}

/// Every step of a pass, with the answer it got and what recording it produced.
type Trace = Vec<(SetStep, Outcome, Recorded)>;

impl Harness {
    fn new(replicas: i32, pods: Vec<PodView>) -> Self {
        Self {
            set: set_object(spec(replicas), true),
            pods,
            snapshots: Snapshots::new(),
            memory: SetMemory::default(),
            nodes: pool_nodes(Dialect::Seed),
            registry: false,
            now: at(100),
            settings: settings(),
        }
    }

    fn plan(&mut self) -> SetPlanned {
        let view = SetView {
            set: &self.set,
            status: self.set.status.as_ref(),
            pods: &self.pods,
            snapshots: &self.snapshots,
            snapshot_record: true,
            nodes: &self.nodes,
            registry: self.registry,
        };
        plan_set_pass(&view, &mut self.memory, &self.settings, self.now)
    }

    /// Plans and executes one pass, answering each step with `answer`; stops where the core
    /// says stop. A status that went through becomes the stored status.
    fn pass(&mut self, answer: impl Fn(&SetStep) -> Outcome) -> Trace {
        let planned = self.plan();
        let mut trace = Vec::new();
        let mut completed = true;
        for step in planned.pass.steps {
            let outcome = answer(&step);
            let generation = self.set.metadata.generation;
            let recorded =
                record_set(&mut self.memory, generation, &step, &outcome, &self.settings, self.now);
            if let (Step::WriteStatus(s), Outcome::Done) = (&step, &outcome) {
                self.set.status = Some((**s).clone());
            }
            let stop = matches!(recorded.next, Next::Stop(_));
            trace.push((step, outcome, recorded));
            if stop {
                completed = false;
                break;
            }
        }
        if completed {
            self.memory.retry.completed();
        }
        trace
    }

    fn later(&mut self, seconds: i64) {
        self.now = self.now.checked_add(SignedDuration::from_secs(seconds)).unwrap();
    }
}

fn done(_: &SetStep) -> Outcome {
    Outcome::Done
}

fn creates(trace: &Trace) -> Vec<String> {
    trace
        .iter()
        .filter_map(|(s, _, _)| match s {
            Step::Pod(a) if a.is_create() => Some(a.pod_name().to_string()),
            _ => None,
        })
        .collect()
}

fn events(trace: &Trace) -> Vec<PlanEvent> {
    trace
        .iter()
        .flat_map(|(s, _, r)| {
            let planned = match s {
                Step::Event(e) => vec![e.clone()],
                _ => Vec::new(),
            };
            planned.into_iter().chain(r.events.clone())
        })
        .collect()
}

fn answer_creates(outcome: Outcome) -> impl Fn(&SetStep) -> Outcome {
    move |s| match s {
        Step::Pod(a) if a.is_create() => outcome.clone(),
        _ => Outcome::Done,
    }
}

fn refused() -> Outcome {
    Outcome::Rejected {
        kind: RejectKind::Forbidden,
        detail: "serviceaccount \"agents\" not found".into(),
    }
}

#[test]
fn a_new_set_takes_its_finalizer_first_then_creates_the_main_then_writes_status() {
    let mut h = Harness::new(1, Vec::new());
    h.set.metadata.finalizers = None;
    let trace = h.pass(done);
    let kinds: Vec<&str> = trace
        .iter()
        .map(|(s, _, _)| match s {
            Step::SetFinalizers { .. } => "finalizer",
            Step::Pod(_) => "pod",
            Step::Event(_) => "event",
            Step::WriteStatus(_) => "status",
        })
        .collect();
    assert_eq!(kinds.first(), Some(&"finalizer"));
    assert_eq!(kinds.last(), Some(&"status"), "status is computed once, after the pod writes");
    assert_eq!(creates(&trace), vec!["demo-0"]);
    let Step::SetFinalizers { finalizers: f, .. } = &trace[0].0 else { unreachable!() };
    assert_eq!(f, &vec![contract::FINALIZER_TEARDOWN.to_string()]);
    let status = h.set.status.clone().unwrap();
    assert_eq!(
        status.agents[0].phase,
        VmPhase::Pending,
        "the status shows the create of this pass"
    );
    // Creating what the spec asks for is routine progress: the status shows it, no Event.
    assert!(events(&trace).is_empty(), "{:?}", events(&trace));
}

#[test]
fn a_create_that_went_through_is_not_repeated_and_an_unchanged_status_is_not_rewritten() {
    let mut h = Harness::new(0, Vec::new());
    h.pass(done);
    let again = h.pass(done);
    assert!(again.is_empty(), "nothing to do from the same stale view: {again:?}");
}

#[test]
fn a_written_status_is_let_go_once_seen_and_one_someone_else_wrote_over_it_is_put_right() {
    let mut h = Harness::new(0, Vec::new());
    h.pass(done);
    let ours = h.set.status.clone().expect("the first pass writes the status");
    assert_eq!(h.memory.last_written.as_deref(), Some(&ours), "the watch may not show it yet");
    assert!(h.pass(done).is_empty());
    assert!(h.memory.last_written.is_none(), "the view shows it: no second copy is kept");
    // Another writer changes what the set reports (a status edit, an old client's write).
    let mut edited = ours.clone();
    edited.desired_agents = 42;
    edited.message = Some("edited by hand".into());
    h.set.status = Some(edited);
    let trace = h.pass(done);
    let written: Vec<&CocoonSetStatus> = trace
        .iter()
        .filter_map(|(s, _, _)| match s {
            Step::WriteStatus(s) => Some(&**s),
            _ => None,
        })
        .collect();
    assert_eq!(written, vec![&ours], "the status is put back to what the set is");
    assert!(h.pass(done).is_empty(), "and left alone once it is");
}

#[test]
fn a_name_held_by_a_foreign_pod_waits_with_a_growing_backoff_and_one_event() {
    let mut h = Harness::new(0, Vec::new());
    let first = h.pass(answer_creates(Outcome::AlreadyExists));
    let conflict_events: Vec<_> =
        events(&first).into_iter().filter(|e| e.reason == "NameConflict").collect();
    assert_eq!(conflict_events.len(), 1);
    assert_eq!(h.memory.not_before.get("demo-0"), Some(&at(102)), "first wait 2 s");
    h.later(1);
    let resting = h.pass(answer_creates(Outcome::AlreadyExists));
    assert!(creates(&resting).is_empty(), "the name rests during its backoff");
    let message = h.set.status.clone().unwrap().message.unwrap_or_default();
    assert!(message.contains("pod demo-0 exists but is not owned by this set"), "{message}");
    h.later(2);
    let retried = h.pass(answer_creates(Outcome::AlreadyExists));
    assert_eq!(creates(&retried), vec!["demo-0"]);
    assert!(events(&retried).iter().all(|e| e.reason != "NameConflict"), "one Event per conflict");
    assert_eq!(h.memory.not_before.get("demo-0"), Some(&at(107)), "second wait 4 s");
}

#[test]
fn a_refused_create_stops_the_pass_and_the_next_pass_reports_it_once() {
    let mut h = Harness::new(0, Vec::new());
    let first = h.pass(answer_creates(refused()));
    assert_eq!(first.last().map(|(_, _, r)| r.next), Some(Next::Stop(Duration::ZERO)));
    assert!(events(&first).iter().any(|e| e.warning && e.reason == "CreateRejected"));
    let report = h.pass(answer_creates(refused()));
    assert!(creates(&report).is_empty(), "no repeat of the refused create during its backoff");
    let status = h.set.status.clone().unwrap();
    assert_eq!(status.phase, Some(CocoonSetPhase::Failed));
    assert!(status.message.unwrap().contains("cannot create pod demo-0: serviceaccount"));
    h.later(1);
    let retried = h.pass(answer_creates(refused()));
    assert_eq!(creates(&retried), vec!["demo-0"], "retried after its backoff");
    assert!(
        events(&retried).iter().all(|e| e.reason != "CreateRejected"),
        "same refusal, no Event"
    );
    h.later(2);
    h.pass(done);
    assert!(h.memory.rejection.is_none(), "a create that goes through clears the refusal");
    h.pass(done);
    assert_ne!(h.set.status.clone().unwrap().phase, Some(CocoonSetPhase::Failed));
}

#[test]
fn a_refused_create_is_forgotten_when_the_spec_changes() {
    let mut h = Harness::new(0, Vec::new());
    h.pass(answer_creates(refused()));
    h.set.metadata.generation = Some(2);
    let next = h.plan();
    assert!(h.memory.rejection.is_none());
    assert_ne!(next.status.phase, Some(CocoonSetPhase::Failed));
}

#[test]
fn a_conflict_retries_soon_and_is_not_a_failure() {
    let mut h = Harness::new(0, vec![agent(0)]);
    let trace = h.pass(|s| match s {
        Step::WriteStatus(_) => Outcome::Conflict,
        _ => Outcome::Done,
    });
    assert_eq!(trace.last().map(|(_, _, r)| r.next), Some(Next::Stop(CONFLICT_RETRY)));
    assert!(!h.memory.retry.backing_off());
    assert!(h.memory.last_written.is_none(), "a status that did not land is not remembered");
}

#[test]
fn a_transient_failure_backs_off_longer_each_pass_until_one_completes() {
    let mut h = Harness::new(0, Vec::new());
    let failing = answer_creates(Outcome::Failed { detail: "503".into() });
    let stops: Vec<Next> = (0..3)
        .map(|_| h.pass(&failing).last().map(|(_, _, r)| r.next).unwrap_or(Next::Continue))
        .collect();
    let secs = |n: u64| Next::Stop(Duration::from_secs(n));
    assert_eq!(stops, vec![secs(1), secs(2), secs(4)]);
    h.pass(done);
    assert!(!h.memory.retry.backing_off());
}

#[test]
fn teardown_releases_the_finalizer_without_a_last_status_write() {
    let mut h = Harness::new(0, Vec::new());
    h.set.metadata.deletion_timestamp = Some(Time(at(90)));
    h.set.metadata.finalizers = Some(vec!["other".into(), contract::FINALIZER_TEARDOWN.into()]);
    let planned = h.plan();
    assert_eq!(
        planned.pass.steps,
        vec![Step::SetFinalizers { finalizers: vec!["other".into()], guard: None }]
    );
}

#[test]
fn a_released_set_seen_again_before_it_is_gone_is_not_released_twice() {
    let mut h = Harness::new(0, Vec::new());
    h.set.metadata.deletion_timestamp = Some(Time(at(90)));
    h.set.metadata.resource_version = Some("41".into());
    let release =
        |rv: &str| vec![Step::SetFinalizers { finalizers: Vec::new(), guard: Some(rv.into()) }];
    // Refused (a stale resourceVersion): asked again.
    let conflict = h.pass(|_| Outcome::Conflict);
    assert_eq!(conflict.iter().map(|(s, _, _)| s.clone()).collect::<Vec<_>>(), release("41"));
    assert_eq!(h.plan().pass.steps, release("41"));
    // Taken: a later wake-up on the same object asks nothing (it would meet a 404).
    h.pass(done);
    assert!(h.plan().pass.steps.is_empty());
    // A newer object still holding our finalizer is released again.
    h.set.metadata.resource_version = Some("42".into());
    assert_eq!(h.plan().pass.steps, release("42"));
}

#[test]
fn a_release_behind_only_our_own_status_write_is_guarded_by_the_version_that_write_made() {
    let mut h = Harness::new(0, vec![agent(0)]);
    h.set.metadata.deletion_timestamp = Some(Time(at(90)));
    h.set.metadata.resource_version = Some("41".into());
    // The teardown pass deletes the pod and writes the status; the API server answers with
    // version 42, which the watch has not shown yet.
    let teardown = h.pass(done);
    assert!(teardown.iter().any(|(s, _, _)| matches!(s, Step::WriteStatus(_))));
    let mut answer = h.set.metadata.clone();
    answer.resource_version = Some("42".into());
    h.memory.own_write = Some(OwnWrite::new(&h.set.metadata, &answer));
    // The pod is gone; the set is still seen at 41: the release is guarded by 42, not by 41
    // (a certain 409 and a second pass).
    h.pods.clear();
    assert_eq!(h.plan().pass.steps, release_at("42"));
    // Taken: neither the object at 41 nor the one at 42 (the watch shows our status write
    // next) is released again; either would meet a 404.
    assert!(h.plan().pass.steps.is_empty());
    h.set.metadata.resource_version = Some("42".into());
    assert!(h.plan().pass.steps.is_empty());
    // Refused all the same (someone else wrote too): the next pass asks again, on its view.
    record_set(
        &mut h.memory,
        Some(1),
        &release_at("42")[0],
        &Outcome::Conflict,
        &settings(),
        h.now,
    );
    h.set.metadata.resource_version = Some("43".into());
    assert_eq!(h.plan().pass.steps, release_at("43"));
}

/// The release of a set viewed with no other finalizer, guarded by `rv`.
fn release_at(rv: &str) -> Vec<SetStep> {
    vec![Step::SetFinalizers { finalizers: Vec::new(), guard: Some(rv.into()) }]
}

#[test]
fn a_set_deleted_without_our_finalizer_is_left_alone() {
    let mut h = Harness::new(1, vec![agent(0), agent(1)]);
    h.set.metadata.deletion_timestamp = Some(Time(at(90)));
    h.set.metadata.finalizers = None;
    assert!(h.plan().pass.steps.is_empty());
}

#[test]
fn a_delete_is_announced_only_once_it_went_through() {
    let mut h = Harness::new(0, vec![agent(0), agent(1)]);
    let failed = h.pass(|s| match s {
        Step::Pod(PodAction::Delete { .. }) => Outcome::Failed { detail: "timeout".into() },
        _ => Outcome::Done,
    });
    assert!(events(&failed).iter().all(|e| e.reason != "DeletedPod"));
    let deleted = h.pass(done);
    let notes: Vec<String> = events(&deleted)
        .into_iter()
        .filter(|e| e.reason == "DeletedPod")
        .map(|e| e.message)
        .collect();
    assert_eq!(notes, vec!["deleted pod demo-1 (ScaleDown; was Running)".to_string()]);
}

#[test]
fn a_delete_that_met_a_replacement_or_nothing_counts_as_done() {
    for answer in [Outcome::Conflict, Outcome::NotFound] {
        let mut h = Harness::new(0, vec![agent(0), agent(1)]);
        let trace = h.pass(|s| match s {
            Step::Pod(PodAction::Delete { .. }) => answer.clone(),
            _ => Outcome::Done,
        });
        assert!(trace.iter().all(|(_, _, r)| r.next == Next::Continue), "{answer:?}");
        assert!(h.memory.expectations.delete_pending("demo-1"));
    }
}

#[test]
fn a_terminal_pod_is_recreated_later_after_each_failure() {
    let mut h = Harness::new(1, vec![agent(0), crate::plan::fixtures::failed(agent(1))]);
    h.pass(done);
    assert_eq!(h.memory.not_before.get("demo-1"), Some(&at(102)));
    h.pods = vec![agent(0), crate::plan::fixtures::failed(agent(1))];
    h.memory.expectations = Expectations::default();
    h.later(5);
    h.pass(done);
    assert_eq!(h.memory.not_before.get("demo-1"), Some(&at(109)), "4 s after the second");
}

#[test]
fn a_sub_agent_fork_is_timed_from_its_create_to_its_serving() {
    let mut h = Harness::new(1, vec![agent(0)]);
    h.pass(done);
    h.later(3);
    h.pods.push(agent(1));
    assert_eq!(h.plan().forks_served, vec![Duration::from_secs(3)]);
}

#[test]
fn pods_another_controller_owns_are_not_the_sets() {
    let mut foreign = agent(1);
    foreign.controller_uid = Some("someone-else".into());
    let mut h = Harness::new(0, vec![agent(0), foreign]);
    let planned = h.plan();
    assert_eq!(planned.pod_count, 1);
    assert!(!planned.pass.steps.iter().any(|s| matches!(s, Step::Pod(PodAction::Delete { .. }))));
}

/// An answer the API server may give to any write.
fn any_answer() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => Just(Outcome::Done),
        1 => Just(Outcome::AlreadyExists),
        1 => Just(Outcome::Conflict),
        1 => Just(Outcome::NotFound),
        1 => Just(Outcome::Failed { detail: "503".into() }),
        1 => Just(refused()),
    ]
}

proptest! {
    /// Whatever the API server answers for a while (409s, 404s, AlreadyExists from a pod that
    /// then goes away, refusals, failures), once it answers normally again the passes converge:
    /// every slot is created exactly once and the set ends Running with nothing left to do.
    #[test]
    fn recorded_outcomes_then_planning_again_converges(
        replicas in 0..4i32,
        answers in proptest::collection::vec(any_answer(), 0..40),
    ) {
        let mut h = Harness::new(replicas, Vec::new());
        h.set.metadata.finalizers = None;
        let mut answers = answers.into_iter();
        for _ in 0..200 {
            let planned = h.plan();
            if planned.pass.steps.is_empty() && planned.pass.wake_after.is_none()
                && answers.len() == 0
            {
                break;
            }
            let mut created = Vec::new();
            let mut wait = planned.pass.wake_after.unwrap_or(Duration::from_secs(1));
            for step in planned.pass.steps {
                let outcome = match (&step, answers.next()) {
                    // AlreadyExists only answers creates.
                    (Step::Pod(a), Some(Outcome::AlreadyExists)) if !a.is_create() => Outcome::Done,
                    (_, Some(o)) => o,
                    (_, None) => Outcome::Done,
                };
                let generation = h.set.metadata.generation;
                let recorded = record_set(&mut h.memory, generation, &step, &outcome, &settings(), h.now);
                match (&step, &outcome) {
                    (Step::Pod(a), Outcome::Done) if a.is_create() => created.push(a.pod_name().to_string()),
                    (Step::SetFinalizers { finalizers: f, .. }, Outcome::Done) => h.set.metadata.finalizers = Some(f.clone()),
                    (Step::WriteStatus(s), Outcome::Done) => h.set.status = Some((**s).clone()),
                    _ => {}
                }
                if let Next::Stop(d) = recorded.next {
                    wait = d;
                    break;
                }
            }
            // The API server and vk-cocoon: created pods appear and serve.
            for name in created {
                prop_assert!(!h.pods.iter().any(|p| p.name == name), "{name} created twice");
                let slot = name.rsplit('-').next().and_then(|s| s.parse().ok()).unwrap_or(0);
                h.pods.push(agent(slot));
            }
            h.later(i64::try_from(wait.as_secs().max(1)).unwrap_or(1));
        }
        let status = h.set.status.clone().unwrap_or_default();
        prop_assert_eq!(h.pods.len(), usize::try_from(replicas).unwrap() + 1);
        prop_assert_eq!(status.phase, Some(CocoonSetPhase::Running));
        prop_assert_eq!(status.ready_agents, replicas + 1);
        prop_assert!(h.plan().pass.steps.is_empty());
    }
}

fn status_writes(trace: &Trace) -> usize {
    trace.iter().filter(|(s, _, _)| matches!(s, Step::WriteStatus(_))).count()
}

#[test]
fn a_converging_set_writes_its_status_twice_when_progress_is_batched() {
    let mut h = Harness::new(3, Vec::new());
    h.settings.status_batch = Duration::from_secs(1);
    // First status: written at once (Pending, 0/4).
    assert_eq!(status_writes(&h.pass(done)), 1);
    // The main boots, then serves; the sub-agents are created: progress, no condition flips.
    h.pods = vec![starting(agent(0))];
    let booting = h.pass(done);
    assert_eq!(status_writes(&booting), 0);
    let planned = h.plan();
    assert!(planned.pass.wake_after.is_some_and(|d| d <= Duration::from_secs(1)));
    h.pods = vec![agent(0)];
    let forking = h.pass(done);
    assert_eq!(creates(&forking), vec!["demo-1", "demo-2", "demo-3"]);
    assert_eq!(status_writes(&forking), 0, "Pending -> Scaling flips no condition");
    // Every agent serves: Ready turns true, written at once with everything batched so far.
    h.pods = vec![agent(0), agent(1), agent(2), agent(3)];
    let running = h.pass(done);
    assert_eq!(status_writes(&running), 1);
    let status = h.set.status.clone().unwrap();
    assert_eq!(status.phase, Some(CocoonSetPhase::Running));
    assert_eq!(status.ready_agents, 4);
    assert!(h.memory.batch.is_none());
    assert!(h.pass(done).is_empty(), "converged: nothing more to write");
}

#[test]
fn batched_progress_is_written_once_still_and_no_later_than_five_quiet_periods() {
    let mut h = Harness::new(2, vec![agent(0), starting(agent(1)), starting(agent(2))]);
    h.settings.status_batch = Duration::from_secs(1);
    assert_eq!(status_writes(&h.pass(done)), 1);
    h.pods = vec![agent(0), agent(1), starting(agent(2))];
    assert_eq!(status_writes(&h.pass(done)), 0, "2/3 ready waits");
    h.later(1);
    assert_eq!(status_writes(&h.pass(done)), 1, "still for 1 s: written with no new event");
    assert_eq!(h.set.status.clone().unwrap().ready_agents, 2);
    // Progress that keeps moving is batched, but shown within five quiet periods.
    let mut writes = 0;
    for second in 0..7 {
        let mut moving = starting(agent(2));
        moving.vm_id = Some(format!("moving-{second}").into());
        h.pods = vec![agent(0), agent(1), moving];
        writes += status_writes(&h.pass(done));
        h.now = h.now.checked_add(SignedDuration::from_millis(900)).unwrap();
    }
    assert_eq!(writes, 1, "one write in 6.3 s of changes every 0.9 s (the cap: 5 s)");
}

#[test]
fn a_problem_or_a_new_generation_is_written_at_once_even_when_batching() {
    let mut h = Harness::new(0, vec![agent(0)]);
    h.settings.status_batch = Duration::from_secs(60);
    h.pass(done);
    h.set.metadata.generation = Some(2);
    assert_eq!(status_writes(&h.pass(done)), 1, "observedGeneration moves at once");
    h.set.spec.toolboxes = vec![crate::plan::fixtures::toolbox(
        "win",
        crate::api::ToolboxOs::Windows,
        crate::api::ToolboxMode::Static,
    )];
    h.set.metadata.generation = Some(3);
    h.pass(done);
    let message = h.set.status.clone().unwrap().message.unwrap_or_default();
    assert!(message.contains("no staticIP"), "{message}");
}

#[test]
fn teardown_is_quiet_no_event_per_pod_and_its_countdown_is_batched() {
    let mut h = Harness::new(2, vec![agent(0), agent(1), agent(2)]);
    h.settings.status_batch = Duration::from_secs(1);
    h.pass(done);
    h.set.metadata.deletion_timestamp = Some(Time(at(100)));
    let first = h.pass(done);
    let deletes: Vec<&str> = first
        .iter()
        .filter_map(|(s, _, _)| match s {
            Step::Pod(a @ PodAction::Delete { .. }) => Some(a.pod_name()),
            _ => None,
        })
        .collect();
    assert_eq!(deletes, vec!["demo-1", "demo-2"], "sub-agents first");
    assert!(events(&first).is_empty(), "the user deleted the set: no Event per pod");
    // "deleting: N pod(s) left" counts down without a write per pod.
    h.pods = vec![agent(0), terminating(agent(1))];
    assert_eq!(status_writes(&h.pass(done)), 0);
}

impl Harness {
    /// A main and one sub-agent, converged.
    fn converged_pair() -> Self {
        let mut h = Self::new(1, vec![agent(0), agent(1)]);
        h.pass(done);
        h
    }

    /// The user sets `spec.suspend` (a new generation).
    fn suspend(&mut self, on: bool) {
        self.set.spec.suspend = on;
        self.set.metadata.generation = self.set.metadata.generation.map(|g| g + 1);
    }

    /// The watch delivers every pod labelled for hibernation.
    fn view_shows_requests(&mut self) {
        for p in &mut self.pods {
            p.hibernate_requested = true;
        }
    }
}

fn toggles(trace: &Trace) -> Vec<(String, bool)> {
    trace
        .iter()
        .filter_map(|(s, _, _)| match s {
            Step::Pod(PodAction::SetHibernate { pod_name, hibernate, .. }) => {
                Some((pod_name.clone(), *hibernate))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_hibernate_toggle_that_went_through_is_not_sent_again_from_a_view_that_predates_it() {
    let mut h = Harness::converged_pair();
    h.suspend(true);
    let first = toggles(&h.pass(done));
    assert_eq!(first.len(), 2, "both pods are asked to hibernate: {first:?}");
    h.later(1);
    // The watch has not delivered the patched pods yet.
    let stale = toggles(&h.pass(done));
    assert!(stale.is_empty(), "sent again from a stale view: {stale:?}");
    // The view catches up; then someone takes the request off one pod: it is put back.
    h.view_shows_requests();
    h.later(1);
    assert!(toggles(&h.pass(done)).is_empty());
    h.pods[1].hibernate_requested = false;
    h.later(1);
    assert_eq!(toggles(&h.pass(done)), vec![(h.pods[1].name.to_string(), true)]);
}

#[test]
fn a_toggle_the_view_never_shows_is_sent_again_once_its_expectation_expires() {
    let mut h = Harness::converged_pair();
    h.suspend(true);
    assert_eq!(toggles(&h.pass(done)).len(), 2);
    h.later(61);
    assert_eq!(toggles(&h.pass(done)).len(), 2, "a lost event must not block the toggle");
}

#[test]
fn the_watch_showing_a_pod_this_actor_created_is_no_status_change() {
    let mut h = Harness::new(1, Vec::new());
    h.pass(done);
    let mut main = crate::plan::fixtures::pending(agent(0));
    (main.vm_id, main.ip) = (None, None);
    h.pods = vec![main];
    h.later(1);
    let trace = h.pass(done);
    assert!(
        !trace.iter().any(|(s, _, _)| matches!(s, Step::WriteStatus(_))),
        "a created pod seen Pending is what the status already said: {trace:?}"
    );
    assert!(h.plan().pass.wake_after.is_none(), "no batched write waits either");
}

#[test]
fn a_resume_before_the_view_shows_the_suspend_toggle_wakes_the_pod_once_it_does() {
    let mut h = Harness::converged_pair();
    h.suspend(true);
    assert_eq!(toggles(&h.pass(done)).len(), 2);
    // Resumed while the view still shows the pods unlabelled: nothing to undo yet.
    h.suspend(false);
    h.later(1);
    assert!(toggles(&h.pass(done)).is_empty());
    // The view shows the suspend's labels: they are taken off, each once.
    h.view_shows_requests();
    h.later(1);
    let names: Vec<(String, bool)> = h.pods.iter().map(|p| (p.name.to_string(), false)).collect();
    assert_eq!(toggles(&h.pass(done)), names);
    h.later(1);
    assert!(toggles(&h.pass(done)).is_empty(), "not again from the same view");
}

#[test]
fn a_cocoonstack_set_restores_the_vms_it_released_even_after_a_restart() {
    use crate::contract::{Dialect, LifecycleState};
    use crate::plan::observe::{Lifecycle, PodPhase};
    // The main of a current-dialect set, hibernated for the latest request.
    let mut main = agent(0);
    main.dialect = Some(Dialect::Current);
    main.uid = Some("main-uid".into());
    main.stamp = Some(2);
    main.rare.lifecycle =
        Some(Lifecycle { state: LifecycleState::Hibernated, observed: Some(2), message: None });
    main.phase = PodPhase::Pending;
    main.ready = false;
    main.vm_id = None;
    main.hibernated = true;
    main.hibernate_requested = true;
    let mut released = spec(0);
    released.suspend = true;
    released.hibernate_policy = crate::api::HibernatePolicy::Release;
    let mut h = Harness::new(0, vec![main]);
    h.set.spec = released;
    h.nodes = pool_nodes(Dialect::Current);
    h.registry = true;
    let released = |trace: &Trace| {
        trace.iter().any(|(s, _, _)| {
            matches!(s, Step::Pod(PodAction::Delete { reason: DeleteReason::Released, .. }))
        })
    };
    // The status records the snapshot first, then the pod goes.
    let trace = h.pass(done);
    assert!(!released(&trace), "not before the status says where the VM waits");
    h.later(5);
    let trace = h.pass(done);
    assert!(released(&trace), "released once it reported hibernated and the status said so");
    // The pod is gone; the status keeps what the registry holds.
    h.pods.clear();
    h.later(5);
    h.pass(done);
    let stored = h.set.status.clone().unwrap();
    assert_eq!(stored.agents[0].phase, crate::api::VmPhase::Released);
    assert_eq!(stored.agents[0].snapshot_ref.as_deref(), Some("vk-prod-demo-0:hibernate"));
    // The operator restarts (no memory) and the set is resumed: the main restores.
    h.memory = SetMemory::default();
    h.set.spec.suspend = false;
    h.set.metadata.generation = Some(2);
    h.later(5);
    let trace = h.pass(done);
    let restored = trace.iter().any(|(s, _, _)| match s {
        Step::Pod(PodAction::CreateMain { pod }) => pod
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.get("vm.cocoonstack.io/restore-from-hibernate").is_some()),
        _ => false,
    });
    assert!(restored, "{trace:?}");
}

#[test]
fn a_cocoonstack_teardown_retires_every_snapshot_per_policy_before_the_finalizer_goes() {
    use crate::contract::Dialect;
    let mut spec = spec(1);
    spec.snapshot_policy = crate::api::SnapshotPolicy::MainOnly;
    let mut h = Harness::new(1, vec![]);
    h.set.spec = spec;
    h.set.metadata.deletion_timestamp = Some(crate::api::conditions::wire_time(at(50)));
    h.nodes = pool_nodes(Dialect::V02);
    h.registry = true;
    let collected = |trace: &Trace| -> Vec<(String, bool)> {
        trace
            .iter()
            .filter_map(|(s, _, _)| match s {
                Step::Pod(PodAction::CollectSnapshot { vm_name, keep, .. }) => {
                    Some((vm_name.clone(), *keep))
                }
                _ => None,
            })
            .collect()
    };
    let released = |trace: &Trace| {
        trace.iter().any(|(s, _, _)| matches!(s, Step::SetFinalizers { finalizers, .. } if finalizers.is_empty()))
    };
    // The registry is down: nothing is released.
    let down = |s: &SetStep| match s {
        Step::Pod(PodAction::CollectSnapshot { .. }) => Outcome::Failed { detail: "503".into() },
        _ => Outcome::Done,
    };
    let trace = h.pass(down);
    assert_eq!(
        collected(&trace)[0],
        ("vk-prod-demo-0".to_string(), true),
        "main-only keeps the main"
    );
    assert!(!released(&trace));
    h.memory.retry = Default::default();
    assert!(
        h.plan().pass.wake_after.is_some(),
        "the pass after the collections comes by itself: no event follows them"
    );
    let trace = h.pass(done);
    assert_eq!(
        collected(&trace),
        vec![("vk-prod-demo-0".to_string(), true), ("vk-prod-demo-1".to_string(), false)]
    );
    let trace = h.pass(done);
    assert!(collected(&trace).is_empty(), "each VM once");
    assert!(released(&trace), "then the finalizer goes: {trace:?}");
}

#[test]
fn a_pod_the_provider_deleted_while_hibernating_comes_back_from_its_pushed_snapshot() {
    use crate::api::{AgentStatus, VmPhase};
    use crate::contract::Dialect;
    let mut h = Harness::new(0, vec![]);
    h.set.spec.suspend = true;
    h.nodes = pool_nodes(Dialect::V02);
    h.registry = true;
    // The last status saw the main hibernating; then vk-cocoon v0.2.9 deleted its pod.
    h.set.status = Some(CocoonSetStatus {
        observed_generation: Some(1),
        agents: vec![AgentStatus {
            slot: 0,
            role: "main".into(),
            pod_name: "demo-0".into(),
            vm_name: Some("vk-prod-demo-0".into()),
            phase: VmPhase::Hibernating,
            ..Default::default()
        }],
        ..Default::default()
    });
    let probed = |trace: &Trace| {
        trace.iter().any(|(s, _, _)| matches!(s, Step::Pod(PodAction::ProbeSnapshot { vm_name, .. }) if vm_name == "vk-prod-demo-0"))
    };
    // The registry is down: asked again next time, nothing written that forgets why.
    let down = |s: &SetStep| match s {
        Step::Pod(PodAction::ProbeSnapshot { .. }) => Outcome::Failed { detail: "503".into() },
        _ => Outcome::Done,
    };
    let trace = h.pass(down);
    assert!(probed(&trace));
    assert!(!trace.iter().any(|(s, _, _)| matches!(s, Step::WriteStatus(_))), "{trace:?}");
    h.memory.retry = Default::default();
    let trace = h.pass(done);
    assert!(probed(&trace));
    let trace = h.pass(done);
    assert!(!probed(&trace), "asked once");
    let status = h.set.status.clone().unwrap();
    assert_eq!(status.agents[0].snapshot_ref.as_deref(), Some("vk-prod-demo-0:hibernate"));
    assert_eq!(status.agents[0].phase, VmPhase::Hibernated, "hibernated in the registry");
    assert!(
        !trace.iter().any(|(s, _, _)| matches!(s, Step::Pod(PodAction::CreateMain { .. }))),
        "not created again while the set sleeps: {trace:?}"
    );
    // Resumed: the main is recreated from its snapshot.
    h.set.spec.suspend = false;
    h.set.metadata.generation = Some(2);
    let trace = h.pass(done);
    assert!(!probed(&trace));
    let image = trace.iter().find_map(|(s, _, _)| match s {
        Step::Pod(PodAction::CreateMain { pod }) => pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("cocoonset.cocoonstack.io/image").cloned()),
        _ => None,
    });
    assert_eq!(image.as_deref(), Some("vk-prod-demo-0:hibernate"));
}

/// A suspended set on a v0.2 node with a registry, its main asked to hibernate (and changed by
/// `shape`), after one pass.
fn suspended_v02_harness(shape: impl FnOnce(&mut PodView)) -> Harness {
    use crate::contract::Dialect;
    let mut main = agent(0);
    main.dialect = Some(Dialect::V02);
    main.hibernate_requested = true;
    shape(&mut main);
    let mut h = Harness::new(0, vec![main]);
    h.set.spec.suspend = true;
    h.nodes = pool_nodes(Dialect::V02);
    h.registry = true;
    h.pass(done);
    h
}

#[test]
fn a_pod_seen_hibernating_that_goes_before_any_status_said_so_is_still_looked_for() {
    let mut h = suspended_v02_harness(|_| {});
    // The provider deletes it (PROVIDERS.md §6.14) before its hibernated shape was seen.
    h.pods[0].terminating = true;
    h.pass(done);
    h.pods.clear();
    h.set.status = None;
    h.memory.last_written = None;
    let trace = h.pass(done);
    let probed = trace.iter().any(|(s, _, _)| {
        matches!(s, Step::Pod(PodAction::ProbeSnapshot { vm_name, .. }) if vm_name == "vk-prod-demo-0")
    });
    assert!(probed, "{trace:?}");
}

#[test]
fn a_suspended_set_whose_pod_the_provider_deletes_unanswered_is_suspended_only_once_the_registry_said()
 {
    use crate::api::{CocoonSetPhase, VmPhase};
    let mut h = suspended_v02_harness(|_| {});
    let status = |h: &Harness| h.set.status.clone().unwrap();
    assert_eq!(status(&h).phase, Some(CocoonSetPhase::Suspending));
    // v0.2.9 saw the VM removed before its own record of the hibernate (PROVIDERS.md quirk
    // 14): the pod fails as "VM gone", then is deleted. Whether the snapshot was pushed is not
    // known yet.
    h.pods[0].phase = crate::plan::observe::PodPhase::Failed;
    h.pods[0].ready = false;
    h.pass(done);
    assert_eq!(status(&h).phase, Some(CocoonSetPhase::Suspending), "{:?}", status(&h));
    h.pods[0].terminating = true;
    h.pass(done);
    assert_eq!(status(&h).phase, Some(CocoonSetPhase::Suspending), "{:?}", status(&h));
    // Gone: the registry is asked, and only its answer settles the set.
    h.pods.clear();
    let trace = h.pass(done);
    assert!(
        trace.iter().any(|(s, _, _)| matches!(s, Step::Pod(PodAction::ProbeSnapshot { .. }))),
        "{trace:?}"
    );
    assert_eq!(status(&h).phase, Some(CocoonSetPhase::Suspending));
    h.pass(done);
    let settled = status(&h);
    assert_eq!(settled.phase, Some(CocoonSetPhase::Suspended), "{settled:?}");
    assert_eq!(settled.agents[0].phase, VmPhase::Hibernated);
    assert_eq!(settled.agents[0].snapshot_ref.as_deref(), Some("vk-prod-demo-0:hibernate"));
}

#[test]
fn a_hibernated_pod_the_provider_deletes_shows_hibernated_in_the_registry_while_it_goes() {
    use crate::api::{CocoonSetPhase, VmPhase};
    let h = suspended_v02_harness(|main| {
        main.hibernated = true;
        main.ready = false;
        main.phase = crate::plan::observe::PodPhase::Pending;
        main.terminating = true;
    });
    let status = h.set.status.clone().unwrap();
    assert_eq!(status.phase, Some(CocoonSetPhase::Suspended), "{status:?}");
    assert_eq!(status.agents[0].phase, VmPhase::Hibernated, "as it shows once gone");
    assert_eq!(status.agents[0].snapshot_ref.as_deref(), Some("vk-prod-demo-0:hibernate"));
}

#[test]
fn a_suspended_sets_vm_last_seen_running_whose_pod_went_unwatched_is_looked_for() {
    use crate::api::{AgentStatus, VmPhase};
    use crate::contract::Dialect;
    let last_seen_running = |suspend: bool| {
        let mut h = Harness::new(0, vec![]);
        h.set.spec.suspend = suspend;
        h.nodes = pool_nodes(Dialect::V02);
        h.registry = true;
        // The operator restarted after the suspend began: the last status it wrote saw the main
        // running, and the provider deleted the pod it then hibernated while nobody watched.
        h.set.status = Some(CocoonSetStatus {
            observed_generation: Some(1),
            agents: vec![AgentStatus {
                slot: 0,
                role: "main".into(),
                pod_name: "demo-0".into(),
                vm_name: Some("vk-prod-demo-0".into()),
                phase: VmPhase::Running,
                ..Default::default()
            }],
            ..Default::default()
        });
        let trace = h.pass(done);
        trace.iter().any(|(s, _, _)| {
            matches!(s, Step::Pod(PodAction::ProbeSnapshot { vm_name, .. }) if vm_name == "vk-prod-demo-0")
        })
    };
    assert!(last_seen_running(true), "a suspended set asks the registry");
    assert!(!last_seen_running(false), "a running set's lost pod is no hibernation");
}

/// A set without `spec.nodeName` on a fleet of two nodes, its main bound by the scheduler to
/// `n2` once created.
fn fleet_harness(replicas: i32) -> Harness {
    let mut h = Harness::new(replicas, Vec::new());
    h.set.spec.node_name = None;
    h.set.spec.toolboxes = vec![crate::plan::fixtures::toolbox(
        "tb",
        crate::api::ToolboxOs::Linux,
        crate::api::ToolboxMode::Clone,
    )];
    let mut nodes = pool_nodes(Dialect::Seed);
    for name in ["n1", "n2"] {
        nodes.set(name, crate::plan::NodeInfo::default());
    }
    h.nodes = nodes;
    h
}

fn created_pods(trace: &Trace) -> Vec<k8s_openapi::api::core::v1::Pod> {
    trace
        .iter()
        .filter_map(|(s, _, _)| match s {
            Step::Pod(
                PodAction::CreateMain { pod }
                | PodAction::CreateSubAgent { pod, .. }
                | PodAction::CreateToolbox { pod, .. },
            ) => Some((**pod).clone()),
            _ => None,
        })
        .collect()
}

fn on(mut pod: PodView, node: &str) -> PodView {
    pod.node = Some(node.into());
    pod
}

#[test]
fn without_a_node_the_main_is_scheduled_and_the_set_follows_it_where_it_landed() {
    let mut h = fleet_harness(1);
    let trace = h.pass(done);
    let pods = created_pods(&trace);
    assert_eq!(creates(&trace), vec!["demo-0"], "the toolbox waits for the set's node");
    let spec = pods[0].spec.clone().unwrap();
    assert_eq!(spec.node_name, None, "left to the scheduler");
    assert!(spec.affinity.is_some(), "selecting the provider's pool");
    assert_eq!(h.set.status.clone().unwrap().node, None);

    // No node fits: the scheduler's words are the set's.
    let mut waiting = pending(agent(0));
    waiting.rare.unschedulable = Some("0/2 nodes are available: 2 node(s) didn't match".into());
    h.pods = vec![waiting];
    h.later(1);
    h.pass(done);
    let message = h.set.status.clone().unwrap().message.unwrap_or_default();
    assert!(message.contains("demo-0 cannot be placed: 0/2 nodes are available"), "{message}");

    // The scheduler bound it to n2; it serves: the sub-agent and the toolbox follow.
    h.pods = vec![on(agent(0), "n2")];
    h.memory.expectations = Default::default();
    h.later(1);
    let trace = h.pass(done);
    let pods = created_pods(&trace);
    let names: Vec<_> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, vec!["demo-1", "demo-tb"]);
    for pod in &pods {
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("n2"));
    }
    let status = h.set.status.clone().unwrap();
    assert_eq!(status.node.as_deref(), Some("n2"));
    assert_eq!(status.agents[0].node.as_deref(), Some("n2"));

    // The main goes (a user deleted it): its replacement goes back to n2, not to the scheduler.
    h.pods = vec![on(agent(1), "n2")];
    h.memory.expectations = Default::default();
    h.later(1);
    let trace = h.pass(done);
    let main =
        created_pods(&trace).into_iter().find(|p| p.metadata.name.as_deref() == Some("demo-0"));
    assert_eq!(main.expect("recreated").spec.unwrap().node_name.as_deref(), Some("n2"));
}

#[test]
fn a_main_no_scheduler_ever_looks_at_is_said_after_thirty_seconds_by_a_timer() {
    let mut h = fleet_harness(0);
    h.set.spec.toolboxes.clear();
    h.pass(done);
    let mut waiting = pending(agent(0));
    waiting.created_at = Some(h.now);
    h.pods = vec![waiting];
    h.memory.expectations = Default::default();
    h.later(1);
    h.pass(done);
    let wake = h.plan().pass.wake_after.expect("a timer for the hint");
    assert!(wake <= Duration::from_secs(29), "{wake:?}");
    assert!(h.set.status.clone().unwrap().message.is_none());
    h.later(30);
    let trace = h.pass(done);
    let message = h.set.status.clone().unwrap().message.unwrap_or_default();
    assert!(message.contains("pod demo-0 waits for a scheduler"), "{message}");
    let reasons: Vec<_> = events(&trace).into_iter().map(|e| e.reason).collect();
    assert!(reasons.contains(&"NeedsAttention"), "{reasons:?}");
    assert!(h.plan().pass.wake_after.is_none(), "said: no timer left, idle is idle");
}

#[test]
fn a_node_not_ready_is_a_condition_and_an_event_and_its_return_clears_them() {
    let mut h = fleet_harness(1);
    h.set.spec.toolboxes.clear();
    h.pods = vec![on(agent(0), "n2"), on(agent(1), "n2")];
    h.pass(done);
    h.nodes.set("n2", crate::plan::NodeInfo { ready: false, ..Default::default() });
    h.later(1);
    let trace = h.pass(done);
    assert!(creates(&trace).is_empty());
    assert!(!trace.iter().any(|(s, _, _)| matches!(s, Step::Pod(PodAction::Delete { .. }))));
    let status = h.set.status.clone().unwrap();
    let lost = ConditionType::NodeLost.find(&status.conditions).expect("condition");
    assert_eq!((lost.status.as_str(), lost.reason.as_str()), ("True", "NodeNotReady"));
    assert!(lost.message.contains("node n2") && lost.message.contains("vk-prod-demo-1"));
    let reasons: Vec<_> = events(&trace).into_iter().map(|e| e.reason).collect();
    assert_eq!(reasons, vec!["NodeLost"]);

    h.nodes.set("n2", crate::plan::NodeInfo::default());
    h.later(1);
    let trace = h.pass(done);
    let status = h.set.status.clone().unwrap();
    assert!(!ConditionType::NodeLost.is_true(&status.conditions));
    let reasons: Vec<_> = events(&trace).into_iter().map(|e| e.reason).collect();
    assert_eq!(reasons, vec!["NodeRecovered"]);
}

#[test]
fn a_deleted_node_loses_its_vms_and_only_recreate_places_the_set_again() {
    let mut h = fleet_harness(1);
    h.set.spec.toolboxes.clear();
    h.pods = vec![on(agent(0), "n2"), on(agent(1), "n2")];
    h.pass(done);
    // n2 is deleted from the cluster; the pod garbage collector removed the main's pod.
    h.nodes.remove("n2");
    h.pods = vec![on(agent(1), "n2")];
    h.later(1);
    let trace = h.pass(done);
    assert!(creates(&trace).is_empty(), "report: nothing is booted anew unasked");
    let status = h.set.status.clone().unwrap();
    assert_eq!(status.node.as_deref(), Some("n2"));
    let lost = ConditionType::NodeLost.find(&status.conditions).expect("condition");
    assert_eq!(lost.reason, "NodeGone");
    assert!(lost.message.contains("vk-prod-demo-0") && lost.message.contains("vk-prod-demo-1"));
    assert!(status.message.unwrap_or_default().contains("n2 was deleted"));

    h.set.spec.on_node_loss = crate::api::NodeLossPolicy::Recreate;
    h.later(1);
    let trace = h.pass(done);
    let deleted: Vec<_> = trace
        .iter()
        .filter_map(|(s, _, _)| match s {
            Step::Pod(PodAction::Delete { pod_name, reason, .. }) => {
                Some((pod_name.clone(), *reason))
            }
            _ => None,
        })
        .collect();
    assert_eq!(deleted, vec![("demo-1".to_string(), DeleteReason::NodeLost)]);
    assert_eq!(DeleteReason::NodeLost.grace_seconds(), Some(0));
    let main =
        created_pods(&trace).into_iter().find(|p| p.metadata.name.as_deref() == Some("demo-0"));
    assert_eq!(main.expect("placed again").spec.unwrap().node_name, None);
    assert_eq!(h.set.status.clone().unwrap().node, None);
}

/// A current-dialect set on `n1` of two current nodes, with the registry.
fn migrating_harness() -> Harness {
    migrating_harness_with(0, Vec::new())
}

/// A set of `replicas` sub-agents on n1 of a current fleet (n1, n2, a registry), its main and
/// `more` pods (each placed on n1, in the current dialect) in view, after one pass.
fn migrating_harness_with(replicas: i32, more: Vec<PodView>) -> Harness {
    let mut h = fleet_harness(replicas);
    h.set.spec.toolboxes.clear();
    h.set.spec.node_name = Some("n1".into());
    let mut nodes = pool_nodes(Dialect::Current);
    for name in ["n1", "n2"] {
        nodes.set(name, crate::plan::NodeInfo { dialect: Dialect::Current, ..Default::default() });
    }
    h.nodes = nodes;
    h.registry = true;
    h.pods = std::iter::once(agent(0))
        .chain(more)
        .map(|pod| PodView { dialect: Some(Dialect::Current), ..on(pod, "n1") })
        .collect();
    h.pass(done);
    h
}

#[test]
fn a_new_node_name_starts_a_recorded_migration_that_hibernates_where_the_vms_are() {
    let mut h = migrating_harness();
    h.set.spec.node_name = Some("n2".into());
    h.set.metadata.generation = Some(2);
    h.later(1);
    let trace = h.pass(done);
    assert_eq!(toggles(&trace), vec![("demo-0".to_string(), true)]);
    assert!(creates(&trace).is_empty());
    let status = h.set.status.clone().unwrap();
    assert_eq!(status.phase, Some(CocoonSetPhase::Migrating));
    assert_eq!(status.node.as_deref(), Some("n1"), "still there");
    let record = status.migration.expect("recorded");
    assert_eq!((record.from.as_str(), record.to.as_str()), ("n1", "n2"));
    let reasons: Vec<_> = events(&trace).into_iter().map(|e| e.reason).collect();
    assert!(reasons.contains(&"Migrating"), "{reasons:?}");
}

#[test]
fn a_migration_held_up_by_a_hibernation_says_which_pod_and_what_to_do() {
    let mut held = agent(1);
    held.rare.hibernated_by = Some("pause".into());
    held.hibernate_requested = true;
    let mut h = migrating_harness_with(1, vec![held]);
    h.set.spec.node_name = Some("n2".into());
    h.set.metadata.generation = Some(2);
    h.later(1);
    let trace = h.pass(done);
    assert_eq!(toggles(&trace), vec![("demo-0".to_string(), true)], "the rest goes on");
    let status = h.set.status.clone().unwrap();
    assert_eq!(status.phase, Some(CocoonSetPhase::Migrating));
    let message = status.message.unwrap_or_default();
    assert!(message.contains("waits for demo-1 (Hibernation pause)"), "{message}");
}

#[test]
fn a_migration_restores_on_the_new_node_after_a_restart_and_ends_with_an_event() {
    use crate::api::{AgentStatus, MigrationPhase, MigrationStatus, VmPhase};
    let mut h = migrating_harness();
    // The agents left n1 (hibernated into the registry, released); the operator restarts.
    h.set.spec.node_name = Some("n2".into());
    h.set.metadata.generation = Some(2);
    let mut status = h.set.status.clone().unwrap();
    status.migration = Some(MigrationStatus {
        from: "n1".into(),
        to: "n2".into(),
        phase: MigrationPhase::Hibernating,
    });
    status.agents = vec![AgentStatus {
        slot: 0,
        role: "main".into(),
        pod_name: "demo-0".into(),
        vm_name: Some("vk-prod-demo-0".into()),
        phase: VmPhase::Released,
        snapshot_ref: Some("vk-prod-demo-0:hibernate".into()),
        ..AgentStatus::default()
    }];
    h.set.status = Some(status);
    h.memory = SetMemory::default();
    h.pods.clear();
    h.later(1);
    let trace = h.pass(done);
    let main = created_pods(&trace).into_iter().next().expect("the main is created again");
    assert_eq!(main.spec.as_ref().unwrap().node_name.as_deref(), Some("n2"));
    let annotations = main.metadata.annotations.unwrap_or_default();
    assert!(annotations.contains_key("vm.cocoonstack.io/restore-from-hibernate"), "restores");
    let status = h.set.status.clone().unwrap();
    assert_eq!(status.migration.map(|m| m.phase), Some(MigrationPhase::Restoring));
    assert_eq!(status.phase, Some(CocoonSetPhase::Migrating));
    // It serves on n2: the migration ends, said once.
    let mut main = on(agent(0), "n2");
    main.dialect = Some(Dialect::Current);
    h.pods = vec![main];
    h.memory.expectations = Default::default();
    h.later(1);
    let trace = h.pass(done);
    let status = h.set.status.clone().unwrap();
    assert_eq!(status.migration, None);
    assert_eq!(status.node.as_deref(), Some("n2"));
    let reasons: Vec<_> = events(&trace).into_iter().map(|e| e.reason).collect();
    assert!(reasons.contains(&"Migrated"), "{reasons:?}");
}

#[test]
fn a_seed_set_asked_to_move_is_refused_and_stays_whole_where_it_is() {
    let mut h = fleet_harness(1);
    h.set.spec.toolboxes.clear();
    h.set.spec.node_name = Some("n2".into());
    h.pods = vec![on(agent(0), "n1")];
    let trace = h.pass(done);
    assert!(toggles(&trace).is_empty(), "nothing hibernated for a move that cannot be made");
    let pods = created_pods(&trace);
    assert_eq!(pods.len(), 1, "the missing sub-agent is still created");
    assert_eq!(pods[0].spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
    let status = h.set.status.clone().unwrap();
    assert_eq!(status.migration, None);
    let message = status.message.unwrap_or_default();
    assert!(message.contains("refused") && message.contains("on its host"), "{message}");
}

#[test]
fn a_migration_called_off_halfway_keeps_the_set_where_it_was_and_says_so() {
    let mut h = migrating_harness();
    h.set.spec.node_name = Some("n2".into());
    h.set.metadata.generation = Some(2);
    h.later(1);
    h.pass(done);
    assert!(h.set.status.clone().unwrap().migration.is_some());
    h.set.spec.node_name = Some("n1".into());
    h.set.metadata.generation = Some(3);
    h.later(1);
    let trace = h.pass(done);
    let status = h.set.status.clone().unwrap();
    assert_eq!(status.migration, None);
    assert_eq!(status.node.as_deref(), Some("n1"));
    let reasons: Vec<_> = events(&trace).into_iter().map(|e| e.reason).collect();
    assert!(reasons.contains(&"MigrationCancelled"), "{reasons:?}");
    assert!(!reasons.contains(&"Migrated"), "{reasons:?}");
}

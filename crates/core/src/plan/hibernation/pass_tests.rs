//! Tests of the whole Hibernation pass: steps in order, outcomes recorded, round identity.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::{HibernationAction, HibernationSpec};
use crate::plan::fixtures::{at, hibernated, serving};
use crate::plan::pass::Next;

const NAME: &str = "hibernate-bot-1";
const POD: &str = "sre-agent-xxx";
const VM: &str = "vk-prod-bot";

fn pod(uid: &str) -> PodView {
    let mut p = PodView::new(POD);
    p.uid = Some(uid.into());
    p.vm_name = Some(VM.into());
    p.labels.insert(contract::LABEL_HIBERNATION_TARGET, contract::HIBERNATION_TARGET_VALUE.into());
    serving(p)
}

fn hibernation(action: HibernationAction) -> Hibernation {
    let mut h = Hibernation::new(NAME, HibernationSpec { pod_name: POD.into(), action });
    h.metadata.namespace = Some("prod".into());
    h.metadata.uid = Some("hib-uid".into());
    h.metadata.generation = Some(1);
    h.metadata.creation_timestamp = Some(Time(at(0)));
    h.metadata.finalizers = Some(vec![contract::FINALIZER_HIBERNATION.into()]);
    h
}

struct Harness {
    hib: Hibernation,
    pods: Vec<PodView>,
    listed: Option<String>,
    snapshots: Snapshots,
    competitors: Vec<Competitor>,
    memory: HibMemory,
    now: Timestamp,
}

impl Harness {
    fn new(action: HibernationAction, pods: Vec<PodView>) -> Self {
        Self {
            hib: hibernation(action),
            pods,
            listed: Some(POD.into()),
            snapshots: Snapshots::new(),
            competitors: vec![Competitor { name: NAME.into(), created: Some(at(0)) }],
            memory: HibMemory::default(),
            now: at(100),
        }
    }

    fn view(&self) -> HibView<'_> {
        HibView {
            hibernation: &self.hib,
            pods: &self.pods,
            listed: self.listed.as_deref(),
            snapshots: &self.snapshots,
            dialect: crate::contract::Dialect::Seed,
            registry: false,
            competitors: &self.competitors,
        }
    }

    /// One pass where every step goes through; the written status becomes the stored one.
    fn pass(&mut self) -> Vec<HibStep> {
        let view = HibView {
            hibernation: &self.hib,
            pods: &self.pods,
            listed: self.listed.as_deref(),
            snapshots: &self.snapshots,
            dialect: crate::contract::Dialect::Seed,
            registry: false,
            competitors: &self.competitors,
        };
        let planned = plan_hib_pass(
            &view,
            &mut self.memory,
            &crate::plan::fixtures::hibernation_settings(),
            self.now,
        );
        let backoff = Backoff::retry(Duration::from_secs(60));
        let mut written = None;
        for step in &planned.pass.steps {
            let view = self.view();
            let mut memory = self.memory.clone();
            let recorded = record_hib(&mut memory, &view, step, &Outcome::Done, backoff, self.now);
            self.memory = memory;
            assert_eq!(recorded.next, Next::Continue);
            if let Step::WriteStatus(s) = step {
                written = Some((**s).clone());
            }
        }
        if let Some(s) = written {
            self.hib.status = Some(s);
        }
        planned.pass.steps
    }

    fn phase(&self) -> Option<HibernationPhase> {
        self.hib.status.as_ref().and_then(|s| s.phase)
    }
}

#[test]
fn nothing_is_decided_before_the_targets_watch_has_listed() {
    let mut h = Harness::new(HibernationAction::Hibernate, Vec::new());
    h.listed = None;
    assert!(h.pass().is_empty(), "no pod may only mean not seen yet");
    h.listed = Some("another-pod".into());
    assert!(h.pass().is_empty(), "the listing of another name says nothing about this one");
    h.listed = Some(POD.into());
    h.pass();
    assert_eq!(h.phase(), Some(HibernationPhase::Failed), "now missing means missing");
}

#[test]
fn a_round_writes_its_start_to_status_before_its_request_to_the_pod() {
    let mut h = Harness::new(HibernationAction::Hibernate, vec![pod("uid-1")]);
    let steps = h.pass();
    let status_at = steps.iter().position(|s| matches!(s, Step::WriteStatus(_)));
    let patch_at = steps.iter().position(|s| matches!(s, Step::Pod(_)));
    assert!(status_at.is_some() && patch_at.is_some(), "{steps:?}");
    assert!(status_at < patch_at, "status first: {steps:?}");
    assert_eq!(h.phase(), Some(HibernationPhase::Hibernating));
    assert!(h.memory.round.as_ref().is_some_and(|(_, w)| w.request_seen));
}

#[test]
fn a_written_status_is_the_reference_until_the_view_shows_it_and_is_then_let_go() {
    let mut h = Harness::new(HibernationAction::Hibernate, vec![pod("uid-1")]);
    h.pass();
    let ours = h.hib.status.clone().expect("the round's start is written");
    assert_eq!(h.memory.last_written.as_deref(), Some(&ours));
    // The view has not caught up: the write stands in for it and is not repeated.
    h.hib.status = None;
    h.now = at(101);
    assert!(!h.pass().iter().any(|s| matches!(s, Step::WriteStatus(_))));
    assert_eq!(h.memory.last_written.as_deref(), Some(&ours));
    h.hib.status = Some(ours);
    assert!(!h.pass().iter().any(|s| matches!(s, Step::WriteStatus(_))));
    assert!(h.memory.last_written.is_none(), "the view shows it: no second copy is kept");
}

#[test]
fn a_request_the_api_server_took_is_not_written_again() {
    let mut h = Harness::new(HibernationAction::Hibernate, vec![pod("uid-1")]);
    h.pass();
    h.now = at(101);
    // The watch still shows the pod without our request: the write is known to have landed.
    assert!(!h.pass().iter().any(|s| matches!(s, Step::Pod(_))));
}

#[test]
fn a_recreated_target_pod_is_a_new_round_that_inherits_nothing() {
    let mut h = Harness::new(HibernationAction::Hibernate, vec![pod("uid-1")]);
    h.pass();
    // The pod is deleted and recreated under the same name before our request showed.
    h.pods = vec![pod("uid-2")];
    h.now = at(101);
    let steps = h.pass();
    assert!(
        steps.iter().any(|s| matches!(s, Step::Pod(_))),
        "the new pod never saw the request: write it again ({steps:?})"
    );
    let (key, _) = h.memory.round.clone().unwrap();
    assert_eq!(key.pod_uid.as_deref(), Some("uid-2"));
}

#[test]
fn a_completed_round_is_timed_from_its_own_start() {
    let mut h = Harness::new(HibernationAction::Hibernate, vec![pod("uid-1")]);
    h.pass();
    let mut done = hibernated(pod("uid-1"), 102);
    done.rare.hibernated_by = Some(NAME.into());
    h.pods = vec![done];
    h.snapshots = Snapshots::from([(VM.to_string(), contract::snapshot_value(VM))]);
    h.now = at(103);
    h.pass();
    assert_eq!(h.phase(), Some(HibernationPhase::Hibernated));
    assert_eq!(h.memory.finished_rounds.len(), 1);
    assert_eq!(h.memory.finished_rounds[0].0, RoundKind::Hibernate);
    assert_eq!(h.memory.finished_rounds[0].1, Duration::from_secs(3));
}

#[test]
fn a_deleted_hibernation_releases_its_finalizer_only_once_its_marker_is_gone() {
    let mut h = Harness::new(HibernationAction::Hibernate, vec![pod("uid-1")]);
    h.pass();
    h.hib.metadata.deletion_timestamp = Some(Time(at(110)));
    let mut marked = pod("uid-1");
    marked.hibernate_requested = true;
    marked.rare.hibernated_by = Some(NAME.into());
    h.pods = vec![marked];
    let steps = h.pass();
    assert!(steps.iter().any(|s| matches!(s, Step::Pod(_))), "marker removal first: {steps:?}");
    assert!(!steps.iter().any(|s| matches!(s, Step::SetFinalizers { .. })));
    // The last Hibernation naming the pod takes its target label away before it goes.
    let mut unmarked = pod("uid-1");
    unmarked.hibernate_requested = true;
    h.pods = vec![unmarked.clone()];
    let unlabel = h.pass();
    assert!(
        matches!(unlabel.as_slice(), [Step::Pod(HibAction::PatchPod { annotations, labels, .. })]
            if annotations.is_empty()
                && labels.get(contract::LABEL_HIBERNATION_TARGET) == Some(&None)),
        "{unlabel:?}"
    );
    unmarked.labels.clear();
    h.pods = vec![unmarked];
    h.hib.metadata.resource_version = Some("41".into());
    let release =
        |rv: &str| vec![Step::SetFinalizers { finalizers: vec![], guard: Some(rv.into()) }];
    assert_eq!(h.pass(), release("41"));
    // Woken again before the watch shows it gone: the same object is not released twice.
    assert_eq!(h.pass(), Vec::new());
    // A newer object that still holds our finalizer (the release did not stick) is released.
    h.hib.metadata.resource_version = Some("42".into());
    assert_eq!(h.pass(), release("42"));
}

#[test]
fn a_hibernation_released_behind_our_own_status_write_is_guarded_by_its_version_and_released_once()
{
    let mut h = Harness::new(HibernationAction::Hibernate, vec![pod("uid-1")]);
    h.pass();
    h.hib.metadata.deletion_timestamp = Some(Time(at(110)));
    h.hib.metadata.resource_version = Some("41".into());
    // Our status write on the object at 41 made 42; the watch still shows 41.
    let mut answer = h.hib.metadata.clone();
    answer.resource_version = Some("42".into());
    h.memory.own_write = Some(OwnWrite::new(&h.hib.metadata, &answer));
    let mut gone = pod("uid-1");
    gone.labels.clear();
    h.pods = vec![gone];
    let release =
        |rv: &str| vec![Step::SetFinalizers { finalizers: vec![], guard: Some(rv.into()) }];
    assert_eq!(h.pass(), release("42"));
    // Taken: neither the object at 41 nor ours at 42 is released again.
    assert_eq!(h.pass(), Vec::new());
    h.hib.metadata.resource_version = Some("42".into());
    assert_eq!(h.pass(), Vec::new());
    // Someone else's finalizer landed before our write: the view's version, and a 409.
    h.memory = HibMemory::default();
    h.hib.metadata.resource_version = Some("41".into());
    let mut theirs = answer.clone();
    theirs.finalizers = Some(vec![contract::FINALIZER_HIBERNATION.into(), "other/x".into()]);
    h.memory.own_write = Some(OwnWrite::new(&h.hib.metadata, &theirs));
    assert_eq!(h.pass(), release("41"));
}

#[test]
fn a_failed_status_write_backs_off_and_keeps_the_old_status_as_the_reference() {
    let mut h = Harness::new(HibernationAction::Hibernate, vec![pod("uid-1")]);
    let view = h.view();
    let mut memory = HibMemory::default();
    let planned =
        plan_hib_pass(&view, &mut memory, &crate::plan::fixtures::hibernation_settings(), h.now);
    let status_step =
        planned.pass.steps.iter().find(|s| matches!(s, Step::WriteStatus(_))).unwrap();
    let failed = Outcome::Failed { detail: "etcd timeout".into() };
    let backoff = Backoff::retry(Duration::from_secs(60));
    let recorded = record_hib(&mut memory, &view, status_step, &failed, backoff, h.now);
    assert_eq!(recorded.next, Next::Stop(Duration::from_secs(1)));
    assert!(memory.last_written.is_none());
    assert!(memory.retry.backing_off());
    h.memory = memory;
}

#[test]
fn a_woken_vm_replaced_unasked_is_said_in_status_and_a_warning_and_forgotten_by_the_next_round() {
    // Woken: Active with VM a.
    let mut woken = pod("uid-1");
    woken.vm_id = Some("a".into());
    let mut h = Harness::new(HibernationAction::Wake, vec![woken.clone()]);
    h.pass();
    h.pass();
    assert_eq!(h.phase(), Some(HibernationPhase::Active));
    // The provider puts VM b under the serving pod (vk-cocoon v0.1.x's second wake).
    h.pods[0].vm_id = Some("b".into());
    let steps = h.pass();
    let warned =
        steps.iter().any(|s| matches!(s, Step::Event(e) if e.warning && e.reason == "VMReplaced"));
    assert!(warned, "{steps:?}");
    let status = h.hib.status.clone().unwrap_or_default();
    assert_eq!(status.phase, Some(HibernationPhase::Active));
    assert!(status.message.as_deref().is_some_and(|m| m.contains("a -> b")), "{status:?}");
    let again = h.pass();
    assert!(!again.iter().any(|s| matches!(s, Step::Event(_))), "told once: {again:?}");
    // A new round (hibernate) lets it go.
    h.hib.spec.action = HibernationAction::Hibernate;
    h.hib.metadata.generation = Some(2);
    h.pods[0].hibernate_requested = true;
    h.pods[0].rare.hibernated_by = Some(NAME.into());
    h.pass();
    assert!(h.memory.replaced.is_none());
}

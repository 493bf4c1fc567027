//! The Hibernation actor's whole pass, pure: from the Hibernation, its target pod, the snapshot
//! entries, the competing Hibernations and the actor's bookkeeping ([`HibMemory`]) to the
//! ordered steps (finalizer, status first, Events, pod patches) and the next wake-up; and
//! [`record_hib`], which folds each executed step's outcome back into the bookkeeping.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::round::{RoundKey, RoundWitness, round_key, witness};
use super::{Competitor, HibAction, HibInput, HibernationSettings, plan_hibernation};
use crate::api::{Hibernation, HibernationPhase, HibernationStatus};
use crate::contract;
use crate::plan::PlanEvent;
use crate::plan::clock::since;
use crate::plan::observe::{PodView, Snapshots, owned};
use crate::plan::pass::{
    Backoff, Finalizer, Outcome, OwnWrite, Pass, Recorded, Retry, Step, forget_written_once_seen,
    released, released_under,
};
use crate::plan::replaced::{Replaced, VmWatch};

/// One step of a Hibernation pass.
pub type HibStep = Step<HibAction, HibernationStatus>;
/// The steps of a Hibernation pass.
pub type HibPass = Pass<HibAction, HibernationStatus>;

/// A round that completed, for the round-duration metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundKind {
    /// Hibernating → Hibernated.
    Hibernate,
    /// Waking → Active.
    Wake,
}

impl RoundKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hibernate => "hibernate",
            Self::Wake => "wake",
        }
    }
}

/// What the Hibernation actor remembers between passes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HibMemory {
    /// The round in flight and what this actor has seen of it so far.
    pub round: Option<(RoundKey, RoundWitness)>,
    /// The status this actor wrote last, until the watch shows it (then the stored status is
    /// the reference, and a status someone else wrote after it is put right).
    pub last_written: Option<Box<HibernationStatus>>,
    /// When this actor wrote the start of the round in flight (sub-second, for the metric).
    pub round_started: Option<Timestamp>,
    /// Rounds completed since the actor last took them (for the metric).
    pub finished_rounds: Vec<(RoundKind, Duration)>,
    /// Consecutive failed passes.
    pub retry: Retry,
    /// The resourceVersions of the Hibernation under which its release (our finalizer off) went
    /// through (the view's, and the guard's when that was our own status write's): a pass on
    /// either object, before the watch shows it gone, does not ask again.
    pub released: Vec<String>,
    /// What the API server answered to this actor's last status write.
    pub own_write: Option<OwnWrite>,
    /// The VM the target pod serves, to tell a replacement.
    pub vm_watch: VmWatch,
    /// A replacement of the pod's VM seen since the last round.
    pub replaced: Option<Replaced>,
    /// The VM whose `:hibernate` snapshot is to leave the registry (its wake completed).
    pub collect: Option<String>,
}

impl crate::plan::compact::Compact for HibMemory {
    fn compact(&mut self) {
        self.finished_rounds.compact();
        self.released.compact();
        self.vm_watch.compact();
    }
}

/// What one Hibernation actor sees.
#[derive(Clone, Copy, Debug)]
pub struct HibView<'a> {
    /// The Hibernation as last watched.
    pub hibernation: &'a Hibernation,
    /// Pods routed to the actor by name (normally only the target).
    pub pods: &'a [PodView],
    /// The pod name whose watch has listed once; while it is not the spec's target, "no pod"
    /// may only mean "not seen yet".
    pub listed: Option<&'a str>,
    /// Snapshot entries of the namespace.
    pub snapshots: &'a Snapshots,
    /// The dialect of the target pod's node (see [`HibInput::dialect`]).
    pub dialect: crate::contract::Dialect,
    /// The operator reaches the provider's snapshot registry.
    pub registry: bool,
    /// Every live Hibernation naming the same pod (this one included).
    pub competitors: &'a [Competitor],
}

impl HibView<'_> {
    fn name(&self) -> &str {
        self.hibernation.metadata.name.as_deref().unwrap_or_default()
    }

    /// The target pod; only the pod the spec names now is trusted.
    fn target(&self) -> Option<&PodView> {
        self.pods.iter().find(|p| p.name == self.hibernation.spec.pod_name)
    }

    fn stored(&self) -> HibernationStatus {
        self.hibernation.status.clone().unwrap_or_default()
    }
}

/// A planned pass and what the actor reports about it.
#[derive(Clone, Debug, PartialEq)]
pub struct HibPlanned {
    /// The steps.
    pub pass: HibPass,
    /// The status as of this pass.
    pub status: HibernationStatus,
    /// The target pod is in the view.
    pub has_pod: bool,
}

impl HibMemory {
    /// Accumulates what the view shows of the round in flight (a transition can only be told
    /// from several observations).
    fn observe(&mut self, previous: &HibernationStatus, view: &HibView<'_>) -> RoundWitness {
        match (witness(previous, view.name(), view.target(), view.snapshots), &self.round) {
            (Some((key, seen)), Some((known, so_far))) if *known == key => {
                let merged = so_far.merge(seen);
                self.round = Some((key, merged));
                merged
            }
            (Some((key, seen)), _) => {
                self.round = Some((key, seen));
                seen
            }
            (None, _) => {
                self.round = None;
                RoundWitness::default()
            }
        }
    }
}

fn empty(status: HibernationStatus, has_pod: bool) -> HibPlanned {
    HibPlanned { pass: Pass { steps: Vec::new(), wake_after: None }, status, has_pod }
}

/// Plans one pass of a Hibernation actor.
pub fn plan_hib_pass(
    view: &HibView<'_>,
    memory: &mut HibMemory,
    settings: &HibernationSettings,
    now: Timestamp,
) -> HibPlanned {
    let hib = view.hibernation;
    let stored = view.stored();
    forget_written_once_seen(&mut memory.last_written, &stored);
    let pod = view.target();
    // Until the target's watch has listed once, "no pod" only means "not seen yet"; the
    // listing wakes the actor. (This holds while deleting too: the marker must be found.)
    if view.listed != Some(hib.spec.pod_name.as_str()) {
        return empty(stored, pod.is_some());
    }
    let deleting = hib.metadata.deletion_timestamp.is_some();
    let finalizer =
        Finalizer::of(contract::FINALIZER_HIBERNATION, &hib.metadata, memory.own_write.as_ref());
    if deleting && (!finalizer.held() || released(&memory.released, &hib.metadata)) {
        return empty(stored, pod.is_some());
    }
    let mut steps: Vec<HibStep> = finalizer.hold().into_iter().collect();
    let previous = memory.last_written.as_deref().cloned().unwrap_or_else(|| stored.clone());
    let round_witness = memory.observe(&previous, view);
    let mut events = Vec::new();
    let awake = pod.filter(|p| !p.hibernate_requested && !p.hibernated);
    if awake.is_none() {
        memory.replaced = None; // a new round, or no pod: what was replaced is history
    }
    for replaced in memory.vm_watch.observe(pod) {
        events.push(PlanEvent::warning("VMReplaced", replaced.message()));
        memory.replaced = Some(replaced);
    }
    let plan = plan_hibernation(&HibInput {
        name: view.name(),
        generation: hib.metadata.generation,
        created: hib.metadata.creation_timestamp.as_ref().map(|t| t.0),
        spec: &hib.spec,
        status: &previous,
        pod,
        snapshots: view.snapshots,
        dialect: view.dialect,
        competitors: view.competitors,
        deleting,
        witness: round_witness,
        replaced: memory.replaced.as_ref(),
        settings,
        now,
    });
    if plan.release {
        // Our marker is off the pod; release the object without a last status write (it
        // would move the resourceVersion the finalizer patch is guarded by).
        steps.push(finalizer.release().0);
        return HibPlanned {
            pass: Pass { steps, wake_after: None },
            status: plan.status,
            has_pod: pod.is_some(),
        };
    }
    // Status first: the round's start time must be on record before the request is.
    if plan.status != stored && memory.last_written.as_deref() != Some(&plan.status) {
        steps.push(Step::WriteStatus(Box::new(plan.status.clone())));
    }
    steps.extend(events.into_iter().chain(plan.events).map(Step::Event));
    steps.extend(plan.actions.into_iter().map(Step::Pod));
    // A completed wake's snapshot, once the VM serves (not while hibernated again).
    if let (Some(vm), Some(p)) = (&memory.collect, pod)
        && p.is_serving()
        && !p.hibernate_requested
    {
        steps.push(Step::Pod(HibAction::CollectSnapshot { vm_name: vm.clone() }));
    }
    HibPlanned {
        pass: Pass { steps, wake_after: plan.requeue_after },
        status: plan.status,
        has_pod: pod.is_some(),
    }
}

/// Records the outcome of one executed step of a Hibernation pass. It reads no snapshot entries
/// (`view.snapshots`): the actor holds those only while it plans.
pub fn record_hib(
    memory: &mut HibMemory,
    view: &HibView<'_>,
    step: &HibStep,
    outcome: &Outcome,
    backoff: Backoff,
    now: Timestamp,
) -> Recorded {
    match (step, outcome) {
        (Step::WriteStatus(status), Outcome::Done) => {
            let before = memory.last_written.as_deref().cloned().unwrap_or_else(|| view.stored());
            let woke = before.phase == Some(HibernationPhase::Waking)
                && status.phase == Some(HibernationPhase::Active);
            let target = view.target();
            let cocoonstack = target.is_some_and(|p| {
                matches!(
                    p.dialect,
                    Some(crate::contract::Dialect::V02 | crate::contract::Dialect::Current)
                )
            });
            if woke && cocoonstack && view.registry {
                memory.collect = target.and_then(|p| owned(&p.vm_name));
            }
            note_transition(memory, &before, status, now);
            memory.last_written = Some(status.clone());
            Recorded::go_on()
        }
        (Step::Pod(HibAction::PatchPod { annotations, .. }), Outcome::Done)
            if !annotations.is_empty() =>
        {
            // The API server took the request: it is on the pod, whether or not the watch
            // shows it before a competing writer changes it again.
            let status = memory.last_written.as_deref().cloned().unwrap_or_else(|| view.stored());
            if let Some(key) = round_key(&status, view.target()) {
                let seen = RoundWitness { request_seen: true, pending_seen: false };
                let so_far = match &memory.round {
                    Some((known, w)) if *known == key => *w,
                    _ => RoundWitness::default(),
                };
                memory.round = Some((key, so_far.merge(seen)));
            }
            Recorded::go_on()
        }
        (Step::SetFinalizers { finalizers, guard }, Outcome::Done)
            if !finalizers.iter().any(|f| f == contract::FINALIZER_HIBERNATION) =>
        {
            memory.released = released_under(&view.hibernation.metadata, guard.as_ref());
            Recorded::go_on()
        }
        (Step::Pod(HibAction::CollectSnapshot { .. }), Outcome::Done | Outcome::NotFound) => {
            memory.collect = None;
            Recorded::go_on()
        }
        // The pod or the object went away meanwhile: the next pass sees it.
        (Step::Pod(_) | Step::SetFinalizers { .. }, Outcome::NotFound) => Recorded::go_on(),
        (Step::Event(_), _) => Recorded::go_on(),
        (_, other) => memory.retry.record(other, backoff),
    }
}

/// Remembers when a round started and times the one that just completed.
fn note_transition(
    memory: &mut HibMemory,
    before: &HibernationStatus,
    next: &HibernationStatus,
    now: Timestamp,
) {
    let finished = match (before.phase, next.phase) {
        (Some(HibernationPhase::Hibernating), Some(HibernationPhase::Hibernated)) => {
            Some(RoundKind::Hibernate)
        }
        (Some(HibernationPhase::Waking), Some(HibernationPhase::Active)) => Some(RoundKind::Wake),
        _ => None,
    };
    if let Some(kind) = finished {
        // Prefer our own sub-second start; after a restart only the status time (whole
        // seconds) is known.
        let started =
            memory.round_started.or_else(|| before.last_transition_time.as_ref().map(|t| t.0));
        if let Some(started) = started {
            memory.finished_rounds.push((kind, since(started, now)));
        }
    }
    let starts_round =
        matches!(next.phase, Some(HibernationPhase::Hibernating | HibernationPhase::Waking));
    if starts_round && next.phase != before.phase {
        memory.round_started = Some(now);
    } else if !starts_round {
        memory.round_started = None;
    }
}

#[cfg(test)]
#[path = "pass_tests.rs"]
mod tests;

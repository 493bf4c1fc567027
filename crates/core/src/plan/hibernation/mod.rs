//! The Hibernation (SPEC §3.4): hibernate or wake one pod without deleting it. A round
//! (hibernate or wake) starts by recording its start in status, then writing the request to the
//! pod; it completes only on signals observed after that start, and a reverse desire waits for
//! the round in flight ([`machine`]). [`round`] holds a round's identity, signals and patches;
//! [`label`] the target label that lets one watch see every named pod; [`pass`] the actor's
//! whole pass.

mod label;
pub mod machine;
pub mod pass;
pub mod round;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

pub use pass::{HibMemory, HibPlanned, HibStep, HibView, RoundKind, plan_hib_pass, record_hib};
pub use round::{RoundKey, RoundWitness, round_key, witness};

use super::PlanEvent;
use super::observe::{PodView, Snapshots};
use crate::api::conditions::{ConditionType, DesiredCondition, merge, wire_time};
use crate::api::{HibernationAction, HibernationPhase, HibernationSpec, HibernationStatus};
use crate::contract;

/// Operator-wide knobs of the Hibernation state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HibernationSettings {
    /// A hibernate round not complete after this long goes `Failed`.
    pub hibernate_timeout: Duration,
    /// A wake round not complete after this long goes `Failed`.
    pub wake_timeout: Duration,
    /// `pod-deletion-cost` of a hibernated pod.
    pub deletion_cost: i32,
    /// How long a timed-out round rests in `Failed` before it is retried.
    pub retry_after: Duration,
}

/// Why a Hibernation is `Failed`. Persisted as the reason of its `Ready` condition, so that a
/// restarted operator knows it without reading the message back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The target pod does not exist (recoverable: it may appear).
    PodMissing,
    /// The target pod this Hibernation acted on was removed (recoverable: a pod of that name
    /// may appear again).
    PodRemoved,
    /// An older Hibernation names the same pod and wins.
    Conflict,
    /// The round did not complete before its deadline; retried after a rest.
    Timeout,
    /// Another writer changed the pod's hibernate request during the round; retried only when
    /// the spec changes (retrying would fight that writer).
    Overridden,
}

impl FailureKind {
    /// The condition and Event reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::PodMissing => "PodMissing",
            Self::PodRemoved => "PodRemoved",
            Self::Conflict => "Conflict",
            Self::Timeout => "Timeout",
            Self::Overridden => "Overridden",
        }
    }

    /// The kind a `Ready` condition reason stands for.
    pub fn from_reason(reason: &str) -> Option<Self> {
        [Self::PodMissing, Self::PodRemoved, Self::Conflict, Self::Timeout, Self::Overridden]
            .into_iter()
            .find(|k| k.reason() == reason)
    }

    /// The failure recorded in a status, if it is `Failed`.
    pub fn of(status: &HibernationStatus) -> Option<Self> {
        if status.phase != Some(HibernationPhase::Failed) {
            return None;
        }
        status
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::Ready.as_str())
            .and_then(|c| Self::from_reason(&c.reason))
    }
}

/// Another Hibernation that names the same pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Competitor {
    /// Name of the other Hibernation.
    pub name: String,
    /// Its creationTimestamp: the oldest Hibernation wins.
    pub created: Option<Timestamp>,
}

/// Everything the Hibernation planner reads.
#[derive(Clone, Debug)]
pub struct HibInput<'a> {
    /// Name of the Hibernation; the value of the `cocoon.cis/hibernated-by` marker it writes.
    pub name: &'a str,
    /// The Hibernation's `metadata.generation`, recorded as `observedGeneration`.
    pub generation: Option<i64>,
    /// The Hibernation's creationTimestamp: the oldest of competing Hibernations wins.
    pub created: Option<Timestamp>,
    /// The desired action and target pod.
    pub spec: &'a HibernationSpec,
    /// The status last written, or the stored one.
    pub status: &'a HibernationStatus,
    /// The target pod, if it exists.
    pub pod: Option<&'a PodView>,
    /// Snapshot entries of the Hibernation's namespace.
    pub snapshots: &'a Snapshots,
    /// The dialect of the target pod's node: the keys written on a pod that carries none of
    /// its own yet.
    pub dialect: crate::contract::Dialect,
    /// Other live Hibernations naming the same pod.
    pub competitors: &'a [Competitor],
    /// The Hibernation has a deletionTimestamp.
    pub deleting: bool,
    /// What the actor saw of the pod during the round in flight (see [`witness`]).
    pub witness: RoundWitness,
    /// The pod's VM was replaced while it served, unasked, since the last round (see
    /// [`crate::plan::replaced`]); said in the status while the pod stays awake.
    pub replaced: Option<&'a crate::plan::replaced::Replaced>,
    /// Operator-wide timeouts and deletion cost.
    pub settings: &'a HibernationSettings,
    /// The current time (the planner has no clock).
    pub now: Timestamp,
}

/// A write to the target pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HibAction {
    /// Merge-patch these annotations and labels on the pod (`None` removes the key), in one
    /// request.
    PatchPod {
        /// The target pod.
        pod_name: String,
        /// Annotation key → new value; `None` removes the key.
        annotations: BTreeMap<String, Option<String>>,
        /// Label key → new value; `None` removes the key.
        labels: BTreeMap<String, Option<String>>,
    },
    /// Remove the woken VM's `<vm>:hibernate` from the provider's registry (cocoonstack):
    /// vk-cocoon never does, and a current provider would restore it into the next pod of
    /// that name.
    CollectSnapshot {
        /// The VM.
        vm_name: String,
    },
}

/// The planner's answer. The status must be persisted **before** the actions run: the round's
/// start time is what makes later signals trustworthy.
#[derive(Clone, Debug, PartialEq)]
pub struct HibPlan {
    /// The status to persist before the actions run.
    pub status: HibernationStatus,
    /// Writes to the target pod, in order.
    pub actions: Vec<HibAction>,
    /// Events to record on the Hibernation.
    pub events: Vec<PlanEvent>,
    /// Plan again after this long even without events (a deadline or a rest ends).
    pub requeue_after: Option<Duration>,
    /// Deleting, and the pod no longer carries our marker: the finalizer may go.
    pub release: bool,
}

pub(super) struct Builder<'a> {
    input: &'a HibInput<'a>,
    status: HibernationStatus,
    actions: Vec<HibAction>,
    events: Vec<PlanEvent>,
    requeue_after: Option<Duration>,
    /// Why the status is `Failed`, when this pass failed it.
    failure: Option<FailureKind>,
}

impl Builder<'_> {
    fn phase(&self) -> HibernationPhase {
        self.status.phase.unwrap_or_default()
    }

    /// Moves to `phase`; `lastTransitionTime` changes only when the phase does.
    fn set_phase(&mut self, phase: HibernationPhase, action: HibernationAction, message: String) {
        if self.status.phase != Some(phase) || self.status.last_transition_time.is_none() {
            self.status.last_transition_time = Some(wire_time(self.input.now));
            self.status.phase = Some(phase);
        }
        self.status.action = Some(action);
        self.status.message = (!message.is_empty()).then_some(message);
    }

    fn patch(&mut self, pod: &PodView, annotations: BTreeMap<String, Option<String>>) {
        if round::changes(pod, &annotations, self.input.dialect) {
            let labels = BTreeMap::new();
            self.actions.push(HibAction::PatchPod {
                pod_name: pod.name.to_string(),
                annotations,
                labels,
            });
        }
    }

    fn requeue(&mut self, d: Duration) {
        self.requeue_after = super::earliest(self.requeue_after, Some(d));
    }

    fn fail(&mut self, action: HibernationAction, kind: FailureKind, message: String) {
        if self.phase() != HibernationPhase::Failed
            || self.status.message.as_deref() != Some(&message)
        {
            self.events.push(PlanEvent::warning(kind.reason(), message.clone()));
        }
        self.set_phase(HibernationPhase::Failed, action, message);
        self.failure = Some(kind);
    }
}

/// Plans one pass for a Hibernation.
pub fn plan_hibernation(input: &HibInput<'_>) -> HibPlan {
    let mut b = Builder {
        input,
        status: input.status.clone(),
        actions: Vec::new(),
        events: Vec::new(),
        requeue_after: None,
        failure: None,
    };
    let desired = input.spec.action;
    let mut release = false;
    if input.deleting {
        // Leave the pod as it is; only our marker goes, so the owner's desired state governs.
        let unlabel = input.pod.is_some_and(|p| label::wants_target_label(input, p) == Some(false));
        match input.pod {
            Some(pod) if pod.rare.hibernated_by.as_deref() == Some(input.name) => {
                // The hibernate request stays; the deletion cost we raised goes back.
                let mut patch = BTreeMap::from([(contract::ANN_HIBERNATED_BY.to_string(), None)]);
                if let Some(previous) = &pod.rare.previous_deletion_cost {
                    let restored = (!previous.is_empty()).then(|| previous.to_string());
                    patch.insert(contract::ANN_POD_DELETION_COST.to_string(), restored);
                    patch.insert(contract::ANN_PREVIOUS_DELETION_COST.to_string(), None);
                }
                b.patch(pod, patch)
            }
            // The label goes first, by the last Hibernation naming the pod.
            _ => release = !unlabel,
        }
    } else if let Some(winner) = older_competitor(input) {
        b.fail(
            desired,
            FailureKind::Conflict,
            format!(
                "pod {} is already handled by Hibernation {winner} (the oldest wins)",
                input.spec.pod_name
            ),
        );
    } else {
        match input.pod {
            None => pod_missing(&mut b),
            Some(pod) => machine::step(&mut b, pod),
        }
    }
    if let Some(pod) = input.pod {
        label::label_target(&mut b, pod);
    }
    finish(b, release)
}

/// The oldest Hibernation naming a pod wins (ties broken by name).
fn older_competitor<'a>(input: &'a HibInput<'_>) -> Option<&'a str> {
    let me = (input.created, input.name);
    input
        .competitors
        .iter()
        .filter(|c| c.name != input.name)
        .filter(|c| match (c.created, me.0) {
            (Some(theirs), Some(mine)) => (theirs, c.name.as_str()) < (mine, me.1),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => c.name.as_str() < me.1,
        })
        .min_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)))
        .map(|c| c.name.as_str())
}

/// No pod of that name. One this Hibernation acted on before was removed (a Deployment
/// scale-down, a delete): it says so and keeps the snapshot reference while the entry exists;
/// a pod of that name appearing again resumes it.
fn pod_missing(b: &mut Builder<'_>) {
    let input = b.input;
    let pod = &input.spec.pod_name;
    let seen_before = b.status.vm_name.is_some();
    let (kind, message) = if seen_before {
        (
            FailureKind::PodRemoved,
            format!(
                "pod {pod} was removed (by its owner or a user); waiting for a pod of that name"
            ),
        )
    } else {
        (FailureKind::PodMissing, format!("pod {pod} not found"))
    };
    // A seed snapshot is kept while its entry exists; a registry snapshot is not watched
    // (the reference stays as it was).
    let kept = match input.dialect {
        crate::contract::Dialect::Seed => {
            b.status.vm_name.as_ref().and_then(|vm| input.snapshots.get(vm)).cloned()
        }
        _ => b.status.snapshot_ref.clone(),
    };
    b.fail(input.spec.action, kind, message);
    b.status.snapshot_ref = kept;
}

fn finish(mut b: Builder<'_>, release: bool) -> HibPlan {
    let input = b.input;
    b.status.observed_generation = input.generation;
    let phase = b.phase();
    if let Some(replaced) = input.replaced.filter(|_| phase == HibernationPhase::Active) {
        b.status.message.get_or_insert_with(|| replaced.message());
    }
    let done = matches!(
        (input.spec.action, phase),
        (HibernationAction::Hibernate, HibernationPhase::Hibernated)
            | (HibernationAction::Wake, HibernationPhase::Active)
    );
    // A failure keeps its kind until the phase moves on, also across passes that only rest.
    let failure = b
        .failure
        .or_else(|| FailureKind::of(&b.status).filter(|_| phase == HibernationPhase::Failed));
    let reason = match (phase, failure) {
        (HibernationPhase::Failed, Some(kind)) => kind.reason(),
        _ => phase.as_str(),
    };
    let desired = [DesiredCondition {
        type_: ConditionType::Ready,
        status: done,
        reason,
        message: b.status.message.clone().unwrap_or_default(),
    }];
    b.status.conditions = merge(&input.status.conditions, &desired, input.generation, input.now);
    HibPlan {
        status: b.status,
        actions: b.actions,
        events: b.events,
        requeue_after: b.requeue_after,
        release,
    }
}

#[cfg(test)]
mod tests;

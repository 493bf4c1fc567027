//! Hibernation planning: a state machine per SPEC §3.4. A round (hibernate or wake) starts by
//! recording its start in status, then writing the request to the pod; it completes only on
//! signals observed after that start, and a reverse desire waits for the round in flight.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::PlanEvent;
use super::observe::{PodView, Snapshots};
use crate::api::conditions::{DesiredCondition, merge, wire_time};
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
            .find(|c| c.type_ == "Ready")
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
    /// Other live Hibernations naming the same pod.
    pub competitors: &'a [Competitor],
    /// The Hibernation has a deletionTimestamp.
    pub deleting: bool,
    /// What the actor saw of the pod during the round in flight (see [`witness`]).
    pub witness: RoundWitness,
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

fn ts(t: &Time) -> Timestamp {
    t.0
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)).unwrap_or(t)
}

fn until(now: Timestamp, t: Timestamp) -> Duration {
    if t <= now { Duration::ZERO } else { now.duration_until(t).unsigned_abs() }
}

/// The pod carries the hibernate request and our marker.
fn requested_by_us(pod: &PodView, name: &str) -> bool {
    pod.hibernate_requested && pod.hibernated_by.as_deref() == Some(name)
}

/// Signal of the pod observed after `since` (whole seconds: the precision of the wire).
fn fresh(pod: &PodView, since: Timestamp) -> bool {
    pod.ready_changed_at.is_some_and(|t| t.as_second() >= since.as_second())
}

/// Identity of a round: what it does, when it started (as recorded in status), the spec
/// generation and the target pod (by UID) it was started for. A pod deleted and recreated
/// under the same name, or a new spec, is another round: nothing seen of the old one counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundKey {
    /// `Hibernating` or `Waking`.
    pub phase: HibernationPhase,
    /// The recorded start.
    pub started: Option<Time>,
    /// The generation the round was started for.
    pub generation: Option<i64>,
    /// The UID of the pod the round acts on.
    pub pod_uid: Option<String>,
}

/// What an actor accumulates about the round in flight, pass after pass (plan inputs are one
/// observation each; a transition can only be told from several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundWitness {
    /// The request was written successfully or seen on the pod during this round (so a later
    /// difference is someone else's write, not our lost one).
    pub request_seen: bool,
    /// The pod was seen not yet in the requested state at some point: a later "done" is a
    /// transition observed after the request, whatever the Ready condition's time says.
    pub pending_seen: bool,
}

impl RoundWitness {
    /// What either witness saw: each flag is set if it is set in either.
    pub fn merge(self, other: Self) -> Self {
        Self {
            request_seen: self.request_seen || other.request_seen,
            pending_seen: self.pending_seen || other.pending_seen,
        }
    }
}

/// The round in flight per `status` and what the current pod shows of it; `None` when no
/// round is in flight.
pub fn witness(
    status: &HibernationStatus,
    name: &str,
    pod: Option<&PodView>,
    snapshots: &Snapshots,
) -> Option<(RoundKey, RoundWitness)> {
    let key = round_key(status, pod)?;
    let phase = key.phase;
    let seen = |pod: &PodView| match phase {
        HibernationPhase::Hibernating => RoundWitness {
            request_seen: requested_by_us(pod, name),
            pending_seen: !hibernated_now(pod, snapshots),
        },
        HibernationPhase::Waking => RoundWitness {
            request_seen: !pod.hibernate_requested && pod.hibernated_by.as_deref() != Some(name),
            pending_seen: !active_now(pod, snapshots),
        },
        _ => RoundWitness::default(),
    };
    Some((key, pod.map(seen).unwrap_or_default()))
}

/// The round in flight per `status` on `pod`; `None` when no round is in flight.
pub fn round_key(status: &HibernationStatus, pod: Option<&PodView>) -> Option<RoundKey> {
    let phase = status.phase?;
    matches!(phase, HibernationPhase::Hibernating | HibernationPhase::Waking).then(|| RoundKey {
        phase,
        started: status.last_transition_time.clone(),
        generation: status.observed_generation,
        pod_uid: pod.and_then(|p| p.uid.clone()),
    })
}

fn snapshot_of<'s>(pod: &PodView, snapshots: &'s Snapshots) -> Option<&'s String> {
    pod.vm_name.as_ref().and_then(|vm| snapshots.get(vm))
}

fn hibernated_now(pod: &PodView, snapshots: &Snapshots) -> bool {
    pod.hibernate_requested && pod.reports_hibernated() && snapshot_of(pod, snapshots).is_some()
}

/// Awake and serving. A snapshot entry may outlive the round that wrote it (a delete or a
/// restore leaves one behind), so it says nothing here; freshness comes from the round.
fn active_now(pod: &PodView, _snapshots: &Snapshots) -> bool {
    !pod.hibernate_requested && pod.is_serving()
}

/// Annotations that ask for hibernation, mark the pod as ours and raise its deletion cost.
fn hibernate_patch(pod: &PodView, name: &str, cost: i32) -> BTreeMap<String, Option<String>> {
    let mut a = BTreeMap::from([
        (contract::ANN_HIBERNATE.to_string(), contract::hibernate_value(true)),
        (contract::ANN_HIBERNATED_BY.to_string(), Some(name.to_string())),
        (contract::ANN_POD_DELETION_COST.to_string(), Some(cost.to_string())),
    ]);
    // Remember the previous cost once; a repeated patch must not stash our own value.
    if pod.previous_deletion_cost.is_none() {
        a.insert(
            contract::ANN_PREVIOUS_DELETION_COST.to_string(),
            Some(pod.deletion_cost.clone().unwrap_or_default()),
        );
    }
    a
}

/// Annotations that ask for a wake, drop our marker and restore the previous deletion cost.
fn wake_patch(pod: &PodView) -> BTreeMap<String, Option<String>> {
    let mut a = BTreeMap::from([
        (contract::ANN_HIBERNATE.to_string(), None),
        (contract::ANN_HIBERNATED_BY.to_string(), None),
    ]);
    if let Some(previous) = &pod.previous_deletion_cost {
        let restored = (!previous.is_empty()).then(|| previous.clone());
        a.insert(contract::ANN_POD_DELETION_COST.to_string(), restored);
        a.insert(contract::ANN_PREVIOUS_DELETION_COST.to_string(), None);
    }
    a
}

/// Whether `patch` would change anything on `pod`.
fn changes(pod: &PodView, patch: &BTreeMap<String, Option<String>>) -> bool {
    patch.iter().any(|(k, v)| {
        let current = match k.as_str() {
            contract::ANN_HIBERNATE => contract::hibernate_value(pod.hibernate_requested),
            contract::ANN_HIBERNATED_BY => pod.hibernated_by.clone(),
            contract::ANN_POD_DELETION_COST => pod.deletion_cost.clone(),
            contract::ANN_PREVIOUS_DELETION_COST => pod.previous_deletion_cost.clone(),
            _ => None,
        };
        &current != v
    })
}

struct Builder<'a> {
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
        if changes(pod, &annotations) {
            let labels = BTreeMap::new();
            self.actions.push(HibAction::PatchPod {
                pod_name: pod.name.clone(),
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
        let unlabel = input.pod.is_some_and(|p| wants_target_label(input, p) == Some(false));
        match input.pod {
            Some(pod) if pod.hibernated_by.as_deref() == Some(input.name) => {
                // The hibernate request stays; the deletion cost we raised goes back.
                let mut patch = BTreeMap::from([(contract::ANN_HIBERNATED_BY.to_string(), None)]);
                if let Some(previous) = &pod.previous_deletion_cost {
                    let restored = (!previous.is_empty()).then(|| previous.clone());
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
            Some(pod) => step(&mut b, pod),
        }
    }
    if let Some(pod) = input.pod {
        label_target(&mut b, pod);
    }
    finish(b, release)
}

/// Whether the pod must carry the target label (`Some(true)`), lose it (`Some(false)`), or is
/// as it must be. Every live Hibernation naming a pod keeps it labelled, so that one label
/// watch sees every named pod; the last one deleted takes the label away.
fn wants_target_label(input: &HibInput<'_>, pod: &PodView) -> Option<bool> {
    let labelled = pod.labels.get(contract::LABEL_HIBERNATION_TARGET).map(String::as_str)
        == Some(contract::HIBERNATION_TARGET_VALUE);
    let others = input.competitors.iter().any(|c| c.name != input.name);
    let want = !input.deleting || others;
    let present = pod.labels.contains_key(contract::LABEL_HIBERNATION_TARGET);
    if pod.terminating {
        None
    } else if want && !labelled {
        Some(true)
    } else if !want && present {
        Some(false)
    } else {
        None
    }
}

/// Whether the view of the pod predates the request of the round in flight: the API server
/// took our request (the witness says so) but the pod does not show it yet. That request
/// carried the target label if the pod lacked it, so a missing label says nothing yet; once the
/// view shows the request, a missing label is someone else's doing and is put back.
fn view_predates_our_request(input: &HibInput<'_>, pod: &PodView) -> bool {
    let visible = match input.status.phase {
        Some(HibernationPhase::Hibernating) => requested_by_us(pod, input.name),
        Some(HibernationPhase::Waking) => {
            !pod.hibernate_requested && pod.hibernated_by.as_deref() != Some(input.name)
        }
        _ => return false,
    };
    input.witness.request_seen && !visible
}

/// Adds the target label's change to the pass: into the pod patch the pass makes anyway (one
/// request), or as a patch of its own.
fn label_target(b: &mut Builder<'_>, pod: &PodView) {
    let Some(want) = wants_target_label(b.input, pod) else { return };
    if want && view_predates_our_request(b.input, pod) {
        return; // our request labelled it; the watch has not shown that yet
    }
    let value = want.then(|| contract::HIBERNATION_TARGET_VALUE.to_string());
    let labels = BTreeMap::from([(contract::LABEL_HIBERNATION_TARGET.to_string(), value)]);
    match b.actions.iter_mut().find_map(|a| match a {
        HibAction::PatchPod { pod_name, labels, .. } if *pod_name == pod.name => Some(labels),
        _ => None,
    }) {
        Some(existing) => existing.extend(labels),
        None => b.actions.push(HibAction::PatchPod {
            pod_name: pod.name.clone(),
            annotations: BTreeMap::new(),
            labels,
        }),
    }
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
    let kept = b.status.vm_name.as_ref().and_then(|vm| input.snapshots.get(vm)).cloned();
    b.fail(input.spec.action, kind, message);
    b.status.snapshot_ref = kept;
}

fn step(b: &mut Builder<'_>, pod: &PodView) {
    let input = b.input;
    let settings = input.settings;
    let snapshots = input.snapshots;
    b.status.vm_name = pod.vm_name.clone();
    let in_flight = match (b.phase(), b.status.action) {
        (HibernationPhase::Hibernating, _) => Some(HibernationAction::Hibernate),
        (HibernationPhase::Waking, _) => Some(HibernationAction::Wake),
        _ => None,
    };
    // 1. A round in flight finishes (or times out) before anything else, even a reverse desire.
    if let Some(action) = in_flight {
        let started = b.status.last_transition_time.as_ref().map(ts).unwrap_or(input.now);
        let (done, timeout) = match action {
            HibernationAction::Hibernate => {
                (hibernated_now(pod, snapshots), settings.hibernate_timeout)
            }
            HibernationAction::Wake => (active_now(pod, snapshots), settings.wake_timeout),
        };
        // Stale signals never complete a round: the state must have been reached after the
        // request (the Ready condition changed since, or we saw it pending first).
        let done = done && (fresh(pod, started) || input.witness.pending_seen);
        let request_now = match action {
            HibernationAction::Hibernate => requested_by_us(pod, input.name),
            HibernationAction::Wake => {
                !pod.hibernate_requested && pod.hibernated_by.as_deref() != Some(input.name)
            }
        };
        let overridden = input.witness.request_seen && !request_now;
        let deadline = after(started, timeout);
        if done {
            complete(b, pod, action);
            return;
        } else if input.now >= deadline {
            let (kind, why) = if overridden {
                let why = format!(
                    ": another writer changed the pod's {} annotation during the round (a suspended \
                     or resumed CocoonSet?)",
                    contract::ANN_HIBERNATE
                );
                (FailureKind::Overridden, why)
            } else {
                (FailureKind::Timeout, String::new())
            };
            b.fail(
                action,
                kind,
                format!(
                    "{} of pod {} did not complete within {}s{why}",
                    action.as_str(),
                    pod.name,
                    timeout.as_secs()
                ),
            );
            b.requeue(settings.retry_after);
            return;
        } else {
            // Re-assert the request only while it was never seen on the pod (our write was
            // lost or is not visible yet). Once seen, a difference is another writer's: fighting
            // it would flip the VM back and forth (LESSON 2); the round times out instead.
            if !input.witness.request_seen {
                let patch = match action {
                    HibernationAction::Hibernate => {
                        hibernate_patch(pod, input.name, settings.deletion_cost)
                    }
                    HibernationAction::Wake => wake_patch(pod),
                };
                b.patch(pod, patch);
            }
            b.requeue(until(input.now, deadline));
            return;
        }
    }
    // 2. Settled: start a round when the desired state is not the observed one.
    let phase = b.phase();
    if phase == HibernationPhase::Failed {
        let changed_spec = b.status.observed_generation != input.generation;
        let failed_at = b.status.last_transition_time.as_ref().map(ts).unwrap_or(input.now);
        let rested = input.now >= after(failed_at, settings.retry_after);
        // A failed round looks again: a pod that reached the wanted state by other means (or
        // late) is reported below, without a new round.
        let reached = match input.spec.action {
            HibernationAction::Hibernate => hibernated_now(pod, snapshots),
            HibernationAction::Wake => active_now(pod, snapshots),
        };
        let request_on_pod = match input.spec.action {
            HibernationAction::Hibernate => requested_by_us(pod, input.name),
            HibernationAction::Wake => !pod.hibernate_requested,
        };
        match FailureKind::of(input.status) {
            _ if reached || changed_spec => {}
            // Retrying would only fight that writer again; a spec change retries.
            Some(FailureKind::Overridden) => return,
            // Our request is still on the pod: keep waiting for the provider without writes.
            Some(FailureKind::Timeout) if request_on_pod => return,
            Some(FailureKind::Timeout) if !rested => {
                b.requeue(until(input.now, after(failed_at, settings.retry_after)));
                return;
            }
            _ => {}
        }
    }
    match input.spec.action {
        HibernationAction::Hibernate => {
            if hibernated_now(pod, snapshots) {
                // Already hibernated (e.g. by a suspended set): adopt it, no round needed.
                b.patch(pod, hibernate_patch(pod, input.name, settings.deletion_cost));
                complete(b, pod, HibernationAction::Hibernate);
            } else if phase == HibernationPhase::Hibernated && requested_by_us(pod, input.name) {
                // Still hibernated as far as we know; nothing to do.
            } else {
                start(b, pod, HibernationAction::Hibernate);
            }
        }
        HibernationAction::Wake => {
            let settled = phase == HibernationPhase::Active
                && b.status.observed_generation == input.generation;
            if settled {
                // Woken as asked. Acting again without a spec change would fight whoever
                // hibernated the pod since (a suspended CocoonSet).
            } else if active_now(pod, snapshots) {
                b.patch(pod, wake_patch(pod));
                complete(b, pod, HibernationAction::Wake);
            } else {
                start(b, pod, HibernationAction::Wake);
            }
        }
    }
}

fn start(b: &mut Builder<'_>, pod: &PodView, action: HibernationAction) {
    let input = b.input;
    let (phase, patch, timeout, reason) = match action {
        HibernationAction::Hibernate => (
            HibernationPhase::Hibernating,
            hibernate_patch(pod, input.name, input.settings.deletion_cost),
            input.settings.hibernate_timeout,
            "Hibernating",
        ),
        HibernationAction::Wake => {
            (HibernationPhase::Waking, wake_patch(pod), input.settings.wake_timeout, "Waking")
        }
    };
    // A fresh round always gets a fresh deadline, even when retried from Failed.
    b.status.phase = None;
    b.set_phase(phase, action, String::new());
    b.status.snapshot_ref = None;
    b.events.push(PlanEvent::normal(
        reason,
        format!("{} of pod {} requested", action.as_str(), pod.name),
    ));
    b.patch(pod, patch);
    b.requeue(timeout);
}

fn complete(b: &mut Builder<'_>, pod: &PodView, action: HibernationAction) {
    let (phase, reason) = match action {
        HibernationAction::Hibernate => (HibernationPhase::Hibernated, "Hibernated"),
        HibernationAction::Wake => (HibernationPhase::Active, "Woken"),
    };
    if b.phase() != phase {
        b.events.push(PlanEvent::normal(reason, format!("pod {} is {}", pod.name, phase.as_str())));
    }
    b.set_phase(phase, action, String::new());
    b.status.snapshot_ref = match action {
        HibernationAction::Hibernate => snapshot_of(pod, b.input.snapshots).cloned(),
        HibernationAction::Wake => None,
    };
    // A reverse desire that waited for this round starts right away.
    if b.input.spec.action != action {
        start(b, pod, b.input.spec.action);
    }
}

fn finish(mut b: Builder<'_>, release: bool) -> HibPlan {
    let input = b.input;
    b.status.observed_generation = input.generation;
    let phase = b.phase();
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
        type_: "Ready",
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

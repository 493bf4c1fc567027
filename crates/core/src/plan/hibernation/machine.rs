//! The Hibernation state machine (SPEC §3.4): where the Hibernation is ([`State`], from its
//! status), what one pass does about it ([`Move`], from the state, the pod and the spec), and
//! the writes and status each move makes. A round in flight finishes (or times out) before
//! anything else, even a reverse desire; completion needs a signal newer than the request.

use k8s_openapi::jiff::Timestamp;

use super::round::{
    active_now, fresh, hibernate_patch, hibernated_now, requested_by_us, snapshot_of, wake_patch,
};
use super::{Builder, FailureKind, HibInput};
use crate::api::{HibernationAction, HibernationPhase, HibernationStatus};
use crate::plan::PlanEvent;
use crate::plan::clock::{after, until};
use crate::plan::observe::{PodView, owned};

/// Where a Hibernation is, as its status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// A round is in flight since `started` (its recorded start).
    InFlight {
        /// What the round does.
        action: HibernationAction,
        /// When it started.
        started: Timestamp,
    },
    /// The last round failed at `at`, for `kind` when the status says it.
    Failed {
        /// Why, as recorded in the `Ready` condition.
        kind: Option<FailureKind>,
        /// When it failed.
        at: Timestamp,
    },
    /// No round in flight: `Pending`, `Hibernated` or `Active`.
    Settled(HibernationPhase),
}

impl State {
    /// The state `status` records; a missing time counts as `now`.
    pub fn of(status: &HibernationStatus, now: Timestamp) -> Self {
        let phase = status.phase.unwrap_or_default();
        let at = status.last_transition_time.as_ref().map(|t| t.0).unwrap_or(now);
        match phase {
            HibernationPhase::Hibernating => {
                Self::InFlight { action: HibernationAction::Hibernate, started: at }
            }
            HibernationPhase::Waking => {
                Self::InFlight { action: HibernationAction::Wake, started: at }
            }
            HibernationPhase::Failed => Self::Failed { kind: FailureKind::of(status), at },
            other => Self::Settled(other),
        }
    }
}

/// What one pass does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    /// The round in flight reached its state after the request: it completes (and a reverse
    /// desire that waited for it starts).
    Complete(HibernationAction),
    /// The round in flight passed its deadline: `Failed` for `kind`, retried after a rest.
    Expire {
        /// What the round did.
        action: HibernationAction,
        /// `Timeout`, or `Overridden` when another writer changed the request during it.
        kind: FailureKind,
    },
    /// The round in flight waits for the provider until `deadline`; the request is written
    /// again only while it was never seen on the pod (once seen, a difference is another
    /// writer's: fighting it would flip the VM back and forth, LESSON 2).
    Wait {
        /// What the round does.
        action: HibernationAction,
        /// Write the request again.
        reassert: bool,
        /// When it times out.
        deadline: Timestamp,
    },
    /// A timed-out round rests until `until` before it is retried.
    Rest {
        /// When the rest ends.
        until: Timestamp,
    },
    /// A failed round is left as it is: another writer overrode it (a spec change retries), or
    /// our request is still on the pod and the provider may yet answer (no writes).
    Hold,
    /// The pod already is as the spec asks (by other means, or late): report it, no round.
    Adopt(HibernationAction),
    /// Start a round.
    Start(HibernationAction),
    /// Settled as asked: nothing to do. Acting again without a spec change would fight whoever
    /// changed the pod since (a suspended CocoonSet).
    Stay,
}

/// Whether the pod is in the state `action` asks for.
fn reached(action: HibernationAction, pod: &PodView, input: &HibInput<'_>) -> bool {
    match action {
        HibernationAction::Hibernate => hibernated_now(pod, input.snapshots),
        HibernationAction::Wake => active_now(pod),
    }
}

/// Whether the pod carries the request of `action`, as this Hibernation writes it.
fn request_on_pod(action: HibernationAction, pod: &PodView, name: &str) -> bool {
    match action {
        HibernationAction::Hibernate => requested_by_us(pod, name),
        HibernationAction::Wake => {
            !pod.hibernate_requested && pod.rare.hibernated_by.as_deref() != Some(name)
        }
    }
}

fn timeout(action: HibernationAction, input: &HibInput<'_>) -> std::time::Duration {
    match action {
        HibernationAction::Hibernate => input.settings.hibernate_timeout,
        HibernationAction::Wake => input.settings.wake_timeout,
    }
}

/// The move of one pass from `state`, given the pod and the spec.
pub fn decide(state: State, pod: &PodView, input: &HibInput<'_>) -> Move {
    let wanted = input.spec.action;
    let phase = match state {
        State::InFlight { action, started } => {
            // Stale signals never complete a round: the state must have been reached after the
            // request (the Ready condition changed since, or we saw it pending first).
            let done =
                reached(action, pod, input) && (fresh(pod, started) || input.witness.pending_seen);
            let deadline = after(started, timeout(action, input));
            return if done {
                Move::Complete(action)
            } else if input.now >= deadline {
                let overridden =
                    input.witness.request_seen && !request_on_pod(action, pod, input.name);
                let kind = if overridden { FailureKind::Overridden } else { FailureKind::Timeout };
                Move::Expire { action, kind }
            } else {
                Move::Wait { action, reassert: !input.witness.request_seen, deadline }
            };
        }
        State::Failed { kind, at } => {
            // A failed round looks again: a pod that reached the wanted state by other means
            // (or late) is reported, without a new round; a new spec retries.
            let changed_spec = input.status.observed_generation != input.generation;
            if !(reached(wanted, pod, input) || changed_spec) {
                let rest_until = after(at, input.settings.retry_after);
                match kind {
                    Some(FailureKind::Overridden) => return Move::Hold,
                    Some(FailureKind::Timeout) if request_on_pod(wanted, pod, input.name) => {
                        return Move::Hold;
                    }
                    Some(FailureKind::Timeout) if input.now < rest_until => {
                        return Move::Rest { until: rest_until };
                    }
                    _ => {}
                }
            }
            HibernationPhase::Failed
        }
        State::Settled(phase) => phase,
    };
    match wanted {
        HibernationAction::Hibernate if hibernated_now(pod, input.snapshots) => {
            // Already hibernated (e.g. by a suspended set): adopt it.
            Move::Adopt(wanted)
        }
        HibernationAction::Hibernate
            if phase == HibernationPhase::Hibernated && requested_by_us(pod, input.name) =>
        {
            Move::Stay
        }
        HibernationAction::Wake
            if phase == HibernationPhase::Active
                && input.status.observed_generation == input.generation =>
        {
            Move::Stay
        }
        HibernationAction::Wake if active_now(pod) => Move::Adopt(wanted),
        _ => Move::Start(wanted),
    }
}

/// Plans the pass for the pod the Hibernation names.
pub(super) fn step(b: &mut Builder<'_>, pod: &PodView) {
    b.status.vm_name = owned(&pod.vm_name);
    let state = State::of(&b.status, b.input.now);
    match decide(state, pod, b.input) {
        Move::Complete(action) => complete(b, pod, action),
        Move::Expire { action, kind } => {
            let why = match kind {
                FailureKind::Overridden => format!(
                    ": another writer changed the pod's {} annotation during the round (a \
                     suspended or resumed CocoonSet?)",
                    pod.keys(b.input.dialect).hibernate
                ),
                _ => String::new(),
            };
            let message = format!(
                "{} of pod {} did not complete within {}s{why}",
                action.as_str(),
                pod.name,
                timeout(action, b.input).as_secs()
            );
            b.fail(action, kind, message);
            b.requeue(b.input.settings.retry_after);
        }
        Move::Wait { action, reassert, deadline } => {
            if reassert {
                let patch = request_patch(b.input, pod, action);
                b.patch(pod, patch);
            }
            b.requeue(until(b.input.now, deadline));
        }
        Move::Rest { until: end } => b.requeue(until(b.input.now, end)),
        Move::Hold | Move::Stay => {}
        Move::Adopt(action) => {
            let patch = request_patch(b.input, pod, action);
            b.patch(pod, patch);
            complete(b, pod, action);
        }
        Move::Start(action) => start(b, pod, action),
    }
}

/// The pod patch that asks for `action`.
fn request_patch(
    input: &HibInput<'_>,
    pod: &PodView,
    action: HibernationAction,
) -> std::collections::BTreeMap<String, Option<String>> {
    match action {
        HibernationAction::Hibernate => {
            hibernate_patch(pod, input.name, input.settings.deletion_cost, input.dialect)
        }
        HibernationAction::Wake => wake_patch(pod, input.dialect),
    }
}

fn start(b: &mut Builder<'_>, pod: &PodView, action: HibernationAction) {
    let phase = match action {
        HibernationAction::Hibernate => HibernationPhase::Hibernating,
        HibernationAction::Wake => HibernationPhase::Waking,
    };
    // A fresh round always gets a fresh deadline, even when retried from Failed.
    b.status.phase = None;
    b.set_phase(phase, action, String::new());
    b.status.snapshot_ref = None;
    b.events.push(PlanEvent::normal(
        phase.as_str(),
        format!("{} of pod {} requested", action.as_str(), pod.name),
    ));
    let patch = request_patch(b.input, pod, action);
    b.patch(pod, patch);
    b.requeue(timeout(action, b.input));
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
        HibernationAction::Hibernate => snapshot_of(pod, b.input.snapshots),
        HibernationAction::Wake => None,
    };
    // A reverse desire that waited for this round starts right away.
    if b.input.spec.action != action {
        start(b, pod, b.input.spec.action);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_read_from_the_status_phase_and_its_transition_time() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let now = Timestamp::from_second(2_000).unwrap();
        let at = Timestamp::from_second(1_000).unwrap();
        let status = |phase| HibernationStatus {
            phase: Some(phase),
            last_transition_time: Some(Time(at)),
            ..Default::default()
        };
        assert_eq!(
            State::of(&status(HibernationPhase::Hibernating), now),
            State::InFlight { action: HibernationAction::Hibernate, started: at }
        );
        assert_eq!(
            State::of(&status(HibernationPhase::Waking), now),
            State::InFlight { action: HibernationAction::Wake, started: at }
        );
        assert_eq!(
            State::of(&status(HibernationPhase::Failed), now),
            State::Failed { kind: None, at }
        );
        assert_eq!(
            State::of(&HibernationStatus::default(), now),
            State::Settled(HibernationPhase::Pending)
        );
    }
}

//! Standard `metav1.Condition` handling: a condition's `lastTransitionTime` moves only when its
//! status changes, so rewriting an unchanged status never churns.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The condition types this operator writes; their wire spelling lives here only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The resource is as asked: a CocoonSet `Running`, a Hibernation's action complete. Also
    /// the Pod condition vk-cocoon reports for a VM that serves.
    Ready,
    /// A CocoonSet is `Pending`, `Scaling` or `Suspending` (False with reason
    /// [`SUSPEND_DEADLINE_EXCEEDED`] once a suspend waits past its deadline).
    Progressing,
    /// A CocoonSet is `Suspended`.
    Suspended,
    /// A sub-agent asked to fork booted from the image instead.
    ForkFellBack,
    /// `hibernatePolicy: release`: every agent pod is deleted, its VM waiting in its snapshot.
    Released,
    /// A CocoonSet's node is NotReady or gone from the cluster (naming the node and its VMs).
    NodeLost,
}

impl ConditionType {
    /// The type as spelled on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Progressing => "Progressing",
            Self::Suspended => "Suspended",
            Self::ForkFellBack => "ForkFellBack",
            Self::Released => "Released",
            Self::NodeLost => "NodeLost",
        }
    }

    /// The condition of this type in `conditions`, if any.
    pub fn find(self, conditions: &[Condition]) -> Option<&Condition> {
        conditions.iter().find(|c| c.type_ == self.as_str())
    }

    /// Whether `conditions` hold this type with status `True`.
    pub fn is_true(self, conditions: &[Condition]) -> bool {
        self.find(conditions).is_some_and(|c| c.status == "True")
    }
}

/// The `Progressing` reason of a CocoonSet past its suspend deadline with pods that did not
/// report hibernated (the condition is False; its message names them), as a Deployment's
/// `ProgressDeadlineExceeded`.
pub const SUSPEND_DEADLINE_EXCEEDED: &str = "SuspendDeadlineExceeded";

/// A condition the planner wants, before it is merged with what the object already carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    /// Condition type.
    pub type_: ConditionType,
    /// Whether the condition holds (`True` or `False` on the wire).
    pub status: bool,
    /// CamelCase reason, from a bounded set.
    pub reason: &'static str,
    /// Human-readable detail; may be empty.
    pub message: String,
}

/// Truncates to whole seconds, the precision `metav1.Time` keeps on the wire.
pub fn wire_time(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Merges desired conditions with the previous list, keeping `lastTransitionTime` for every
/// condition whose status did not change.
pub fn merge(
    previous: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" }.to_string();
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == d.type_.as_str() && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| wire_time(now));
            Condition {
                type_: d.type_.as_str().to_string(),
                status,
                reason: d.reason.to_string(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: bool) -> DesiredCondition {
        DesiredCondition {
            type_: ConditionType::Ready,
            status,
            reason: "R",
            message: String::new(),
        }
    }

    #[test]
    fn last_transition_time_is_kept_while_status_is_unchanged() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let first = merge(&[], &[ready(true)], Some(1), t0);
        let second = merge(&first, &[ready(true)], Some(2), t1);
        assert_eq!(second[0].last_transition_time, wire_time(t0));
        let third = merge(&second, &[ready(false)], Some(2), t1);
        assert_eq!(third[0].last_transition_time, wire_time(t1));
    }
}

//! Pure planning core: from values (spec, observed pods, snapshot entries, the current time
//! passed in) to values (pod actions, status). No I/O, no clock, no async: everything that
//! decides is here and is tested without a cluster.
//!
//! One folder per resource ([`cocoon_set`], [`hibernation`]), each holding its planner, its
//! status and its actor pass; beside them what both share: the pod view ([`observe`]), the
//! expectations of in-flight writes, the pass skeleton ([`pass`]: steps, outcomes, retries,
//! finalizers), the clock arithmetic and a small sorted map.

pub mod clock;
pub mod cocoon_set;
pub mod compact;
pub mod expectations;
pub mod hibernation;
pub mod nodes;
pub mod observe;
pub mod pass;
pub mod replaced;
pub mod vec_map;

pub use cocoon_set::{
    PodAction, SetInput, SetMemory, SetPlan, SetPlanned, SetSettings, SetStep, SetView,
    plan_cocoon_set, plan_set_pass, record_set,
};
pub use compact::Compact;
pub use expectations::Expectations;
pub use hibernation::{
    HibAction, HibInput, HibMemory, HibPlan, HibPlanned, HibStep, HibView, HibernationSettings,
    plan_hib_pass, plan_hibernation, record_hib,
};
pub use nodes::{NodeInfo, NodeSeen, Nodes};
pub use observe::{Labels, Lineage, PodRole, PodView, Snapshots};
pub use pass::{
    Backoff, Next, Outcome, OwnWrite, Pass, Recorded, RejectKind, Retry, Step, finalizer_guard,
};
pub use vec_map::VecMap;

use std::time::Duration;

/// An Event the planner wants recorded on the object it planned for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanEvent {
    /// `Warning` when a person should look; otherwise `Normal`.
    pub warning: bool,
    /// CamelCase reason, bounded set.
    pub reason: &'static str,
    /// Human-readable message of the Event.
    pub message: String,
}

impl PlanEvent {
    /// A `Normal` Event.
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Self { warning: false, reason, message: message.into() }
    }
    /// A `Warning` Event: a person should look.
    pub fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Self { warning: true, reason, message: message.into() }
    }
}

/// The earliest of two optional requeue delays.
pub fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod fixtures;

//! Pure planning core: from values (spec, observed pods, snapshot entries, the current time
//! passed in) to values (pod actions, status). No I/O, no clock, no async: everything that
//! decides is here and is tested without a cluster.

pub mod cocoon_set;
pub mod expectations;
pub mod hib_pass;
pub mod hibernation;
pub mod idle;
pub mod observe;
pub mod pass;
pub mod pods;
pub mod set_pass;
pub mod set_status;
pub mod vec_map;

pub use cocoon_set::{PodAction, SetInput, SetPlan, plan_cocoon_set};
pub use expectations::Expectations;
pub use hib_pass::{HibMemory, HibPlanned, HibStep, HibView, plan_hib_pass, record_hib};
pub use hibernation::{HibAction, HibInput, HibPlan, HibernationSettings, plan_hibernation};
pub use observe::{Labels, PodRole, PodView, Snapshots};
pub use pass::{
    Backoff, Next, Outcome, OwnWrite, Pass, Recorded, RejectKind, Retry, Step, finalizer_guard,
};
pub use set_pass::{
    SetMemory, SetPlanned, SetSettings, SetStep, SetView, plan_set_pass, record_set,
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
mod cocoon_set_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod hibernation_tests;
#[cfg(test)]
mod other_writers_tests;
#[cfg(test)]
mod pod_builder_tests;
#[cfg(test)]
mod properties;

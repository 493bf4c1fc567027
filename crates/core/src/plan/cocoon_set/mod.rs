//! The CocoonSet: from its spec, the pods it owns and the snapshot entries to the ordered pod
//! writes of SPEC §3.3 ([`pod_writes`]), the status they lead to ([`status`]) and the Events
//! worth telling ([`events`]); [`pass`] wraps that in the actor's whole pass and folds each
//! write's outcome back into its bookkeeping.

pub mod actions;
mod events;
pub mod idle;
pub mod migration;
pub mod pass;
pub mod placement;
mod pod_writes;
pub mod pods;
pub mod slots;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

pub use actions::{DeleteReason, PodAction};
pub use pass::{SetMemory, SetPlanned, SetSettings, SetStep, SetView, plan_set_pass, record_set};
pub use pods::{Provider, SetIdentity};
pub use slots::SuspendView;

use super::PlanEvent;
use super::expectations::Expectations;
use super::observe::{PodView, Snapshots};
use crate::api::{CocoonSetSpec, CocoonSetStatus};

/// Everything the CocoonSet planner reads.
#[derive(Clone, Debug)]
pub struct SetInput<'a> {
    /// Namespace, name and UID of the set.
    pub set: &'a SetIdentity,
    /// The set's `metadata.generation`, recorded as `observedGeneration`.
    pub generation: Option<i64>,
    /// The set's desired state.
    pub spec: &'a CocoonSetSpec,
    /// The status last written (or the stored one): the base of conditions, transition Events
    /// and the addresses static toolboxes reported.
    pub previous_status: &'a CocoonSetStatus,
    /// Pods whose controller ownerReference is this set.
    pub pods: &'a [PodView],
    /// The provider of the set's node: its dialect, CPU class and the node.
    pub provider: Provider,
    /// Where the set's pods go, and what is wrong with that node.
    pub placement: &'a placement::Placement,
    /// A move of the set to another node, this pass's part of it.
    pub migration: &'a migration::Migration,
    /// The dialect of the set's node (`provider.dialect`).
    pub dialect: crate::contract::Dialect,
    /// Pods of the set on a node of another dialect than the set's node (or carrying another
    /// dialect's keys): why the set is refused, until they are gone.
    pub mixed: Option<String>,
    /// The operator reaches the provider's snapshot registry (`--registry`).
    pub registry: bool,
    /// VMs whose snapshot is being looked for in the registry: their pods wait.
    pub probing: &'a BTreeSet<String>,
    /// The registry's last answer to this set, when it failed (said in status).
    pub registry_problem: Option<&'a str>,
    /// The set's VMs whose hibernation snapshot is recorded, by VM name: the namespace's
    /// snapshot entries (seed), or the `<vm>:hibernate` snapshots a cocoonstack provider
    /// reported pushed (a pod that reports hibernated, or one the status recorded).
    pub snapshots: &'a Snapshots,
    /// The namespace's snapshot ConfigMap exists. vk-cocoon (seed) creates it on the first
    /// hibernation in the namespace, racily: of two first hibernations at once one loses its
    /// entry (and a wake would boot that VM from its image). Until it exists, one pod at a time
    /// is asked to hibernate.
    pub snapshot_record: bool,
    /// Creates and deletes this actor issued that the view does not show yet.
    pub expectations: &'a Expectations,
    /// Pod names that must not be created before the given time (backoff after a terminal pod
    /// was deleted, or after a create hit a pod of the same name that is not ours).
    pub not_before: &'a BTreeMap<String, Timestamp>,
    /// Names whose create answered `AlreadyExists` with a pod that is not ours.
    pub name_conflicts: &'a BTreeSet<String>,
    /// The set has a deletionTimestamp: tear down in order.
    pub deleting: bool,
    /// The set is being deleted with `propagationPolicy: Orphan` (`kubectl delete
    /// --cascade=orphan`): every pod is kept; the garbage collector removes their
    /// ownerReferences and the pods leave the view.
    pub orphan: bool,
    /// What this actor knows of the suspend in progress.
    pub suspend: SuspendView<'a>,
    /// Sub-agents seen fallen back to the image, by pod UID: the VM id the main served then.
    pub fell_back_under: &'a BTreeMap<String, String>,
    /// Pods whose VM the provider replaced while they served, unasked (said in status).
    pub replaced: &'a BTreeMap<String, crate::plan::replaced::Replaced>,
    /// A failure the actor could not get past (e.g. the API server rejected a pod).
    pub failure: Option<&'a str>,
    /// The current time (the planner has no clock).
    pub now: Timestamp,
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct SetPlan {
    /// Pod writes, in the order they must be executed.
    pub actions: Vec<PodAction>,
    /// The status as it will be once the actions are executed; written only if it changed.
    pub status: CocoonSetStatus,
    /// Events to record on the set.
    pub events: Vec<PlanEvent>,
    /// Plan again after this long even without events (a backoff ends).
    pub requeue_after: Option<Duration>,
    /// Deleting and every pod is gone: the teardown finalizer may be removed.
    pub teardown_complete: bool,
}

/// Plans one pass for a CocoonSet: the pod writes first, then the status as it will be once
/// they are executed (what they create is in flight), then the Events of that change.
pub fn plan_cocoon_set(input: &SetInput<'_>) -> SetPlan {
    let (actions, requeue_after) = pod_writes::plan_writes(input);
    let mut after_pass = input.expectations.clone();
    for action in actions.iter().filter(|a| a.is_create()) {
        after_pass.expect_create(action.pod_name(), input.now);
    }
    let by_name: BTreeMap<&str, &PodView> =
        input.pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let status = status::compute_status(&status::StatusInput {
        set: input.set,
        generation: input.generation,
        spec: input.spec,
        previous: input.previous_status,
        pods: &by_name,
        snapshots: input.snapshots,
        expectations: &after_pass,
        name_conflicts: input.name_conflicts,
        pending_actions: &actions,
        deleting: input.deleting,
        suspend: input.suspend,
        replaced: input.replaced,
        failure: input.failure,
        mixed: input.mixed.as_deref(),
        placement: input.placement,
        migration: input.migration,
        registry_problem: input.registry_problem,
        registry: input.registry,
        dialect: input.dialect,
        now: input.now,
    });
    let mut events = events::transition_events(input.previous_status, &status, input.deleting);
    events.extend(events::resume_of_released(input));
    SetPlan {
        actions,
        // A create still in flight will land a pod: not complete until it did and went.
        teardown_complete: input.deleting
            && input.pods.is_empty()
            && input.expectations.pending_creates().next().is_none(),
        status,
        events,
        // Said once no scheduler looked at a pod for a while: a timer, never a poll.
        requeue_after: crate::plan::earliest(
            requeue_after,
            placement::scheduler_silence(input.pods.iter(), input.now).1,
        ),
    }
}

#[cfg(test)]
mod dialect_tests;
#[cfg(test)]
mod other_writers_tests;
#[cfg(test)]
mod pods_tests;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

//! A Hibernation's round (a hibernate or a wake): its identity, what an actor has seen of it,
//! the signals that it is done, and the pod patches that ask for it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{HibernationPhase, HibernationStatus};
use crate::contract::{self, Dialect};
use crate::plan::observe::{PodView, Snapshots, owned};

/// The pod carries the hibernate request and our marker.
pub(super) fn requested_by_us(pod: &PodView, name: &str) -> bool {
    pod.hibernate_requested && pod.rare.hibernated_by.as_deref() == Some(name)
}

/// Signal of the pod observed after `since` (whole seconds: the precision of the wire).
pub(super) fn fresh(pod: &PodView, since: Timestamp) -> bool {
    pod.signal_since(since)
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
            request_seen: !pod.hibernate_requested
                && pod.rare.hibernated_by.as_deref() != Some(name),
            pending_seen: !active_now(pod),
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
        pod_uid: pod.and_then(|p| owned(&p.uid)),
    })
}

/// The snapshot the pod's VM hibernated into, as its provider names it: the ConfigMap entry
/// (seed), or the registry reference `<vm>:hibernate` (cocoonstack).
pub(super) fn snapshot_of(pod: &PodView, snapshots: &Snapshots) -> Option<String> {
    let vm = pod.vm_name.as_ref()?;
    match pod.dialect {
        Some(Dialect::V02 | Dialect::Current) => {
            Some(contract::dialect::snapshot_tag(vm, contract::dialect::TAG_HIBERNATE))
        }
        Some(Dialect::Seed) | None => snapshots.get(vm.as_str()).cloned(),
    }
}

/// Hibernated as requested. A seed provider also records the snapshot in the namespace's
/// ConfigMap (what a wake restores from); a cocoonstack provider reports hibernated only after
/// it pushed the snapshot to its registry.
pub(super) fn hibernated_now(pod: &PodView, snapshots: &Snapshots) -> bool {
    let recorded = match pod.dialect {
        Some(Dialect::V02 | Dialect::Current) => true,
        Some(Dialect::Seed) | None => {
            pod.vm_name.as_ref().is_some_and(|vm| snapshots.contains_key(vm.as_str()))
        }
    };
    pod.hibernate_requested && pod.reports_hibernated() && recorded
}

/// Awake and serving. A snapshot entry may outlive the round that wrote it (a delete or a
/// restore leaves one behind), so it says nothing here; freshness comes from the round.
pub(super) fn active_now(pod: &PodView) -> bool {
    !pod.hibernate_requested && pod.is_serving()
}

/// Annotations that ask for hibernation, mark the pod as ours and raise its deletion cost.
pub(super) fn hibernate_patch(
    pod: &PodView,
    name: &str,
    cost: i32,
    dialect: Dialect,
) -> BTreeMap<String, Option<String>> {
    let mut a = pod.toggle(true, dialect);
    a.insert(contract::ANN_HIBERNATED_BY.to_string(), Some(name.to_string()));
    a.insert(contract::ANN_POD_DELETION_COST.to_string(), Some(cost.to_string()));
    // Remember the previous cost once; a repeated patch must not stash our own value.
    if pod.rare.previous_deletion_cost.is_none() {
        a.insert(
            contract::ANN_PREVIOUS_DELETION_COST.to_string(),
            Some(pod.rare.deletion_cost.as_deref().unwrap_or_default().to_string()),
        );
    }
    a
}

/// Annotations that ask for a wake, drop our marker and restore the previous deletion cost.
pub(super) fn wake_patch(pod: &PodView, dialect: Dialect) -> BTreeMap<String, Option<String>> {
    let mut a = pod.toggle(false, dialect);
    a.insert(contract::ANN_HIBERNATED_BY.to_string(), None);
    if let Some(previous) = &pod.rare.previous_deletion_cost {
        let restored = (!previous.is_empty()).then(|| previous.to_string());
        a.insert(contract::ANN_POD_DELETION_COST.to_string(), restored);
        a.insert(contract::ANN_PREVIOUS_DELETION_COST.to_string(), None);
    }
    a
}

/// Whether `patch` would change anything on `pod` (the generation stamp a toggle carries
/// aside: it only rides with a change).
pub(super) fn changes(
    pod: &PodView,
    patch: &BTreeMap<String, Option<String>>,
    dialect: Dialect,
) -> bool {
    let keys = pod.keys(dialect);
    patch.iter().any(|(k, v)| {
        let current = match k.as_str() {
            k if k == keys.hibernate => contract::hibernate_value(pod.hibernate_requested),
            k if Some(k) == keys.generation => return false,
            contract::ANN_HIBERNATED_BY => owned(&pod.rare.hibernated_by),
            contract::ANN_POD_DELETION_COST => owned(&pod.rare.deletion_cost),
            contract::ANN_PREVIOUS_DELETION_COST => owned(&pod.rare.previous_deletion_cost),
            _ => None,
        };
        &current != v
    })
}

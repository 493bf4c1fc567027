//! Slot arithmetic and suspend bookkeeping shared by the CocoonSet pod writes and its status:
//! which slots are warm, and whether a pod's hibernated report is newer than our request.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::CocoonSetSpec;
use crate::contract;
use crate::plan::observe::PodView;

/// What the actor knows of a suspend in progress: when it asked each pod to hibernate (a pod
/// counts as hibernated only on a report newer than the request), since when it suspends, and
/// how long pods may take before the status names them.
#[derive(Clone, Copy, Debug)]
pub struct SuspendView<'a> {
    /// When this actor's request to hibernate went through, per pod.
    pub asked: &'a BTreeMap<String, Timestamp>,
    /// When this actor first saw the set suspended.
    pub since: Option<Timestamp>,
    /// How long pods may take to report hibernated before the status names them.
    pub timeout: Duration,
}

impl SuspendView<'_> {
    /// Whether the pod's last report is no older than this actor's request to hibernate it
    /// ([`PodView::signal_since`]: the seed's Ready transition, whole seconds). A pod never
    /// asked is fresh: the request predates this actor.
    pub fn fresh(&self, pod: &PodView) -> bool {
        match self.asked.get(pod.name.as_str()) {
            Some(asked) => pod.signal_since(*asked),
            None => true,
        }
    }
}

/// The warm slots of `spec`: replicas+1..=replicas+warm.
pub fn warm_slots(spec: &CocoonSetSpec) -> std::ops::RangeInclusive<u32> {
    let replicas = u32::try_from(spec.agent.replicas).unwrap_or(0);
    let warm = u32::try_from(spec.agent.warm).unwrap_or(0);
    (replicas + 1)..=(replicas + warm)
}

/// Whether the pod named `name` is a warm sub-agent of set `set`.
pub fn is_warm_pod(spec: &CocoonSetSpec, set: &str, name: &str) -> bool {
    name.strip_prefix(set)
        .and_then(|s| s.strip_prefix('-'))
        .and_then(contract::parse_slot)
        .is_some_and(|slot| warm_slots(spec).contains(&slot))
}

//! The target label: every live Hibernation naming a pod keeps it labelled
//! `cocoon.cis/hibernation-target`, so that one label watch sees every named pod; the last one
//! deleted takes the label away.

use std::collections::BTreeMap;

use super::round::requested_by_us;
use super::{Builder, HibAction, HibInput};
use crate::api::HibernationPhase;
use crate::contract;
use crate::plan::observe::PodView;

/// Whether the pod must carry the target label (`Some(true)`), lose it (`Some(false)`), or is
/// as it must be. Every live Hibernation naming a pod keeps it labelled, so that one label
/// watch sees every named pod; the last one deleted takes the label away.
pub(super) fn wants_target_label(input: &HibInput<'_>, pod: &PodView) -> Option<bool> {
    let labelled = pod.labels.get(contract::LABEL_HIBERNATION_TARGET).map(|v| v.as_str())
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
            !pod.hibernate_requested && pod.rare.hibernated_by.as_deref() != Some(input.name)
        }
        _ => return false,
    };
    input.witness.request_seen && !visible
}

/// Adds the target label's change to the pass: into the pod patch the pass makes anyway (one
/// request), or as a patch of its own.
pub(super) fn label_target(b: &mut Builder<'_>, pod: &PodView) {
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
            pod_name: pod.name.to_string(),
            annotations: BTreeMap::new(),
            labels,
        }),
    }
}

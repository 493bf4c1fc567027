//! CocoonSet planning: from the spec and the observed pods to the ordered pod actions of
//! SPEC §3.3 (create the main first, fork sub-agents from it once it serves, scale down highest
//! slot first, toolboxes, suspend/resume, terminal pods, ordered teardown).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::expectations::Expectations;
use super::observe::{PodRole, PodView, Snapshots};
use super::pods::{AgentKind, SetIdentity, agent_pod, pod_labels, toolbox_pod};
use super::set_status::{StatusInput, compute_status};
use super::{PlanEvent, earliest};
use crate::api::{CocoonSetSpec, CocoonSetStatus};
use crate::contract;

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
    /// Snapshot entries of the set's namespace.
    pub snapshots: &'a Snapshots,
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
    /// A failure the actor could not get past (e.g. the API server rejected a pod).
    pub failure: Option<&'a str>,
    /// The current time (the planner has no clock).
    pub now: Timestamp,
}

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

/// Why a pod is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// Its slot is above `replicas`.
    ScaleDown,
    /// Its toolbox is no longer listed.
    ToolboxRemoved,
    /// It reached Failed or Succeeded; it is recreated after it is gone.
    Terminal,
    /// The set is being deleted.
    Teardown,
    /// The set is suspended with `hibernatePolicy: release`: the pod's VM is hibernated and
    /// its snapshot entry exists; the pod is recreated (and restores) on resume.
    Released,
    /// A sub-agent booted from the image instead of forking, and `onForkFallback: recreate`
    /// asks for it to be forked anew now that the main serves again.
    ForkFellBack,
}

impl DeleteReason {
    /// The reason as spelled in the delete's Event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaleDown => "ScaleDown",
            Self::ToolboxRemoved => "ToolboxRemoved",
            Self::Terminal => "Terminal",
            Self::Teardown => "Teardown",
            Self::ForkFellBack => "ForkFellBack",
            Self::Released => "Released",
        }
    }
}

/// One write to a pod, in the order the actor must execute them.
#[derive(Clone, Debug, PartialEq)]
pub enum PodAction {
    /// Create the main agent (slot 0).
    CreateMain {
        /// The complete pod to create.
        pod: Box<Pod>,
    },
    /// Create sub-agent `slot`, forked from the main VM.
    CreateSubAgent {
        /// Its slot, in 1..=replicas.
        slot: u32,
        /// VM name of the main agent.
        fork_from: String,
        /// The complete pod to create.
        pod: Box<Pod>,
    },
    /// Create a toolbox.
    CreateToolbox {
        /// Name of the toolbox, as in the spec.
        toolbox: String,
        /// The complete pod to create.
        pod: Box<Pod>,
    },
    /// Delete a pod (with its normal grace period), guarded by its UID so that a replacement
    /// of the same name is never deleted.
    Delete {
        /// The pod.
        pod_name: String,
        /// Its UID as viewed.
        uid: Option<String>,
        /// Why.
        reason: DeleteReason,
        /// Its phase as shown in status when the delete was decided (for the Event).
        was: &'static str,
    },
    /// Put back the operator's labels a user changed or removed (`None` removes a label).
    RepairLabels {
        /// The pod.
        pod_name: String,
        /// Its UID as viewed.
        uid: Option<String>,
        /// The labels to merge-patch.
        labels: BTreeMap<String, Option<String>>,
    },
    /// Set `cocoon.cis/snapshot-policy: never` on a pod about to be deleted, so that vk-cocoon
    /// keeps no snapshot of it: the pod that replaces it must not restore this VM.
    DiscardOnDelete {
        /// The pod.
        pod_name: String,
    },
    /// Set (`true`) or remove (`false`) `cocoon.cis/hibernate` on a pod.
    SetHibernate {
        /// The pod.
        pod_name: String,
        /// `true` sets the annotation, `false` removes it.
        hibernate: bool,
    },
}

impl PodAction {
    /// The pod this action writes.
    pub fn pod_name(&self) -> &str {
        match self {
            Self::CreateMain { pod }
            | Self::CreateSubAgent { pod, .. }
            | Self::CreateToolbox { pod, .. } => pod.metadata.name.as_deref().unwrap_or_default(),
            Self::Delete { pod_name, .. }
            | Self::SetHibernate { pod_name, .. }
            | Self::DiscardOnDelete { pod_name }
            | Self::RepairLabels { pod_name, .. } => pod_name,
        }
    }

    /// Whether the action creates a pod.
    pub fn is_create(&self) -> bool {
        matches!(
            self,
            Self::CreateMain { .. } | Self::CreateSubAgent { .. } | Self::CreateToolbox { .. }
        )
    }
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

/// Plans one pass for a CocoonSet.
pub fn plan_cocoon_set(input: &SetInput<'_>) -> SetPlan {
    let mut actions = Vec::new();
    let mut requeue_after = None;
    let by_name: BTreeMap<&str, &PodView> =
        input.pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let deleting_now = |p: &PodView| p.terminating || input.expectations.delete_pending(&p.name);

    if input.deleting && input.orphan {
        // Keep every pod: the garbage collector orphans them and they leave the view.
    } else if input.deleting {
        actions.extend(teardown(input, &deleting_now));
    } else {
        actions.extend(deletions(input, &deleting_now));
        let deleted: BTreeSet<String> = actions.iter().map(|a| a.pod_name().to_string()).collect();
        // A pod deleted in this pass needs no hibernate toggle.
        let gone_or_going = |p: &PodView| deleting_now(p) || deleted.contains(&p.name);
        // Toggles before creates: a scale-up into warm slots wakes them before the pool's
        // refill forks are sent (a pass writes one step at a time).
        actions.extend(hibernate_toggles(input, &gone_or_going));
        if !input.spec.suspend {
            let (creates, wait) = creates(input, &by_name);
            actions.extend(creates);
            requeue_after = earliest(requeue_after, wait);
        }
        actions.extend(label_repairs(input, &gone_or_going));
    }

    // A suspend that is not overdue yet: look again at its deadline (no event may come).
    if input.spec.suspend
        && !input.deleting
        && let Some(since) = input.suspend.since
    {
        let deadline = since
            .checked_add(
                SignedDuration::try_from(input.suspend.timeout).unwrap_or(SignedDuration::MAX),
            )
            .unwrap_or(since);
        if deadline > input.now {
            requeue_after =
                earliest(requeue_after, Some(input.now.duration_until(deadline).unsigned_abs()));
        }
    }

    // The status shows the pass as executed: what it creates is in flight.
    let mut after_pass = input.expectations.clone();
    for action in actions.iter().filter(|a| a.is_create()) {
        after_pass.expect_create(action.pod_name(), input.now);
    }
    let status = compute_status(&StatusInput {
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
        failure: input.failure,
        now: input.now,
    });
    let mut events = transition_events(input.previous_status, &status, input.deleting);
    events.extend(resume_of_released(input));
    SetPlan {
        actions,
        // A create still in flight will land a pod: not complete until it did and went.
        teardown_complete: input.deleting
            && input.pods.is_empty()
            && input.expectations.pending_creates().next().is_none(),
        status,
        events,
        requeue_after,
    }
}

/// Slots above `replicas` (highest first), toolboxes no longer listed, and terminal pods.
fn deletions(input: &SetInput<'_>, deleting_now: &dyn Fn(&PodView) -> bool) -> Vec<PodAction> {
    let replicas = *warm_slots(input.spec).end();
    let listed: BTreeSet<String> = input
        .spec
        .toolboxes
        .iter()
        .map(|t| contract::toolbox_pod_name(&input.set.name, &t.name))
        .collect();
    let mut scale_down: Vec<(u32, &PodView)> = Vec::new();
    let mut others = Vec::new();
    let main_name = contract::agent_pod_name(&input.set.name, 0);
    let main = input.pods.iter().find(|p| p.name == main_name && !deleting_now(p));
    for pod in input.pods.iter().filter(|p| !deleting_now(p)) {
        if releasable(input, pod) {
            others.push(delete(pod, DeleteReason::Released));
            continue;
        }
        if refork(input, main, pod) {
            // Without a snapshot on delete: the replacement would restore this VM, not fork.
            others.push(PodAction::DiscardOnDelete { pod_name: pod.name.clone() });
            others.push(delete(pod, DeleteReason::ForkFellBack));
            continue;
        }
        match (pod.role, pod.slot) {
            (Some(PodRole::SubAgent), Some(slot)) if slot > replicas => {
                scale_down.push((slot, pod))
            }
            (Some(PodRole::Toolbox), _) if !listed.contains(&pod.name) => {
                others.push(delete(pod, DeleteReason::ToolboxRemoved))
            }
            _ if pod.is_terminal() => others.push(delete(pod, DeleteReason::Terminal)),
            _ => {}
        }
    }
    scale_down.sort_by_key(|(slot, _)| std::cmp::Reverse(*slot));
    scale_down.into_iter().map(|(_, p)| delete(p, DeleteReason::ScaleDown)).chain(others).collect()
}

/// The warm slots of `spec`: replicas+1..=replicas+warm.
pub(crate) fn warm_slots(spec: &CocoonSetSpec) -> std::ops::RangeInclusive<u32> {
    let replicas = u32::try_from(spec.agent.replicas).unwrap_or(0);
    let warm = u32::try_from(spec.agent.warm).unwrap_or(0);
    (replicas + 1)..=(replicas + warm)
}

/// Whether the pod named `name` is a warm sub-agent of set `set`.
pub(crate) fn is_warm_pod(spec: &CocoonSetSpec, set: &str, name: &str) -> bool {
    name.strip_prefix(set)
        .and_then(|s| s.strip_prefix('-'))
        .and_then(contract::parse_slot)
        .is_some_and(|slot| warm_slots(spec).contains(&slot))
}

/// `hibernatePolicy: release` on a suspended set: a pod goes once its VM reports hibernated
/// for this suspend and its snapshot entry exists, never before (no VM without a snapshot is
/// deleted). Only clone-mode VMs: vk-cocoon restores those from their entry when recreated (a
/// run-mode toolbox would boot fresh, so it is kept). A pod a Hibernation holds is the user's.
pub(crate) fn releasable(input: &SetInput<'_>, pod: &PodView) -> bool {
    let fresh = match input.suspend.asked.get(&pod.name) {
        Some(asked) => pod.ready_changed_at.is_some_and(|t| t.as_second() >= asked.as_second()),
        None => true,
    };
    let warm = pod.slot.is_some_and(|s| warm_slots(input.spec).contains(&s));
    (input.spec.suspend || warm)
        && input.spec.hibernate_policy == crate::api::HibernatePolicy::Release
        && pod.mode.as_deref() == Some(crate::api::ToolboxMode::Clone.as_str())
        && pod.hibernate_requested
        && pod.reports_hibernated()
        && fresh
        && pod.hibernated_by.is_none()
        && pod.vm_name.as_ref().is_some_and(|vm| input.snapshots.contains_key(vm))
}

/// `onForkFallback: recreate`: a sub-agent that booted from the image is deleted (and then
/// recreated, forking) once the main serves again, that is, when the main's Ready transition is
/// newer than the sub-agent's pod. A fork that fell back while the main served throughout is
/// reported and left alone: retrying it against the same main could loop.
fn refork(input: &SetInput<'_>, main: Option<&PodView>, pod: &PodView) -> bool {
    let Some(main) = main else { return false };
    input.spec.agent.on_fork_fallback == crate::api::ForkFallbackPolicy::Recreate
        && !input.spec.suspend
        && pod.fork_fell_back()
        && pod.hibernated_by.is_none()
        && main.is_serving()
        && matches!((pod.created_at, main.ready_changed_at), (Some(created), Some(ready)) if created < ready)
}

fn delete(pod: &PodView, reason: DeleteReason) -> PodAction {
    PodAction::Delete {
        pod_name: pod.name.clone(),
        uid: pod.uid.clone(),
        reason,
        was: super::set_status::vm_phase(Some(pod), false),
    }
}

/// Missing pods to create, and how long until a backoff allows the next one.
fn creates(
    input: &SetInput<'_>,
    by_name: &BTreeMap<&str, &PodView>,
) -> (Vec<PodAction>, Option<Duration>) {
    let mut out = Vec::new();
    let mut wait = None;
    // A name is free when no pod holds it (a terminating pod still does), no create is in
    // flight, and no backoff is running.
    let mut free = |name: &str| -> bool {
        if by_name.contains_key(name) || input.expectations.create_pending(name) {
            return false;
        }
        match input.not_before.get(name) {
            Some(t) if *t > input.now => {
                let left = input.now.duration_until(*t).unsigned_abs();
                wait = earliest(wait, Some(left));
                false
            }
            _ => true,
        }
    };
    let set = input.set;
    let main_name = contract::agent_pod_name(&set.name, 0);
    if free(&main_name) {
        out.push(PodAction::CreateMain {
            pod: Box::new(agent_pod(set, input.spec, 0, &AgentKind::Main)),
        });
    }
    // Sub-agents fork from the main VM: only once the main serves and its VM name is known.
    let main_vm =
        by_name.get(main_name.as_str()).filter(|m| m.is_serving()).and_then(|m| m.vm_name.clone());
    if let Some(fork_from) = main_vm {
        let warm = warm_slots(input.spec);
        let release = input.spec.hibernate_policy == crate::api::HibernatePolicy::Release;
        for slot in 1..=*warm.end() {
            // A released warm slot waits in its snapshot entry until a scale-up needs it.
            let vm = contract::agent_vm_name(&set.namespace, &set.name, slot);
            if warm.contains(&slot) && release && input.snapshots.contains_key(&vm) {
                continue;
            }
            if free(&contract::agent_pod_name(&set.name, slot)) {
                let kind = AgentKind::SubAgent { fork_from: fork_from.clone() };
                out.push(PodAction::CreateSubAgent {
                    slot,
                    fork_from: fork_from.clone(),
                    pod: Box::new(agent_pod(set, input.spec, slot, &kind)),
                });
            }
        }
    }
    for toolbox in &input.spec.toolboxes {
        if free(&contract::toolbox_pod_name(&set.name, &toolbox.name)) {
            let reported = input.previous_status.toolboxes.iter().find(|t| t.name == toolbox.name);
            out.push(PodAction::CreateToolbox {
                toolbox: toolbox.name.clone(),
                pod: Box::new(toolbox_pod(set, input.spec, toolbox, reported)),
            });
        }
    }
    (out, wait)
}

/// Suspend: ask every non-static pod to hibernate. Resume: wake only the pods the set
/// hibernated, never a pod a Hibernation holds.
fn hibernate_toggles(
    input: &SetInput<'_>,
    deleting_now: &dyn Fn(&PodView) -> bool,
) -> Vec<PodAction> {
    input
        .pods
        .iter()
        .filter(|p| !deleting_now(p) && !p.is_terminal() && !p.is_static())
        .filter_map(|p| {
            // A warm slot is hibernated once its fork serves; scaled up, it is woken.
            let warm = p.role == Some(PodRole::SubAgent)
                && p.slot.is_some_and(|s| warm_slots(input.spec).contains(&s));
            let hibernated = input.spec.suspend || warm;
            let want = if input.spec.suspend {
                !p.hibernate_requested
            } else if warm {
                !p.hibernate_requested && p.is_serving()
            } else {
                p.hibernate_requested && p.hibernated_by.is_none()
            };
            // A toggle that went through and that the view does not show yet is not sent
            // again (the view lags our writes).
            let in_flight = input.expectations.toggle_pending(&p.name, hibernated);
            (want && !in_flight).then(|| PodAction::SetHibernate {
                pod_name: p.name.clone(),
                hibernate: hibernated,
            })
        })
        .collect()
}

/// Labels are the operator's: a pod whose labels someone changed gets them back (its identity
/// comes from its name and controller, so the edit never moved it to another slot).
fn label_repairs(input: &SetInput<'_>, gone: &dyn Fn(&PodView) -> bool) -> Vec<PodAction> {
    input
        .pods
        .iter()
        // A pod that left the label watch is probed even while its delete is pending: the
        // watch cannot show it going, the API server's answer to the patch does.
        .filter(|p| !gone(p) || !p.labels.contains_key(contract::LABEL_COCOONSET))
        .filter_map(|p| {
            let role = p.role?;
            let want = pod_labels(&input.set.name, role, p.slot);
            let mut patch: BTreeMap<String, Option<String>> = BTreeMap::new();
            for key in contract::OWNED_LABELS {
                let wanted = want.get(key);
                if p.labels.get(key) != wanted {
                    patch.insert(key.to_string(), wanted.cloned());
                }
            }
            (!patch.is_empty()).then(|| PodAction::RepairLabels {
                pod_name: p.name.clone(),
                uid: p.uid.clone(),
                labels: patch,
            })
        })
        .collect()
}

/// On resume of a set whose pods were released: which will restore from their snapshot entry
/// and which boot fresh because the entry is gone (one Event, a Warning if any boots fresh).
fn resume_of_released(input: &SetInput<'_>) -> Option<PlanEvent> {
    if input.spec.suspend || input.deleting {
        return None;
    }
    let released: Vec<&crate::api::AgentStatus> =
        input.previous_status.agents.iter().filter(|a| a.phase == "Released").collect();
    if released.is_empty() {
        return None;
    }
    let (restore, fresh): (Vec<_>, Vec<_>) = released
        .iter()
        .partition(|a| a.vm_name.as_ref().is_some_and(|vm| input.snapshots.contains_key(vm)));
    let names = |list: &[&&crate::api::AgentStatus]| {
        list.iter().map(|a| a.pod_name.as_str()).collect::<Vec<_>>().join(", ")
    };
    let mut message = format!("recreating {} released pod(s)", released.len());
    if !restore.is_empty() {
        message.push_str(&format!("; {} restore from their snapshot entries", names(&restore)));
    }
    if !fresh.is_empty() {
        message.push_str(&format!(
            "; {} have no snapshot entry any more and boot fresh from the image",
            names(&fresh)
        ));
        return Some(PlanEvent::warning("ResumedFresh", message));
    }
    Some(PlanEvent::normal("ResumingReleased", message))
}

/// Ordered deletion: toolboxes and sub-agents first, the main only once they are gone.
fn teardown(input: &SetInput<'_>, deleting_now: &dyn Fn(&PodView) -> bool) -> Vec<PodAction> {
    let is_main = |p: &PodView| p.role == Some(PodRole::Main);
    let main_name = contract::agent_pod_name(&input.set.name, 0);
    let others_in_flight = input.expectations.pending_creates().any(|n| n != main_name);
    let others_left = input.pods.iter().any(|p| !is_main(p)) || others_in_flight;
    input
        .pods
        .iter()
        .filter(|p| !deleting_now(p) && (!is_main(p) || !others_left))
        .map(|p| delete(p, DeleteReason::Teardown))
        .collect()
}

/// Events of a status change. Pending, Scaling and Running are routine progress, told by the
/// status and its conditions; a set that reaches `Suspended`, fails, or recovers from `Failed`
/// gets an Event, and so does every new problem in the message.
fn transition_events(
    previous: &CocoonSetStatus,
    next: &CocoonSetStatus,
    deleting: bool,
) -> Vec<PlanEvent> {
    use crate::api::CocoonSetPhase::{Failed, Suspended};
    let mut events = Vec::new();
    if previous.phase != next.phase
        && let Some(phase) = next.phase
        && (matches!(phase, Suspended | Failed) || previous.phase == Some(Failed))
    {
        let from = previous.phase.map(|p| p.as_str()).unwrap_or("none");
        let message = format!("phase {from} -> {}", phase.as_str());
        events.push(match phase {
            Failed => PlanEvent::warning("Failed", message),
            _ => PlanEvent::normal("PhaseChanged", message),
        });
    }
    // A fork that fell back is news once; the condition keeps saying it.
    let fell_back = |s: &CocoonSetStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "ForkFellBack")
            .filter(|c| c.status == "True")
            .map(|c| c.message.clone())
    };
    if let Some(message) = fell_back(next)
        && fell_back(previous).as_ref() != Some(&message)
        && !deleting
    {
        events.push(PlanEvent::warning("ForkFellBack", message));
    }
    // During teardown the message counts down the pods left: progress, not a problem.
    if next.message != previous.message
        && !deleting
        && let Some(message) = &next.message
    {
        events.push(PlanEvent::warning("NeedsAttention", message.clone()));
    }
    events
}

//! The Events of a CocoonSet pass: phase transitions worth telling, a fork that fell back, a
//! new problem, the resume of released pods, and the pod writes a user wants to see.

use super::SetInput;
use super::actions::{DeleteReason, PodAction};
use crate::api::conditions::ConditionType;
use crate::api::{AgentStatus, CocoonSetStatus, VmPhase};
use crate::plan::PlanEvent;

/// On resume of a set whose pods were released: which will restore from their snapshot entry
/// and which boot fresh because the entry is gone (one Event, a Warning if any boots fresh).
pub(super) fn resume_of_released(input: &SetInput<'_>) -> Option<PlanEvent> {
    if input.spec.suspend || input.deleting {
        return None;
    }
    let released: Vec<&AgentStatus> =
        input.previous_status.agents.iter().filter(|a| a.phase == VmPhase::Released).collect();
    if released.is_empty() {
        return None;
    }
    let (restore, fresh): (Vec<_>, Vec<_>) = released
        .iter()
        .partition(|a| a.vm_name.as_ref().is_some_and(|vm| input.snapshots.contains_key(vm)));
    let names = |list: &[&&AgentStatus]| {
        list.iter().map(|a| a.pod_name.as_str()).collect::<Vec<_>>().join(", ")
    };
    let mut message = format!("recreating {} released pod(s)", released.len());
    if !restore.is_empty() {
        message.push_str(&format!("; {} restore from their snapshots", names(&restore)));
    }
    if !fresh.is_empty() {
        message.push_str(&format!(
            "; {} have no snapshot any more and boot fresh from the image",
            names(&fresh)
        ));
        return Some(PlanEvent::warning("ResumedFresh", message));
    }
    Some(PlanEvent::normal("ResumingReleased", message))
}

/// Events of a status change. Pending, Scaling and Running are routine progress, told by the
/// status and its conditions; a set that reaches `Suspended`, fails, or recovers from `Failed`
/// gets an Event, and so does every new problem in the message.
pub(super) fn transition_events(
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
        ConditionType::ForkFellBack
            .find(&s.conditions)
            .filter(|c| c.status == "True")
            .map(|c| c.message.clone())
    };
    if let Some(message) = fell_back(next)
        && fell_back(previous).as_ref() != Some(&message)
        && !deleting
    {
        events.push(PlanEvent::warning(ConditionType::ForkFellBack.as_str(), message));
    }
    // A migration is news when it starts and when it ends.
    match (&previous.migration, &next.migration) {
        _ if deleting => {}
        (None, Some(m)) => events.push(PlanEvent::normal(
            "Migrating",
            format!("moving the set's VMs from node {} to node {}", m.from, m.to),
        )),
        (Some(m), None) if next.node.as_deref() == Some(m.to.as_str()) => {
            events.push(PlanEvent::normal(
                "Migrated",
                format!("the set's VMs moved from node {} to node {}", m.from, m.to),
            ))
        }
        (Some(m), None) => events.push(PlanEvent::normal(
            "MigrationCancelled",
            format!(
                "the move from node {} to node {} was called off (spec.nodeName changed); the \
                 set stays on node {}",
                m.from,
                m.to,
                next.node.as_deref().unwrap_or(m.from.as_str())
            ),
        )),
        _ => {}
    }
    // The set's node in trouble is news when it starts or changes, and when it ends.
    let node_lost = |s: &CocoonSetStatus| {
        ConditionType::NodeLost
            .find(&s.conditions)
            .filter(|c| c.status == "True")
            .map(|c| c.message.clone())
    };
    match (node_lost(previous), node_lost(next)) {
        _ if deleting => {}
        (before, Some(now)) if before.as_ref() != Some(&now) => {
            events.push(PlanEvent::warning(ConditionType::NodeLost.as_str(), now));
        }
        (Some(_), None) => events.push(PlanEvent::normal(
            "NodeRecovered",
            format!("node {} is Ready again", next.node.as_deref().unwrap_or("of the set")),
        )),
        _ => {}
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

/// The Event of a pod write that went through. Creating the pods the spec asks for, and
/// deleting them because the set is deleted, is routine progress (the status shows it); any
/// other delete is a decision a user wants to see in `kubectl describe`.
pub(super) fn done_event(action: &PodAction) -> Option<PlanEvent> {
    let name = action.pod_name();
    match action {
        // Routine: the status (agent phase Released, condition Released) tells it.
        PodAction::Delete { reason: DeleteReason::Teardown | DeleteReason::Released, .. } => None,
        PodAction::Delete { reason, was, .. } => Some(PlanEvent::normal(
            "DeletedPod",
            format!("deleted pod {name} ({}; was {was})", reason.as_str()),
        )),
        _ => None,
    }
}

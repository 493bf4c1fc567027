//! CocoonSet status: phase, counts, per-VM entries and conditions, computed from the view.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;

use super::actions::PodAction;
use super::placement::NodeTrouble;
use super::pods::SetIdentity;
use super::slots::{SuspendView, is_warm_pod, warm_slots};
use crate::api::conditions::{ConditionType, DesiredCondition, SUSPEND_DEADLINE_EXCEEDED, merge};
use crate::api::{
    AgentStatus, CocoonSetPhase, CocoonSetSpec, CocoonSetStatus, ConnType, ForkFallbackPolicy,
    HibernatePolicy, ToolboxMode, ToolboxOs, ToolboxSpec, ToolboxStatus, VmPhase,
};
use crate::contract;
use crate::plan::expectations::Expectations;
use crate::plan::observe::{PodRole, PodView, Snapshots, owned, vm_phase};

/// Everything the status is computed from: the view as the pass leaves it.
pub(crate) struct StatusInput<'a> {
    pub set: &'a SetIdentity,
    pub generation: Option<i64>,
    pub spec: &'a CocoonSetSpec,
    pub previous: &'a CocoonSetStatus,
    pub pods: &'a BTreeMap<&'a str, &'a PodView>,
    pub snapshots: &'a Snapshots,
    pub expectations: &'a Expectations,
    pub name_conflicts: &'a BTreeSet<String>,
    pub pending_actions: &'a [PodAction],
    pub deleting: bool,
    pub suspend: SuspendView<'a>,
    pub replaced: &'a BTreeMap<String, crate::plan::replaced::Replaced>,
    pub failure: Option<&'a str>,
    pub mixed: Option<&'a str>,
    pub placement: &'a super::placement::Placement,
    pub migration: &'a super::migration::Migration,
    pub registry_problem: Option<&'a str>,
    pub registry: bool,
    pub dialect: crate::contract::Dialect,
    pub now: Timestamp,
}

/// Why a current-dialect set creates no pod without a registry.
pub(crate) const NO_REGISTRY: &str = "refused: a current vk-cocoon restores a new pod from any \
     <vm>:hibernate snapshot left in its registry; the operator removes stale ones before it \
     creates a pod and needs --registry (the provider's OCI_REGISTRY) to do so";

/// How a person connects to a toolbox: VNC when a port is known, else by guest OS.
pub fn conn_type(os: ToolboxOs, vnc_port: Option<i32>) -> ConnType {
    match (vnc_port, os) {
        (Some(_), _) => ConnType::Vnc,
        (None, ToolboxOs::Android) => ConnType::Adb,
        (None, ToolboxOs::Windows) => ConnType::Rdp,
        (None, ToolboxOs::Linux) => ConnType::Ssh,
    }
}

/// A static toolbox without an address can never be adopted by vk-cocoon.
pub fn unaddressed_static(toolbox: &ToolboxSpec, reported: Option<&ToolboxStatus>) -> bool {
    toolbox.mode == ToolboxMode::Static
        && toolbox.static_ip.as_deref().unwrap_or_default().is_empty()
        && reported.and_then(|r| r.ip.as_deref()).unwrap_or_default().is_empty()
}

fn agent_entry(input: &StatusInput<'_>, slot: u32) -> AgentStatus {
    let name = contract::agent_pod_name(&input.set.name, slot);
    let pod = input.pods.get(name.as_str()).copied();
    let vm_name = pod
        .and_then(|p| owned(&p.vm_name))
        .unwrap_or_else(|| contract::agent_vm_name(&input.set.namespace, &input.set.name, slot));
    let creating = input.expectations.create_pending(&name);
    let released = pod.is_none() && !creating && released_here(input, slot, &vm_name);
    // A pod the provider is deleting after it pushed the snapshot (quirk 14) shows as it will
    // once it is gone: hibernated in the registry.
    let leaving = pod.is_none_or(PodView::gone_when_deleted);
    let kept_in_registry = leaving && !creating && kept_in_registry(input, slot, &vm_name);
    let phase = match () {
        _ if released => VmPhase::Released,
        _ if kept_in_registry => VmPhase::Hibernated,
        _ => vm_phase(pod, creating),
    };
    AgentStatus {
        slot: i32::try_from(slot).unwrap_or(i32::MAX),
        role: if slot == 0 { contract::ROLE_MAIN } else { contract::ROLE_SUB_AGENT }.to_string(),
        phase,
        vm_id: pod.and_then(|p| owned(&p.vm_id)),
        ip: pod.filter(|p| p.is_serving()).and_then(|p| owned(&p.ip)),
        forked_from: pod.and_then(PodView::forked_from),
        source: pod.and_then(PodView::lineage).map(|l| l.source()),
        // Only a VM that is hibernated has a snapshot to speak of: an entry left by a delete or
        // an earlier round says nothing about a running VM.
        // A cocoonstack VM whose pod went while it was hibernated keeps its snapshot in the
        // registry: the status remembers it (it restores when the pod comes back).
        snapshot_ref: pod
            .filter(|p| p.reports_hibernated())
            .map(|_| ())
            .or(released.then_some(()))
            .or(kept_in_registry.then_some(()))
            .or((pod.is_none() && !creating && input.dialect != contract::Dialect::Seed)
                .then_some(()))
            .and_then(|_| input.snapshots.get(&vm_name).cloned()),
        vm_name: Some(vm_name),
        node: node_of(input, pod),
        pod_name: name,
    }
}

/// The node of a VM: its pod's, else (no pod, or not bound yet) the set's.
fn node_of(input: &StatusInput<'_>, pod: Option<&PodView>) -> Option<String> {
    pod.and_then(|p| owned(&p.node)).or_else(|| input.placement.node.clone())
}

/// `NodeLost`: True while the set's node is NotReady or gone from the cluster, naming the
/// node and the set's VMs on it.
fn node_condition(
    input: &StatusInput<'_>,
    agents: &[&AgentStatus],
    toolboxes: &[ToolboxStatus],
) -> DesiredCondition {
    let Some(trouble) = &input.placement.trouble else {
        return DesiredCondition {
            type_: ConditionType::NodeLost,
            status: false,
            reason: "NodeReady",
            message: String::new(),
        };
    };
    let node = trouble.node();
    let on_it: Vec<&str> = agents
        .iter()
        .filter(|a| a.phase != VmPhase::Released)
        .filter(|a| a.node.as_deref() == Some(node))
        .map(|a| a.vm_name.as_deref().unwrap_or(a.pod_name.as_str()))
        .chain(
            toolboxes
                .iter()
                .filter(|t| t.node.as_deref() == Some(node))
                .map(|t| t.vm_name.as_deref().unwrap_or(t.pod_name.as_str())),
        )
        .collect();
    let vms = if on_it.is_empty() { "none".to_string() } else { on_it.join(", ") };
    let (reason, message) = match trouble {
        NodeTrouble::NotReady(_) => (
            "NodeNotReady",
            format!(
                "node {node} is not Ready (its provider's heartbeat is not heard): VMs on it \
                 ({vms}) may be unreachable; their pods stay bound, since evicting a VM pod \
                 destroys the VM"
            ),
        ),
        NodeTrouble::Gone { .. } if input.spec.node_name.is_some() => (
            "NodeGone",
            format!(
                "node {node} (spec.nodeName) is not in the cluster (deleted, or not registered \
                 yet): VMs {vms} cannot run until it is"
            ),
        ),
        NodeTrouble::Gone { replace: false, .. } => (
            "NodeGone",
            format!(
                "node {node} was deleted from the cluster: VMs {vms} are lost with it; nothing \
                 is created in their place (onNodeLoss: report); set onNodeLoss: recreate to \
                 place the set on another node"
            ),
        ),
        NodeTrouble::Gone { replace: true, .. } => (
            "NodeGone",
            format!(
                "node {node} was deleted from the cluster: VMs {vms} were lost with it; the set \
                 is placed again (onNodeLoss: recreate): VMs with a snapshot in the registry \
                 restore from it, the others boot anew"
            ),
        ),
    };
    DesiredCondition { type_: ConditionType::NodeLost, status: true, reason, message }
}

/// A cocoonstack VM of a suspended set whose pod went after its `:hibernate` snapshot was
/// pushed (v0.2.9 deletes some pods it hibernates, PROVIDERS.md quirk 14): hibernated in the
/// registry, restored on resume. Its pod is not created again while the set sleeps: a v0.2 pod
/// created asking to hibernate would overwrite that snapshot (quirk 15). (A warm slot's pod is
/// created again from its snapshot and hibernated anew, so it shows as that pod does.)
fn kept_in_registry(input: &StatusInput<'_>, slot: u32, vm_name: &str) -> bool {
    input.dialect != contract::Dialect::Seed
        && input.spec.suspend
        && !warm_slots(input.spec).contains(&slot)
        && input.snapshots.contains_key(vm_name)
}

/// A suspended set with `hibernatePolicy: release` whose VM `vm_name` waits in its snapshot
/// entry, its pod deleted.
fn released_here(input: &StatusInput<'_>, slot: u32, vm_name: &str) -> bool {
    (input.spec.suspend || warm_slots(input.spec).contains(&slot))
        && input.spec.hibernate_policy == HibernatePolicy::Release
        && input.snapshots.contains_key(vm_name)
}

/// `Released` (only with `hibernatePolicy: release`): True once every agent's pod is deleted and
/// its VM waits in its snapshot entry.
fn release_condition(input: &StatusInput<'_>, agents: &[AgentStatus]) -> Option<DesiredCondition> {
    if input.spec.hibernate_policy != HibernatePolicy::Release {
        return None;
    }
    let released = agents.iter().filter(|a| a.phase == VmPhase::Released).count();
    let all = !agents.is_empty() && released == agents.len();
    Some(if all {
        DesiredCondition {
            type_: ConditionType::Released,
            status: true,
            reason: "SeatsReleased",
            message: format!(
                "{released} agent pod(s) deleted; their VMs wait in {} and restore on resume",
                match input.dialect.store() {
                    contract::dialect::SnapshotStore::ConfigMap => "cocoon-vm-snapshots",
                    _ => "the registry",
                }
            ),
        }
    } else if input.spec.suspend {
        DesiredCondition {
            type_: ConditionType::Released,
            status: false,
            reason: "Releasing",
            message: format!("{released}/{} agent pod(s) released", agents.len()),
        }
    } else {
        DesiredCondition {
            type_: ConditionType::Released,
            status: false,
            reason: "Active",
            message: String::new(),
        }
    })
}

fn toolbox_entry(input: &StatusInput<'_>, toolbox: &ToolboxSpec) -> ToolboxStatus {
    let name = contract::toolbox_pod_name(&input.set.name, &toolbox.name);
    let pod = input.pods.get(name.as_str()).copied();
    let vnc_port = pod.and_then(|p| p.vnc_port).or(if toolbox.mode == ToolboxMode::Static {
        toolbox.vnc_port
    } else {
        None
    });
    ToolboxStatus {
        name: toolbox.name.clone(),
        vm_name: Some(pod.and_then(|p| owned(&p.vm_name)).unwrap_or_else(|| {
            contract::toolbox_vm_name(&input.set.namespace, &input.set.name, &toolbox.name)
        })),
        vm_id: pod.and_then(|p| owned(&p.vm_id)),
        ip: pod.and_then(|p| owned(&p.ip)),
        phase: vm_phase(pod, input.expectations.create_pending(&name)),
        conn_type: conn_type(toolbox.os, vnc_port),
        vnc_port,
        node: node_of(input, pod),
        pod_name: name,
    }
}

/// `ForkFellBack`: True while a sub-agent asked to fork runs a VM the provider booted from the
/// image (vk-cocoon falls back when the fork fails), naming the pods.
fn fork_condition(fell_back: &[&str], policy: ForkFallbackPolicy) -> DesiredCondition {
    if fell_back.is_empty() {
        return DesiredCondition {
            type_: ConditionType::ForkFellBack,
            status: false,
            reason: "Forked",
            message: String::new(),
        };
    }
    let then = match policy {
        ForkFallbackPolicy::Keep => "kept (onForkFallback: keep)",
        ForkFallbackPolicy::Recreate => {
            "recreated once the main serves again (onForkFallback: recreate)"
        }
    };
    DesiredCondition {
        type_: ConditionType::ForkFellBack,
        status: true,
        reason: "BootedFromImage",
        message: format!(
            "{} booted from the image instead of forking the main; {then}",
            fell_back.join(", ")
        ),
    }
}

/// Computes the whole status; the caller writes it only when it differs from the stored one.
pub(crate) fn compute_status(input: &StatusInput<'_>) -> CocoonSetStatus {
    let replicas = u32::try_from(input.spec.agent.replicas).unwrap_or(0);
    let mut slots: BTreeSet<u32> = (0..=replicas).collect();
    slots.extend(
        input.pods.values().filter(|p| p.role != Some(PodRole::Toolbox)).filter_map(|p| p.slot),
    );
    let warm = warm_slots(input.spec);
    slots.retain(|s| !warm.contains(s));
    let agents: Vec<AgentStatus> = slots.iter().map(|s| agent_entry(input, *s)).collect();
    let warm_agents: Vec<AgentStatus> = warm.clone().map(|s| agent_entry(input, s)).collect();
    let toolboxes: Vec<ToolboxStatus> =
        input.spec.toolboxes.iter().map(|t| toolbox_entry(input, t)).collect();

    let desired_pod = |slot: u32| {
        input.pods.get(contract::agent_pod_name(&input.set.name, slot).as_str()).copied()
    };
    // Held pods are hibernated on purpose by a Hibernation: they do not block `Running`.
    let satisfied = |p: Option<&PodView>| {
        p.is_some_and(|p| p.is_serving() || (p.rare.hibernated_by.is_some() && !p.terminating))
    };
    let ready_agents =
        (0..=replicas).filter(|s| desired_pod(*s).is_some_and(PodView::is_serving)).count();
    let ready_toolboxes = toolboxes.iter().filter(|t| t.phase == VmPhase::Running).count();

    let mut problems = Vec::new();
    if let Some(failure) = input.failure {
        problems.push(failure.to_string());
    }
    if let Some(mixed) = input.mixed {
        problems.push(mixed.to_string());
    }
    if let Some(trouble) = &input.placement.trouble
        && trouble.blocks_creates(input.spec)
    {
        problems.push(format!(
            "node {} was deleted from the cluster with the set's VMs (condition NodeLost)",
            trouble.node()
        ));
    }
    if let Some(refused) = &input.migration.refused {
        problems.push(refused.clone());
    }
    if let Some(waiting) = &input.migration.waiting {
        problems.push(waiting.clone());
    }
    if let Some(problem) = input.registry_problem {
        problems.push(format!("registry: {problem}; retrying"));
    }
    if input.dialect == crate::contract::Dialect::Current
        && input.pods.len()
            < 1 + input.spec.toolboxes.len() + input.spec.agent.replicas.max(0) as usize
        && !input.spec.suspend
        && !input.deleting
        && !input.registry
    {
        problems.push(NO_REGISTRY.to_string());
    }
    // The provider's own words, for every pod it refused or failed.
    for pod in input.pods.values().filter(|p| !p.terminating) {
        if let Some(words) = pod.provider_failure() {
            problems.push(format!("provider: pod {}: {words}", pod.name));
        }
    }
    for pod in input.pods.values().filter(|p| !p.terminating && p.node.is_none()) {
        if let Some(why) = &pod.rare.unschedulable {
            problems.push(format!("pod {} cannot be placed: {why}", pod.name));
        }
    }
    problems.extend(super::placement::scheduler_silence(input.pods.values().copied(), input.now).0);
    problems.extend(input.replaced.values().map(|r| r.message()));
    for conflict in input.name_conflicts {
        problems.push(format!(
            "pod {conflict} exists but is not owned by this set; waiting for it to go"
        ));
    }
    let mut toolboxes_ok = true;
    for (spec, status) in input.spec.toolboxes.iter().zip(&toolboxes) {
        let reported = input.previous.toolboxes.iter().find(|t| t.name == spec.name);
        if unaddressed_static(spec, reported) {
            problems.push(format!(
                "toolbox {} is static but has no staticIP: vk-cocoon cannot adopt a VM without an address",
                spec.name
            ));
        } else if !satisfied(input.pods.get(status.pod_name.as_str()).copied()) {
            toolboxes_ok = false;
        }
    }

    // A pod that goes (being deleted, or Failed) after it was asked to hibernate, without
    // reporting hibernated, still counts: its VM may or may not have pushed its snapshot
    // (v0.2.9 deletes some pods it hibernates, PROVIDERS.md quirk 14). The set is Suspended
    // only once the pod is gone and the registry said (the VM's entry then shows hibernated).
    let relevant: Vec<&PodView> = input
        .pods
        .values()
        .copied()
        .filter(|p| !p.is_static())
        .filter(|p| !p.gone_when_deleted() || (p.hibernate_requested && !p.reports_hibernated()))
        .collect();
    let toggles_pending =
        input.pending_actions.iter().any(|a| matches!(a, PodAction::SetHibernate { .. }));
    // Label repairs are housekeeping and the warm pool refills in the background: neither
    // holds a phase.
    let pods_pending = input.pending_actions.iter().any(|a| {
        !matches!(a, PodAction::RepairLabels { .. })
            && !is_warm_pod(input.spec, &input.set.name, a.pod_name())
    });
    // A report counts only if it is newer than this actor's request: a hibernated state left
    // from before the suspend is stale.
    let unanswered: Vec<&str> = relevant
        .iter()
        .filter(|p| !(p.hibernate_requested && p.reports_hibernated() && input.suspend.fresh(p)))
        .map(|p| p.name.as_str())
        .collect();
    // Past the suspend deadline with pods that did not answer: the `Progressing` condition
    // turns False with a reason of its own (as a Deployment's `ProgressDeadlineExceeded`).
    let mut suspend_overdue = false;
    let phase = if input.failure.is_some() || input.mixed.is_some() {
        CocoonSetPhase::Failed
    } else if input.spec.suspend {
        let overdue = input.suspend.since.is_some_and(|since| {
            since <= input.now
                && crate::plan::clock::since(since, input.now) >= input.suspend.timeout
        });
        if overdue && !unanswered.is_empty() {
            suspend_overdue = true;
            problems.push(format!(
                "suspend: {} did not report hibernated within {}s (some providers refuse to \
                 hibernate a main VM); still waiting",
                unanswered.join(", "),
                input.suspend.timeout.as_secs()
            ));
        }
        if unanswered.is_empty() && !toggles_pending {
            CocoonSetPhase::Suspended
        } else {
            CocoonSetPhase::Suspending
        }
    } else if !satisfied(desired_pod(0)) {
        // A main that is being woken (resume) is Scaling, as SPEC §3.3.5 says; Pending is for
        // a main that has not run yet.
        let waking = desired_pod(0).is_some_and(|p| p.hibernated || p.hibernate_requested);
        if waking || toggles_pending { CocoonSetPhase::Scaling } else { CocoonSetPhase::Pending }
    } else {
        let agents_ok = (1..=replicas).all(|s| satisfied(desired_pod(s)));
        let extra = input.pods.values().any(|p| p.slot.is_some_and(|s| s > *warm.end()));
        if agents_ok && toolboxes_ok && !extra && !pods_pending {
            CocoonSetPhase::Running
        } else {
            CocoonSetPhase::Scaling
        }
    };
    // A move to another node is its own phase, whatever its steps look like.
    let phase = if input.migration.record.is_some() && phase != CocoonSetPhase::Failed {
        CocoonSetPhase::Migrating
    } else {
        phase
    };
    if input.deleting {
        problems.push(format!("deleting: {} pod(s) left", input.pods.len()));
    }
    let message = (!problems.is_empty()).then(|| problems.join("; "));
    let fell_back: Vec<&str> =
        input.pods.values().filter(|p| p.fork_fell_back()).map(|p| p.name.as_str()).collect();
    let detail = message.clone().unwrap_or_default();
    let desired = [
        DesiredCondition {
            type_: ConditionType::Ready,
            status: phase == CocoonSetPhase::Running,
            reason: phase.as_str(),
            message: format!("{ready_agents}/{} agents ready", 1 + replicas),
        },
        DesiredCondition {
            type_: ConditionType::Progressing,
            status: !suspend_overdue
                && matches!(
                    phase,
                    CocoonSetPhase::Pending | CocoonSetPhase::Scaling | CocoonSetPhase::Suspending
                ),
            reason: if suspend_overdue { SUSPEND_DEADLINE_EXCEEDED } else { phase.as_str() },
            message: detail,
        },
        DesiredCondition {
            type_: ConditionType::Suspended,
            status: phase == CocoonSetPhase::Suspended,
            reason: phase.as_str(),
            message: String::new(),
        },
        fork_condition(&fell_back, input.spec.agent.on_fork_fallback),
    ];
    let release = release_condition(input, &agents);
    let every_agent: Vec<&AgentStatus> = agents.iter().chain(&warm_agents).collect();
    let node_lost = node_condition(input, &every_agent, &toolboxes);
    let desired: Vec<DesiredCondition> =
        desired.into_iter().chain(release).chain([node_lost]).collect();
    CocoonSetStatus {
        phase: Some(phase),
        ready_agents: i32::try_from(ready_agents).unwrap_or(i32::MAX),
        desired_agents: input.spec.agent.replicas.max(0) + 1,
        ready_toolboxes: i32::try_from(ready_toolboxes).unwrap_or(i32::MAX),
        replicas: i32::try_from(
            input
                .pods
                .values()
                .filter(|p| p.role == Some(PodRole::SubAgent) && !p.terminating)
                .filter(|p| !p.slot.is_some_and(|s| warm.contains(&s)))
                .count(),
        )
        .unwrap_or(i32::MAX),
        selector: Some(contract::sub_agent_selector(&input.set.name)),
        agents,
        warm_agents,
        toolboxes,
        message,
        observed_generation: input.generation,
        idle: None,
        node: input.placement.node.clone(),
        migration: input.migration.record.clone(),
        conditions: merge(&input.previous.conditions, &desired, input.generation, input.now),
    }
}

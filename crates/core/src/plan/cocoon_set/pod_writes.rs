//! The pod writes of a CocoonSet pass (SPEC §3.3): create the main first, fork sub-agents from
//! it once it serves, scale down highest slot first, toolboxes, suspend/resume toggles, terminal
//! pods, label repairs, and the ordered teardown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::SetInput;
use super::actions::{DeleteReason, PodAction};
use super::placement::NodeTrouble;
use super::pods::{AgentKind, agent_pod, pod_labels, toolbox_pod};
use super::slots::warm_slots;
use crate::contract::{self, Dialect};
use crate::plan::clock::{after, until};
use crate::plan::earliest;
use crate::plan::observe::{PodRole, PodView, owned, vm_phase};

/// Every pod write of the pass, in the order they must be executed, and how long until a
/// backoff or the suspend deadline asks for another look.
pub(super) fn plan_writes(input: &SetInput<'_>) -> (Vec<PodAction>, Option<Duration>) {
    let mut actions = Vec::new();
    let mut requeue_after = None;
    let by_name: BTreeMap<&str, &PodView> =
        input.pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let deleting_now = |p: &PodView| p.terminating || input.expectations.delete_pending(&p.name);

    if input.deleting && input.orphan {
        // Keep every pod: the garbage collector orphans them and they leave the view.
    } else if input.deleting {
        actions.extend(teardown(input, &deleting_now));
    } else if input.mixed.is_some() {
        // Pods on nodes of two dialects: nothing is created or toggled until it is resolved
        // (the status says why); pods the set should not have still go.
        actions.extend(deletions(input, &deleting_now));
    } else {
        actions.extend(deletions(input, &deleting_now));
        let deleted: BTreeSet<String> = actions.iter().map(|a| a.pod_name().to_string()).collect();
        // A pod deleted in this pass needs no hibernate toggle.
        let gone_or_going = |p: &PodView| deleting_now(p) || deleted.contains(p.name.as_str());
        // Toggles before creates: a scale-up into warm slots wakes them before the pool's
        // refill forks are sent (a pass writes one step at a time).
        actions.extend(hibernate_toggles(input, &gone_or_going));
        // A current provider restores a new pod from any `<vm>:hibernate` it finds: without
        // the registry, stale ones cannot be removed first, and nothing is created.
        // Nor on a node gone from the cluster, unless the spec asks to place the set again.
        let can_create = (input.dialect != Dialect::Current || input.registry)
            && !input.placement.trouble.as_ref().is_some_and(|t| t.blocks_creates(input.spec));
        if !input.spec.suspend && can_create {
            let (creates, wait) = creates(input, &by_name);
            actions.extend(guard_creates(input, creates));
            requeue_after = earliest(requeue_after, wait);
        }
        actions.extend(label_repairs(input, &gone_or_going));
    }

    // A suspend that is not overdue yet: look again at its deadline (no event may come).
    if input.spec.suspend
        && !input.deleting
        && let Some(since) = input.suspend.since
    {
        let deadline = after(since, input.suspend.timeout);
        if deadline > input.now {
            requeue_after = earliest(requeue_after, Some(until(input.now, deadline)));
        }
    }
    (actions, requeue_after)
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
    // The set's node is gone and the set is placed again: its pods there go at once (no
    // provider is left there to finish a graceful delete).
    let stranded_on = match &input.placement.trouble {
        Some(NodeTrouble::Gone { node, replace: true }) => Some(node.as_str()),
        _ => None,
    };
    for pod in input.pods.iter().filter(|p| !deleting_now(p)) {
        if stranded_on.is_some() && pod.node.as_deref() == stranded_on {
            others.push(delete(pod, DeleteReason::NodeLost));
            continue;
        }
        if input.migration.leave.iter().any(|l| *l == pod.name) {
            others.push(delete(pod, DeleteReason::Migrating));
            continue;
        }
        if releasable(input, pod) {
            // The current provider keeps the VM's node-local snapshot when told right before
            // the delete (a restore on the same node needs no pull).
            if let Some(key) = pod.keys(input.dialect).keep_snapshot_on_delete {
                let annotations =
                    BTreeMap::from([(key.to_string(), Some(contract::HIBERNATE_TRUE.to_string()))]);
                others
                    .push(PodAction::PrepareDelete { pod_name: pod.name.to_string(), annotations });
            }
            others.push(delete(pod, DeleteReason::Released));
            continue;
        }
        if refork(input, main, pod) {
            // Without a snapshot on delete: the replacement would restore this VM, not fork.
            let key = pod.keys(input.dialect).snapshot_policy;
            let never = crate::api::SnapshotPolicy::Never.as_str().to_string();
            let annotations = BTreeMap::from([(key.to_string(), Some(never))]);
            others.push(PodAction::PrepareDelete { pod_name: pod.name.to_string(), annotations });
            others.push(delete(pod, DeleteReason::ForkFellBack));
            continue;
        }
        match (pod.role, pod.slot) {
            (Some(PodRole::SubAgent), Some(slot)) if slot > replicas => {
                scale_down.push((slot, pod))
            }
            (Some(PodRole::Toolbox), _) if !listed.contains(pod.name.as_str()) => {
                others.push(delete(pod, DeleteReason::ToolboxRemoved))
            }
            _ if pod.is_terminal() => others.push(delete(pod, DeleteReason::Terminal)),
            _ => {}
        }
    }
    scale_down.sort_by_key(|(slot, _)| std::cmp::Reverse(*slot));
    scale_down.into_iter().map(|(_, p)| delete(p, DeleteReason::ScaleDown)).chain(others).collect()
}

/// `hibernatePolicy: release` on a suspended set: a pod goes once its VM reports hibernated
/// for this suspend and its snapshot is recorded (the seed's entry; a cocoonstack provider
/// reports hibernated only once its registry has the snapshot), never before (no VM without a
/// snapshot is deleted). Only clone-mode VMs: those come back from their snapshot when
/// recreated (a run-mode toolbox would boot fresh, so it is kept). A pod a Hibernation holds
/// is the user's.
fn releasable(input: &SetInput<'_>, pod: &PodView) -> bool {
    let warm = pod.slot.is_some_and(|s| warm_slots(input.spec).contains(&s));
    (input.spec.suspend || warm)
        && input.spec.hibernate_policy == crate::api::HibernatePolicy::Release
        && pod.mode.as_deref() == Some(crate::api::ToolboxMode::Clone.as_str())
        && pod.hibernate_requested
        && pod.reports_hibernated()
        && input.suspend.fresh(pod)
        && pod.rare.hibernated_by.is_none()
        && pod.vm_name.as_ref().is_some_and(|vm| snapshot_on_record(input, vm))
}

/// Whether the set can find VM `vm`'s snapshot again once its pod is gone: the seed's entry
/// (the ConfigMap is the record); for a cocoonstack provider, the set's own status, which is
/// the set's memory across operator restarts, must already say it (a release waits for that
/// write).
fn snapshot_on_record(input: &SetInput<'_>, vm: &str) -> bool {
    if input.dialect == Dialect::Seed {
        return input.snapshots.contains_key(vm);
    }
    let previous = input.previous_status;
    previous
        .agents
        .iter()
        .chain(&previous.warm_agents)
        .any(|a| a.vm_name.as_deref() == Some(vm) && a.snapshot_ref.is_some())
}

/// `onForkFallback: recreate`: a sub-agent that booted from the image is deleted (and then
/// recreated, forking) once the main serves again: the main serves another VM than the one it
/// served when the sub-agent was seen fallen back (its VM id, as this actor remembers it), or,
/// when this actor did not see that, its Ready transition is newer than the sub-agent's pod. A
/// fork that fell back while the main served throughout is reported and left alone: retrying it
/// against the same main could loop.
fn refork(input: &SetInput<'_>, main: Option<&PodView>, pod: &PodView) -> bool {
    let Some(main) = main else { return false };
    let main_again = match pod.uid.as_ref().and_then(|uid| input.fell_back_under.get(uid.as_str()))
    {
        Some(under) => main.vm_id.as_ref().is_some_and(|now| now != under),
        None => {
            matches!((pod.created_at, main.ready_changed_at), (Some(created), Some(ready)) if created < ready)
        }
    };
    input.spec.agent.on_fork_fallback == crate::api::ForkFallbackPolicy::Recreate
        && !input.spec.suspend
        && pod.fork_fell_back()
        && pod.rare.hibernated_by.is_none()
        && main.is_serving()
        && main_again
}

fn delete(pod: &PodView, reason: DeleteReason) -> PodAction {
    PodAction::Delete {
        pod_name: pod.name.to_string(),
        uid: owned(&pod.uid),
        reason,
        was: vm_phase(Some(pod), false),
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
    let vm_of = |name: &str| {
        name.strip_prefix(input.set.name.as_str())
            .and_then(|s| s.strip_prefix('-'))
            .and_then(contract::parse_slot)
            .map(|slot| contract::agent_vm_name(&input.set.namespace, &input.set.name, slot))
    };
    let mut free = |name: &str| -> bool {
        if by_name.contains_key(name) || input.expectations.create_pending(name) {
            return false;
        }
        // Its snapshot may be in the registry: the pod waits for the answer.
        if vm_of(name).is_some_and(|vm| input.probing.contains(&vm)) {
            return false;
        }
        match input.not_before.get(name) {
            Some(t) if *t > input.now => {
                wait = earliest(wait, Some(until(input.now, *t)));
                false
            }
            _ => true,
        }
    };
    let set = input.set;
    let provider = &input.provider;
    // A VM whose snapshot is recorded comes back from it (a seed provider does so by itself).
    let restore = |slot: u32| {
        input.snapshots.contains_key(&contract::agent_vm_name(&set.namespace, &set.name, slot))
    };
    let main_name = contract::agent_pod_name(&set.name, 0);
    if free(&main_name) {
        let pod = agent_pod(set, input.spec, 0, &AgentKind::Main, provider, restore(0));
        out.push(PodAction::CreateMain { pod: Box::new(pod) });
    }
    // Sub-agents fork from the main VM: only once the main serves and its VM name is known.
    let main_vm =
        by_name.get(main_name.as_str()).filter(|m| m.is_serving()).and_then(|m| owned(&m.vm_name));
    if let Some(fork_from) = main_vm {
        let warm = warm_slots(input.spec);
        let release = input.spec.hibernate_policy == crate::api::HibernatePolicy::Release;
        // vk-cocoon v0.2 makes one fork snapshot of the main (`fork-<vm>`) and reuses it, but
        // checks for it and saves it without a lock: two sub-agents created at once both save
        // it, and one fails ("already exists"). Until a sub-agent has a VM (so the snapshot
        // exists), one fork at a time.
        let mut forks_left = if input.dialect == Dialect::V02 && !forked_one(by_name) {
            1 - usize::from(forking(input, by_name))
        } else {
            usize::MAX
        };
        for slot in 1..=*warm.end() {
            // A released warm slot waits in its snapshot entry until a scale-up needs it.
            let vm = contract::agent_vm_name(&set.namespace, &set.name, slot);
            if warm.contains(&slot) && release && input.snapshots.contains_key(&vm) {
                continue;
            }
            let forks = !restore(slot);
            if forks && forks_left == 0 {
                continue;
            }
            if free(&contract::agent_pod_name(&set.name, slot)) {
                if forks {
                    forks_left -= 1;
                }
                let kind = AgentKind::SubAgent { fork_from: fork_from.clone() };
                let pod = agent_pod(set, input.spec, slot, &kind, provider, restore(slot));
                out.push(PodAction::CreateSubAgent {
                    slot,
                    fork_from: fork_from.clone(),
                    pod: Box::new(pod),
                });
            }
        }
    }
    // Toolboxes go where the set is: once the scheduler has placed the main.
    let placed = provider.node.is_some();
    for toolbox in input.spec.toolboxes.iter().filter(|_| placed) {
        if free(&contract::toolbox_pod_name(&set.name, &toolbox.name)) {
            let reported = input.previous_status.toolboxes.iter().find(|t| t.name == toolbox.name);
            out.push(PodAction::CreateToolbox {
                toolbox: toolbox.name.clone(),
                pod: Box::new(toolbox_pod(set, input.spec, toolbox, reported, provider)),
            });
        }
    }
    (out, wait)
}

/// A sub-agent of the set has a VM: the provider's fork snapshot of the main exists.
fn forked_one(by_name: &BTreeMap<&str, &PodView>) -> bool {
    by_name
        .values()
        .any(|p| p.role == Some(PodRole::SubAgent) && !p.gone_when_deleted() && p.vm_id.is_some())
}

/// A sub-agent was created to fork and has no VM yet (nor failed, nor was asked to
/// hibernate): its fork may be under way. So is one whose create is in flight.
fn forking(input: &SetInput<'_>, by_name: &BTreeMap<&str, &PodView>) -> bool {
    let under_way = |p: &PodView| {
        p.role == Some(PodRole::SubAgent)
            && p.fork_from.is_some()
            && p.vm_id.is_none()
            && !p.gone_when_deleted()
            && !p.hibernate_requested
            && !p.reports_hibernated()
            && p.provider_failure().is_none()
    };
    by_name.values().any(|p| under_way(p))
        || (1..=*warm_slots(input.spec).end()).any(|slot| {
            input.expectations.create_pending(&contract::agent_pod_name(&input.set.name, slot))
        })
}

/// Current dialect: before a pod that does not restore is created, its VM's `<vm>:hibernate` is
/// removed from the registry (a predecessor's, or one this set lost track of), so that the
/// provider boots, forks or adopts as asked instead of restoring it. A restoring pod keeps it.
fn guard_creates(input: &SetInput<'_>, creates: Vec<PodAction>) -> Vec<PodAction> {
    if input.dialect != Dialect::Current {
        return creates;
    }
    let keys = input.dialect.keys();
    let mut out = Vec::with_capacity(creates.len() * 2);
    for create in creates {
        let pod = match &create {
            PodAction::CreateMain { pod }
            | PodAction::CreateSubAgent { pod, .. }
            | PodAction::CreateToolbox { pod, .. } => pod,
            _ => {
                out.push(create);
                continue;
            }
        };
        let annotations = pod.metadata.annotations.as_ref();
        let restores = keys
            .restore_from_hibernate
            .is_some_and(|k| annotations.is_some_and(|a| a.contains_key(k)));
        let vm = annotations.and_then(|a| a.get(keys.vm_name)).cloned();
        if let (false, Some(vm_name)) = (restores, vm) {
            out.push(PodAction::CollectSnapshot {
                pod_name: create.pod_name().to_string(),
                vm_name,
                keep: false,
            });
        }
        out.push(create);
    }
    out
}

/// Suspend: ask every non-static pod to hibernate. Resume: wake only the pods the set
/// hibernated, never a pod a Hibernation holds.
fn hibernate_toggles(
    input: &SetInput<'_>,
    deleting_now: &dyn Fn(&PodView) -> bool,
) -> Vec<PodAction> {
    let toggles: Vec<PodAction> = input
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
                p.hibernate_requested && p.rare.hibernated_by.is_none()
            };
            // A toggle that went through and that the view does not show yet is not sent
            // again (the view lags our writes).
            let in_flight = input.expectations.toggle_pending(&p.name, hibernated);
            (want && !in_flight).then(|| PodAction::SetHibernate {
                pod_name: p.name.to_string(),
                hibernate: hibernated,
                annotations: p.toggle(hibernated, input.dialect),
            })
        })
        .collect();
    first_hibernation_alone(input, deleting_now, toggles)
}

/// While the namespace has no snapshot ConfigMap, one pod at a time is asked to hibernate
/// ([`SetInput::snapshot_record`]; seed only, the others keep no ConfigMap): none more while a
/// request is on its way (in flight, or on a pod that has not reported hibernated yet), else
/// the first of the pods to ask, a VM other than a main first (vk-cocoon v0.1.x never
/// hibernates a main, so waiting on one would wait forever, and it is not waited on). Wakes are
/// never held back.
fn first_hibernation_alone(
    input: &SetInput<'_>,
    deleting_now: &dyn Fn(&PodView) -> bool,
    toggles: Vec<PodAction>,
) -> Vec<PodAction> {
    if input.snapshot_record || input.dialect != Dialect::Seed {
        return toggles;
    }
    let never_hibernated = |name: &str| {
        input.pods.iter().find(|p| p.name == name).is_some_and(|p| {
            p.vm_name.as_deref().and_then(crate::contract::seed_vm_slot) == Some(0)
        })
    };
    let waiting = input.pods.iter().filter(|p| !deleting_now(p)).any(|p| {
        let asked = p.hibernate_requested || input.expectations.toggle_pending(&p.name, true);
        asked && !p.reports_hibernated() && !never_hibernated(&p.name)
    });
    let is_hibernate = |a: &PodAction| matches!(a, PodAction::SetHibernate { hibernate: true, .. });
    let first = toggles
        .iter()
        .filter(|a| is_hibernate(a))
        .min_by_key(|a| never_hibernated(a.pod_name()))
        .map(|a| a.pod_name().to_string());
    toggles
        .into_iter()
        .filter(|a| !is_hibernate(a) || (!waiting && Some(a.pod_name()) == first.as_deref()))
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
                if p.labels.get(key).map(|v| v.as_str()) != wanted.map(String::as_str) {
                    patch.insert(key.to_string(), wanted.cloned());
                }
            }
            (!patch.is_empty()).then(|| PodAction::RepairLabels {
                pod_name: p.name.to_string(),
                uid: owned(&p.uid),
                labels: patch,
            })
        })
        .collect()
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

//! Rebuilds a VM record from what a pod shows, so a restarted simulator carries on (pure).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Pod;

use super::intent::PodIntent;
use super::vm::{VmRecord, VmState};
use crate::contract::{self, Dialect};

/// A VM recovered from its pod, and whether its snapshot entry was where it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub record: VmRecord,
    /// A hibernated VM whose snapshot entry is gone: waking it still works, but the operator may
    /// not see it as hibernated.
    pub snapshot_missing: bool,
}

/// The VM a pod's annotations and status describe, or `None` if the pod shows no finished
/// transition (then the pod is treated as new, which redoes the create).
/// `snapshots` holds every `(namespace, vm name)` entry of the snapshot ConfigMaps.
pub fn restore(
    pod: &Pod,
    snapshots: &HashSet<(String, String)>,
    dialect: Dialect,
) -> Option<Restored> {
    let intent = PodIntent::from_pod(pod, dialect);
    let status = pod.status.as_ref()?;
    let containers = status.container_statuses.as_deref().unwrap_or_default();
    let vm_container =
        containers.iter().find(|c| c.name == dialect.container()).or_else(|| containers.first());
    let state = vm_container.and_then(|c| c.state.as_ref());
    let cocoonstack = dialect != Dialect::Seed;
    // The seed's hibernated pod waits `Hibernated`; a cocoonstack one shows no VM at all.
    let hibernated = if cocoonstack {
        status.phase.as_deref() == Some("Pending")
            && status.start_time.is_some()
            && containers.is_empty()
            && intent.hibernate
            && status.reason.as_deref() != Some(contract::REASON_PROVIDER_FAILED)
    } else {
        state
            .and_then(|s| s.waiting.as_ref())
            .is_some_and(|w| w.reason.as_deref() == Some(contract::REASON_HIBERNATED))
    };
    let running =
        status.phase.as_deref() == Some("Running") && state.is_some_and(|s| s.running.is_some());
    let failed = status.phase.as_deref() == Some("Failed")
        && status.reason.as_deref() == Some(contract::REASON_PROVIDER_FAILED);

    let vm_state = if failed {
        VmState::Failed
    } else if hibernated {
        VmState::Hibernated
    } else if running {
        VmState::Running
    } else {
        return None;
    };
    let name = intent.vm_name.clone()?;
    let id = match (&intent.vm_id, vm_state) {
        (Some(id), _) => id.clone(),
        (None, VmState::Failed) => String::new(),
        // v0.2 and current remove a hibernated VM's id.
        (None, VmState::Hibernated) if cocoonstack => String::new(),
        (None, _) => return None,
    };
    let ip = match vm_state {
        VmState::Running => pod_ip(pod, dialect)?,
        _ => None,
    };
    let has_entry = snapshots.contains(&(intent.namespace.clone(), name.clone()));
    // A running VM whose pod says it is not Ready (the node lifecycle controller marks every
    // pod of a node it stopped hearing from): the provider reports it again once it is back.
    let marked_not_ready = vm_state == VmState::Running
        && status
            .conditions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status != "True");
    Some(Restored {
        snapshot_missing: !cocoonstack && vm_state == VmState::Hibernated && !has_entry,
        record: VmRecord {
            pod_key: intent.key.clone(),
            namespace: intent.namespace.clone(),
            id,
            name,
            ip,
            state: vm_state,
            is_static: intent.is_static,
            snapshot_from: dialect.keys().snapshot_from.and_then(|key| {
                pod.metadata.annotations.as_ref().and_then(|a| a.get(key)).cloned()
            }),
            failure: status.message.clone(),
            woken: false,
            reported: !marked_not_ready,
        },
    })
}

/// The running VM's address: the `ip` annotation (what vk-cocoon writes), else `podIP`.
/// `Some(None)` never happens for a running VM; `None` means "not restorable".
fn pod_ip(pod: &Pod, dialect: Dialect) -> Option<Option<std::net::Ipv4Addr>> {
    let annotated = pod.metadata.annotations.as_ref().and_then(|a| a.get(dialect.keys().ip));
    let reported = pod.status.as_ref().and_then(|s| s.pod_ip.as_ref());
    annotated.or(reported).and_then(|ip| ip.parse().ok()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_core::contract::dialect::seed;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateWaiting, ContainerStatus, PodStatus,
    };
    use kube::api::ObjectMeta;

    fn pod(phase: &str, state: ContainerState, annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("bot".into()),
                namespace: Some("ns".into()),
                annotations: Some(
                    annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "vm".into(),
                    state: Some(state),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    fn running() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        }
    }

    fn hibernated() -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(contract::REASON_HIBERNATED.into()),
                ..ContainerStateWaiting::default()
            }),
            ..ContainerState::default()
        }
    }

    const VM: [(&str, &str); 3] = [
        (seed::KEYS.vm_id, "sim-1"),
        (seed::KEYS.vm_name, "vk-ns-bot"),
        (seed::KEYS.ip, "10.88.0.9"),
    ];

    #[test]
    fn a_running_pod_restores_a_running_vm_with_its_address() {
        let restored = restore(&pod("Running", running(), &VM), &HashSet::new(), Dialect::Seed)
            .expect("restorable");
        assert_eq!(restored.record.state, VmState::Running);
        assert_eq!(restored.record.id, "sim-1");
        assert_eq!(restored.record.ip, Some("10.88.0.9".parse().expect("ip")));
        assert!(restored.record.reported);
    }

    #[test]
    fn a_running_pod_marked_not_ready_by_someone_else_is_reported_again() {
        let mut marked = pod("Running", running(), &VM);
        marked.status.as_mut().unwrap().conditions =
            Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                ..Default::default()
            }]);
        let restored = restore(&marked, &HashSet::new(), Dialect::Seed).expect("restored");
        assert_eq!(restored.record.state, VmState::Running);
        assert!(!restored.record.reported, "the restarted provider reports it Ready again");
    }

    #[test]
    fn a_hibernated_pod_restores_a_hibernated_vm_and_checks_its_snapshot() {
        let entries = HashSet::from([("ns".to_string(), "vk-ns-bot".to_string())]);
        let restored = restore(&pod("Running", hibernated(), &VM), &entries, Dialect::Seed)
            .expect("restorable");
        assert_eq!(restored.record.state, VmState::Hibernated);
        assert_eq!(restored.record.ip, None);
        assert!(!restored.snapshot_missing);
        let lost = restore(&pod("Running", hibernated(), &VM), &HashSet::new(), Dialect::Seed)
            .expect("restorable");
        assert!(lost.snapshot_missing);
    }

    #[test]
    fn a_pod_without_a_finished_transition_is_treated_as_new() {
        assert_eq!(
            restore(
                &pod("Pending", ContainerState::default(), &VM),
                &HashSet::new(),
                Dialect::Seed
            ),
            None
        );
        assert_eq!(restore(&pod("Running", running(), &[]), &HashSet::new(), Dialect::Seed), None);
    }
}

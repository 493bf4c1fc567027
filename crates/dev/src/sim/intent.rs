//! Reads what a pod asks of vk-cocoon from its annotations, labels and status, tolerating garbage.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

use crate::api::{SnapshotPolicy, ToolboxMode};
use crate::contract;

/// The parts of a pod the simulator acts on, already validated.
#[derive(Clone, Debug, PartialEq)]
pub struct PodIntent {
    /// `namespace/name`, for logs.
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The pod has a deletionTimestamp: run the delete hook.
    pub deleting: bool,
    /// `cocoon.cis/hibernate=true`.
    pub hibernate: bool,
    /// `cocoon.cis/mode=static`: adopt an existing VM instead of booting one.
    pub is_static: bool,
    /// `cocoon.cis/mode=clone` (every agent): restore from a snapshot entry if one exists, else
    /// fork, else boot the image.
    pub is_clone: bool,
    /// Address a static pod names (`cocoon.cis/ip`), if it is a valid IPv4 address.
    pub static_ip: Option<Ipv4Addr>,
    /// Why a static pod cannot be adopted (missing or invalid `cocoon.cis/ip`).
    pub static_problem: Option<String>,
    /// `cocoon.cis/vm-id` as written on the pod.
    pub vm_id: Option<String>,
    /// `cocoon.cis/vm-name` as written on the pod.
    pub vm_name: Option<String>,
    /// `cocoon.cis/fork-from`: the VM to clone.
    pub fork_from: Option<String>,
    /// Image to boot from: `cocoon.cis/image`, else the `vm` container's image.
    pub image: String,
    pub snapshot_policy: SnapshotPolicy,
    /// Slot 0 or role main: what `main-only` snapshots.
    pub is_main: bool,
    /// Failed or Succeeded: the pod is finished and gets no VM.
    pub terminal: bool,
    /// The status already reports ProviderFailed while Pending (a rejected static pod).
    pub provider_failed_reported: bool,
    /// Bad annotations, each a sentence for a log line and a Warning Event.
    pub problems: Vec<String>,
}

impl PodIntent {
    /// Reads a pod. Never fails: unusable values are ignored and listed in `problems`.
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let empty = BTreeMap::new();
        let annotations = meta.annotations.as_ref().unwrap_or(&empty);
        let labels = meta.labels.clone().unwrap_or_default();
        let annotation =
            |key: &str| annotations.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut problems = Vec::new();

        let hibernate = match annotations.get(contract::ANN_HIBERNATE).map(|v| v.trim()) {
            Some(contract::HIBERNATE_TRUE) => true,
            None | Some("false") => false,
            Some(other) => {
                problems.push(format!(
                    "annotation {}={other:?} is not \"true\"; the VM stays awake",
                    contract::ANN_HIBERNATE
                ));
                false
            }
        };

        let is_clone = annotation(contract::ANN_MODE) == Some(ToolboxMode::Clone.as_str());
        let is_static = match annotation(contract::ANN_MODE) {
            None => false,
            Some(mode) if mode == ToolboxMode::Static.as_str() => true,
            Some(mode)
                if [ToolboxMode::Run, ToolboxMode::Clone].iter().any(|m| m.as_str() == mode) =>
            {
                false
            }
            Some(other) => {
                problems.push(format!(
                    "annotation {}={other:?} is not run, clone or static; booting a VM as for run",
                    contract::ANN_MODE
                ));
                false
            }
        };

        let (static_ip, static_problem) = match annotation(contract::ANN_IP) {
            Some(text) => match text.parse::<Ipv4Addr>() {
                Ok(ip) => (Some(ip), None),
                Err(_) => (
                    None,
                    Some(format!(
                        "annotation {}={text:?} is not an IPv4 address",
                        contract::ANN_IP
                    )),
                ),
            },
            None => (
                None,
                Some(format!(
                    "static VM needs annotation {} naming the VM to adopt",
                    contract::ANN_IP
                )),
            ),
        };
        if is_static && let Some(problem) = &static_problem {
            problems.push(problem.clone());
        }

        let snapshot_policy = match annotation(contract::ANN_SNAPSHOT_POLICY) {
            None => SnapshotPolicy::default(),
            Some(text) => {
                match [SnapshotPolicy::Always, SnapshotPolicy::MainOnly, SnapshotPolicy::Never]
                    .into_iter()
                    .find(|p| p.as_str() == text)
                {
                    Some(policy) => policy,
                    None => {
                        // Keeping a snapshot too many is recoverable; losing a VM's state is not.
                        problems.push(format!(
                        "annotation {}={text:?} is not always, main-only or never; using always",
                        contract::ANN_SNAPSHOT_POLICY
                    ));
                        SnapshotPolicy::Always
                    }
                }
            }
        };

        if annotations.get(contract::ANN_VM_NAME).is_some()
            && annotation(contract::ANN_VM_NAME).is_none()
        {
            problems
                .push(format!("annotation {} is empty; choosing a VM name", contract::ANN_VM_NAME));
        }

        let is_main = labels.get(contract::LABEL_SLOT).and_then(|s| contract::parse_slot(s))
            == Some(0)
            || labels.get(contract::LABEL_ROLE).map(String::as_str) == Some(contract::ROLE_MAIN);

        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Failed" | "Succeeded"));
        let provider_failed_reported = phase == Some("Pending")
            && status.and_then(|s| s.reason.as_deref()) == Some(contract::REASON_PROVIDER_FAILED);

        Self {
            key: format!("{namespace}/{name}"),
            deleting: meta.deletion_timestamp.is_some(),
            hibernate,
            is_static,
            is_clone,
            static_ip,
            static_problem,
            vm_id: annotation(contract::ANN_VM_ID).map(str::to_string),
            vm_name: annotation(contract::ANN_VM_NAME).map(str::to_string),
            fork_from: annotation(contract::ANN_FORK_FROM).map(str::to_string),
            image: annotation(contract::ANN_IMAGE)
                .map(str::to_string)
                .unwrap_or_else(|| vm_image(pod)),
            snapshot_policy,
            is_main,
            terminal,
            provider_failed_reported,
            problems,
            namespace,
            name,
            labels,
        }
    }

    /// The VM name to use: the pod's annotation, else the pod name for a static VM (vk-cocoon
    /// adopts it under that name), else `vk-<namespace>-<pod>` like the operator's names.
    pub fn chosen_vm_name(&self) -> String {
        match &self.vm_name {
            Some(name) => name.clone(),
            None if self.is_static => self.name.clone(),
            None => contract::pod_vm_name(&self.namespace, &self.name),
        }
    }

    /// Whether deleting this pod takes a snapshot of its VM.
    pub fn snapshots_on_delete(&self) -> bool {
        match self.snapshot_policy {
            SnapshotPolicy::Always => true,
            SnapshotPolicy::MainOnly => self.is_main,
            SnapshotPolicy::Never => false,
        }
    }
}

/// Image of the `vm` container (else the first container), for `image:<image>`.
fn vm_image(pod: &Pod) -> String {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers
        .iter()
        .find(|c| c.name == contract::VM_CONTAINER)
        .or_else(|| containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use kube::api::ObjectMeta;

    fn pod(annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> Pod {
        let map = |kv: &[(&str, &str)]| {
            Some(kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        Pod {
            metadata: ObjectMeta {
                name: Some("bot".into()),
                namespace: Some("prod".into()),
                annotations: map(annotations),
                labels: map(labels),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "vm".into(),
                    image: Some("ubuntu:24.04".into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn a_plain_pod_boots_from_its_container_image_under_a_generated_name() {
        let intent = PodIntent::from_pod(&pod(&[], &[]));
        assert_eq!(intent.key, "prod/bot");
        assert_eq!(intent.image, "ubuntu:24.04");
        assert_eq!(intent.chosen_vm_name(), "vk-prod-bot");
        assert!(!intent.hibernate && !intent.is_static && !intent.deleting);
        assert!(intent.problems.is_empty());
    }

    #[test]
    fn the_operators_vm_name_and_image_win() {
        let intent = PodIntent::from_pod(&pod(
            &[(contract::ANN_VM_NAME, "vk-prod-set-0"), (contract::ANN_IMAGE, "agent:1")],
            &[],
        ));
        assert_eq!(intent.chosen_vm_name(), "vk-prod-set-0");
        assert_eq!(intent.image, "agent:1");
    }

    #[test]
    fn static_pods_are_named_after_the_pod_and_need_an_address() {
        let without = PodIntent::from_pod(&pod(&[(contract::ANN_MODE, "static")], &[]));
        assert!(without.is_static);
        assert_eq!(without.chosen_vm_name(), "bot");
        assert!(without.static_problem.is_some());
        let garbage = PodIntent::from_pod(&pod(
            &[(contract::ANN_MODE, "static"), (contract::ANN_IP, "10.1")],
            &[],
        ));
        assert_eq!(garbage.static_ip, None);
        assert!(garbage.problems.iter().any(|p| p.contains("not an IPv4")));
        let with = PodIntent::from_pod(&pod(
            &[(contract::ANN_MODE, "static"), (contract::ANN_IP, "10.0.0.9")],
            &[],
        ));
        assert_eq!(with.static_ip, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert!(with.problems.is_empty());
    }

    #[test]
    fn garbage_annotations_become_problems_and_safe_defaults() {
        let intent = PodIntent::from_pod(&pod(
            &[
                (contract::ANN_HIBERNATE, "yes please"),
                (contract::ANN_SNAPSHOT_POLICY, "sometimes"),
                (contract::ANN_MODE, "teleport"),
                (contract::ANN_VM_NAME, "  "),
            ],
            &[],
        ));
        assert!(!intent.hibernate);
        assert_eq!(intent.snapshot_policy, SnapshotPolicy::Always);
        assert!(!intent.is_static);
        assert_eq!(intent.chosen_vm_name(), "vk-prod-bot");
        assert_eq!(intent.problems.len(), 4, "{:?}", intent.problems);
    }

    #[test]
    fn main_only_snapshots_only_the_main() {
        let policy = (contract::ANN_SNAPSHOT_POLICY, "main-only");
        let main = PodIntent::from_pod(&pod(&[policy], &[(contract::LABEL_SLOT, "0")]));
        let by_role =
            PodIntent::from_pod(&pod(&[policy], &[(contract::LABEL_ROLE, contract::ROLE_MAIN)]));
        let sub = PodIntent::from_pod(&pod(&[policy], &[(contract::LABEL_SLOT, "1")]));
        assert!(main.snapshots_on_delete() && by_role.snapshots_on_delete());
        assert!(!sub.snapshots_on_delete());
        let never = PodIntent::from_pod(&pod(
            &[(contract::ANN_SNAPSHOT_POLICY, "never")],
            &[(contract::LABEL_SLOT, "0")],
        ));
        assert!(!never.snapshots_on_delete());
        assert!(PodIntent::from_pod(&pod(&[], &[])).snapshots_on_delete(), "always is the default");
    }
}

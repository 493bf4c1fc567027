//! Reads what a pod asks of vk-cocoon from its annotations, labels and status, tolerating garbage.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

use crate::api::{SnapshotPolicy, ToolboxMode};
use crate::contract::{self, Dialect};

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
    /// Why the provider refuses to create this pod's VM at all (cocoonstack: no VM name), in
    /// the provider's words.
    pub refusal: Option<String>,
    /// The operator's generation stamp (current), echoed with every lifecycle state.
    pub stamp: i64,
    /// `restore-from-hibernate=true` (current).
    pub restore_marked: bool,
    /// `keep-snapshot-on-delete=true` (current).
    pub keep_snapshot: bool,
    /// The snapshot CPU class the pod selects (current).
    pub cpu_class: Option<String>,
    /// What the provider last published on the pod (current): the lifecycle state, if it is
    /// one, with the generation it observed; `None` in dialects that publish none.
    pub published: Option<Published>,
}

/// A lifecycle state as published on a pod (current dialect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub state: Option<contract::LifecycleState>,
    pub generation: i64,
}

impl PodIntent {
    /// Reads a pod in the keys of `dialect`. Never fails: unusable values are ignored and
    /// listed in `problems`.
    pub fn from_pod(pod: &Pod, dialect: Dialect) -> Self {
        let keys = dialect.keys();
        let cocoonstack = dialect != Dialect::Seed;
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let empty = BTreeMap::new();
        let annotations = meta.annotations.as_ref().unwrap_or(&empty);
        let labels = meta.labels.clone().unwrap_or_default();
        let annotation =
            |key: &str| annotations.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut problems = Vec::new();

        let hibernate = match annotations.get(keys.hibernate).map(|v| v.trim()) {
            Some(contract::HIBERNATE_TRUE) => true,
            None | Some("false") => false,
            Some(other) => {
                problems.push(format!(
                    "annotation {}={other:?} is not \"true\"; the VM stays awake",
                    keys.hibernate
                ));
                false
            }
        };

        // v0.2 and current clone by default; a VM that is not managed is adopted (it needs
        // its id and address), as the seed's `static` mode is.
        let managed = annotation(keys.managed) == Some(contract::MANAGED_TRUE);
        let is_clone = annotation(keys.mode) == Some(ToolboxMode::Clone.as_str())
            || (cocoonstack && annotation(keys.mode).is_none());
        let is_static = match annotation(keys.mode) {
            _ if cocoonstack => !managed,
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
                    keys.mode
                ));
                false
            }
        };

        let (static_ip, static_problem) = match annotation(keys.ip) {
            Some(text) => match text.parse::<Ipv4Addr>() {
                Ok(ip) => (Some(ip), None),
                Err(_) => {
                    (None, Some(format!("annotation {}={text:?} is not an IPv4 address", keys.ip)))
                }
            },
            None => (
                None,
                Some(format!("static VM needs annotation {} naming the VM to adopt", keys.ip)),
            ),
        };
        let static_problem = match static_problem {
            None if cocoonstack && is_static && annotation(keys.vm_id).is_none() => {
                Some("unmanaged vm is missing its pre-assigned VM id".to_string())
            }
            other => other,
        };
        if is_static && let Some(problem) = &static_problem {
            problems.push(problem.clone());
        }

        let snapshot_policy = match annotation(keys.snapshot_policy) {
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
                        keys.snapshot_policy
                    ));
                        SnapshotPolicy::Always
                    }
                }
            }
        };

        if annotations.get(keys.vm_name).is_some() && annotation(keys.vm_name).is_none() {
            problems.push(format!("annotation {} is empty; choosing a VM name", keys.vm_name));
        }

        // The seed reads the operator's labels; v0.2 and current read the VM name's slot.
        let is_main = if cocoonstack {
            annotation(keys.vm_name).and_then(contract::seed_vm_slot) == Some(0)
        } else {
            labels.get(contract::LABEL_SLOT).and_then(|s| contract::parse_slot(s)) == Some(0)
                || labels.get(contract::LABEL_ROLE).map(String::as_str) == Some(contract::ROLE_MAIN)
        };
        let refusal = (cocoonstack && annotation(keys.vm_name).is_none())
            .then(|| format!("pod {namespace}/{name} missing {} annotation", keys.vm_name));
        let flag = |key: Option<&str>| key.and_then(annotation) == Some(contract::HIBERNATE_TRUE);

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
            vm_id: annotation(keys.vm_id).map(str::to_string),
            vm_name: annotation(keys.vm_name).map(str::to_string),
            fork_from: annotation(keys.fork_from).map(str::to_string),
            image: annotation(keys.image)
                .map(str::to_string)
                .unwrap_or_else(|| vm_image(pod, dialect)),
            snapshot_policy,
            is_main,
            terminal,
            provider_failed_reported,
            problems,
            refusal,
            stamp: keys.generation.and_then(annotation).and_then(|g| g.parse().ok()).unwrap_or(0),
            published: dialect.publishes_lifecycle().then(|| Published {
                state: keys
                    .lifecycle_state
                    .and_then(annotation)
                    .and_then(contract::LifecycleState::parse),
                generation: keys
                    .lifecycle_generation
                    .and_then(annotation)
                    .and_then(|g| g.parse().ok())
                    .unwrap_or(0),
            }),
            restore_marked: flag(keys.restore_from_hibernate),
            keep_snapshot: flag(keys.keep_snapshot_on_delete),
            cpu_class: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_selector.as_ref())
                .and_then(|s| s.get(contract::dialect::NODE_LABEL_CPU_CLASS))
                .cloned(),
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

/// Image of the VM container (else the first container), for `image:<image>`.
fn vm_image(pod: &Pod, dialect: Dialect) -> String {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers
        .iter()
        .find(|c| c.name == dialect.container())
        .or_else(|| containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_core::contract::dialect::seed;
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

    impl PodIntent {
        fn from_pod_seed(pod: &Pod) -> Self {
            Self::from_pod(pod, Dialect::Seed)
        }
    }

    #[test]
    fn a_cocoonstack_provider_refuses_a_pod_without_its_vm_name_in_its_own_words() {
        let seed_keys = pod(&[(seed::KEYS.vm_name, "vk-prod-set-0")], &[]);
        let intent = PodIntent::from_pod(&seed_keys, Dialect::V02);
        assert_eq!(
            intent.refusal.as_deref(),
            Some("pod prod/bot missing vm.cocoonstack.io/name annotation")
        );
        let named = pod(
            &[
                ("vm.cocoonstack.io/name", "vk-prod-set-0"),
                ("cocoonset.cocoonstack.io/managed", "true"),
                ("cocoonset.cocoonstack.io/generation", "7"),
                ("vm.cocoonstack.io/restore-from-hibernate", "true"),
            ],
            &[],
        );
        let intent = PodIntent::from_pod(&named, Dialect::Current);
        assert_eq!(intent.refusal, None);
        assert!(intent.is_clone && !intent.is_static && intent.is_main && intent.restore_marked);
        assert_eq!(intent.stamp, 7);
        let unmanaged = pod(&[("vm.cocoonstack.io/name", "vk-prod-set-0")], &[]);
        let intent = PodIntent::from_pod(&unmanaged, Dialect::V02);
        assert!(intent.is_static && intent.static_problem.is_some());
    }

    #[test]
    fn a_plain_pod_boots_from_its_container_image_under_a_generated_name() {
        let intent = PodIntent::from_pod_seed(&pod(&[], &[]));
        assert_eq!(intent.key, "prod/bot");
        assert_eq!(intent.image, "ubuntu:24.04");
        assert_eq!(intent.chosen_vm_name(), "vk-prod-bot");
        assert!(!intent.hibernate && !intent.is_static && !intent.deleting);
        assert!(intent.problems.is_empty());
    }

    #[test]
    fn the_operators_vm_name_and_image_win() {
        let intent = PodIntent::from_pod_seed(&pod(
            &[(seed::KEYS.vm_name, "vk-prod-set-0"), (seed::KEYS.image, "agent:1")],
            &[],
        ));
        assert_eq!(intent.chosen_vm_name(), "vk-prod-set-0");
        assert_eq!(intent.image, "agent:1");
    }

    #[test]
    fn static_pods_are_named_after_the_pod_and_need_an_address() {
        let without = PodIntent::from_pod_seed(&pod(&[(seed::KEYS.mode, "static")], &[]));
        assert!(without.is_static);
        assert_eq!(without.chosen_vm_name(), "bot");
        assert!(without.static_problem.is_some());
        let garbage = PodIntent::from_pod_seed(&pod(
            &[(seed::KEYS.mode, "static"), (seed::KEYS.ip, "10.1")],
            &[],
        ));
        assert_eq!(garbage.static_ip, None);
        assert!(garbage.problems.iter().any(|p| p.contains("not an IPv4")));
        let with = PodIntent::from_pod_seed(&pod(
            &[(seed::KEYS.mode, "static"), (seed::KEYS.ip, "10.0.0.9")],
            &[],
        ));
        assert_eq!(with.static_ip, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert!(with.problems.is_empty());
    }

    #[test]
    fn garbage_annotations_become_problems_and_safe_defaults() {
        let intent = PodIntent::from_pod_seed(&pod(
            &[
                (seed::KEYS.hibernate, "yes please"),
                (seed::KEYS.snapshot_policy, "sometimes"),
                (seed::KEYS.mode, "teleport"),
                (seed::KEYS.vm_name, "  "),
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
        let policy = (seed::KEYS.snapshot_policy, "main-only");
        let main = PodIntent::from_pod_seed(&pod(&[policy], &[(contract::LABEL_SLOT, "0")]));
        let by_role = PodIntent::from_pod_seed(&pod(
            &[policy],
            &[(contract::LABEL_ROLE, contract::ROLE_MAIN)],
        ));
        let sub = PodIntent::from_pod_seed(&pod(&[policy], &[(contract::LABEL_SLOT, "1")]));
        assert!(main.snapshots_on_delete() && by_role.snapshots_on_delete());
        assert!(!sub.snapshots_on_delete());
        let never = PodIntent::from_pod_seed(&pod(
            &[(seed::KEYS.snapshot_policy, "never")],
            &[(contract::LABEL_SLOT, "0")],
        ));
        assert!(!never.snapshots_on_delete());
        assert!(
            PodIntent::from_pod_seed(&pod(&[], &[])).snapshots_on_delete(),
            "always is the default"
        );
    }
}

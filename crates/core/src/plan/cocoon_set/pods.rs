//! Pod builders: the complete pod of SPEC §3.2 for an agent slot or a toolbox.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, EnvFromSource, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::api::{
    AgentSpec, CocoonSetSpec, SnapshotPolicy, ToolboxMode, ToolboxSpec, ToolboxStatus, VmResources,
};
use crate::contract;
use crate::plan::observe::PodRole;

/// Grace period of VM pods: short, but never 0 (0 lets a virtual kubelet skip its delete hook
/// and orphan the VM). virtual-kubelet runs the provider's delete hook (snapshot, VM removal)
/// first and removes the pod object the grace period after it: a long grace only delays every
/// scale-down and teardown step, by its length each (with vk-cocoon and 30 s, a set's ordered
/// teardown took a minute).
pub const TERMINATION_GRACE_SECONDS: i64 = 5;

/// Identity of the set that owns the pods being built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetIdentity {
    /// Namespace of the set and its pods.
    pub namespace: String,
    /// Name of the set.
    pub name: String,
    /// UID of the set, for the pods' controller ownerReference.
    pub uid: String,
}

impl SetIdentity {
    fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
            kind: "CocoonSet".into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// Which agent a pod is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentKind {
    /// The main agent (slot 0).
    Main,
    /// A sub-agent, forked from the main VM.
    SubAgent {
        /// VM name of the main agent.
        fork_from: String,
    },
}

fn tolerations() -> Vec<Toleration> {
    let exists = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        // No tolerationSeconds: a node flap must never evict a VM.
        toleration_seconds: None,
        value: None,
    };
    vec![
        exists(contract::TAINT_VIRTUAL_KUBELET, "NoSchedule"),
        exists(contract::TAINT_NOT_READY, "NoExecute"),
        exists(contract::TAINT_UNREACHABLE, "NoExecute"),
    ]
}

/// vk-cocoon ignores security contexts (a VM is not a container), but namespaces that enforce
/// Pod Security `restricted` admit only pods that declare these.
fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
}

fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn limits(resources: Option<&VmResources>) -> Option<ResourceRequirements> {
    let r = resources?;
    let mut limits = BTreeMap::new();
    if let Some(cpu) = r.cpu.as_ref().filter(|v| !v.is_empty()) {
        limits.insert("cpu".to_string(), Quantity(cpu.clone()));
    }
    if let Some(memory) = r.memory.as_ref().filter(|v| !v.is_empty()) {
        limits.insert("memory".to_string(), Quantity(memory.clone()));
    }
    (!limits.is_empty())
        .then(|| ResourceRequirements { limits: Some(limits), ..Default::default() })
}

fn env_from(agent: &AgentSpec) -> Option<Vec<EnvFromSource>> {
    let list: Vec<EnvFromSource> = agent
        .env_from
        .iter()
        .map(|e| EnvFromSource {
            config_map_ref: e
                .config_map_ref
                .as_ref()
                .map(|r| ConfigMapEnvSource { name: r.name.clone(), optional: None }),
            secret_ref: e
                .secret_ref
                .as_ref()
                .map(|r| SecretEnvSource { name: r.name.clone(), optional: None }),
            prefix: None,
        })
        .collect();
    (!list.is_empty()).then_some(list)
}

/// What differs between the pods of one set.
struct PodParts<'a> {
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    image: String,
    resources: Option<&'a VmResources>,
    agent: Option<&'a AgentSpec>,
}

fn pod(set: &SetIdentity, spec: &CocoonSetSpec, parts: PodParts<'_>) -> Pod {
    let PodParts { name, labels, annotations, image, resources, agent } = parts;
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(set.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![set.owner_reference()]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(spec.node_name.clone()),
            containers: vec![Container {
                name: contract::VM_CONTAINER.into(),
                image: Some(image),
                resources: limits(resources),
                env_from: agent.and_then(env_from),
                security_context: Some(restricted_container()),
                ..Default::default()
            }],
            tolerations: Some(tolerations()),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            }),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            service_account_name: agent.and_then(|a| a.service_account_name.clone()),
            restart_policy: Some("Never".into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// The labels of a set's pod: set, role, slot (agents only) and `app`. Written at create and
/// put back by the planner if someone changes them.
pub fn pod_labels(set: &str, role: PodRole, slot: Option<u32>) -> BTreeMap<String, String> {
    let role = match role {
        PodRole::Main => contract::ROLE_MAIN,
        PodRole::SubAgent => contract::ROLE_SUB_AGENT,
        PodRole::Toolbox => contract::ROLE_TOOLBOX,
    };
    let mut labels = BTreeMap::from([
        (contract::LABEL_COCOONSET.to_string(), set.to_string()),
        (contract::LABEL_ROLE.to_string(), role.to_string()),
        (contract::LABEL_APP.to_string(), set.to_string()),
    ]);
    if let Some(slot) = slot {
        labels.insert(contract::LABEL_SLOT.into(), slot.to_string());
    }
    labels
}

fn snapshot_policy_for(policy: SnapshotPolicy) -> String {
    policy.as_str().to_string()
}

/// The pod of agent `slot`.
pub fn agent_pod(set: &SetIdentity, spec: &CocoonSetSpec, slot: u32, kind: &AgentKind) -> Pod {
    let role = match kind {
        AgentKind::Main => PodRole::Main,
        AgentKind::SubAgent { .. } => PodRole::SubAgent,
    };
    let labels = pod_labels(&set.name, role, Some(slot));
    let mut annotations = BTreeMap::from([
        (
            contract::ANN_VM_NAME.to_string(),
            contract::agent_vm_name(&set.namespace, &set.name, slot),
        ),
        (contract::ANN_MODE.to_string(), ToolboxMode::Clone.as_str().to_string()),
        (contract::ANN_IMAGE.to_string(), spec.agent.image.clone()),
        (contract::ANN_MANAGED.to_string(), contract::MANAGED_TRUE.to_string()),
        (contract::ANN_OS.to_string(), crate::api::ToolboxOs::Linux.as_str().to_string()),
        (contract::ANN_SNAPSHOT_POLICY.to_string(), snapshot_policy_for(spec.snapshot_policy)),
    ]);
    if let Some(storage) = spec.agent.storage.as_ref().filter(|s| !s.is_empty()) {
        annotations.insert(contract::ANN_STORAGE.into(), storage.clone());
    }
    if let AgentKind::SubAgent { fork_from } = kind {
        annotations.insert(contract::ANN_FORK_FROM.into(), fork_from.clone());
    }
    let parts = PodParts {
        name: contract::agent_pod_name(&set.name, slot),
        labels,
        annotations,
        image: spec.agent.image.clone(),
        resources: spec.agent.resources.as_ref(),
        agent: Some(&spec.agent),
    };
    pod(set, spec, parts)
}

/// The pod of a toolbox. For static toolboxes, values last reported in status win over the
/// spec's hints.
pub fn toolbox_pod(
    set: &SetIdentity,
    spec: &CocoonSetSpec,
    toolbox: &ToolboxSpec,
    reported: Option<&ToolboxStatus>,
) -> Pod {
    let labels = pod_labels(&set.name, PodRole::Toolbox, None);
    let image = toolbox.image.clone().unwrap_or_default();
    let mut annotations = BTreeMap::from([
        (
            contract::ANN_VM_NAME.to_string(),
            contract::toolbox_vm_name(&set.namespace, &set.name, &toolbox.name),
        ),
        (contract::ANN_MODE.to_string(), toolbox.mode.as_str().to_string()),
        (contract::ANN_OS.to_string(), toolbox.os.as_str().to_string()),
        (contract::ANN_SNAPSHOT_POLICY.to_string(), snapshot_policy_for(spec.snapshot_policy)),
    ]);
    if !image.is_empty() {
        annotations.insert(contract::ANN_IMAGE.into(), image.clone());
    }
    if let Some(storage) = toolbox.storage.as_ref().filter(|s| !s.is_empty()) {
        annotations.insert(contract::ANN_STORAGE.into(), storage.clone());
    }
    if toolbox.mode == ToolboxMode::Static {
        let ip = reported.and_then(|r| r.ip.clone()).or_else(|| toolbox.static_ip.clone());
        let vm_id = reported.and_then(|r| r.vm_id.clone()).or_else(|| toolbox.static_vm_id.clone());
        let vnc = reported.and_then(|r| r.vnc_port).or(toolbox.vnc_port);
        if let Some(ip) = ip.filter(|v| !v.is_empty()) {
            annotations.insert(contract::ANN_IP.into(), ip);
        }
        if let Some(vm_id) = vm_id.filter(|v| !v.is_empty()) {
            annotations.insert(contract::ANN_VM_ID.into(), vm_id);
        }
        if let Some(port) = vnc {
            annotations.insert(contract::ANN_VNC_PORT.into(), port.to_string());
        }
    } else {
        annotations.insert(contract::ANN_MANAGED.into(), contract::MANAGED_TRUE.into());
    }
    let parts = PodParts {
        name: contract::toolbox_pod_name(&set.name, &toolbox.name),
        labels,
        annotations,
        image: if image.is_empty() { contract::STATIC_VM_IMAGE.to_string() } else { image },
        resources: toolbox.resources.as_ref(),
        agent: None,
    };
    pod(set, spec, parts)
}

//! Pod builders: the complete pod of SPEC §3.2 for an agent slot or a toolbox.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapEnvSource, Container, EnvFromSource, NodeAffinity,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::api::{
    AgentSpec, CocoonSetSpec, SnapshotPolicy, ToolboxMode, ToolboxSpec, ToolboxStatus, VmResources,
};
use crate::contract::{self, Dialect, Keys};
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

/// The provider the pods are built for: its dialect (keys, container, restart policy) and,
/// for the current dialect, the snapshot CPU class the pods select.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provider {
    /// The dialect of the node the pods go to.
    pub dialect: Dialect,
    /// The snapshot CPU class to select (current): the set's own, else its node's.
    pub cpu_class: Option<String>,
    /// The node the pods are bound to (`spec.nodeName`, or where the set was placed). `None`:
    /// the pod is left to the scheduler, selecting the dialect's pool and what the spec asks.
    pub node: Option<String>,
}

impl Provider {
    fn keys(&self) -> &'static Keys {
        self.dialect.keys()
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

/// The affinity of a pod the scheduler places: the spec's, with the dialect's pool required
/// in every node selector term (terms are ORed, so each must carry it), or a term of its own.
fn pool_affinity(dialect: Dialect, asked: Option<&Affinity>) -> Affinity {
    let pool: Vec<NodeSelectorRequirement> = dialect
        .pool_requirements()
        .into_iter()
        .map(|(key, operator, values)| NodeSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values: (!values.is_empty()).then(|| values.into_iter().map(str::to_string).collect()),
        })
        .collect();
    let mut affinity = asked.cloned().unwrap_or_default();
    let node = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    let required = node
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector { node_selector_terms: Vec::new() });
    if required.node_selector_terms.is_empty() {
        required.node_selector_terms.push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_expressions.get_or_insert_with(Vec::new).extend(pool.iter().cloned());
    }
    affinity
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
    provider: &'a Provider,
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    image: String,
    resources: Option<&'a VmResources>,
    agent: Option<&'a AgentSpec>,
}

fn pod(set: &SetIdentity, spec: &CocoonSetSpec, parts: PodParts<'_>) -> Pod {
    let PodParts { provider, name, labels, mut annotations, image, resources, agent } = parts;
    let dialect = provider.dialect;
    // The current provider echoes the stamp with every lifecycle state it publishes.
    if let Some(key) = provider.keys().generation {
        annotations.insert(key.to_string(), "1".to_string());
    }
    let mut selector = BTreeMap::new();
    if let Some(class) = provider.cpu_class.as_ref().filter(|_| dialect.publishes_lifecycle()) {
        selector.insert(contract::dialect::NODE_LABEL_CPU_CLASS.to_string(), class.clone());
    }
    let scheduled = provider.node.is_none();
    if scheduled {
        selector.extend(spec.node_selector.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut tolerations = tolerations();
    tolerations.extend(spec.tolerations.iter().cloned());
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
            node_name: provider.node.clone(),
            node_selector: (!selector.is_empty()).then_some(selector),
            affinity: scheduled.then(|| pool_affinity(dialect, spec.affinity.as_ref())),
            containers: vec![Container {
                name: dialect.container().into(),
                image: Some(image),
                resources: limits(resources),
                env_from: agent.and_then(env_from),
                security_context: Some(restricted_container()),
                ..Default::default()
            }],
            tolerations: Some(tolerations),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            }),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            service_account_name: agent.and_then(|a| a.service_account_name.clone()),
            restart_policy: dialect.restart_policy().map(str::to_string),
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

/// The pod of agent `slot`. `restore`: its VM comes back from its own hibernation snapshot
/// (a released or lost VM of a cocoonstack provider; a seed provider restores from its
/// snapshot entry by itself): the current dialect marks the pod, v0.2 clones the snapshot as
/// its image.
pub fn agent_pod(
    set: &SetIdentity,
    spec: &CocoonSetSpec,
    slot: u32,
    kind: &AgentKind,
    provider: &Provider,
    restore: bool,
) -> Pod {
    let role = match kind {
        AgentKind::Main => PodRole::Main,
        AgentKind::SubAgent { .. } => PodRole::SubAgent,
    };
    let keys = provider.keys();
    let labels = pod_labels(&set.name, role, Some(slot));
    let vm = contract::agent_vm_name(&set.namespace, &set.name, slot);
    let restore = restore && provider.dialect != Dialect::Seed;
    let own_snapshot = contract::dialect::snapshot_tag(&vm, contract::dialect::TAG_HIBERNATE);
    let image = match provider.dialect {
        Dialect::V02 if restore => own_snapshot,
        _ => spec.agent.image.clone(),
    };
    let mut annotations = BTreeMap::from([
        (keys.vm_name.to_string(), vm),
        (keys.mode.to_string(), ToolboxMode::Clone.as_str().to_string()),
        (keys.image.to_string(), image),
        (keys.managed.to_string(), contract::MANAGED_TRUE.to_string()),
        (keys.os.to_string(), crate::api::ToolboxOs::Linux.as_str().to_string()),
        (keys.snapshot_policy.to_string(), snapshot_policy_for(spec.snapshot_policy)),
    ]);
    if let Some(storage) = spec.agent.storage.as_ref().filter(|s| !s.is_empty()) {
        annotations.insert(keys.storage.into(), storage.clone());
    }
    match kind {
        // A restore brings the VM back as it was: no fork (the current provider refuses both).
        AgentKind::SubAgent { .. } if restore => {}
        AgentKind::SubAgent { fork_from } => {
            annotations.insert(keys.fork_from.into(), fork_from.clone());
        }
        AgentKind::Main => {}
    }
    if let Some(key) = keys.restore_from_hibernate.filter(|_| restore) {
        annotations.insert(key.into(), contract::HIBERNATE_TRUE.into());
    }
    let parts = PodParts {
        provider,
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
    provider: &Provider,
) -> Pod {
    let keys = provider.keys();
    let labels = pod_labels(&set.name, PodRole::Toolbox, None);
    let image = toolbox.image.clone().unwrap_or_default();
    let mut annotations = BTreeMap::from([
        (
            keys.vm_name.to_string(),
            contract::toolbox_vm_name(&set.namespace, &set.name, &toolbox.name),
        ),
        (keys.mode.to_string(), toolbox.mode.as_str().to_string()),
        (keys.os.to_string(), toolbox.os.as_str().to_string()),
        (keys.snapshot_policy.to_string(), snapshot_policy_for(spec.snapshot_policy)),
    ]);
    if !image.is_empty() {
        annotations.insert(keys.image.into(), image.clone());
    }
    if let Some(storage) = toolbox.storage.as_ref().filter(|s| !s.is_empty()) {
        annotations.insert(keys.storage.into(), storage.clone());
    }
    if toolbox.mode == ToolboxMode::Static {
        let ip = reported.and_then(|r| r.ip.clone()).or_else(|| toolbox.static_ip.clone());
        let vm_id = reported.and_then(|r| r.vm_id.clone()).or_else(|| toolbox.static_vm_id.clone());
        let vnc = reported.and_then(|r| r.vnc_port).or(toolbox.vnc_port);
        if let Some(ip) = ip.filter(|v| !v.is_empty()) {
            annotations.insert(keys.ip.into(), ip);
        }
        if let Some(vm_id) = vm_id.filter(|v| !v.is_empty()) {
            annotations.insert(keys.vm_id.into(), vm_id);
        }
        if let Some(port) = vnc {
            annotations.insert(keys.vnc_port.into(), port.to_string());
        }
    } else {
        annotations.insert(keys.managed.into(), contract::MANAGED_TRUE.into());
    }
    let parts = PodParts {
        provider,
        name: contract::toolbox_pod_name(&set.name, &toolbox.name),
        labels,
        annotations,
        image: if image.is_empty() { contract::STATIC_VM_IMAGE.to_string() } else { image },
        resources: toolbox.resources.as_ref(),
        agent: None,
    };
    pod(set, spec, parts)
}

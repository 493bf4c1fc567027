//! The `CocoonSet` resource: a main agent VM, sub-agents forked from it, and toolbox VMs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most sub-agents one set may ask for. A VM is heavy; a typo such as `replicas: 1000` must be
/// rejected, not scheduled.
pub const MAX_REPLICAS: i32 = 64;
/// Most toolboxes one set may list (also bounds the cost of the uniqueness rule).
pub const MAX_TOOLBOXES: usize = 16;

/// Desired state of a group of VM pods.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[kube(
    crates(kube_core = "::kube_core", kube = "::kube_derive"),
    attr = r#"x_kube(crates(kube_core = "::kube_core"))"#,
    group = "cocoon.cis",
    version = "v1alpha1",
    kind = "CocoonSet",
    namespaced,
    shortname = "cs",
    category = "cocoon",
    status = "CocoonSetStatus",
    scale(
        spec_replicas_path = ".spec.agent.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    validation = Rule::new("size(self.metadata.name) <= 50").message("metadata.name must be at most 50 characters: it becomes pod names and label values"),
    validation = Rule::new("!has(self.spec.nodeName) || (!has(self.spec.nodeSelector) && !has(self.spec.affinity))").message("spec.nodeName binds every pod to that node: nodeSelector and affinity apply only without it"),
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyAgents"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredAgents"}"#,
    printcolumn = r#"{"name":"Toolboxes","type":"integer","jsonPath":".status.readyToolboxes","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CocoonSetSpec {
    /// The agent VMs: the main agent (slot 0) and `replicas` sub-agents forked from it.
    pub agent: AgentSpec,
    /// Hibernate every VM of the set.
    #[serde(default)]
    pub suspend: bool,
    /// Virtual node every pod is bound to. Unset: the Kubernetes scheduler places the main
    /// among the provider's nodes (narrowed by `nodeSelector`, `affinity` and `tolerations`)
    /// and the set's other VMs follow it to that node, recorded in `status.node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub node_name: Option<String>,
    /// Without `nodeName`: labels the main's node must carry, on top of the provider's pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Without `nodeName`: node affinity (ANDed with the provider's pool) and pod
    /// (anti-)affinity of the main, as a pod's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Taints the set's pods tolerate besides the provider's own and NotReady/unreachable
    /// (which they tolerate forever: evicting a VM pod destroys the VM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
    /// What to do when the set's node is deleted from the cluster with VMs on it: `report`
    /// (default: condition `NodeLost` and an Event, nothing recreated) or `recreate` (place
    /// the set again; VMs with a snapshot in the registry restore from it, the others boot
    /// anew).
    #[serde(default, skip_serializing_if = "NodeLossPolicy::is_default")]
    pub on_node_loss: NodeLossPolicy,
    /// What vk-cocoon snapshots when a pod is deleted.
    #[serde(default)]
    pub snapshot_policy: SnapshotPolicy,
    /// Snapshot CPU class (current vk-cocoon): the pods select nodes of this class, the only
    /// ones that can resume the set's memory snapshots. Unset: the class of the set's node,
    /// if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub snapshot_cpu_class: Option<String>,
    /// Extra VMs beside the agents, each with a unique name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u.name == t.name))").message("toolbox names must be unique in the set"))]
    pub toolboxes: Vec<ToolboxSpec>,
    /// Suspend the set by itself once nobody used it for a while; resume on new activity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleSpec>,
    /// What a suspended set keeps: `retain` (default) keeps every hibernated pod; `release`
    /// deletes each agent pod once its VM reports hibernated and its snapshot entry exists,
    /// freeing quota and node capacity; resume recreates them and they restore.
    #[serde(default, skip_serializing_if = "HibernatePolicy::is_default")]
    pub hibernate_policy: HibernatePolicy,
}

/// What a suspended CocoonSet keeps.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HibernatePolicy {
    /// Keep every hibernated pod (its seat, its address allocation, its quota).
    #[default]
    Retain,
    /// Delete hibernated agent pods whose snapshot entry exists; recreate them on resume.
    Release,
}

impl HibernatePolicy {
    /// Whether this is the default (`retain`), which is not written back.
    pub fn is_default(&self) -> bool {
        *self == Self::Retain
    }
}

/// Idle auto-suspend. Activity is the annotation `cocoon.cis/last-activity` (RFC 3339, written
/// by anything: the agent, a gateway, `kubectl cocoon touch`) and any edit of the spec.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IdleSpec {
    /// Suspend after this long without activity, a duration such as `30m` or `1h 30m`.
    #[schemars(regex(pattern = r"^ *([0-9]+ *(ms|s|m|h|d) *)+$"))]
    pub after: String,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// What the operator does when the node of a set is deleted from the cluster.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeLossPolicy {
    /// Report the lost VMs (condition `NodeLost`, a Warning Event); create nothing.
    #[default]
    Report,
    /// Place the set again; VMs restore from a registry snapshot where one exists.
    Recreate,
}

impl NodeLossPolicy {
    /// Whether this is the default (`report`), which is not written back.
    pub fn is_default(&self) -> bool {
        *self == Self::Report
    }
}

/// The agent VMs: slot 0 is the main agent, slots 1..=replicas are sub-agents forked from it.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// VM image of every agent.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Number of sub-agents (slots 1..=replicas) forked from the main, which is always there;
    /// 0 to 64.
    #[serde(default)]
    #[schemars(range(min = 0, max = 64))]
    pub replicas: i32,
    /// Extra sub-agent slots (replicas+1..=replicas+warm) kept forked and hibernated (or
    /// released, with `hibernatePolicy: release`); scaling up wakes the lowest of them instead
    /// of forking, and the pool refills. 0 to 16.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0, max = 16))]
    pub warm: i32,
    /// CPU and memory of every agent VM; they become the `vm` container's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<VmResources>,
    /// Disk size, e.g. `100G`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"))]
    pub storage: Option<String>,
    /// ConfigMaps and Secrets whose keys become environment variables of every agent pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromRef>,
    /// ServiceAccount of every agent pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// What to do with a sub-agent whose VM booted from the image because its fork failed:
    /// `keep` (default: report it, condition `ForkFellBack`) or `recreate` (delete it once the
    /// main serves again, so that it is forked anew).
    #[serde(default, skip_serializing_if = "ForkFallbackPolicy::is_default")]
    pub on_fork_fallback: ForkFallbackPolicy,
}

/// What the operator does with a sub-agent that booted from the image instead of forking.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForkFallbackPolicy {
    /// Keep it; report it (condition `ForkFellBack`, a Warning Event).
    #[default]
    Keep,
    /// Delete and recreate it once the main serves again, so that it forks.
    Recreate,
}

impl ForkFallbackPolicy {
    /// Whether this is the default (`keep`), which is not written back.
    pub fn is_default(&self) -> bool {
        *self == Self::Keep
    }
}

/// CPU and memory of a VM; they become the `vm` container's limits.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct VmResources {
    /// CPU limit, a Kubernetes quantity such as `2` or `500m`; unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"))]
    pub cpu: Option<String>,
    /// Memory limit, a Kubernetes quantity such as `4Gi`; unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"))]
    pub memory: Option<String>,
}

/// One source of environment variables: a ConfigMap or a Secret, by name.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMapRef) != has(self.secretRef)").message("set exactly one of configMapRef and secretRef"))]
pub struct EnvFromRef {
    /// ConfigMap whose keys become environment variables; set this or `secretRef`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<NameRef>,
    /// Secret whose keys become environment variables; set this or `configMapRef`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<NameRef>,
}

/// A reference to an object by name in the same namespace.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct NameRef {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What vk-cocoon snapshots when a pod of the set is deleted.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotPolicy {
    /// Every VM.
    #[default]
    Always,
    /// Only the main agent (slot 0).
    MainOnly,
    /// None.
    Never,
}

impl SnapshotPolicy {
    /// The policy as spelled in the CRD and the `cocoon.cis/snapshot-policy` annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::MainOnly => "main-only",
            Self::Never => "never",
        }
    }
}

/// A toolbox VM beside the agents.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && !self.name.matches('^[0-9]+$')").message("toolbox name must be a DNS label (lower-case letters, digits, '-') that is not purely numeric").field_path(".name"))]
#[x_kube(validation = Rule::new("self.mode == 'static' || has(self.image)").message("image is required unless mode is static").field_path(".image"))]
pub struct ToolboxSpec {
    /// Unique in the set; the pod is `<set>-<name>`.
    #[schemars(length(min = 1, max = 40))]
    pub name: String,
    /// Guest operating system; without a VNC port it decides how a person connects (`rdp` for
    /// windows, `adb` for android, `ssh` for linux).
    #[serde(default)]
    pub os: ToolboxOs,
    /// VM image; required unless `mode` is `static`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How vk-cocoon provides the VM: boot the image (`run`), clone its snapshot (`clone`) or
    /// adopt an existing VM (`static`).
    #[serde(default)]
    pub mode: ToolboxMode,
    /// Address of an existing VM to adopt (static mode only).
    #[serde(default, rename = "staticIP", skip_serializing_if = "Option::is_none")]
    pub static_ip: Option<String>,
    /// ID of an existing VM to adopt (static mode only).
    #[serde(default, rename = "staticVMID", skip_serializing_if = "Option::is_none")]
    pub static_vm_id: Option<String>,
    /// VNC port of an existing VM (static mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub vnc_port: Option<i32>,
    /// CPU and memory of the toolbox VM; they become the `vm` container's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<VmResources>,
    /// Disk size, e.g. `100G`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"))]
    pub storage: Option<String>,
}

/// Guest operating system of a toolbox.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ToolboxOs {
    /// Linux; reached by SSH unless a VNC port is known.
    #[default]
    Linux,
    /// Windows; reached by RDP unless a VNC port is known.
    Windows,
    /// Android; reached by ADB unless a VNC port is known.
    Android,
}

impl ToolboxOs {
    /// The OS as spelled in the CRD and the `cocoon.cis/os` annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::Windows => "windows",
            Self::Android => "android",
        }
    }
}

/// How vk-cocoon provides a toolbox VM.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ToolboxMode {
    /// Boot a fresh VM from the image.
    #[default]
    Run,
    /// Clone the image's snapshot.
    Clone,
    /// Adopt an existing VM by address.
    Static,
}

impl ToolboxMode {
    /// The mode as spelled in the CRD and the `cocoon.cis/mode` annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Clone => "clone",
            Self::Static => "static",
        }
    }
}

/// Lifecycle phase of a CocoonSet.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CocoonSetPhase {
    /// The main agent is not running yet.
    #[default]
    Pending,
    /// Pods are being created, deleted or woken.
    Scaling,
    /// Every desired VM runs and is ready.
    Running,
    /// Hibernation of the set's VMs is requested and not complete.
    Suspending,
    /// Every VM of the set is hibernated.
    Suspended,
    /// The set cannot make progress; see `message`.
    Failed,
    /// The set's VMs move to another node (`status.migration` says where and how far).
    Migrating,
}

impl CocoonSetPhase {
    /// The phase as spelled in status, condition reasons and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Scaling => "Scaling",
            Self::Running => "Running",
            Self::Suspending => "Suspending",
            Self::Suspended => "Suspended",
            Self::Failed => "Failed",
            Self::Migrating => "Migrating",
        }
    }
}

/// A migration of a set between nodes.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// The node the VMs leave.
    pub from: String,
    /// The node they go to.
    pub to: String,
    /// How far it is.
    pub phase: MigrationPhase,
}

/// The steps of a migration.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationPhase {
    /// The VMs on the old node are hibernated into the registry; each pod goes once its
    /// snapshot is there.
    Hibernating,
    /// The pods are created on the new node and restore from their snapshots.
    Restoring,
}

/// Phase of one VM of a set, as shown in status.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VmPhase {
    /// No pod, and none being created.
    #[default]
    Missing,
    /// The pod exists (or its create went through); the provider has not started the VM yet.
    Pending,
    /// The provider refused the VM (pod reason `ProviderFailed`); it retries.
    ProviderFailed,
    /// The VM runs but is not Ready yet.
    Starting,
    /// The VM runs and is Ready: it serves.
    Running,
    /// Hibernation is requested; the VM has not reported hibernated yet.
    Hibernating,
    /// The VM is hibernated: its snapshot holds its state.
    Hibernated,
    /// The hibernation request is gone; the VM has not come back yet.
    Waking,
    /// The pod is being deleted.
    Terminating,
    /// The pod failed for good; it is deleted and recreated.
    Failed,
    /// The pod finished; it is deleted and recreated.
    Succeeded,
    /// The pod reports a phase Kubernetes does not define.
    Unknown,
    /// `hibernatePolicy: release`: the pod was deleted once its VM was hibernated; the VM waits
    /// in its snapshot and is recreated from it on resume.
    Released,
}

impl VmPhase {
    /// The phase as spelled in status and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "Missing",
            Self::Pending => "Pending",
            Self::ProviderFailed => "ProviderFailed",
            Self::Starting => "Starting",
            Self::Running => "Running",
            Self::Hibernating => "Hibernating",
            Self::Hibernated => "Hibernated",
            Self::Waking => "Waking",
            Self::Terminating => "Terminating",
            Self::Failed => "Failed",
            Self::Succeeded => "Succeeded",
            Self::Unknown => "Unknown",
            Self::Released => "Released",
        }
    }
}

impl std::fmt::Display for VmPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a person connects to a toolbox VM.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConnType {
    /// VNC, on the toolbox's `vncPort`.
    Vnc,
    /// Android Debug Bridge (an android toolbox without a VNC port).
    Adb,
    /// Remote Desktop (a windows toolbox without a VNC port).
    Rdp,
    /// SSH (a linux toolbox without a VNC port).
    Ssh,
}

/// Observed state of a CocoonSet.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CocoonSetStatus {
    /// Where the set is in its lifecycle; `Running` once every desired VM runs and is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CocoonSetPhase>,
    /// Agents that are Running, Ready and not hibernated.
    #[serde(default)]
    pub ready_agents: i32,
    /// 1 + replicas.
    #[serde(default)]
    pub desired_agents: i32,
    /// Toolboxes whose VM is Running and Ready.
    #[serde(default)]
    pub ready_toolboxes: i32,
    /// Sub-agent pods that exist and are not being deleted: the current count of the scale
    /// subresource (`kubectl scale`, autoscalers), whose desired count is `spec.agent.replicas`.
    #[serde(default)]
    pub replicas: i32,
    /// Label selector of the set's sub-agent pods, for autoscalers that read pod metrics through
    /// the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// One entry per agent slot (0..=replicas, plus slots still being scaled down), by slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentStatus>,
    /// The warm slots (replicas+1..=replicas+warm): forked, hibernated or released, waiting
    /// for a scale-up. Not counted in `readyAgents`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warm_agents: Vec<AgentStatus>,
    /// One entry per toolbox listed in the spec, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub toolboxes: Vec<ToolboxStatus>,
    /// Why the set is not Running, when something needs a person's attention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Idle auto-suspend bookkeeping, present when `spec.idle` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleStatus>,
    /// The node the set's VMs are on: `spec.nodeName`, else the node the scheduler placed the
    /// main on. Kept while the set lives: a pod created again goes back to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A move of the set's VMs to another node (`spec.nodeName` changed, or `kubectl cocoon
    /// migrate`), recorded so that it carries on across operator restarts; gone once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,
    /// Standard conditions: `Ready` (phase `Running`), `Progressing` (`Pending`, `Scaling` or
    /// `Suspending`), `Suspended` (reason `Idle` when idle auto-suspend did it),
    /// `ForkFellBack` and `NodeLost`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What the operator remembers of idle auto-suspend (the activity stamp itself is the
/// `cocoon.cis/last-activity` annotation).
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdleStatus {
    /// Latest activity seen other than the stamp: the last spec edit, or a resume after idling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_since: Option<Time>,
    /// Set while the operator keeps the set suspended for being idle: since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_since: Option<Time>,
}

/// One agent VM of the set.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Slot number: 0 is the main agent, 1..=replicas are sub-agents.
    pub slot: i32,
    /// `main` or `sub-agent`.
    pub role: String,
    /// Name of the agent's pod, `<set>-<slot>`.
    pub pod_name: String,
    /// Name of the VM as the pod reports it, else the expected `vk-<namespace>-<set>-<slot>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_name: Option<String>,
    /// ID of the VM, as vk-cocoon reports it on the pod (`cocoon.cis/vm-id`).
    #[serde(default, rename = "vmID", skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    /// Address of the VM, shown only while it serves (Running, Ready, not hibernated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Phase of the VM (see [`VmPhase`]).
    pub phase: VmPhase,
    /// VM the sub-agent's VM really was forked from, as the provider reports it; unset for
    /// the main, for a VM restored or booted from the image, and until the VM is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<String>,
    /// What the VM came from, read from what the provider reports (`cocoon.cis/snapshot-from`):
    /// `fork:<vm>`, `restore:<snapshot>` or `image:<image>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The VM's entry in the `cocoon-vm-snapshots` ConfigMap, while one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_ref: Option<String>,
    /// The node the VM's pod is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// One toolbox VM of the set.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ToolboxStatus {
    /// Name of the toolbox, as in the spec.
    pub name: String,
    /// Name of the toolbox's pod, `<set>-<toolbox>`.
    pub pod_name: String,
    /// Name of the VM as the pod reports it, else the expected `vk-<namespace>-<set>-<toolbox>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_name: Option<String>,
    /// ID of the VM, as reported on the pod (`cocoon.cis/vm-id`).
    #[serde(default, rename = "vmID", skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    /// Address of the VM, as reported on the pod (`cocoon.cis/ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Phase of the VM (see [`VmPhase`]): `Running` when it serves.
    pub phase: VmPhase,
    /// How to connect: `vnc` if a VNC port is known, else `adb` (android), `rdp` (windows) or
    /// `ssh` (linux).
    pub conn_type: ConnType,
    /// VNC port the pod reports (`cocoon.cis/vnc-port`), else the spec's `vncPort` if static.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnc_port: Option<i32>,
    /// The node the VM's pod is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

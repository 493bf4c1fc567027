//! The `CocoonSet` resource: a main agent VM, sub-agents forked from it, and toolbox VMs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
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
    validation = Rule::new("size(self.metadata.name) <= 50").message("metadata.name must be at most 50 characters: it becomes pod names and label values"),
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyAgents"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredAgents"}"#,
    printcolumn = r#"{"name":"Toolboxes","type":"integer","jsonPath":".status.readyToolboxes","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CocoonSetSpec {
    pub agent: AgentSpec,
    /// Hibernate every VM of the set.
    #[serde(default)]
    pub suspend: bool,
    /// Virtual node every pod is bound to.
    #[serde(default = "default_node_name")]
    #[schemars(length(min = 1, max = 253))]
    pub node_name: String,
    /// What vk-cocoon snapshots when a pod is deleted.
    #[serde(default)]
    pub snapshot_policy: SnapshotPolicy,
    /// Extra VMs beside the agents, each with a unique name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u.name == t.name))").message("toolbox names must be unique in the set"))]
    pub toolboxes: Vec<ToolboxSpec>,
}

fn default_node_name() -> String {
    crate::contract::DEFAULT_NODE_NAME.to_string()
}

/// The agent VMs: slot 0 is the main agent, slots 1..=replicas are sub-agents forked from it.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// VM image of every agent.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Number of sub-agents (the main agent is always there).
    #[serde(default)]
    #[schemars(range(min = 0, max = 64))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<VmResources>,
    /// Disk size, e.g. `100G`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"))]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// CPU and memory of a VM; they become the `vm` container's limits.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct VmResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"))]
    pub cpu: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<NameRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<NameRef>,
}

/// A reference to an object by name in the same namespace.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct NameRef {
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
    #[serde(default)]
    pub os: ToolboxOs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<VmResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"))]
    pub storage: Option<String>,
}

/// Guest operating system of a toolbox.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ToolboxOs {
    #[default]
    Linux,
    Windows,
    Android,
}

impl ToolboxOs {
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
}

impl CocoonSetPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Scaling => "Scaling",
            Self::Running => "Running",
            Self::Suspending => "Suspending",
            Self::Suspended => "Suspended",
            Self::Failed => "Failed",
        }
    }
}

/// How a person connects to a toolbox VM.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConnType {
    Vnc,
    Adb,
    Rdp,
    Ssh,
}

/// Observed state of a CocoonSet.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CocoonSetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CocoonSetPhase>,
    /// Agents that are Running, Ready and not hibernated.
    #[serde(default)]
    pub ready_agents: i32,
    /// 1 + replicas.
    #[serde(default)]
    pub desired_agents: i32,
    #[serde(default)]
    pub ready_toolboxes: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub toolboxes: Vec<ToolboxStatus>,
    /// Why the set is not Running, when something needs a person's attention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One agent VM of the set.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    pub slot: i32,
    /// `main` or `sub-agent`.
    pub role: String,
    pub pod_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_name: Option<String>,
    #[serde(default, rename = "vmID", skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// `Missing`, `Creating`, `Running`, `Hibernated`, `Terminating`, `Failed`, ...
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_ref: Option<String>,
}

/// One toolbox VM of the set.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ToolboxStatus {
    pub name: String,
    pub pod_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_name: Option<String>,
    #[serde(default, rename = "vmID", skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub phase: String,
    pub conn_type: ConnType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnc_port: Option<i32>,
}

//! The `Hibernation` resource: hibernate or wake one VM-backed pod without deleting the pod.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of one pod's VM.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[kube(
    crates(kube_core = "::kube_core", kube = "::kube_derive"),
    group = "cocoon.cis",
    version = "v1alpha1",
    kind = "Hibernation",
    namespaced,
    shortname = "hib",
    category = "cocoon",
    status = "HibernationStatus",
    printcolumn = r#"{"name":"Pod","type":"string","jsonPath":".spec.podName"}"#,
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"VM","type":"string","jsonPath":".status.vmName","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HibernationSpec {
    /// Name of the target pod, in the Hibernation's namespace (a DNS subdomain). Immutable: to
    /// target another pod, create another Hibernation.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("podName is immutable: to target another pod, create another Hibernation"))]
    pub pod_name: String,
    /// What the VM should be: `hibernate` (snapshot and stop) or `wake` (restore and run).
    #[serde(default)]
    pub action: HibernationAction,
}

/// The action a Hibernation requests.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum HibernationAction {
    /// Snapshot the VM and stop it; the pod object stays.
    #[default]
    Hibernate,
    /// Restore the VM from its snapshot.
    Wake,
}

impl HibernationAction {
    /// The action as spelled in the CRD.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hibernate => "hibernate",
            Self::Wake => "wake",
        }
    }
}

/// Lifecycle phase of a Hibernation.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HibernationPhase {
    /// Not yet acted on.
    #[default]
    Pending,
    /// The hibernate request is written to the pod; waiting for the VM to report hibernated.
    Hibernating,
    /// The VM is hibernated and its snapshot entry exists.
    Hibernated,
    /// The wake request is written; waiting for the VM to run and be ready again.
    Waking,
    /// The VM runs and is ready.
    Active,
    /// The round could not complete (missing pod, timeout, conflict); see `message`.
    Failed,
}

impl HibernationPhase {
    /// The phase as spelled in status and condition reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Hibernating => "Hibernating",
            Self::Hibernated => "Hibernated",
            Self::Waking => "Waking",
            Self::Active => "Active",
            Self::Failed => "Failed",
        }
    }
}

/// Observed state of a Hibernation.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HibernationStatus {
    /// Where the Hibernation is in its lifecycle; `Hibernated` or `Active` once a round completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<HibernationPhase>,
    /// The action of the round this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<HibernationAction>,
    /// Name of the target pod's VM (`cocoon.cis/vm-name`), as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_name: Option<String>,
    /// The snapshot entry value once hibernated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_ref: Option<String>,
    /// Why the round failed; set only while `phase` is `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Changes only when `phase` changes; for `Hibernating`/`Waking` it is when the request was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: `Ready` is True once the requested action is complete; while `Failed`,
    /// its reason says why (`PodMissing`, `Conflict`, `Timeout` or `Overridden`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

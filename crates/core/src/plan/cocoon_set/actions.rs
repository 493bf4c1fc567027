//! The pod writes a CocoonSet pass can make, and why a pod is deleted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::api::VmPhase;

/// Why a pod is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// Its slot is above `replicas`.
    ScaleDown,
    /// Its toolbox is no longer listed.
    ToolboxRemoved,
    /// It reached Failed or Succeeded; it is recreated after it is gone.
    Terminal,
    /// The set is being deleted.
    Teardown,
    /// The set is suspended with `hibernatePolicy: release`: the pod's VM is hibernated and
    /// its snapshot entry exists; the pod is recreated (and restores) on resume.
    Released,
    /// A sub-agent booted from the image instead of forking, and `onForkFallback: recreate`
    /// asks for it to be forked anew now that the main serves again.
    ForkFellBack,
    /// Its node is gone from the cluster and `onNodeLoss: recreate` places the set again:
    /// deleted at once (grace 0), since no provider is left there to finish a graceful delete.
    NodeLost,
    /// The set moves to another node: a pod left on the old one once the agents are gone.
    Migrating,
}

impl DeleteReason {
    /// The reason as spelled in the delete's Event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaleDown => "ScaleDown",
            Self::ToolboxRemoved => "ToolboxRemoved",
            Self::Terminal => "Terminal",
            Self::Teardown => "Teardown",
            Self::ForkFellBack => "ForkFellBack",
            Self::Released => "Released",
            Self::NodeLost => "NodeLost",
            Self::Migrating => "Migrating",
        }
    }

    /// The grace period the delete asks for: `None` for the pod's own (the provider's delete
    /// hook snapshots and removes the VM), 0 where no provider is left to run it.
    pub fn grace_seconds(self) -> Option<u32> {
        (self == Self::NodeLost).then_some(0)
    }
}

/// One write to a pod, in the order the actor must execute them.
#[derive(Clone, Debug, PartialEq)]
pub enum PodAction {
    /// Create the main agent (slot 0).
    CreateMain {
        /// The complete pod to create.
        pod: Box<Pod>,
    },
    /// Create sub-agent `slot`, forked from the main VM.
    CreateSubAgent {
        /// Its slot, in 1..=replicas.
        slot: u32,
        /// VM name of the main agent.
        fork_from: String,
        /// The complete pod to create.
        pod: Box<Pod>,
    },
    /// Create a toolbox.
    CreateToolbox {
        /// Name of the toolbox, as in the spec.
        toolbox: String,
        /// The complete pod to create.
        pod: Box<Pod>,
    },
    /// Delete a pod (with its normal grace period), guarded by its UID so that a replacement
    /// of the same name is never deleted.
    Delete {
        /// The pod.
        pod_name: String,
        /// Its UID as viewed.
        uid: Option<String>,
        /// Why.
        reason: DeleteReason,
        /// Its phase as shown in status when the delete was decided (for the Event).
        was: VmPhase,
    },
    /// Put back the operator's labels a user changed or removed (`None` removes a label).
    RepairLabels {
        /// The pod.
        pod_name: String,
        /// Its UID as viewed.
        uid: Option<String>,
        /// The labels to merge-patch.
        labels: BTreeMap<String, Option<String>>,
    },
    /// Tell the provider, right before the pod's delete, what to do with the VM's snapshot:
    /// keep none (seed, `snapshot-policy: never`: the pod that replaces a fallen-back fork must
    /// not restore it), or keep the node-local one (current, `keep-snapshot-on-delete`: a
    /// released VM restores faster on the same node).
    PrepareDelete {
        /// The pod.
        pod_name: String,
        /// The annotations to merge-patch.
        annotations: BTreeMap<String, Option<String>>,
    },
    /// Remove `<vm>:hibernate` from the provider's registry (cocoonstack): a stale one before a
    /// new pod of that name is created (a current provider would restore it), a woken VM's,
    /// or every VM's when the set is deleted. With `keep`, it is first copied to `<vm>:latest`
    /// (the delete-time snapshot the set's policy keeps).
    CollectSnapshot {
        /// The pod the VM belongs (or belonged) to.
        pod_name: String,
        /// The VM.
        vm_name: String,
        /// Keep it as `<vm>:latest`.
        keep: bool,
    },
    /// Ask the provider's registry whether `<vm>:hibernate` exists (cocoonstack): the pod of a
    /// VM that was hibernating went (v0.2.9 deletes some pods it hibernates, PROVIDERS.md
    /// §6.14); if its snapshot was pushed, the VM comes back from it.
    ProbeSnapshot {
        /// The pod that went.
        pod_name: String,
        /// Its VM.
        vm_name: String,
    },
    /// Ask a pod to hibernate (`true`) or wake (`false`).
    SetHibernate {
        /// The pod.
        pod_name: String,
        /// What is asked.
        hibernate: bool,
        /// The annotations that ask it, in the pod's dialect (with its generation stamp).
        annotations: BTreeMap<String, Option<String>>,
    },
}

impl PodAction {
    /// The pod this action writes.
    pub fn pod_name(&self) -> &str {
        match self {
            Self::CreateMain { pod }
            | Self::CreateSubAgent { pod, .. }
            | Self::CreateToolbox { pod, .. } => pod.metadata.name.as_deref().unwrap_or_default(),
            Self::Delete { pod_name, .. }
            | Self::SetHibernate { pod_name, .. }
            | Self::PrepareDelete { pod_name, .. }
            | Self::CollectSnapshot { pod_name, .. }
            | Self::ProbeSnapshot { pod_name, .. }
            | Self::RepairLabels { pod_name, .. } => pod_name,
        }
    }

    /// Whether the action creates a pod.
    pub fn is_create(&self) -> bool {
        matches!(
            self,
            Self::CreateMain { .. } | Self::CreateSubAgent { .. } | Self::CreateToolbox { .. }
        )
    }
}

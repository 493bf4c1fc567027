//! What the planners need to know about a pod, extracted once from the API object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::vec_map::VecMap;
use crate::api::VmPhase;
use crate::api::conditions::ConditionType;
use crate::contract::{self, Dialect, LifecycleState};

/// Snapshot entries of one namespace (`cocoon-vm-snapshots` data): VM name → snapshot value.
pub type Snapshots = BTreeMap<String, String>;

/// The operator's labels on a pod, sorted by key (see [`VecMap`]).
pub type Labels = VecMap<Text>;

/// A short string kept inline (up to 24 bytes: most names, addresses and label values of a
/// pod) instead of on the heap: a pod's view is cached for every pod the operator manages.
pub type Text = compact_str::CompactString;

/// A string as a [`Text`].
fn text(s: impl AsRef<str>) -> Text {
    Text::from(s.as_ref())
}

/// A view's text as the owned string a status or an action keeps.
pub fn owned(t: &Option<Text>) -> Option<String> {
    t.as_deref().map(str::to_string)
}

/// Role of a pod in a CocoonSet, from its labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodRole {
    /// The main agent (slot 0).
    Main,
    /// A sub-agent, forked from the main.
    SubAgent,
    /// A toolbox VM.
    Toolbox,
}

/// What a VM came from, as the provider reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lineage {
    /// Cloned from a snapshot of the running VM `from` (a fork).
    Fork {
        /// The VM forked.
        from: String,
    },
    /// Cloned from its own hibernation snapshot (a restore).
    Restore {
        /// The snapshot, `<vm>-suspend`.
        snapshot: String,
    },
    /// Booted from its image.
    Image {
        /// The image, as the provider names it.
        image: String,
    },
}

impl Lineage {
    /// The status's own words for it (`status.agents[].source`): `fork:<vm>`,
    /// `restore:<snapshot>` or `image:<image>`.
    pub fn source(&self) -> String {
        match self {
            Self::Fork { from } => format!("fork:{from}"),
            Self::Restore { snapshot } => format!("restore:{snapshot}"),
            Self::Image { image } => format!("image:{image}"),
        }
    }

    /// Reads back the status's words ([`Lineage::source`]), for clients of the status.
    pub fn from_source(source: &str) -> Option<Self> {
        let (kind, name) = source.split_once(':')?;
        let name = name.to_string();
        match kind {
            "fork" => Some(Self::Fork { from: name }),
            "restore" => Some(Self::Restore { snapshot: name }),
            "image" => Some(Self::Image { image: name }),
            _ => None,
        }
    }
}

/// A lifecycle state as a current provider publishes it: the state, the generation stamp it
/// had seen, and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// The state.
    pub state: LifecycleState,
    /// The operator's stamp the provider had seen when it wrote the state.
    pub observed: Option<i64>,
    /// Why it failed (only with `failed`).
    pub message: Option<String>,
}

impl Lifecycle {
    /// Whether the state answers the stamp `stamp` (the provider had seen it, or a later one).
    pub fn answers(&self, stamp: Option<i64>) -> bool {
        self.observed.unwrap_or(0) >= stamp.unwrap_or(0)
    }
}

/// Coarse pod phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    /// Pending, or no phase reported yet.
    Pending,
    /// Running; a hibernated VM's pod is Running too (see [`PodView::reports_hibernated`]).
    Running,
    /// Succeeded: terminal.
    Succeeded,
    /// Failed: terminal.
    Failed,
    /// Any other phase.
    Unknown,
}

/// The facts of a [`PodView`] that most pods never carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRare {
    /// The pod's status reason (e.g. `ProviderFailed`).
    pub reason: Option<Text>,
    /// The pod's status message.
    pub message: Option<Text>,
    /// Name of the Hibernation that holds the pod (`cocoon.cis/hibernated-by`).
    pub hibernated_by: Option<Text>,
    /// Why the scheduler cannot place the pod (its `PodScheduled` condition is False), in the
    /// scheduler's words.
    pub unschedulable: Option<Text>,
    /// The lifecycle state the provider published (current).
    pub lifecycle: Option<Lifecycle>,
    /// `controller.kubernetes.io/pod-deletion-cost` as set, even if empty.
    pub deletion_cost: Option<Text>,
    /// The cost the pod had before a Hibernation raised it (`cocoon.cis/previous-deletion-cost`);
    /// empty means it had none.
    pub previous_deletion_cost: Option<Text>,
}

/// None of them: a running pod's usual case, the part every [`Seldom`] without one reads.
static NO_RARE: PodRare = PodRare {
    reason: None,
    message: None,
    hibernated_by: None,
    unschedulable: None,
    lifecycle: None,
    deletion_cost: None,
    previous_deletion_cost: None,
};

/// A pod's [`PodRare`] facts, allocated only when it carries one: reads of a pod without
/// any see [`NO_RARE`], and the first write through `DerefMut` allocates (even a write of
/// `None`; equality treats such an empty part as none). Hot paths build one with
/// [`Seldom::new`].
#[derive(Clone, Default)]
pub struct Seldom(Option<Box<PodRare>>);

impl Seldom {
    /// Keeps `rare`, without an allocation when it holds nothing.
    pub fn new(rare: PodRare) -> Self {
        Self((rare != NO_RARE).then(|| Box::new(rare)))
    }
}

impl std::ops::Deref for Seldom {
    type Target = PodRare;
    fn deref(&self) -> &PodRare {
        self.0.as_deref().unwrap_or(&NO_RARE)
    }
}

impl std::ops::DerefMut for Seldom {
    fn deref_mut(&mut self) -> &mut PodRare {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for Seldom {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Seldom {}

impl std::fmt::Debug for Seldom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// The facts about one pod that planning and the operator's router read. The operator caches
/// pods in this form only: a watched pod object is viewed and dropped (a pod object with its
/// status costs several KiB; a view a few hundred bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// Name of the pod.
    pub name: Text,
    /// Namespace of the pod.
    pub namespace: Text,
    /// The pod's own UID (delete preconditions; a recreated pod is another pod).
    pub uid: Option<Text>,
    /// UID of the controller owner, if any.
    pub controller_uid: Option<Text>,
    /// Role in its set, from the pod's name and the set's spec (see [`PodView::identify`]);
    /// never from a label anyone can edit.
    pub role: Option<PodRole>,
    /// Agent slot, from the pod's name (see [`PodView::identify`]).
    pub slot: Option<u32>,
    /// The operator's labels as the pod carries them ([`contract::OBSERVED_LABELS`]: compared
    /// to be put back).
    pub labels: Labels,
    /// What most pods never carry (a failure's words, a Hibernation's hold, a deletion cost,
    /// the current dialect's lifecycle state), kept apart so that the views of thousands of
    /// running pods do not each hold room for it.
    pub rare: Seldom,
    /// Coarse `status.phase`.
    pub phase: PodPhase,
    /// Ready condition is True.
    pub ready: bool,
    /// When the Ready condition last changed.
    pub ready_changed_at: Option<Timestamp>,
    /// The provider shows the VM hibernated, in its dialect's shape: the container waiting
    /// `Hibernated` (seed); Pending with no VM, no container and no VM id (v0.2); the
    /// lifecycle state `hibernated`, whatever generation it answered (current). See
    /// [`PodView::reports_hibernated`] for a report that answers the latest request.
    pub hibernated: bool,
    /// Has a deletionTimestamp: gone for planning, but still holds its name.
    pub terminating: bool,
    /// `cocoon.cis/hibernate=true` is set.
    pub hibernate_requested: bool,
    /// Name of the pod's VM (`cocoon.cis/vm-name`).
    pub vm_name: Option<Text>,
    /// ID of the pod's VM (`cocoon.cis/vm-id`).
    pub vm_id: Option<Text>,
    /// Address of the pod's VM (`cocoon.cis/ip`).
    pub ip: Option<Text>,
    /// VM name a sub-agent forks from (`cocoon.cis/fork-from`).
    pub fork_from: Option<Text>,
    /// What the provider cloned the VM from (`cocoon.cis/snapshot-from`), as the bare name it
    /// writes; [`PodView::lineage`] reads it.
    pub snapshot_from: Option<Text>,
    /// When the pod was created.
    pub created_at: Option<Timestamp>,
    /// How vk-cocoon provides the VM (`mode`).
    pub mode: Option<Text>,
    /// The image (or snapshot) the pod asks the provider to boot or clone (`image`).
    pub image: Option<Text>,
    /// The dialect whose keys the pod carries ([`Dialect::of_annotations`]); `None` when it
    /// carries no provider key.
    pub dialect: Option<Dialect>,
    /// The node the pod is bound to.
    pub node: Option<Text>,
    /// A scheduler has looked at the pod: it has a `PodScheduled` condition, either way.
    pub scheduler_looked: bool,
    /// The generation stamp the operator last wrote on the pod (current).
    pub stamp: Option<i64>,
    /// The pod asks to restore its VM from its `:hibernate` snapshot (current).
    pub restore_marked: bool,
    /// VNC port of the VM (`cocoon.cis/vnc-port`), if it parses.
    pub vnc_port: Option<i32>,
}

impl PodView {
    /// Running, Ready and not hibernated: the VM serves. A current provider also says so in
    /// its lifecycle state (`ready` for the latest stamp), which it publishes after Ready
    /// (PROVIDERS.md §6.10): the state is what counts.
    pub fn is_serving(&self) -> bool {
        self.phase == PodPhase::Running
            && self.ready
            && !self.hibernated
            && !self.terminating
            && self.lifecycle_is(LifecycleState::Ready)
    }

    /// No lifecycle state (seed, v0.2), or the state `state` answering the latest stamp.
    fn lifecycle_is(&self, state: LifecycleState) -> bool {
        self.rare.lifecycle.as_ref().is_none_or(|l| l.state == state && l.answers(self.stamp))
    }

    /// The provider's own words for why it could not provide the VM: a create or update it
    /// refused (`ProviderFailed`), a `failed` lifecycle state answering the latest stamp, or a
    /// pod it failed for good. `None` while nothing failed.
    pub fn provider_failure(&self) -> Option<String> {
        if let Some(l) = self.rare.lifecycle.as_ref().filter(|l| l.state == LifecycleState::Failed)
            && l.answers(self.stamp)
        {
            return Some(l.message.clone().unwrap_or_else(|| "lifecycle state failed".into()));
        }
        // A running VM's pod outlives the refusal it may have shown before.
        let refused = self.rare.reason.as_deref() == Some(contract::REASON_PROVIDER_FAILED)
            && self.phase != PodPhase::Running;
        (refused || self.phase == PodPhase::Failed).then(|| {
            let words = self.rare.message.as_deref().or(self.rare.reason.as_deref());
            words.unwrap_or("the pod failed").to_string()
        })
    }

    /// The keys to write on this pod: those of the dialect it speaks, else `fallback` (its
    /// node's) when it carries no provider key yet.
    pub fn keys(&self, fallback: Dialect) -> &'static contract::Keys {
        self.dialect.unwrap_or(fallback).keys()
    }

    /// The generation stamp the next request carries: above every stamp the pod or the
    /// provider's answer has shown (the provider drops answers to lower stamps).
    pub fn next_stamp(&self) -> i64 {
        let observed = self.rare.lifecycle.as_ref().and_then(|l| l.observed);
        self.stamp.max(observed).unwrap_or(0).saturating_add(1)
    }

    /// The annotations that ask this pod to hibernate (`true`) or wake (`false`).
    pub fn toggle(&self, hibernate: bool, fallback: Dialect) -> BTreeMap<String, Option<String>> {
        self.keys(fallback).toggle(hibernate, self.next_stamp())
    }

    /// Whether the pod's signals are newer than `since` (whole seconds: the wire's
    /// precision). Only seed signals can be stale: its hibernated shape outlives the round that
    /// made it, so a report counts when the Ready condition changed since. Cocoonstack signals
    /// are the state now (v0.2: no VM and its id removed; current: the state answers the
    /// stamp written with the request).
    pub fn signal_since(&self, since: Timestamp) -> bool {
        match self.dialect {
            Some(Dialect::V02 | Dialect::Current) => true,
            Some(Dialect::Seed) | None => {
                self.ready_changed_at.is_some_and(|t| t.as_second() >= since.as_second())
            }
        }
    }

    /// Finished for good: vk-cocoon will not bring it back.
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase, PodPhase::Succeeded | PodPhase::Failed)
    }

    /// Reports hibernated: seed (§4 item 4): Running, not Ready, container waiting
    /// `Hibernated`; v0.2: the hibernated shape; current: `hibernated` answering the latest
    /// stamp.
    pub fn reports_hibernated(&self) -> bool {
        match self.dialect {
            Some(Dialect::V02 | Dialect::Current) => {
                self.hibernated && self.lifecycle_is(LifecycleState::Hibernated)
            }
            Some(Dialect::Seed) | None => {
                self.phase == PodPhase::Running && !self.ready && self.hibernated
            }
        }
    }

    /// What the VM came from, read from the bare name the provider wrote in `snapshot-from`
    /// (vk-cocoon clones from `<vm>-suspend` to restore, from `<vm>-fork` to fork, else boots
    /// the image) and the pod's own VM name and `fork-from`. `None` until the provider says.
    /// A cocoonstack provider writes no such name: there the VM's lineage is what the pod
    /// asked for, once the VM exists (a fork that cannot be made fails the create).
    pub fn lineage(&self) -> Option<Lineage> {
        if matches!(self.dialect, Some(Dialect::V02 | Dialect::Current)) {
            return self.asked_lineage();
        }
        let from = self.snapshot_from.as_deref().filter(|s| !s.is_empty())?;
        let vm = self.vm_name.as_deref().unwrap_or_default();
        Some(if !vm.is_empty() && from == contract::snapshot_value(vm) {
            Lineage::Restore { snapshot: from.to_string() }
        } else if !vm.is_empty() && from == contract::fork_snapshot(vm) {
            // vk-cocoon forks a sub-agent that names no source from slot 0 of its set.
            let main = || vm.rsplit_once('-').map(|(set, _)| format!("{set}-0"));
            let from = self.fork_from.as_ref().map(Text::to_string).or_else(main);
            Lineage::Fork { from: from.unwrap_or_default() }
        } else {
            Lineage::Image { image: from.to_string() }
        })
    }

    /// What a cocoonstack pod asked for, once its VM exists: a restore (marked, or its image
    /// is its own `:hibernate` snapshot), a fork, or its image.
    fn asked_lineage(&self) -> Option<Lineage> {
        self.vm_id.as_ref()?;
        let vm = self.vm_name.as_deref().unwrap_or_default();
        let own_snapshot = contract::dialect::snapshot_tag(vm, contract::dialect::TAG_HIBERNATE);
        Some(if self.restore_marked || self.image.as_deref() == Some(own_snapshot.as_str()) {
            Lineage::Restore { snapshot: own_snapshot }
        } else if let Some(from) = &self.fork_from {
            Lineage::Fork { from: from.to_string() }
        } else {
            Lineage::Image { image: self.image.as_deref().unwrap_or_default().to_string() }
        })
    }

    /// A sub-agent asked to fork whose VM the provider booted from the image instead.
    pub fn fork_fell_back(&self) -> bool {
        self.role == Some(PodRole::SubAgent)
            && !self.terminating
            && self.fork_from.is_some()
            && matches!(self.lineage(), Some(Lineage::Image { .. }))
    }

    /// The VM this pod's VM was really forked from, per the provider.
    pub fn forked_from(&self) -> Option<String> {
        match self.lineage()? {
            Lineage::Fork { from } if !from.is_empty() => Some(from),
            _ => None,
        }
    }

    /// Whether the pod is a static toolbox: an adopted VM, never suspended with its set.
    pub fn is_static(&self) -> bool {
        self.mode.as_deref() == Some(crate::api::ToolboxMode::Static.as_str())
    }

    /// Sets role and slot from the pod's name within set `set`: `<set>-<n>` is agent slot `n`
    /// (0 the main), any other `<set>-<name>` a toolbox (toolbox names are never numeric).
    /// A name outside the set's scheme gets neither.
    pub fn identify(&mut self, set: &str) {
        let suffix = self.name.strip_prefix(set).and_then(|s| s.strip_prefix('-'));
        (self.role, self.slot) = match suffix {
            Some(s) if !s.is_empty() => match contract::parse_slot(s) {
                Some(0) => (Some(PodRole::Main), Some(0)),
                Some(slot) => (Some(PodRole::SubAgent), Some(slot)),
                None if s.bytes().all(|b| b.is_ascii_digit()) => (None, None),
                None => (Some(PodRole::Toolbox), None),
            },
            _ => (None, None),
        };
    }

    /// Whether a "deleted" event of a label-selected pod watch means the pod is gone. The event
    /// cannot tell a pod that left the selector (someone removed the label; the API server then
    /// sends the *previous* object, label and all) from one deleted at once (`--force`, grace
    /// 0). A pod being deleted, or Failed/Succeeded (the API server deletes those at once,
    /// without a deletionTimestamp), is gone; any other may only have lost the label.
    pub fn gone_when_deleted(&self) -> bool {
        self.terminating || self.is_terminal()
    }

    /// The view to keep of a pod a label-selected watch reported deleted, when it may only have
    /// left the selector (see [`PodView::gone_when_deleted`]): the pod as it was, without
    /// `label`, so that its owner writes the label back, and the API server's answer to that
    /// patch settles it (a 404 means it is gone). `None` when the pod is gone.
    pub fn left_the_watch(&self, label: &str) -> Option<PodView> {
        if self.gone_when_deleted() {
            return None;
        }
        let mut unlabelled = self.clone();
        unlabelled.labels.remove(label);
        Some(unlabelled)
    }

    /// A minimal view for tests and for pods the planner is about to create.
    pub fn new(name: impl AsRef<str>) -> Self {
        Self {
            name: text(name),
            namespace: Text::default(),
            uid: None,
            controller_uid: None,
            role: None,
            slot: None,
            labels: Labels::default(),
            rare: Seldom::default(),
            phase: PodPhase::Pending,
            ready: false,
            ready_changed_at: None,
            hibernated: false,
            terminating: false,
            hibernate_requested: false,
            vm_name: None,
            vm_id: None,
            ip: None,
            fork_from: None,
            snapshot_from: None,
            created_at: None,
            mode: None,
            image: None,
            dialect: None,
            node: None,
            scheduler_looked: false,
            stamp: None,
            restore_marked: false,
            vnc_port: None,
        }
    }

    /// Extracts the view from an API object, reading the provider's keys in the dialect the
    /// pod's annotations are in.
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let labels = meta.labels.as_ref();
        let annotations = meta.annotations.as_ref();
        let dialect = annotations.and_then(Dialect::of_annotations);
        // A pod with no provider key is read as seed (a workload's pod on a seed node): its
        // own keys are what it speaks once it has any.
        let keys = dialect.unwrap_or_default().keys();
        let ann = |k: &str| annotations.and_then(|a| a.get(k)).filter(|v| !v.is_empty()).map(text);
        let ann_opt = |k: Option<&str>| k.and_then(ann);
        let label = |k: &str| labels.and_then(|l| l.get(k)).map(text);
        let status = pod.status.as_ref();
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            Some("Pending") | None => PodPhase::Pending,
            Some(_) => PodPhase::Unknown,
        };
        let ready_condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == ConditionType::Ready.as_str()));
        let reason = status.and_then(|s| s.reason.as_ref()).map(text);
        let vm_id = ann(keys.vm_id);
        let lifecycle = ann_opt(keys.lifecycle_state).and_then(|v| {
            Some(Lifecycle {
                state: LifecycleState::parse(&v)?,
                observed: ann_opt(keys.lifecycle_generation).and_then(|g| g.parse().ok()),
                message: ann_opt(keys.lifecycle_message).map(String::from),
            })
        });
        let containers = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
        let hibernated = match dialect {
            Some(Dialect::V02 | Dialect::Current) => match &lifecycle {
                Some(l) => l.state == LifecycleState::Hibernated,
                // v0.2: the VM is gone (its id removed) and the pod shows no VM: Pending,
                // started once, no container; a refused create has no start and a reason.
                None => {
                    phase == PodPhase::Pending
                        && status.is_some_and(|s| s.start_time.is_some())
                        && containers.is_empty()
                        && vm_id.is_none()
                        && reason.as_deref() != Some(contract::REASON_PROVIDER_FAILED)
                }
            },
            Some(Dialect::Seed) | None => containers
                .iter()
                .filter(|c| c.name == Dialect::Seed.container())
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
                .any(|w| w.reason.as_deref() == Some(contract::REASON_HIBERNATED)),
        };
        // v0.2 writes no address after a wake (PROVIDERS.md §6.16); the pod status has it.
        let pod_ip = status.and_then(|s| s.pod_ip.as_ref()).filter(|ip| !ip.is_empty()).map(text);
        let ip = match dialect {
            Some(Dialect::V02 | Dialect::Current) => pod_ip.or_else(|| ann(keys.ip)),
            _ => ann(keys.ip),
        };
        let owned_labels =
            contract::OBSERVED_LABELS.iter().filter_map(|k| label(k).map(|v| (*k, v))).collect();
        let rare = Seldom::new(PodRare {
            reason,
            message: status.and_then(|s| s.message.as_ref()).map(text),
            hibernated_by: ann(contract::ANN_HIBERNATED_BY),
            unschedulable: status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False"))
                .map(|c| text(c.message.as_ref().or(c.reason.as_ref()).map_or("", |m| m.as_str()))),
            lifecycle,
            deletion_cost: annotations
                .and_then(|a| a.get(contract::ANN_POD_DELETION_COST))
                .map(text),
            previous_deletion_cost: annotations
                .and_then(|a| a.get(contract::ANN_PREVIOUS_DELETION_COST))
                .map(text),
        });
        Self {
            name: meta.name.as_ref().map(text).unwrap_or_default(),
            namespace: meta.namespace.as_ref().map(text).unwrap_or_default(),
            uid: meta.uid.as_ref().map(text),
            controller_uid: meta
                .owner_references
                .as_ref()
                .and_then(|o| o.iter().find(|o| o.controller == Some(true)))
                .map(|o| text(&o.uid)),
            role: None,
            slot: None,
            labels: owned_labels,
            rare,
            phase,
            ready: ready_condition.is_some_and(|c| c.status == "True"),
            ready_changed_at: ready_condition
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0),
            hibernated,
            terminating: meta.deletion_timestamp.is_some(),
            hibernate_requested: contract::asks_hibernate(ann(keys.hibernate).as_deref()),
            vm_name: ann(keys.vm_name),
            vm_id,
            ip,
            fork_from: ann(keys.fork_from),
            snapshot_from: ann_opt(keys.snapshot_from),
            created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
            mode: ann(keys.mode),
            image: ann(keys.image),
            dialect,
            node: pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).map(text),
            scheduler_looked: status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "PodScheduled")),
            stamp: ann_opt(keys.generation).and_then(|g| g.parse().ok()),
            restore_marked: ann_opt(keys.restore_from_hibernate).as_deref()
                == Some(contract::HIBERNATE_TRUE),
            vnc_port: ann(keys.vnc_port).and_then(|v| v.parse().ok()),
        }
    }
}

/// Phase of one VM as shown in status.
pub fn vm_phase(pod: Option<&PodView>, create_pending: bool) -> VmPhase {
    let Some(p) = pod else {
        // A create that went through made a Pending pod; the view has not shown it yet. Said
        // as the pod will be seen, so that the watch catching up changes nothing to write.
        return if create_pending { VmPhase::Pending } else { VmPhase::Missing };
    };
    if p.terminating {
        return VmPhase::Terminating;
    }
    match p.phase {
        PodPhase::Failed => VmPhase::Failed,
        PodPhase::Succeeded => VmPhase::Succeeded,
        PodPhase::Unknown => VmPhase::Unknown,
        _ if p.provider_failure().is_some() && p.phase != PodPhase::Failed => {
            VmPhase::ProviderFailed
        }
        // Cocoonstack: a hibernated VM's pod is Pending.
        PodPhase::Pending | PodPhase::Running
            if p.reports_hibernated() && p.hibernate_requested =>
        {
            VmPhase::Hibernated
        }
        PodPhase::Pending if p.hibernated && p.hibernate_requested => VmPhase::Hibernating,
        PodPhase::Pending if p.hibernated => VmPhase::Waking,
        PodPhase::Pending => VmPhase::Pending,
        PodPhase::Running if p.hibernate_requested => VmPhase::Hibernating,
        PodPhase::Running if p.hibernated => VmPhase::Waking,
        PodPhase::Running if p.is_serving() => VmPhase::Running,
        PodPhase::Running => VmPhase::Starting,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    #[test]
    fn a_pod_that_left_a_label_watch_is_kept_unlabelled_unless_it_is_surely_gone() {
        let mut pod = PodView::new("demo-1");
        pod.phase = PodPhase::Running;
        pod.labels.insert(contract::LABEL_COCOONSET, "demo".into());
        pod.labels.insert(contract::LABEL_APP, "demo".into());
        let kept = pod.left_the_watch(contract::LABEL_COCOONSET).expect("maybe only unlabelled");
        assert!(!kept.labels.contains_key(contract::LABEL_COCOONSET));
        assert!(kept.labels.contains_key(contract::LABEL_APP), "other labels stay");
        let terminating = PodView { terminating: true, ..pod.clone() };
        assert!(terminating.gone_when_deleted());
        assert_eq!(terminating.left_the_watch(contract::LABEL_COCOONSET), None);
        for phase in [PodPhase::Failed, PodPhase::Succeeded] {
            let finished = PodView { phase, ..pod.clone() };
            assert!(finished.gone_when_deleted(), "{phase:?} pods are deleted at once");
        }
        assert!(!pod.gone_when_deleted());
    }

    #[test]
    fn lineage_is_read_from_the_bare_name_the_provider_cloned_from() {
        let mut pod = PodView::new("demo-2");
        pod.vm_name = Some("vk-prod-demo-2".into());
        pod.fork_from = Some("vk-prod-demo-0".into());
        assert_eq!(pod.lineage(), None, "the provider has not said yet");
        let lineage = |pod: &PodView, from: &str| {
            let mut p = pod.clone();
            p.snapshot_from = Some(from.into());
            p.lineage()
        };
        assert_eq!(
            lineage(&pod, "vk-prod-demo-2-fork"),
            Some(Lineage::Fork { from: "vk-prod-demo-0".into() })
        );
        assert_eq!(
            lineage(&pod, "vk-prod-demo-2-suspend"),
            Some(Lineage::Restore { snapshot: "vk-prod-demo-2-suspend".into() })
        );
        assert_eq!(
            lineage(&pod, "ubuntu-dev-base"),
            Some(Lineage::Image { image: "ubuntu-dev-base".into() })
        );
        // Another VM's fork or suspend snapshot is not this VM's lineage of that kind.
        assert!(matches!(lineage(&pod, "vk-prod-demo-1-fork"), Some(Lineage::Image { .. })));
        // A sub-agent that names no source was forked from slot 0 of its set.
        pod.fork_from = None;
        assert_eq!(
            lineage(&pod, "vk-prod-demo-2-fork"),
            Some(Lineage::Fork { from: "vk-prod-demo-0".into() })
        );
        for l in [
            Lineage::Restore { snapshot: "s".into() },
            Lineage::Fork { from: "vk-a-0".into() },
            Lineage::Image { image: "img:tag".into() },
        ] {
            assert_eq!(Lineage::from_source(&l.source()), Some(l), "the status words read back");
        }
    }

    #[test]
    fn the_status_phase_of_a_vm_follows_its_pod() {
        assert_eq!(vm_phase(None, false), VmPhase::Missing);
        assert_eq!(vm_phase(None, true), VmPhase::Pending, "said as the watch will show it");
        let mut pod = PodView::new("p");
        assert_eq!(vm_phase(Some(&pod), false), VmPhase::Pending);
        pod.rare.reason = Some(contract::REASON_PROVIDER_FAILED.into());
        assert_eq!(vm_phase(Some(&pod), false), VmPhase::ProviderFailed);
        pod.phase = PodPhase::Running;
        assert_eq!(vm_phase(Some(&pod), false), VmPhase::Starting);
        pod.ready = true;
        assert_eq!(vm_phase(Some(&pod), false), VmPhase::Running);
        pod.hibernate_requested = true;
        assert_eq!(vm_phase(Some(&pod), false), VmPhase::Hibernating);
        pod.ready = false;
        pod.hibernated = true;
        assert_eq!(vm_phase(Some(&pod), false), VmPhase::Hibernated);
        pod.hibernate_requested = false;
        assert_eq!(vm_phase(Some(&pod), false), VmPhase::Waking);
        pod.terminating = true;
        assert_eq!(vm_phase(Some(&pod), false), VmPhase::Terminating);
    }

    #[test]
    fn the_view_keeps_the_operators_labels_and_only_those() {
        let labels = [
            (contract::LABEL_COCOONSET, "demo"),
            (contract::LABEL_HIBERNATION_TARGET, contract::HIBERNATION_TARGET_VALUE),
            ("team", "sre"),
        ];
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("demo-0".into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            ..Default::default()
        };
        let view = PodView::from_pod(&pod);
        let kept: Vec<&str> = view.labels.keys().collect();
        assert_eq!(kept, vec![contract::LABEL_COCOONSET, contract::LABEL_HIBERNATION_TARGET]);
    }

    /// A running pod carries none of the rare facts: its view holds no room for them, and a
    /// pod that does carry one reads it back.
    #[test]
    fn a_running_pods_view_allocates_no_rare_part_and_a_failed_one_reads_its_words() {
        let running = PodView::from_pod(&Pod {
            metadata: ObjectMeta { name: Some("demo-1".into()), ..Default::default() },
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(running.rare.0.is_none(), "{:?}", running.rare);
        assert_eq!(running.rare.reason, None);
        let refused = PodView::from_pod(&Pod {
            metadata: ObjectMeta {
                name: Some("demo-2".into()),
                annotations: Some([(contract::ANN_HIBERNATED_BY.into(), "pause".into())].into()),
                ..Default::default()
            },
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                reason: Some(contract::REASON_PROVIDER_FAILED.into()),
                message: Some("no such image".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(refused.provider_failure().as_deref(), Some("no such image"));
        assert_eq!(refused.rare.hibernated_by.as_deref(), Some("pause"));
        // Written and cleared again, the part compares as never written.
        let mut cleared = running.clone();
        cleared.rare.reason = Some("x".into());
        assert_ne!(cleared, running);
        cleared.rare.reason = None;
        assert_eq!(cleared, running);
    }

    /// One view is cached per managed pod: its names, addresses and label values (up to 24
    /// bytes) take no allocation of their own; only longer strings (UIDs) do.
    #[test]
    fn a_views_short_strings_are_kept_inline() {
        let keys = Dialect::Seed.keys();
        let annotations = [
            (keys.vm_name, "vk-prod-demo-1"),
            (keys.vm_id, "sim-4d149f12e3b3db62"),
            (keys.ip, "10.88.0.15"),
            (keys.mode, "clone"),
            (keys.image, "ubuntu-dev-base"),
        ];
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("demo-1".into()),
                namespace: Some("prod".into()),
                uid: Some("faba99fd-aa05-4cff-b41b-e7108ca0c615".into()),
                labels: Some([(contract::LABEL_COCOONSET.to_string(), "demo".to_string())].into()),
                annotations: Some(
                    annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        let view = PodView::from_pod(&pod);
        let short = [&view.name, &view.namespace];
        let short_opt = [&view.vm_name, &view.vm_id, &view.ip, &view.mode, &view.image];
        let inline = short.into_iter().chain(short_opt.into_iter().map(|t| t.as_ref().unwrap()));
        let values = view.labels.iter().map(|(_, v)| v);
        for text in inline.chain(values) {
            assert!(!text.is_heap_allocated(), "{text} is on the heap");
        }
        assert_eq!(view.vm_id.as_deref(), Some("sim-4d149f12e3b3db62"), "as read");
        assert!(view.uid.as_ref().unwrap().is_heap_allocated(), "a UID is longer than 24 bytes");
    }
}

//! The CocoonSet actor's whole pass, pure: from the set, the pods routed to it, its namespace's
//! snapshot entries and the actor's own bookkeeping ([`SetMemory`]) to the ordered steps
//! (finalizer, pod writes, Events, status) and the next wake-up; and [`record_set`], which
//! folds the outcome of each executed step back into the bookkeeping.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::actions::{DeleteReason, PodAction};
use super::events::done_event;
use super::idle::{IdleDecision, IdleInput, decide_idle};
use super::migration::{Migration, plan_migration};
use super::placement::place;
use super::pods::{Provider, SetIdentity};
use super::slots::SuspendView;
use super::{SetInput, plan_cocoon_set};
use crate::api::conditions::ConditionType;
use crate::api::{CocoonSet, CocoonSetStatus};
use crate::contract;
use crate::plan::PlanEvent;
use crate::plan::clock::{after, since, until};
use crate::plan::compact::Compact;
use crate::plan::earliest;
use crate::plan::expectations::Expectations;
use crate::plan::nodes::Nodes;
use crate::plan::observe::{PodView, Snapshots, owned};
use crate::plan::pass::{
    Backoff, Finalizer, Outcome, OwnWrite, Pass, Recorded, RejectKind, Retry, Step,
    forget_written_once_seen, released,
};
use crate::plan::replaced::{Replaced, VmWatch};

/// One step of a CocoonSet pass.
pub type SetStep = Step<PodAction, CocoonSetStatus>;
/// The steps of a CocoonSet pass.
pub type SetPass = Pass<PodAction, CocoonSetStatus>;

/// Operator-wide knobs of the CocoonSet pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetSettings {
    /// Retry curve of failed passes, rejected creates, name conflicts and terminal pods.
    pub backoff: Backoff,
    /// How long pods may take to report hibernated after a suspend before the status names
    /// them (the set keeps waiting).
    pub suspend_timeout: Duration,
    /// A status change that flips no condition (a count, a VM's address, a single pod's
    /// phase) is written once the status has been still this long (and no later than five
    /// times this after the change), so that a burst of pod updates makes one write. Zero
    /// writes every change at once.
    pub status_batch: Duration,
}

/// A pod create the API server refused, for the spec generation it was built from. It is
/// retried with backoff (an admission answer can change: a quota raised, a ServiceAccount made)
/// and forgotten when the spec changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Spec generation the refused pod was built from.
    pub generation: Option<i64>,
    /// The pod.
    pub pod: String,
    /// Why, as a bounded kind.
    pub kind: RejectKind,
    /// The API server's words.
    pub detail: String,
    /// Refusals in a row.
    pub attempts: u32,
}

impl Rejection {
    /// The status message and Event note.
    pub fn message(&self) -> String {
        format!("cannot create pod {}: {}", self.pod, self.detail)
    }
}

/// What the CocoonSet actor remembers between passes (its view of the world is separate).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetMemory {
    /// Creates and deletes issued but not yet seen by the watch.
    pub expectations: Expectations,
    /// Pod names that must not be created before the given time.
    pub not_before: BTreeMap<String, Timestamp>,
    /// Terminal deletes per pod name since it last served (its recreate backoff).
    pub terminal_deletes: BTreeMap<String, u32>,
    /// Names whose create met a pod that is not ours, with the number of such answers.
    pub name_conflicts: BTreeMap<String, u32>,
    /// The create the API server refused last, if any.
    pub rejection: Option<Rejection>,
    /// The status this actor wrote last, until the watch shows it (then the stored status is
    /// the reference, and a status someone else wrote after it is put right).
    pub last_written: Option<Box<CocoonSetStatus>>,
    /// The VM each pod serves, to tell a replacement.
    pub vm_watch: VmWatch,
    /// Replacements of pods' VMs seen while they stay awake, by pod name.
    pub replaced: BTreeMap<String, Replaced>,
    /// Sub-agents seen fallen back to the image, by pod UID, with the VM id the main served
    /// then: a new main VM is what `onForkFallback: recreate` waits for.
    pub fell_back_under: BTreeMap<String, String>,
    /// Sub-agents created and not yet serving, with when they were created (fork metric).
    pub forks_started: BTreeMap<String, Timestamp>,
    /// When this actor's request to hibernate went through, per pod (suspend freshness).
    pub suspend_asked: BTreeMap<String, Timestamp>,
    /// When this actor first saw the set suspended (the suspend deadline counts from here).
    pub suspend_since: Option<Timestamp>,
    /// UIDs of pods the API server said are gone while the view still shows them (a pod that
    /// left the label watch is not seen going).
    pub vanished: BTreeSet<String>,
    /// Consecutive failed passes.
    pub retry: Retry,
    /// Progress waiting to be written.
    pub batch: Option<Box<StatusBatch>>,
    /// The resourceVersions of the set under which this actor asked for its release (our
    /// finalizer off): the view's, and the one the patch was guarded by when that was our own
    /// status write's. Kept once the API server took it, so that a pass on either object, before
    /// the watch shows it gone, does not ask again (and meet a 404).
    pub released: Vec<String>,
    /// What the API server answered to this actor's last status write.
    pub own_write: Option<OwnWrite>,
    /// VMs (with their pods) whose `:hibernate` snapshot this set saw pushed and has not yet
    /// removed from the registry (once the VM serves again, it goes).
    pub to_collect: BTreeMap<String, String>,
    /// VMs whose snapshot the teardown already collected.
    pub collected: BTreeSet<String>,
    /// The registry's last failure, until it answers again.
    pub registry_problem: Option<String>,
    /// What the registry answered about the `:hibernate` snapshot of VMs whose pods went
    /// while hibernating (true: it is there).
    pub probed: BTreeMap<String, bool>,
    /// Pods last seen asked to hibernate, with their VMs (a pod that goes then may have left
    /// its snapshot in the registry).
    pub hibernating: BTreeMap<String, String>,
}

impl Compact for SetMemory {
    fn compact(&mut self) {
        self.expectations.compact();
        self.not_before.compact();
        self.terminal_deletes.compact();
        self.name_conflicts.compact();
        self.vm_watch.compact();
        self.replaced.compact();
        self.fell_back_under.compact();
        self.forks_started.compact();
        self.suspend_asked.compact();
        self.vanished.compact();
        self.released.compact();
        self.to_collect.compact();
        self.collected.compact();
        self.probed.compact();
        self.hibernating.compact();
    }
}

/// A status change that waits to be batched (it flips no condition).
#[derive(Clone, Debug, PartialEq)]
pub struct StatusBatch {
    /// When the first unwritten change was planned.
    pub since: Timestamp,
    /// When the planned status last changed.
    pub changed: Timestamp,
    /// The status as last planned.
    pub status: CocoonSetStatus,
}

impl StatusBatch {
    /// When it is written: once the status has been still for `quiet`, and no later than
    /// `5 × quiet` after the first change (progress that keeps moving is still shown).
    pub fn due(&self, quiet: Duration) -> Timestamp {
        after(self.changed, quiet).min(after(self.since, quiet.saturating_mul(BATCH_LIMIT)))
    }
}

/// The longest a progress-only change waits, in quiet periods.
const BATCH_LIMIT: u32 = 5;

/// What one CocoonSet actor sees.
#[derive(Clone, Copy, Debug)]
pub struct SetView<'a> {
    /// The set as last watched (its `status` is not read: see [`SetView::status`]).
    pub set: &'a CocoonSet,
    /// The set's status as last watched. The operator keeps a set's status as the JSON it was
    /// read as, and parses it for the pass (a parsed status is more than twice its text).
    pub status: Option<&'a CocoonSetStatus>,
    /// Pods routed to the actor (they named the set as controller when last seen).
    pub pods: &'a [PodView],
    /// Snapshot entries of the set's namespace.
    pub snapshots: &'a Snapshots,
    /// The namespace's snapshot ConfigMap exists (empty or not).
    pub snapshot_record: bool,
    /// The provider's nodes: the dialect of the set's node, and of its pods'.
    pub nodes: &'a Nodes,
    /// The operator reaches the provider's snapshot registry.
    pub registry: bool,
}

/// A planned pass and what the actor reports about it.
#[derive(Clone, Debug, PartialEq)]
pub struct SetPlanned {
    /// The steps.
    pub pass: SetPass,
    /// The status as of this pass (written by the pass only when it differs).
    pub status: CocoonSetStatus,
    /// Pods the set owns.
    pub pod_count: usize,
    /// Fork durations of sub-agents that started serving since the last pass.
    pub forks_served: Vec<Duration>,
}

/// How soon the pass after registry probes plans with their answers.
const PROBE_FOLLOW_UP: Duration = Duration::from_millis(10);

/// How long a sub-agent may take to serve before its fork is no longer timed.
const FORK_TIMING_LIMIT: Duration = Duration::from_secs(3600);

impl SetMemory {
    /// Folds what the view now shows into the bookkeeping: confirmed expectations, conflicts
    /// that went away, backoffs that ended, forks that serve. Returns the fork durations.
    fn observe(
        &mut self,
        pods: &[PodView],
        generation: Option<i64>,
        suspend: bool,
        now: Timestamp,
    ) -> Vec<Duration> {
        self.expectations.observe(pods, now);
        self.vanished.retain(|uid| pods.iter().any(|p| p.uid.as_deref() == Some(uid.as_str())));
        let main = pods.iter().find(|p| p.role == Some(super::super::PodRole::Main));
        let main_vm = main.filter(|m| m.is_serving()).and_then(|m| owned(&m.vm_id));
        self.fell_back_under
            .retain(|uid, _| pods.iter().any(|p| p.uid.as_deref() == Some(uid.as_str())));
        for pod in pods.iter().filter(|p| p.fork_fell_back()) {
            if let (Some(uid), Some(vm)) = (&pod.uid, &main_vm) {
                self.fell_back_under.entry(uid.to_string()).or_insert_with(|| vm.clone());
            }
        }
        if suspend {
            self.suspend_since.get_or_insert(now);
            self.suspend_asked.retain(|name, _| pods.iter().any(|p| p.name == *name));
        } else {
            self.suspend_since = None;
            self.suspend_asked.clear();
        }
        let present = |name: &str| pods.iter().any(|p| p.name == name);
        self.name_conflicts.retain(|name, _| !present(name));
        self.not_before.retain(|_, t| *t > now);
        let serving = |name: &str| pods.iter().any(|p| p.name == name && p.is_serving());
        // Successful pods earn their terminal backoff back.
        self.terminal_deletes.retain(|name, _| !serving(name));
        if self.rejection.as_ref().is_some_and(|r| r.generation != generation) {
            self.rejection = None;
        }
        let mut served = Vec::new();
        self.forks_started.retain(|name, started| {
            let took = since(*started, now);
            if serving(name) {
                served.push(took);
                return false;
            }
            took < FORK_TIMING_LIMIT
        });
        served
    }
}

/// Plans one pass of a CocoonSet actor.
pub fn plan_set_pass(
    view: &SetView<'_>,
    memory: &mut SetMemory,
    settings: &SetSettings,
    now: Timestamp,
) -> SetPlanned {
    let set = view.set;
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let generation = set.metadata.generation;
    let deleting = set.metadata.deletion_timestamp.is_some();
    let finalizer =
        Finalizer::of(contract::FINALIZER_TEARDOWN, &set.metadata, memory.own_write.as_ref());
    let orphan = finalizer.also(contract::FINALIZER_ORPHAN);
    let set_name = set.metadata.name.clone().unwrap_or_default();
    // Ownership is the controller ownerReference; role and slot come from the name.
    let mut pods: Vec<PodView> = view
        .pods
        .iter()
        .filter(|p| p.controller_uid.as_deref() == Some(uid.as_str()))
        .cloned()
        .collect();
    for pod in &mut pods {
        pod.identify(&set_name);
    }
    let stored = view.status.cloned().unwrap_or_default();
    forget_written_once_seen(&mut memory.last_written, &stored);
    let previous = memory.last_written.as_deref().cloned().unwrap_or_else(|| stored.clone());
    let annotations = set.metadata.annotations.as_ref();
    let idle = decide_idle(&IdleInput {
        spec: set.spec.idle.as_ref(),
        user_suspend: set.spec.suspend,
        stamp: annotations.and_then(|a| a.get(contract::ANN_LAST_ACTIVITY)).map(String::as_str),
        previous: previous.idle.as_ref(),
        spec_edited: previous.observed_generation != generation,
        created: set.metadata.creation_timestamp.as_ref().map(|t| t.0),
        now,
    });
    // Idle auto-suspend suspends through the same plan as the user's `suspend`.
    let mut spec = set.spec.clone();
    spec.suspend |= idle.suspended && !deleting;
    // A move to another node starts as a seat release of every agent on the old node.
    let migration = if deleting {
        Migration::default()
    } else {
        plan_migration(&spec, &previous, &pods, view.nodes, view.registry)
    };
    if migration.release {
        spec.suspend = true;
        spec.hibernate_policy = crate::api::HibernatePolicy::Release;
    }
    let forks_served = memory.observe(&pods, generation, spec.suspend, now);
    pods.retain(|p| !p.uid.as_ref().is_some_and(|u| memory.vanished.contains(u.as_str())));
    let mut replaced_events = Vec::new();
    for replaced in memory.vm_watch.observe(&pods) {
        replaced_events.push(PlanEvent::warning("VMReplaced", replaced.message()));
        memory.replaced.insert(replaced.pod.clone(), replaced);
    }
    // What a wake or a new pod replaces is history.
    memory.replaced.retain(|name, _| {
        pods.iter().any(|p| p.name == *name && !p.hibernate_requested && !p.hibernated)
    });
    // Released already (the watch has not shown the object gone yet), or not ours to hold
    // (the garbage collector removes the pods): nothing to do.
    if deleting && (!finalizer.held() || released(&memory.released, &set.metadata)) {
        return SetPlanned {
            pass: Pass { steps: Vec::new(), wake_after: None },
            status: stored,
            pod_count: pods.len(),
            forks_served,
        };
    }
    let mut steps: Vec<SetStep> = finalizer.hold().into_iter().collect();
    let identity = SetIdentity {
        namespace: set.metadata.namespace.clone().unwrap_or_default(),
        name: set.metadata.name.clone().unwrap_or_default(),
        uid,
    };
    let conflicts: BTreeSet<String> = memory.name_conflicts.keys().cloned().collect();
    let failure = memory.rejection.as_ref().map(Rejection::message);
    let main_pod = pods.iter().find(|p| p.slot == Some(0));
    // While a migration hibernates (or is refused), the set stays where its VMs are.
    let placing = match &migration.stay_on {
        Some(node) => &crate::api::CocoonSetSpec { node_name: Some(node.clone()), ..spec.clone() },
        None => &spec,
    };
    let placement = place(placing, previous.node.as_deref(), main_pod, view.nodes);
    // Before the scheduler places the main, the set speaks its pool's dialect (and selects
    // only that pool's nodes).
    let dialect = match placement.node.as_deref() {
        Some(node) => view.nodes.dialect(node),
        None => view.nodes.pool_dialect(),
    };
    let node = placement.node.as_deref().unwrap_or(contract::DEFAULT_NODE_NAME);
    let provider = Provider {
        dialect,
        cpu_class: spec.snapshot_cpu_class.clone().or_else(|| {
            placement.node.as_deref().and_then(|n| view.nodes.cpu_class(n)).map(str::to_string)
        }),
        node: placement.node.clone(),
    };
    // A VM whose pod went while it was hibernating may have pushed its snapshot: asked of
    // the registry before the pod is created again. What the registry said is forgotten once
    // the pod is back.
    memory.probed.retain(|vm, _| !pods.iter().any(|p| p.vm_name.as_deref() == Some(vm)));
    let probes = if view.registry && dialect != contract::Dialect::Seed {
        lost_while_hibernating(&pods, &previous, spec.suspend, memory)
    } else {
        Vec::new()
    };
    let probing: BTreeSet<String> = probes
        .iter()
        .filter_map(|p| match p {
            PodAction::ProbeSnapshot { vm_name, .. } => Some(vm_name.clone()),
            _ => None,
        })
        .collect();
    let recorded;
    let snapshots = match dialect {
        contract::Dialect::Seed => view.snapshots,
        _ => {
            recorded = registry_snapshots(&pods, &previous, &memory.probed);
            &recorded
        }
    };
    let mut plan = plan_cocoon_set(&SetInput {
        set: &identity,
        generation,
        spec: &spec,
        previous_status: &previous,
        pods: &pods,
        provider,
        dialect,
        mixed: view.nodes.mixed(node, dialect, &pods),
        placement: &placement,
        migration: &migration,
        registry: view.registry,
        probing: &probing,
        registry_problem: memory.registry_problem.as_deref(),
        snapshots,
        snapshot_record: view.snapshot_record,
        expectations: &memory.expectations,
        not_before: &memory.not_before,
        name_conflicts: &conflicts,
        deleting,
        orphan,
        suspend: SuspendView {
            asked: &memory.suspend_asked,
            since: memory.suspend_since,
            timeout: settings.suspend_timeout,
        },
        fell_back_under: &memory.fell_back_under,
        replaced: &memory.replaced,
        failure: failure.as_deref(),
        now,
    });
    let collect_registry = view.registry && dialect != contract::Dialect::Seed;
    // What the teardown collected counts only while the set is being deleted.
    if !deleting {
        memory.collected.clear();
    }
    if plan.teardown_complete && collect_registry {
        let left = teardown_collections(&set.spec, &previous, &identity, memory);
        if !left.is_empty() {
            steps.extend(left.into_iter().map(Step::Pod));
            // Nothing watched changes once they are done: the pass right after releases the
            // finalizer (without it, only the next resync would).
            return SetPlanned {
                pass: Pass { steps, wake_after: Some(PROBE_FOLLOW_UP) },
                status: plan.status,
                pod_count: pods.len(),
                forks_served,
            };
        }
    }
    if plan.teardown_complete {
        // Release the object without a last status write: that would move the
        // resourceVersion the finalizer patch is guarded by.
        let (release, under) = finalizer.release();
        memory.released = under;
        steps.push(release);
        return SetPlanned {
            pass: Pass { steps, wake_after: None },
            status: plan.status,
            pod_count: pods.len(),
            forks_served,
        };
    }
    apply_idle(&mut plan.status, &idle);
    // The answers first: a pass that cannot get them writes no status that forgets why.
    steps.extend(probes.into_iter().map(Step::Pod));
    steps.extend(plan.actions.into_iter().map(Step::Pod));
    if collect_registry {
        steps.extend(woken_collections(&pods, &previous, memory).into_iter().map(Step::Pod));
    }
    steps.extend(replaced_events.into_iter().chain(plan.events).map(Step::Event));
    steps.extend(idle.event.clone().map(Step::Event));
    let mut wake_after = earliest(plan.requeue_after, idle.wake_after);
    if !probing.is_empty() {
        // The registry's answers change what the status records: it is written by the pass
        // after them (right after), never before.
        wake_after = earliest(wake_after, Some(PROBE_FOLLOW_UP));
    } else if plan.status == stored || memory.last_written.as_deref() == Some(&plan.status) {
        memory.batch = None;
    } else if settings.status_batch.is_zero() || status_urgent(&previous, &plan.status, deleting) {
        steps.push(Step::WriteStatus(Box::new(plan.status.clone())));
    } else {
        // Progress only: wait for the burst to end, then write what is current then.
        let batch = memory.batch.get_or_insert_with(|| {
            Box::new(StatusBatch { since: now, changed: now, status: plan.status.clone() })
        });
        if batch.status != plan.status {
            batch.status = plan.status.clone();
            batch.changed = now;
        }
        let due = batch.due(settings.status_batch);
        if due <= now {
            steps.push(Step::WriteStatus(Box::new(plan.status.clone())));
        } else {
            wake_after = earliest(wake_after, Some(until(now, due)));
        }
    }
    SetPlanned {
        pass: Pass { steps, wake_after },
        status: plan.status,
        pod_count: pods.len(),
        forks_served,
    }
}

/// Snapshots of VMs that serve again: `<vm>:hibernate` stays in the registry after a wake
/// (vk-cocoon never deletes it) and would restore into the next pod of that name. Collected
/// are the VMs this actor saw hibernated, and those the last status recorded with a snapshot.
fn woken_collections(
    pods: &[PodView],
    previous: &CocoonSetStatus,
    memory: &mut SetMemory,
) -> Vec<PodAction> {
    for pod in pods.iter().filter(|p| p.hibernate_requested && p.reports_hibernated()) {
        if let Some(vm) = &pod.vm_name {
            memory.to_collect.insert(vm.to_string(), pod.name.to_string());
        }
    }
    for agent in previous.agents.iter().chain(&previous.warm_agents) {
        if let (Some(vm), Some(_)) = (&agent.vm_name, &agent.snapshot_ref) {
            memory.to_collect.entry(vm.clone()).or_insert_with(|| agent.pod_name.clone());
        }
    }
    let serving = |name: &str, vm: &str| {
        pods.iter().any(|p| {
            p.name == name
                && p.vm_name.as_deref() == Some(vm)
                && p.is_serving()
                && !p.hibernate_requested
        })
    };
    memory
        .to_collect
        .iter()
        .filter(|(vm, pod)| serving(pod, vm))
        .map(|(vm, pod)| PodAction::CollectSnapshot {
            pod_name: pod.clone(),
            vm_name: vm.clone(),
            keep: false,
        })
        .collect()
}

/// The set is deleted and its pods are gone: every VM's `:hibernate` leaves the registry, so
/// that no later set of the same name restores it; a VM whose delete-time snapshot the policy
/// keeps keeps it as `<vm>:latest`. The VMs already collected are not asked again.
fn teardown_collections(
    spec: &crate::api::CocoonSetSpec,
    previous: &CocoonSetStatus,
    set: &SetIdentity,
    memory: &SetMemory,
) -> Vec<PodAction> {
    use crate::api::SnapshotPolicy;
    let top = *super::slots::warm_slots(spec).end();
    let recorded = previous.agents.iter().chain(&previous.warm_agents).map(|a| a.slot);
    let top = recorded.filter_map(|s| u32::try_from(s).ok()).fold(top, u32::max);
    let mut vms: Vec<(String, String, bool)> = (0..=top)
        .map(|slot| {
            let keep = match spec.snapshot_policy {
                SnapshotPolicy::Always => true,
                SnapshotPolicy::MainOnly => slot == 0,
                SnapshotPolicy::Never => false,
            };
            let pod = contract::agent_pod_name(&set.name, slot);
            (contract::agent_vm_name(&set.namespace, &set.name, slot), pod, keep)
        })
        .collect();
    for toolbox in &spec.toolboxes {
        let keep = spec.snapshot_policy == SnapshotPolicy::Always;
        let pod = contract::toolbox_pod_name(&set.name, &toolbox.name);
        vms.push((contract::toolbox_vm_name(&set.namespace, &set.name, &toolbox.name), pod, keep));
    }
    vms.into_iter()
        .filter(|(vm, _, _)| !memory.collected.contains(vm))
        .map(|(vm_name, pod_name, keep)| PodAction::CollectSnapshot { pod_name, vm_name, keep })
        .collect()
}

/// The set's VMs whose `:hibernate` snapshot a cocoonstack provider has pushed, as far as the
/// set knows: the pods that report hibernated now, and the VMs whose pods are gone that the
/// status last recorded with a snapshot (a released VM; the status is the set's memory across
/// operator restarts). A VM of another set of the same name left in the registry is never
/// among them.
fn registry_snapshots(
    pods: &[PodView],
    previous: &CocoonSetStatus,
    probed: &BTreeMap<String, bool>,
) -> Snapshots {
    let tag = |vm: &str| contract::dialect::snapshot_tag(vm, contract::dialect::TAG_HIBERNATE);
    let mut out: Snapshots = pods
        .iter()
        .filter(|p| p.hibernate_requested && p.reports_hibernated())
        .filter_map(|p| p.vm_name.as_ref().map(|vm| (vm.to_string(), tag(vm))))
        .collect();
    for agent in previous.agents.iter().chain(&previous.warm_agents) {
        let gone = !pods.iter().any(|p| p.name == agent.pod_name);
        if let (true, Some(vm), Some(snapshot)) = (gone, &agent.vm_name, &agent.snapshot_ref) {
            out.entry(vm.clone()).or_insert_with(|| snapshot.clone());
        }
    }
    for (vm, _) in probed.iter().filter(|(_, there)| **there) {
        out.entry(vm.clone()).or_insert_with(|| tag(vm));
    }
    out
}

/// VMs whose pods went while asked to hibernate (as this actor saw them, or, after a restart,
/// as the last status showed them; in a suspended set, also a VM the last status showed
/// running: its pod may have gone while no operator watched) without a snapshot on record, and
/// that the registry was not asked about yet.
fn lost_while_hibernating(
    pods: &[PodView],
    previous: &CocoonSetStatus,
    suspended: bool,
    memory: &mut SetMemory,
) -> Vec<PodAction> {
    use crate::api::VmPhase;
    let present = |name: &str| pods.iter().any(|p| p.name == name);
    // Pods remembered hibernating (pod, VM) that are gone now.
    let gone: Vec<(String, String)> = memory
        .hibernating
        .iter()
        .filter(|(pod, _)| !present(pod))
        .map(|(pod, vm)| (pod.clone(), vm.clone()))
        .collect();
    let mut lost: BTreeMap<String, String> =
        gone.iter().map(|(pod, vm)| (vm.clone(), pod.clone())).collect();
    let had_a_vm = |phase: VmPhase| {
        matches!(phase, VmPhase::Hibernating | VmPhase::Hibernated)
            || (suspended && matches!(phase, VmPhase::Running | VmPhase::Starting))
    };
    for agent in previous.agents.iter().chain(&previous.warm_agents) {
        if had_a_vm(agent.phase)
            && !present(&agent.pod_name)
            && let Some(vm) = &agent.vm_name
        {
            lost.entry(vm.clone()).or_insert_with(|| agent.pod_name.clone());
        }
    }
    let recorded = |vm: &str| {
        previous
            .agents
            .iter()
            .chain(&previous.warm_agents)
            .any(|a| a.vm_name.as_deref() == Some(vm) && a.snapshot_ref.is_some())
    };
    // What is still in view is what is remembered next time.
    memory.hibernating = pods
        .iter()
        // A pod being deleted is remembered too: the provider may be deleting it (§6.14).
        .filter(|p| p.hibernate_requested)
        .filter_map(|p| Some((p.name.to_string(), owned(&p.vm_name)?)))
        .chain(gone)
        .collect();
    lost.into_iter()
        .filter(|(vm, _)| !recorded(vm) && !memory.probed.contains_key(vm))
        .map(|(vm_name, pod_name)| PodAction::ProbeSnapshot { pod_name, vm_name })
        .collect()
}

/// Shows idle auto-suspend in the status: its bookkeeping, the `Suspended` condition's reason
/// `Idle` while it holds the set, and a problem with its input in the message.
fn apply_idle(status: &mut CocoonSetStatus, idle: &IdleDecision) {
    status.idle = idle.status.clone();
    if idle.suspended {
        let suspended = ConditionType::Suspended.as_str();
        for condition in status.conditions.iter_mut().filter(|c| c.type_ == suspended) {
            condition.reason = "Idle".to_string();
            condition.message =
                "suspended by idle auto-suspend; new activity resumes it".to_string();
        }
    }
    if let Some(problem) = &idle.problem {
        status.message = Some(match status.message.take() {
            Some(m) if !m.contains(problem.as_str()) => format!("{m}; {problem}"),
            Some(m) => m,
            None => problem.clone(),
        });
    }
}

/// Whether a status change is written at once rather than batched: the first status, a
/// condition that turns true or false, a new spec generation or desired count, or a problem
/// that appears, changes or ends. Counts, addresses and single pods' phases are progress: they
/// wait up to [`SetSettings::status_batch`] (and ride along with the next urgent write).
/// During teardown the message only counts down the pods left: progress too.
pub fn status_urgent(previous: &CocoonSetStatus, next: &CocoonSetStatus, deleting: bool) -> bool {
    let truths = |s: &CocoonSetStatus| -> Vec<(String, String)> {
        s.conditions.iter().map(|c| (c.type_.clone(), c.status.clone())).collect()
    };
    if deleting {
        return truths(previous) != truths(next);
    }
    previous.phase.is_none()
        || truths(previous) != truths(next)
        || previous.observed_generation != next.observed_generation
        || previous.desired_agents != next.desired_agents
        || previous.message != next.message
}

/// Records the outcome of one executed step of a CocoonSet pass.
pub fn record_set(
    memory: &mut SetMemory,
    generation: Option<i64>,
    step: &SetStep,
    outcome: &Outcome,
    settings: &SetSettings,
    now: Timestamp,
) -> Recorded {
    let backoff = settings.backoff;
    match step {
        Step::Pod(action) if action.is_create() => {
            record_create(memory, generation, action, outcome, backoff, now)
        }
        Step::Pod(PodAction::Delete { pod_name, uid, reason, .. }) => match outcome {
            // Gone, or the name now belongs to a replacement (UID precondition): ours is gone.
            Outcome::Done | Outcome::NotFound | Outcome::Conflict => {
                if *outcome != Outcome::Done
                    && let Some(uid) = uid
                {
                    // The view may still show it (a pod that left the label watch is not seen
                    // going); the API server's word wins.
                    memory.vanished.insert(uid.clone());
                }
                memory.expectations.expect_delete(pod_name, now);
                if *reason == DeleteReason::Terminal {
                    let count = memory.terminal_deletes.entry(pod_name.clone()).or_insert(0);
                    *count = count.saturating_add(1);
                    memory.not_before.insert(pod_name.clone(), after(now, backoff.delay(*count)));
                }
                let mut recorded = Recorded::go_on();
                if let Step::Pod(action) = step {
                    recorded.events.extend(done_event(action));
                }
                recorded
            }
            other => memory.retry.record(other, backoff),
        },
        Step::Pod(PodAction::ProbeSnapshot { vm_name, .. }) => match outcome {
            Outcome::Done | Outcome::NotFound => {
                memory.probed.insert(vm_name.clone(), *outcome == Outcome::Done);
                memory.hibernating.retain(|_, vm| vm != vm_name);
                memory.registry_problem = None;
                Recorded::go_on()
            }
            other => {
                memory.registry_problem = Some(match other {
                    Outcome::Failed { detail } | Outcome::Rejected { detail, .. } => detail.clone(),
                    other => format!("{other:?}"),
                });
                memory.retry.record(other, backoff)
            }
        },
        Step::Pod(PodAction::CollectSnapshot { vm_name, .. }) => match outcome {
            Outcome::Done | Outcome::NotFound => {
                memory.to_collect.remove(vm_name);
                memory.collected.insert(vm_name.clone());
                memory.registry_problem = None;
                Recorded::go_on()
            }
            other => {
                memory.registry_problem = Some(match other {
                    Outcome::Failed { detail } | Outcome::Rejected { detail, .. } => detail.clone(),
                    other => format!("{other:?}"),
                });
                memory.retry.record(other, backoff)
            }
        },
        Step::Pod(PodAction::SetHibernate { pod_name, hibernate, .. }) => match outcome {
            Outcome::Done => {
                if *hibernate {
                    memory.suspend_asked.insert(pod_name.clone(), now);
                } else {
                    memory.suspend_asked.remove(pod_name);
                }
                memory.expectations.expect_toggle(pod_name, *hibernate, now);
                Recorded::go_on()
            }
            // The pod went away meanwhile: nothing to toggle.
            Outcome::NotFound => Recorded::go_on(),
            other => memory.retry.record(other, backoff),
        },
        Step::Pod(PodAction::RepairLabels { uid, .. }) => match outcome {
            Outcome::Done => Recorded::go_on(),
            // Gone while outside the label watch: the view cannot show it going.
            Outcome::NotFound => {
                if let Some(uid) = uid {
                    memory.vanished.insert(uid.clone());
                }
                Recorded::stop(Duration::ZERO)
            }
            other => memory.retry.record(other, backoff),
        },
        Step::Pod(_) => memory.retry.record(outcome, backoff),
        Step::SetFinalizers { .. } => {
            if *outcome != Outcome::Done {
                memory.released.clear();
            }
            match outcome {
                // The object is gone: nothing left to hold or release.
                Outcome::NotFound => Recorded::go_on(),
                other => memory.retry.record(other, backoff),
            }
        }
        // An Event that could not be recorded is logged by the writer; never fatal.
        Step::Event(_) => Recorded::go_on(),
        Step::WriteStatus(status) => {
            if *outcome == Outcome::Done {
                memory.last_written = Some(status.clone());
                memory.batch = None;
            }
            memory.retry.record(outcome, backoff)
        }
    }
}

fn record_create(
    memory: &mut SetMemory,
    generation: Option<i64>,
    action: &PodAction,
    outcome: &Outcome,
    backoff: Backoff,
    now: Timestamp,
) -> Recorded {
    let name = action.pod_name().to_string();
    match outcome {
        Outcome::Done => {
            memory.expectations.expect_create(&name, now);
            memory.name_conflicts.remove(&name);
            if memory.rejection.as_ref().is_some_and(|r| r.pod == name) {
                memory.rejection = None;
            }
            if let PodAction::CreateSubAgent { .. } = action {
                memory.forks_started.insert(name, now);
            }
            let mut recorded = Recorded::go_on();
            recorded.events.extend(done_event(action));
            recorded
        }
        Outcome::AlreadyExists => {
            // Not ours (ours would be in the view or expected): wait and look again.
            let answers = memory.name_conflicts.entry(name.clone()).or_insert(0);
            *answers = answers.saturating_add(1);
            let first = *answers == 1;
            memory.not_before.insert(name.clone(), after(now, backoff.delay(*answers)));
            let mut recorded = Recorded::go_on();
            if first {
                recorded.events.push(PlanEvent::warning(
                    "NameConflict",
                    format!("pod {name} already exists and is not owned by this set"),
                ));
            }
            recorded
        }
        Outcome::Rejected { kind, detail } => {
            let attempts = match &memory.rejection {
                Some(r) if r.pod == name => r.attempts.saturating_add(1),
                _ => 1,
            };
            let rejection = Rejection {
                generation,
                pod: name.clone(),
                kind: *kind,
                detail: detail.clone(),
                attempts,
            };
            let repeated =
                memory.rejection.as_ref().is_some_and(|r| r.message() == rejection.message());
            // The name rests until the backoff ends, so that the echo of our own status write
            // does not repeat the refused create.
            memory.not_before.insert(name, after(now, backoff.delay(attempts - 1)));
            let mut recorded = Recorded::stop(Duration::ZERO);
            if !repeated {
                recorded.events.push(PlanEvent::warning("CreateRejected", rejection.message()));
            }
            memory.rejection = Some(rejection);
            // Plan again at once: the status must say what was refused.
            recorded
        }
        other => memory.retry.record(other, backoff),
    }
}

#[cfg(test)]
#[path = "pass_tests.rs"]
mod tests;

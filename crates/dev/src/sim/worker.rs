//! One task per pod: serialises that pod's transitions, so a slow VM never delays another pod.
//!
//! RBAC: `pods` patch, delete; `pods/status` patch; `events` (events.k8s.io) create, patch.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

use super::config::SimConfig;
use super::decide::{Step, decide};
use super::error::{Error, Result, status_code};
use super::intent::PodIntent;
use super::status;
use super::vm::{VmRecord, VmState, VmTable};
use super::{cocoonstack, tags::Tags};
use crate::contract::dialect::{TAG_HIBERNATE, TAG_LATEST};
use crate::contract::{self, Dialect, LifecycleState};

/// What every pod task shares.
pub struct SimContext {
    pub client: Client,
    pub config: SimConfig,
    pub table: Mutex<VmTable>,
    pub recorder: Recorder,
    pub snapshots: super::snapshots::SnapshotWriter,
    /// The snapshot store of v0.2 and current.
    pub tags: Tags,
}

impl SimContext {
    /// The VM table. A panic elsewhere while holding the lock leaves plain data behind, which is
    /// still usable, so poisoning is ignored rather than spreading the panic.
    pub fn table(&self) -> MutexGuard<'_, VmTable> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The latest view of a pod, or `None` once it is deleted.
pub type PodFeed = watch::Receiver<Option<Arc<Pod>>>;

/// Whether a step changed the VM so the next decision should follow at once.
enum Progress {
    Changed,
    Idle,
}

/// Runs the pod's transitions until it is deleted (or the simulator stops).
pub async fn run(ctx: Arc<SimContext>, uid: String, mut feed: PodFeed) {
    let mut worker = PodWorker {
        ctx,
        uid,
        warned: HashSet::new(),
        holding: false,
        published: None,
        removed: false,
    };
    let mut failures: u32 = 0;
    loop {
        let current = feed.borrow_and_update().clone();
        let Some(pod) = current else { break };
        match worker.step(&pod).await {
            Ok(Progress::Changed) => {
                failures = 0;
                continue;
            }
            Ok(Progress::Idle) => failures = 0,
            Err(error) if is_permanent(&error) => {
                // The API server will refuse the same write again: wait for the pod to change.
                warn!(pod = %pod_key(&pod), %error, "write rejected; waiting for the pod to change");
                worker
                    .event(&pod, EventType::Warning, "SimulatorWriteRejected", &error.to_string())
                    .await;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let wait = backoff(failures);
                warn!(pod = %pod_key(&pod), %error, retry_in = ?wait, "transition failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    changed = feed.changed() => if changed.is_ok() { continue } else { break },
                }
            }
        }
        if feed.changed().await.is_err() {
            break;
        }
    }
    // The pod is gone: so is its VM (the delete hook has run, or the pod was force-deleted).
    if let Some(vm) = worker.ctx.table().remove(&worker.uid) {
        info!(pod = %vm.pod_key, vm = %vm.name, "VM forgotten");
    }
}

struct PodWorker {
    ctx: Arc<SimContext>,
    uid: String,
    /// Problems already reported, so a bad annotation yields one Event, not one per update.
    warned: HashSet<String>,
    /// Whether the current hibernation is held by fault injection (logged once per request).
    holding: bool,
    /// The last lifecycle state this worker wrote, with its stamp (current): what the pod
    /// shows once the watch catches up, so it is not written twice.
    published: Option<(LifecycleState, i64)>,
    /// This worker removed its pod: an update of the terminating pod that the watch delivers
    /// before its removal does not delete it a second time (a 404 the kubelet never sends).
    removed: bool,
}

impl PodWorker {
    async fn step(&mut self, pod: &Pod) -> Result<Progress> {
        let intent = PodIntent::from_pod(pod, self.ctx.config.dialect);
        for problem in &intent.problems {
            if self.warned.insert(problem.clone()) {
                warn!(pod = %intent.key, "{problem}");
                self.event(pod, EventType::Warning, "InvalidAnnotation", problem).await;
            }
        }
        let vm = self.ctx.table().get(&self.uid).cloned();
        let refused = vm.as_ref().is_some_and(|v| self.ctx.config.refuses_hibernate(&v.name));
        let held = refused
            || self.ctx.config.never_completes_hibernate(
                &intent.namespace,
                &intent.name,
                &intent.labels,
            );
        let step = decide(&intent, vm.as_ref(), held);
        if step != Step::HoldHibernate {
            self.holding = false;
        }
        let outcome = match step {
            Step::Idle => Ok(Progress::Idle),
            Step::Create if self.cocoonstack() => self.create_vm(pod, &intent).await,
            Step::Create => self.create(pod, &intent).await,
            Step::Refuse { message } => self.refuse(pod, &intent, &message).await,
            Step::Report => self.report(pod).await,
            Step::Publish(state) if self.published == Some((state, intent.stamp)) => {
                Ok(Progress::Idle)
            }
            Step::Publish(state) => {
                info!(pod = %intent.key, stamp = intent.stamp, "re-publishing {}", state.as_str());
                // The pod's next update shows it; deciding again before that would repeat it.
                self.publish(pod, &intent, state).await.map(|()| Progress::Idle)
            }
            Step::Hibernate if self.cocoonstack() => self.push_and_remove(pod, &intent).await,
            Step::Hibernate => self.hibernate(pod, &intent).await,
            Step::HoldHibernate => {
                if !self.holding {
                    self.holding = true;
                    let (reason, note) = if refused {
                        (
                            "HibernateRefused",
                            "the provider refuses to hibernate a main VM (fault injection)",
                        )
                    } else {
                        ("HibernateHeld", "hibernation will never complete (fault injection)")
                    };
                    info!(pod = %intent.key, "{note}");
                    self.event(pod, EventType::Warning, reason, note).await;
                }
                Ok(Progress::Idle)
            }
            Step::Wake if self.cocoonstack() => self.pull_and_clone(pod, &intent).await,
            Step::Wake => self.wake(pod, &intent).await,
            Step::Delete { snapshot } => self.delete(&intent, snapshot).await,
        };
        match outcome {
            // The pod vanished under us; its deletion event ends this task.
            Err(error) if error.is_not_found() => Ok(Progress::Idle),
            other => other,
        }
    }

    /// Creates the pod's VM in vk-cocoon's order: adopt (static); in clone mode restore from
    /// the VM's snapshot entry if there is one, else fork the `fork-from` VM if it runs, else
    /// boot the image. After a restore the entry is removed for a main VM (slot 0) only.
    async fn create(&mut self, pod: &Pod, intent: &PodIntent) -> Result<Progress> {
        self.pause(self.ctx.config.create_delay).await;
        let deployment = match &intent.vm_name {
            None if !intent.is_static => self.owner_deployment(pod).await?,
            _ => None,
        };
        // vk-cocoon names a Deployment's pod after its Deployment and the lowest free slot.
        let vm_name = match deployment {
            Some(deployment) => self.ctx.table().free_slot_name(&intent.namespace, &deployment),
            None => intent.chosen_vm_name(),
        };
        let restore_from = if intent.is_clone && !intent.is_static {
            super::snapshots::read_entry(&self.ctx.client, &intent.namespace, &vm_name).await?
        } else {
            None
        };
        let record = {
            let rate = self.ctx.config.create_failure_rate;
            let mut table = self.ctx.table();
            let mut record = VmRecord {
                pod_key: intent.key.clone(),
                namespace: intent.namespace.clone(),
                id: String::new(),
                name: vm_name.clone(),
                ip: None,
                state: VmState::Running,
                is_static: intent.is_static,
                snapshot_from: None,
                failure: None,
                woken: false,
                reported: false,
            };
            if table.roll(rate) {
                record.state = VmState::Failed;
                record.failure =
                    Some(format!("simulated VM create failure (fault injection, rate {rate})"));
            } else if intent.is_static {
                record.id = intent.vm_id.clone().unwrap_or_else(|| table.new_vm_id());
                record.ip = intent.static_ip;
            } else {
                let failures = self.ctx.config.fork_failures;
                // A VM of slot N > 0 that names no source is forked from slot 0 of its name.
                let legacy = || {
                    contract::seed_vm_slot(&vm_name)
                        .filter(|slot| *slot > 0 && intent.is_clone)
                        .and_then(|_| contract::main_vm_of(&vm_name))
                };
                let wanted = intent.fork_from.clone().or_else(legacy);
                let source = wanted
                    .as_deref()
                    .filter(|from| table.running_vm_named(from).is_some())
                    .filter(|_| restore_from.is_some() || !table.fork_fails(failures));
                if wanted.is_some() && source.is_none() && restore_from.is_none() {
                    warn!(pod = %intent.key, "fork failed; booting from the image instead");
                }
                // The bare name vk-cocoon cloned from: the entry's snapshot (its name part, a
                // pushed entry holds a registry URL), the fork snapshot it took, or the image.
                record.snapshot_from = Some(match (&restore_from, source) {
                    (Some(snapshot), _) => contract::image_ref_name(snapshot).to_string(),
                    (None, Some(_)) => contract::fork_snapshot(&record.name),
                    (None, None) => contract::image_ref_name(&intent.image).to_string(),
                });
                record.id = table.new_vm_id();
                record.ip = table.allocate_ip();
                if record.ip.is_none() {
                    record.state = VmState::Failed;
                    record.failure = Some(super::vm::NO_ADDRESS.to_string());
                }
            }
            table.insert(self.uid.clone(), record.clone());
            record
        };
        if restore_from.is_some() && record.failure.is_none() && intent.is_main {
            // A restored main starts a new lineage: its entry would otherwise restore it again.
            self.ctx.snapshots.delete_entry(&intent.namespace, &vm_name).await?;
        }
        match &record.failure {
            Some(failure) => {
                warn!(pod = %intent.key, vm = %record.name, "VM create failed: {failure}")
            }
            None => info!(
                pod = %intent.key, vm = %record.name, id = %record.id,
                ip = %record.ip.map(|ip| ip.to_string()).unwrap_or_default(), from = record.snapshot_from.as_deref().unwrap_or("static adoption"),
                "VM running"
            ),
        }
        self.report(pod).await
    }

    /// The Deployment owning the pod through its ReplicaSet, as vk-cocoon looks it up.
    async fn owner_deployment(&self, pod: &Pod) -> Result<Option<String>> {
        let owner = pod.metadata.owner_references.as_ref().and_then(|refs| {
            refs.iter().find(|o| o.kind == "ReplicaSet" && o.controller == Some(true))
        });
        let Some(owner) = owner else { return Ok(None) };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
            Api::namespaced(self.ctx.client.clone(), &namespace);
        let found = sets.get_opt(&owner.name).await;
        let found = found.map_err(|e| Error::api(format!("get replicaset {}", owner.name), e))?;
        let Some(set) = found else { return Ok(None) };
        Ok(set
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.kind == "Deployment")
            .map(|o| o.name))
    }

    /// Writes what the pod should show for its VM's current state, then marks it reported.
    async fn report(&mut self, pod: &Pod) -> Result<Progress> {
        let Some(vm) = self.ctx.table().get(&self.uid).cloned() else { return Ok(Progress::Idle) };
        let now = Timestamp::now();
        let dialect = self.ctx.config.dialect;
        if dialect != Dialect::Seed {
            self.report_cocoonstack(pod, &vm, now).await?;
        } else {
            self.report_seed(pod, &vm, now).await?;
        }
        if let Some(record) = self.ctx.table().get_mut(&self.uid) {
            record.reported = true;
        }
        Ok(Progress::Changed)
    }

    async fn report_seed(&mut self, pod: &Pod, vm: &VmRecord, now: Timestamp) -> Result<()> {
        let vm = vm.clone();
        match vm.state {
            VmState::Running => {
                self.patch(pod, status::annotations_patch(pod, &vm)).await?;
                self.patch_status(pod, status::running_status(pod, &vm, now)).await?;
            }
            VmState::Hibernated => {
                self.patch_status(pod, status::hibernated_status(pod, &vm, now)).await?
            }
            VmState::Failed => {
                let message = vm.failure.as_deref().unwrap_or("VM create failed");
                self.patch_status(pod, status::provider_failed_status(pod, message, true, now))
                    .await?;
                self.event(pod, EventType::Warning, contract::REASON_PROVIDER_FAILED, message)
                    .await;
            }
        }
        Ok(())
    }

    /// What v0.2 and current show: the VM's id (and address, which v0.2 writes only when it
    /// creates the VM) and a Running pod; without a VM, no id or address and a Pending pod.
    async fn report_cocoonstack(&mut self, pod: &Pod, vm: &VmRecord, now: Timestamp) -> Result<()> {
        let dialect = self.ctx.config.dialect;
        match vm.state {
            VmState::Running => {
                let with_ip = dialect == Dialect::Current || !vm.woken;
                self.patch(pod, cocoonstack::runtime_annotations(vm, dialect, with_ip)).await?;
                self.patch_status(pod, cocoonstack::running_status(pod, vm, true, now)).await?;
            }
            VmState::Hibernated => {
                self.patch(pod, cocoonstack::cleared_runtime(dialect)).await?;
                self.patch_status(pod, cocoonstack::vm_less_status(pod, now)).await?;
            }
            VmState::Failed => {
                let message = vm.failure.as_deref().unwrap_or("VM create failed");
                self.patch_status(pod, cocoonstack::provider_failed_status(pod, message)).await?;
                self.event(pod, EventType::Warning, "ProviderCreateFailed", message).await;
            }
        }
        Ok(())
    }

    fn cocoonstack(&self) -> bool {
        self.ctx.config.dialect != Dialect::Seed
    }

    /// The provider cannot make this pod's VM: a static pod without a usable address (seed,
    /// Pending), or what v0.2 and current refuse in CreatePod (virtual-kubelet's
    /// `ProviderFailed`, and its Event).
    async fn refuse(&mut self, pod: &Pod, intent: &PodIntent, message: &str) -> Result<Progress> {
        warn!(pod = %intent.key, "provider refuses the pod: {message}");
        if self.cocoonstack() {
            self.patch_status(pod, cocoonstack::provider_failed_status(pod, message)).await?;
            self.event(pod, EventType::Warning, "ProviderCreateFailed", message).await;
        } else {
            let patch = status::provider_failed_status(pod, message, false, Timestamp::now());
            self.patch_status(pod, patch).await?;
        }
        Ok(Progress::Idle)
    }

    /// A create, hibernate or wake of v0.2 or current failed: current publishes `failed` with
    /// the message (for the pod's stamp), virtual-kubelet writes `ProviderFailed` and an
    /// Event; the provider tries again later (the framework retries a failed create).
    async fn fail(
        &mut self,
        pod: &Pod,
        intent: &PodIntent,
        reason: &str,
        message: String,
    ) -> Result<Progress> {
        warn!(pod = %intent.key, "{reason}: {message}");
        if self.ctx.config.dialect == Dialect::Current {
            let text = format!("{reason}: {message}");
            self.patch(
                pod,
                cocoonstack::lifecycle(LifecycleState::Failed, intent.stamp, Some(&text)),
            )
            .await?;
            self.published = Some((LifecycleState::Failed, intent.stamp));
        }
        self.patch_status(pod, cocoonstack::provider_failed_status(pod, &message)).await?;
        self.event(pod, EventType::Warning, reason, &message).await;
        Err(Error::Refused(message))
    }

    /// Current: publishes a lifecycle state for the pod's stamp.
    async fn publish(
        &mut self,
        pod: &Pod,
        intent: &PodIntent,
        state: LifecycleState,
    ) -> Result<()> {
        if self.ctx.config.dialect == Dialect::Current {
            self.patch(pod, cocoonstack::lifecycle(state, intent.stamp, None)).await?;
            self.published = Some((state, intent.stamp));
        }
        Ok(())
    }

    /// Creates the VM as v0.2 and current do (PROVIDERS.md §3.2, §3.3): adopt (unmanaged);
    /// restore from `<vm>:hibernate` (v0.2: the image names it; current: marked, or derived
    /// from a tag the pod's VM name owns); fork a running `fork-from` (no image fallback: a
    /// missing source fails the create); or boot the image. Current publishes `creating`
    /// first and `ready` once the pod serves.
    async fn create_vm(&mut self, pod: &Pod, intent: &PodIntent) -> Result<Progress> {
        let dialect = self.ctx.config.dialect;
        let current = dialect == Dialect::Current;
        let node_class = self.ctx.config.cpu_class.clone();
        if current
            && let Some(class) = &intent.cpu_class
            && node_class.as_ref() != Some(class)
        {
            let message = format!(
                "pod selects snapshot CPU class {class} but node {} has {}",
                self.ctx.config.node_name,
                node_class.as_deref().unwrap_or("none")
            );
            return self.fail(pod, intent, "CreateBringUpFailed", message).await;
        }
        self.publish(pod, intent, LifecycleState::Creating).await?;
        self.pause(self.ctx.config.create_delay).await;
        let vm_name = intent.chosen_vm_name();
        let own = format!("{vm_name}:{TAG_HIBERNATE}");
        let managed_clone = intent.is_clone && !intent.is_static;
        let tagged = managed_clone && self.ctx.tags.exists(&vm_name, TAG_HIBERNATE).await?;
        let restore = match dialect {
            Dialect::V02 => intent.image == own,
            _ => intent.restore_marked || tagged,
        };
        if current && restore && !intent.restore_marked && intent.fork_from.is_some() {
            let message = format!(
                "{own} exists but the pod forks from {}: delete the stale snapshot",
                intent.fork_from.as_deref().unwrap_or_default()
            );
            return self.fail(pod, intent, "HibernateEvidenceFailed", message).await;
        }
        if restore && !tagged {
            let message = format!("pull hibernation snapshot {vm_name}: {own} not found");
            return self.fail(pod, intent, "CreateBringUpFailed", message).await;
        }
        let fork = if restore || intent.is_static { None } else { intent.fork_from.clone() };
        let failures = self.ctx.config.fork_failures;
        let mut return_failure: Option<String> = None;
        let made: std::result::Result<VmRecord, String> = {
            let rate = self.ctx.config.create_failure_rate;
            let mut table = self.ctx.table();
            match &fork {
                Some(from) if table.running_vm_named(from).is_none() => {
                    Err(format!("fork source {from} not found"))
                }
                Some(from) if table.fork_fails(failures) => {
                    Err(format!("snapshot save fork-{from}: simulated failure"))
                }
                _ => {
                    let mut record = VmRecord {
                        pod_key: intent.key.clone(),
                        namespace: intent.namespace.clone(),
                        id: String::new(),
                        name: vm_name.clone(),
                        ip: None,
                        state: VmState::Running,
                        is_static: intent.is_static,
                        snapshot_from: None,
                        failure: None,
                        woken: false,
                        reported: false,
                    };
                    if table.roll(rate) {
                        // virtual-kubelet retries a create that failed (with backoff).
                        return_failure = Some(format!(
                            "simulated VM create failure (fault injection, rate {rate})"
                        ));
                    } else if intent.is_static {
                        record.id = intent.vm_id.clone().unwrap_or_else(|| table.new_vm_id());
                        record.ip = intent.static_ip;
                    } else {
                        record.id = table.new_vm_id();
                        record.ip = table.allocate_ip();
                        if record.ip.is_none() {
                            record.state = VmState::Failed;
                            record.failure = Some(super::vm::NO_ADDRESS.to_string());
                        }
                    }
                    match return_failure.take() {
                        Some(message) => Err(message),
                        None => {
                            table.insert(self.uid.clone(), record.clone());
                            Ok(record)
                        }
                    }
                }
            }
        };
        let record = match made {
            Ok(record) => record,
            Err(message) => return self.fail(pod, intent, "CreateBringUpFailed", message).await,
        };
        let from = if restore { own } else { fork.unwrap_or_else(|| intent.image.clone()) };
        info!(pod = %intent.key, vm = %record.name, id = %record.id, %from, "VM running");
        let progress = self.report(pod).await?;
        if record.state == VmState::Running {
            self.publish(pod, intent, LifecycleState::Ready).await?;
        }
        Ok(progress)
    }

    /// Hibernates as v0.2 and current do: save, push `<vm>:hibernate`, remove the VM, drop
    /// its id and address; current publishes `hibernating`, then `hibernated`.
    async fn push_and_remove(&mut self, pod: &Pod, intent: &PodIntent) -> Result<Progress> {
        self.publish(pod, intent, LifecycleState::Hibernating).await?;
        self.pause(self.ctx.config.hibernate_delay).await;
        let Some(name) = self.vm_name() else { return Ok(Progress::Idle) };
        let node = self.ctx.config.node_name.clone();
        if let Err(error) = self.ctx.tags.push(&name, TAG_HIBERNATE, &node).await {
            let message = format!("push hibernation snapshot {name}: {error}");
            return self.fail(pod, intent, "HibernatePushFailed", message).await;
        }
        let times = self.ctx.config.vanishes_after_hibernate(&intent.namespace, &intent.name);
        if self.ctx.table().vanishes(&intent.key, times) {
            return self.vanish(intent, &name).await;
        }
        if let Some(record) = self.ctx.table().get_mut(&self.uid) {
            record.state = VmState::Hibernated;
            record.ip = None;
            record.reported = false;
        }
        info!(pod = %intent.key, vm = %name, "VM hibernated into {name}:{TAG_HIBERNATE}");
        let progress = self.report(pod).await?;
        self.publish(pod, intent, LifecycleState::Hibernated).await?;
        if self.ctx.config.dialect == Dialect::Current {
            self.event(pod, EventType::Normal, "Hibernated", &format!("{name}:{TAG_HIBERNATE}"))
                .await;
        }
        Ok(progress)
    }

    /// Quirk 14 of v0.2.9: the VM-removed event of its own hibernation reaches the provider
    /// first, and it deletes the pod as "VM gone". The tag is already pushed. As v0.2.9 does,
    /// the delete is graceful: the pod shows terminating until the kubelet's part of the
    /// deletion ([`Self::delete`], with no VM left to save) removes it for good.
    async fn vanish(&mut self, intent: &PodIntent, name: &str) -> Result<Progress> {
        self.ctx.table().remove(&self.uid);
        warn!(pod = %intent.key, vm = %name, "vm {name} confirmed gone, deleting pod {} (fault injection)", intent.key);
        // Graceful, as v0.2.9's `evictPod` (`Delete` with default options): the pod shows
        // terminating until its own delete path removes it.
        self.delete_this_pod(intent, None).await?;
        Ok(Progress::Idle)
    }

    /// Wakes as v0.2 and current do: pull `<vm>:hibernate` (never deleted by the provider)
    /// and clone it; current publishes `creating`, then `ready`.
    async fn pull_and_clone(&mut self, pod: &Pod, intent: &PodIntent) -> Result<Progress> {
        self.publish(pod, intent, LifecycleState::Creating).await?;
        let Some(name) = self.vm_name() else { return Ok(Progress::Idle) };
        match self.ctx.tags.exists(&name, TAG_HIBERNATE).await {
            Ok(true) => {}
            Ok(false) => {
                let message = format!("pull hibernation snapshot {name}: not found");
                return self.fail(pod, intent, "WakePullFailed", message).await;
            }
            Err(error) => {
                let message = format!("pull hibernation snapshot {name}: {error}");
                return self.fail(pod, intent, "WakePullFailed", message).await;
            }
        }
        self.pause(self.ctx.config.wake_delay).await;
        {
            let mut table = self.ctx.table();
            let id = table.new_vm_id();
            let fresh_ip = table.allocate_ip();
            if let Some(record) = table.get_mut(&self.uid) {
                if !record.is_static {
                    record.id = id;
                    record.ip = fresh_ip;
                }
                record.state = VmState::Running;
                record.woken = true;
                record.reported = false;
                if record.ip.is_none() {
                    record.state = VmState::Failed;
                    record.failure = Some(super::vm::NO_ADDRESS.to_string());
                }
            }
        }
        info!(pod = %intent.key, vm = %name, "VM woken from {name}:{TAG_HIBERNATE}");
        let progress = self.report(pod).await?;
        self.publish(pod, intent, LifecycleState::Ready).await?;
        Ok(progress)
    }

    /// Snapshot first, then report: the entry must exist before the pod looks hibernated.
    async fn hibernate(&mut self, pod: &Pod, intent: &PodIntent) -> Result<Progress> {
        self.pause(self.ctx.config.hibernate_delay).await;
        let Some(name) = self.vm_name() else { return Ok(Progress::Idle) };
        self.ctx.snapshots.write_entry(&intent.namespace, &name).await?;
        if let Some(record) = self.ctx.table().get_mut(&self.uid) {
            record.state = VmState::Hibernated;
            record.ip = None;
            record.reported = false;
        }
        info!(pod = %intent.key, vm = %name, "VM hibernated");
        self.report(pod).await
    }

    /// Drop the snapshot entry, then boot from it: a new VM id and (unless static) address.
    async fn wake(&mut self, pod: &Pod, intent: &PodIntent) -> Result<Progress> {
        let Some(name) = self.vm_name() else { return Ok(Progress::Idle) };
        self.ctx.snapshots.delete_entry(&intent.namespace, &name).await?;
        self.pause(self.ctx.config.wake_delay).await;
        {
            let mut table = self.ctx.table();
            let id = table.new_vm_id();
            let fresh_ip = table.allocate_ip();
            if let Some(record) = table.get_mut(&self.uid) {
                // A static VM is adopted, not booted: it keeps the identity the pod names.
                if record.is_static {
                    record.ip = intent.static_ip.or(record.ip);
                } else {
                    record.id = id;
                    record.ip = fresh_ip;
                }
                record.state = VmState::Running;
                record.reported = false;
                if record.ip.is_none() {
                    record.state = VmState::Failed;
                    record.failure = Some(super::vm::NO_ADDRESS.to_string());
                }
            }
        }
        info!(pod = %intent.key, vm = %name, "VM woken");
        self.report(pod).await
    }

    /// The kubelet's part of a deletion: run the delete hook, then remove the pod for good.
    async fn delete(&mut self, intent: &PodIntent, snapshot: bool) -> Result<Progress> {
        if self.removed {
            return Ok(Progress::Idle);
        }
        self.pause(self.ctx.config.delete_delay).await;
        let running = self.ctx.table().get(&self.uid).is_some_and(|v| v.state == VmState::Running);
        if self.cocoonstack() {
            // v0.2 and current push `<vm>:latest` of a VM that runs, per policy; a VM-less
            // (hibernated) pod is only forgotten: its `:hibernate` stays.
            if snapshot
                && running
                && let Some(name) = self.vm_name()
            {
                let node = self.ctx.config.node_name.clone();
                match self.ctx.tags.push(&name, TAG_LATEST, &node).await {
                    Ok(()) => {
                        info!(pod = %intent.key, vm = %name, "pushed {name}:{TAG_LATEST} on delete")
                    }
                    Err(error) => {
                        warn!(pod = %intent.key, vm = %name, %error, "delete-time push failed")
                    }
                }
            }
        } else if snapshot && let Some(name) = self.vm_name() {
            match self.ctx.snapshots.write_entry(&intent.namespace, &name).await {
                Ok(()) => {
                    info!(pod = %intent.key, vm = %name, policy = intent.snapshot_policy.as_str(), "snapshot kept on delete")
                }
                // A namespace being deleted takes its snapshot ConfigMap with it and accepts no
                // new one: there is nothing to keep the snapshot for.
                Err(error) if self.namespace_terminating(&intent.namespace).await => {
                    warn!(pod = %intent.key, vm = %name, %error, "namespace is being deleted; no snapshot kept")
                }
                Err(error) => return Err(error),
            }
        }
        if let Some(vm) = self.ctx.table().remove(&self.uid) {
            info!(pod = %intent.key, vm = %vm.name, "VM stopped for deletion");
        }
        self.remove_pod(intent).await
    }

    /// Removes this worker's pod at once (grace 0), once: gone already (404) or replaced by
    /// another pod of the same name (409, the UID precondition) counts as removed.
    async fn remove_pod(&mut self, intent: &PodIntent) -> Result<Progress> {
        self.delete_this_pod(intent, Some(0)).await?;
        self.removed = true;
        Ok(Progress::Idle)
    }

    /// Deletes the pod this worker serves, with `grace` (`None`: the pod's own); never a pod
    /// recreated under the same name (another VM), and a pod already gone is no error.
    async fn delete_this_pod(&self, intent: &PodIntent, grace: Option<u32>) -> Result<()> {
        let params = DeleteParams {
            grace_period_seconds: grace,
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &intent.namespace);
        match api.delete(&intent.name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(status_code(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(Error::api(format!("delete pod {}", intent.key), e)),
        }
    }

    async fn namespace_terminating(&self, namespace: &str) -> bool {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.ctx.client.clone());
        let phase = api.get_opt(namespace).await.ok().flatten().and_then(|n| n.status?.phase);
        phase.as_deref() == Some("Terminating")
    }

    fn vm_name(&self) -> Option<String> {
        self.ctx.table().get(&self.uid).map(|vm| vm.name.clone())
    }

    /// A transition's configured delay plus the injected latency; only this pod waits.
    async fn pause(&self, delay: Duration) {
        let total = delay.saturating_add(self.ctx.config.extra_latency);
        if !total.is_zero() {
            tokio::time::sleep(total).await;
        }
    }

    async fn patch(&self, pod: &Pod, patch: Value) -> Result<()> {
        let key = pod_key(pod);
        pods(&self.ctx.client, pod)
            .patch(
                pod.metadata.name.as_deref().unwrap_or_default(),
                &params(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| Error::api(format!("patch annotations of pod {key}"), e))?;
        Ok(())
    }

    async fn patch_status(&self, pod: &Pod, patch: Value) -> Result<()> {
        let key = pod_key(pod);
        pods(&self.ctx.client, pod)
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or_default(),
                &params(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| Error::api(format!("patch status of pod {key}"), e))?;
        Ok(())
    }

    /// Publishes an Event on the pod; failing to do so is logged, never fatal.
    async fn event(&self, pod: &Pod, type_: EventType, reason: &str, note: &str) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: "Simulate".to_string(),
            secondary: None,
        };
        if let Err(error) = self.ctx.recorder.publish(&event, &pod.object_ref(&())).await {
            warn!(pod = %pod_key(pod), %error, "cannot publish event");
        }
    }
}

fn pods(client: &Client, pod: &Pod) -> Api<Pod> {
    Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or_default())
}

fn params() -> PatchParams {
    PatchParams { field_manager: Some(super::FIELD_MANAGER.to_string()), ..PatchParams::default() }
}

/// `namespace/name` of a pod, for logs.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// 400 Bad Request and 422 Invalid: the same write will be refused again.
fn is_permanent(error: &Error) -> bool {
    matches!(error, Error::Api { source, .. } if matches!(status_code(source), Some(400 | 422)))
}

/// The operator's backoff curve, from 100 ms up to 10 s, for the simulator's own retries.
fn backoff(failures: u32) -> Duration {
    cocoon_core::plan::Backoff::restart(Duration::from_secs(10)).delay(failures.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(50), Duration::from_secs(10));
    }
}

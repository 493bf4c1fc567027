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
use super::pods::SetIdentity;
use super::slots::SuspendView;
use super::{SetInput, plan_cocoon_set};
use crate::api::conditions::ConditionType;
use crate::api::{CocoonSet, CocoonSetStatus};
use crate::contract;
use crate::plan::PlanEvent;
use crate::plan::clock::{after, since, until};
use crate::plan::earliest;
use crate::plan::expectations::Expectations;
use crate::plan::observe::{PodView, Snapshots};
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
    pub last_written: Option<CocoonSetStatus>,
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
    pub batch: Option<StatusBatch>,
    /// The resourceVersions of the set under which this actor asked for its release (our
    /// finalizer off): the view's, and the one the patch was guarded by when that was our own
    /// status write's. Kept once the API server took it, so that a pass on either object, before
    /// the watch shows it gone, does not ask again (and meet a 404).
    pub released: Vec<String>,
    /// What the API server answered to this actor's last status write.
    pub own_write: Option<OwnWrite>,
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
    /// The set as last watched.
    pub set: &'a CocoonSet,
    /// Pods routed to the actor (they named the set as controller when last seen).
    pub pods: &'a [PodView],
    /// Snapshot entries of the set's namespace.
    pub snapshots: &'a Snapshots,
    /// The namespace's snapshot ConfigMap exists (empty or not).
    pub snapshot_record: bool,
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
        let main_vm = main.filter(|m| m.is_serving()).and_then(|m| m.vm_id.clone());
        self.fell_back_under
            .retain(|uid, _| pods.iter().any(|p| p.uid.as_deref() == Some(uid.as_str())));
        for pod in pods.iter().filter(|p| p.fork_fell_back()) {
            if let (Some(uid), Some(vm)) = (&pod.uid, &main_vm) {
                self.fell_back_under.entry(uid.clone()).or_insert_with(|| vm.clone());
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
    let stored = set.status.clone().unwrap_or_default();
    forget_written_once_seen(&mut memory.last_written, &stored);
    let previous = memory.last_written.clone().unwrap_or_else(|| stored.clone());
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
    let forks_served = memory.observe(&pods, generation, spec.suspend, now);
    pods.retain(|p| !p.uid.as_ref().is_some_and(|u| memory.vanished.contains(u)));
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
    let mut plan = plan_cocoon_set(&SetInput {
        set: &identity,
        generation,
        spec: &spec,
        previous_status: &previous,
        pods: &pods,
        snapshots: view.snapshots,
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
    steps.extend(plan.actions.into_iter().map(Step::Pod));
    steps.extend(replaced_events.into_iter().chain(plan.events).map(Step::Event));
    steps.extend(idle.event.clone().map(Step::Event));
    let mut wake_after = earliest(plan.requeue_after, idle.wake_after);
    if plan.status == stored || memory.last_written.as_ref() == Some(&plan.status) {
        memory.batch = None;
    } else if settings.status_batch.is_zero() || status_urgent(&previous, &plan.status, deleting) {
        steps.push(Step::WriteStatus(Box::new(plan.status.clone())));
    } else {
        // Progress only: wait for the burst to end, then write what is current then.
        let batch = memory.batch.get_or_insert_with(|| StatusBatch {
            since: now,
            changed: now,
            status: plan.status.clone(),
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
        Step::Pod(PodAction::SetHibernate { pod_name, hibernate }) => match outcome {
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
                memory.last_written = Some((**status).clone());
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

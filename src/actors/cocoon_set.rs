//! The CocoonSet actor: keeps the view of one set (the set, its pods, its namespace's snapshot
//! entries), plans with `plan::cocoon_set`, executes the pod actions in order, writes status
//! only when it changed, and schedules its own retries and resync.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Resource, ResourceExt};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::inbox::Inbox;
use super::pass::PassControl;
use super::stats::ActorStats;
use super::{ActorKey, Context, ResourceMsg};
use crate::api::{CocoonSet, CocoonSetStatus};
use crate::contract;
use crate::k8s::{CreateOutcome, ErrorCategory};
use crate::metrics::Transition;
use crate::plan::cocoon_set::DeleteReason;
use crate::plan::pods::SetIdentity;
use crate::plan::{Expectations, PodAction, PodView, SetInput, Snapshots, plan_cocoon_set};

pub struct CocoonSetActor;

/// A pod the API server refused to create, for the spec generation it was built from.
struct Rejection {
    generation: i64,
    pod: String,
    message: String,
}

pub struct Args {
    pub key: ActorKey,
    pub ctx: Arc<Context>,
    pub inbox: Arc<Inbox>,
    pub stats: Arc<Mutex<ActorStats>>,
}

pub struct State {
    key: ActorKey,
    ctx: Arc<Context>,
    inbox: Arc<Inbox>,
    control: PassControl,
    set: Option<Arc<CocoonSet>>,
    pods: BTreeMap<String, Arc<Pod>>,
    snapshots: Arc<Snapshots>,
    expectations: Expectations,
    not_before: BTreeMap<String, Timestamp>,
    terminal_deletes: BTreeMap<String, u32>,
    name_conflicts: BTreeSet<String>,
    /// A rejected write and the generation it was made for: not retried until the spec changes.
    failure: Option<Rejection>,
    last_written: Option<CocoonSetStatus>,
    forks_started: BTreeMap<String, Instant>,
}

impl Actor for CocoonSetActor {
    type Msg = ResourceMsg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let control = PassControl::new(args.key.clone(), args.stats, &args.ctx, &myself);
        Ok(State {
            key: args.key,
            ctx: args.ctx,
            inbox: args.inbox,
            control,
            set: None,
            pods: BTreeMap::new(),
            snapshots: Arc::default(),
            expectations: Expectations::default(),
            not_before: BTreeMap::new(),
            terminal_deletes: BTreeMap::new(),
            name_conflicts: BTreeSet::new(),
            failure: None,
            last_written: None,
            forks_started: BTreeMap::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        state.control.cancel_timers();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        if let ResourceMsg::Panic = message {
            panic!("fault injected into actor {}", state.key);
        }
        let deleted = state.absorb();
        if deleted {
            state.control.stop(&myself);
            return Ok(());
        }
        if !state.ctx.is_synced() {
            return Ok(());
        }
        let started = Instant::now();
        let result = state.reconcile().await;
        state.control.finish(&state.ctx, &myself, started, result);
        Ok(())
    }
}

fn after(now: Timestamp, d: std::time::Duration) -> Timestamp {
    now.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::ZERO)).unwrap_or(now)
}

impl State {
    /// Applies the inbox to the view; true when the set itself is gone.
    fn absorb(&mut self) -> bool {
        let pending = self.inbox.drain();
        for (name, pod) in pending.pods {
            match pod {
                Some(pod) => self.pods.insert(name, pod),
                None => self.pods.remove(&name),
            };
        }
        if let Some(s) = pending.snapshots {
            self.snapshots = s;
        }
        match pending.cocoon_set {
            Some(Some(set)) => {
                self.set = Some(set);
                false
            }
            Some(None) => true,
            None => self.set.is_none(),
        }
    }

    /// One pass: returns when to plan again, or a short error for the backoff path.
    async fn reconcile(&mut self) -> Result<Option<std::time::Duration>, super::Failure> {
        let Some(set) = self.set.clone() else { return Ok(None) };
        let now = Timestamp::now();
        let uid = set.uid().unwrap_or_default();
        let generation = set.metadata.generation;
        let deleting = set.metadata.deletion_timestamp.is_some();
        let has_finalizer = set.finalizers().iter().any(|f| f == contract::FINALIZER_TEARDOWN);
        if deleting && !has_finalizer {
            return Ok(None); // not ours to hold; the garbage collector removes the pods
        }
        if !deleting && !has_finalizer {
            let mut finalizers = set.finalizers().to_vec();
            finalizers.push(contract::FINALIZER_TEARDOWN.to_string());
            self.ctx.writer.set_finalizers(set.as_ref(), finalizers).await?;
        }
        if self.failure.as_ref().is_some_and(|r| Some(r.generation) != generation) {
            self.failure = None;
        }
        let identity = SetIdentity {
            namespace: self.key.namespace.clone(),
            name: self.key.name.clone(),
            uid: uid.clone(),
        };
        let views: Vec<PodView> = self
            .pods
            .values()
            .map(|p| PodView::from_pod(p))
            .filter(|v| v.controller_uid.as_deref() == Some(uid.as_str()))
            .collect();
        self.expectations.observe(&views, now);
        self.name_conflicts.retain(|n| !views.iter().any(|v| &v.name == n));
        self.observe_forks(&views);
        let stored = set.status.clone().unwrap_or_default();
        let previous = self.last_written.clone().unwrap_or_else(|| stored.clone());
        let plan = self.plan(&set, &identity, &views, &previous, deleting, now);
        let mut step_error = None;
        for action in &plan.actions {
            if let Err(e) = self.execute(&set, &views, action, now).await {
                step_error = Some(e);
                break;
            }
        }
        // Status reflects what was just done (expectations moved): plan once more, purely.
        let after_plan = self.plan(&set, &identity, &views, &previous, deleting, now);
        let reference = set.object_ref(&());
        for event in &after_plan.events {
            self.ctx.writer.event(&reference, event, "Reconcile").await;
        }
        let status = after_plan.status;
        if after_plan.teardown_complete {
            // The object is about to go: release it first (a status write before would move
            // its resourceVersion and make the guarded finalizer patch conflict).
            let finalizers: Vec<String> = set
                .finalizers()
                .iter()
                .filter(|f| *f != contract::FINALIZER_TEARDOWN)
                .cloned()
                .collect();
            self.ctx.writer.set_finalizers(set.as_ref(), finalizers).await?;
            return Ok(None);
        }
        if status != stored && Some(&status) != self.last_written.as_ref() {
            self.ctx.writer.apply_status(set.as_ref(), &status).await?;
            self.last_written = Some(status.clone());
        }
        {
            let mut stats = self.control.stats();
            stats.status = "running".into();
            stats.phase = status.phase.map(|p| p.as_str().to_string());
            stats.observed_generation = generation;
            stats.pod_count = views.len();
            stats.reconciles += 1;
            stats.last_reconcile = Some(now.to_string());
        }
        if let Some(e) = step_error {
            return Err(e);
        }
        Ok(plan.requeue_after)
    }

    fn plan(
        &self,
        set: &CocoonSet,
        identity: &SetIdentity,
        views: &[PodView],
        previous: &CocoonSetStatus,
        deleting: bool,
        now: Timestamp,
    ) -> crate::plan::SetPlan {
        let failure = self.failure.as_ref().map(|r| r.message.as_str());
        plan_cocoon_set(&SetInput {
            set: identity,
            generation: set.metadata.generation,
            spec: &set.spec,
            previous_status: previous,
            pods: views,
            snapshots: &self.snapshots,
            expectations: &self.expectations,
            not_before: &self.not_before,
            name_conflicts: &self.name_conflicts,
            deleting,
            failure,
            now,
        })
    }

    async fn execute(
        &mut self,
        set: &CocoonSet,
        views: &[PodView],
        action: &PodAction,
        now: Timestamp,
    ) -> Result<(), super::Failure> {
        let ns = self.key.namespace.clone();
        let name = action.pod_name().to_string();
        let reference = set.object_ref(&());
        match action {
            PodAction::CreateMain { pod }
            | PodAction::CreateSubAgent { pod, .. }
            | PodAction::CreateToolbox { pod, .. } => {
                match self.ctx.writer.create_pod(&ns, pod).await {
                    Ok(CreateOutcome::Created) => {
                        self.expectations.expect_create(&name, now);
                        self.name_conflicts.remove(&name);
                        if self.failure.as_ref().is_some_and(|r| r.pod == name) {
                            self.failure = None;
                        }
                        if let PodAction::CreateSubAgent { .. } = action {
                            self.forks_started.insert(name.clone(), Instant::now());
                        }
                        let message = match action {
                            PodAction::CreateSubAgent { slot, fork_from, .. } => {
                                format!(
                                    "created sub-agent {name} (slot {slot}) forked from {fork_from}"
                                )
                            }
                            PodAction::CreateToolbox { toolbox, .. } => {
                                format!("created toolbox {toolbox} as pod {name}")
                            }
                            _ => format!("created main agent {name}"),
                        };
                        self.ctx
                            .writer
                            .event(
                                &reference,
                                &crate::plan::PlanEvent::normal("CreatedPod", message),
                                "Create",
                            )
                            .await;
                        Ok(())
                    }
                    Ok(CreateOutcome::AlreadyExists) => {
                        // Not ours (ours would be in the view or expected): wait and look again.
                        let attempt = u32::try_from(self.name_conflicts.len()).unwrap_or(0)
                            + self.control.attempts();
                        self.not_before
                            .insert(name.clone(), after(now, self.ctx.backoff(attempt + 2)));
                        if self.name_conflicts.insert(name.clone()) {
                            let message =
                                format!("pod {name} already exists and is not owned by this set");
                            self.ctx
                                .writer
                                .event(
                                    &reference,
                                    &crate::plan::PlanEvent::warning("NameConflict", message),
                                    "Create",
                                )
                                .await;
                        }
                        Ok(())
                    }
                    Err(e)
                        if e.category() == ErrorCategory::Invalid
                            || e.category() == ErrorCategory::Forbidden =>
                    {
                        // Retried with backoff (an admission answer such as a missing
                        // ServiceAccount can change); the Event is recorded once per message.
                        let message = format!("cannot create pod {name}: {e}");
                        let repeated = self.failure.as_ref().is_some_and(|r| r.message == message);
                        self.failure = Some(Rejection {
                            generation: set.metadata.generation.unwrap_or_default(),
                            pod: name.clone(),
                            message: message.clone(),
                        });
                        // Our own status write wakes us at once: the name rests until the
                        // backoff ends so the echo does not repeat the rejected create.
                        let wait = self.ctx.backoff(self.control.attempts());
                        self.not_before.insert(name.clone(), after(now, wait));
                        if !repeated {
                            let event = crate::plan::PlanEvent::warning("CreateRejected", message);
                            self.ctx.writer.event(&reference, &event, "Create").await;
                        }
                        Err(e.into())
                    }
                    Err(e) => Err(e.into()),
                }
            }
            PodAction::Delete { pod_name, reason } => {
                let uid = self.pods.get(pod_name).and_then(|p| p.uid());
                self.ctx.writer.delete_pod(&ns, pod_name, uid).await?;
                self.expectations.expect_delete(pod_name, now);
                if *reason == DeleteReason::Terminal {
                    let count = self.terminal_deletes.entry(pod_name.clone()).or_insert(0);
                    *count += 1;
                    let wait = self.ctx.backoff(*count);
                    self.not_before.insert(pod_name.clone(), after(now, wait));
                }
                let phase = views
                    .iter()
                    .find(|v| &v.name == pod_name)
                    .map(|v| format!("{:?}", v.phase))
                    .unwrap_or_default();
                let message = format!("deleted pod {pod_name} ({}; was {phase})", reason.as_str());
                self.ctx
                    .writer
                    .event(
                        &reference,
                        &crate::plan::PlanEvent::normal("DeletedPod", message),
                        "Delete",
                    )
                    .await;
                Ok(())
            }
            PodAction::SetHibernate { pod_name, hibernate } => {
                let value = hibernate.then(|| "true".to_string());
                let patch = BTreeMap::from([(contract::ANN_HIBERNATE.to_string(), value)]);
                match self.ctx.writer.patch_pod_annotations(&ns, pod_name, &patch).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.category() == ErrorCategory::NotFound => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Records fork durations: from the create of a sub-agent to its VM serving.
    fn observe_forks(&mut self, views: &[PodView]) {
        let metrics = &self.ctx.metrics;
        self.forks_started.retain(|name, started| {
            let serving = views.iter().any(|v| &v.name == name && v.is_serving());
            if serving {
                metrics
                    .transition_duration
                    .get_or_create(&Transition { transition: "fork" })
                    .observe(started.elapsed().as_secs_f64());
            }
            !serving && started.elapsed() < std::time::Duration::from_secs(3600)
        });
        // Successful pods earn their backoff back.
        self.terminal_deletes
            .retain(|name, _| !views.iter().any(|v| &v.name == name && v.is_serving()));
        let now = Timestamp::now();
        self.not_before.retain(|_, t| *t > now);
    }
}

//! The Hibernation actor: keeps the view of one Hibernation (the object, its target pod, the
//! snapshot entries of its namespace, competing Hibernations), plans with `plan::hibernation`,
//! persists the status before writing the request to the pod, and schedules its own timers.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::inbox::Inbox;
use super::pass::PassControl;
use super::stats::ActorStats;
use super::{ActorKey, Context, ResourceMsg};
use crate::api::{Hibernation, HibernationPhase, HibernationStatus};
use crate::contract;
use crate::k8s::ErrorCategory;
use crate::metrics::Transition;
use crate::plan::hibernation::{Competitor, RoundKey, RoundWitness, witness};
use crate::plan::{HibAction, HibInput, PodView, Snapshots, plan_hibernation};

pub struct HibernationActor;

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
    hibernation: Option<Arc<Hibernation>>,
    /// The target pod by name (more than one only briefly, after `spec.podName` changed).
    pods: std::collections::BTreeMap<String, Arc<Pod>>,
    snapshots: Arc<Snapshots>,
    competitors: Vec<Competitor>,
    /// The pod name whose watch has listed once; until it matches the spec, "no pod" may
    /// only mean "not seen yet", so the actor waits instead of reporting the pod missing.
    listed: Option<String>,
    /// The round in flight and what it has shown so far.
    round: Option<(RoundKey, RoundWitness)>,
    last_written: Option<HibernationStatus>,
    /// When this actor wrote the start of the round in flight (sub-second, for the metric).
    round_started: Option<Instant>,
}

impl Actor for HibernationActor {
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
            hibernation: None,
            pods: Default::default(),
            snapshots: Arc::default(),
            competitors: Vec::new(),
            listed: None,
            round: None,
            last_written: None,
            round_started: None,
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
        if state.absorb() {
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

impl State {
    /// Applies the inbox to the view; true when the Hibernation itself is gone.
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
        if let Some(c) = pending.competitors {
            self.competitors = c;
        }
        if let Some(name) = pending.target_listed {
            self.listed = Some(name);
        }
        match pending.hibernation {
            Some(Some(h)) => {
                self.hibernation = Some(h);
                false
            }
            Some(None) => true,
            None => self.hibernation.is_none(),
        }
    }

    async fn reconcile(&mut self) -> Result<Option<std::time::Duration>, super::Failure> {
        let Some(hib) = self.hibernation.clone() else { return Ok(None) };
        // Until the target's watch has listed once, "no pod" only means "not seen yet"; its
        // listing wakes us. (This holds while deleting too: the marker must be found.)
        if self.listed.as_deref() != Some(hib.spec.pod_name.as_str()) {
            return Ok(None);
        }
        let now = Timestamp::now();
        let deleting = hib.metadata.deletion_timestamp.is_some();
        let has_finalizer = hib.finalizers().iter().any(|f| f == contract::FINALIZER_HIBERNATION);
        if deleting && !has_finalizer {
            return Ok(None);
        }
        if !deleting && !has_finalizer {
            let mut finalizers = hib.finalizers().to_vec();
            finalizers.push(contract::FINALIZER_HIBERNATION.to_string());
            self.ctx.writer.set_finalizers(hib.as_ref(), finalizers).await?;
        }
        // The pod view is only trusted when it is the pod the spec names now.
        let pod_view = self.pods.get(&hib.spec.pod_name).map(|p| PodView::from_pod(p));
        let stored = hib.status.clone().unwrap_or_default();
        let previous = self.last_written.clone().unwrap_or_else(|| stored.clone());
        let name = hib.name_any();
        // Accumulate what this round has shown so far (one plan input is one observation).
        let observed = witness(&previous, &name, pod_view.as_ref(), &self.snapshots);
        let round_witness = match (observed, &self.round) {
            (Some((key, seen)), Some((known, so_far))) if *known == key => {
                let merged = so_far.merge(seen);
                self.round = Some((key, merged));
                merged
            }
            (Some((key, seen)), _) => {
                self.round = Some((key, seen));
                seen
            }
            (None, _) => {
                self.round = None;
                RoundWitness::default()
            }
        };
        let input = HibInput {
            name: &name,
            generation: hib.metadata.generation,
            created: hib.metadata.creation_timestamp.as_ref().map(|t| t.0),
            spec: &hib.spec,
            status: &previous,
            pod: pod_view.as_ref(),
            snapshots: &self.snapshots,
            competitors: &self.competitors,
            deleting,
            witness: round_witness,
            settings: &self.ctx.hibernation,
            now,
        };
        let plan = plan_hibernation(&input);
        if plan.release {
            // Our marker is off the pod; release the object without a last status write (it
            // would move the resourceVersion the finalizer patch is guarded by).
            let finalizers: Vec<String> = hib
                .finalizers()
                .iter()
                .filter(|f| *f != contract::FINALIZER_HIBERNATION)
                .cloned()
                .collect();
            self.ctx.writer.set_finalizers(hib.as_ref(), finalizers).await?;
            return Ok(None);
        }
        // Status first: the round's start time must be on record before the request is.
        if plan.status != stored && Some(&plan.status) != self.last_written.as_ref() {
            self.ctx.writer.apply_status(hib.as_ref(), &plan.status).await?;
            self.observe_transition(&previous, &plan.status, now);
            if matches!(
                plan.status.phase,
                Some(HibernationPhase::Hibernating | HibernationPhase::Waking)
            ) && plan.status.phase != previous.phase
            {
                self.round_started = Some(Instant::now());
            }
            self.last_written = Some(plan.status.clone());
        }
        let reference = hib.object_ref(&());
        for event in &plan.events {
            self.ctx.writer.event(&reference, event, "Reconcile").await;
        }
        for action in &plan.actions {
            let HibAction::PatchPod { pod_name, annotations } = action;
            match self
                .ctx
                .writer
                .patch_pod_annotations(&self.key.namespace, pod_name, annotations)
                .await
            {
                Ok(()) => {
                    // The API server took the request: it is on the pod, whether or not the
                    // watch shows it before a competing writer changes it again.
                    if let Some((key, _)) = witness(&plan.status, &name, None, &self.snapshots) {
                        let seen = RoundWitness { request_seen: true, pending_seen: false };
                        let so_far = match &self.round {
                            Some((known, w)) if *known == key => *w,
                            _ => RoundWitness::default(),
                        };
                        self.round = Some((key, so_far.merge(seen)));
                    }
                }
                Err(e) if e.category() == ErrorCategory::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        {
            let mut stats = self.control.stats();
            stats.status = "running".into();
            stats.phase = plan.status.phase.map(|p| p.as_str().to_string());
            stats.observed_generation = hib.metadata.generation;
            stats.pod_count = usize::from(pod_view.is_some());
            stats.reconciles += 1;
            stats.last_reconcile = Some(now.to_string());
        }
        Ok(plan.requeue_after)
    }

    fn observe_transition(
        &self,
        previous: &HibernationStatus,
        next: &HibernationStatus,
        now: Timestamp,
    ) {
        let transition = match (previous.phase, next.phase) {
            (Some(HibernationPhase::Hibernating), Some(HibernationPhase::Hibernated)) => {
                "hibernate"
            }
            (Some(HibernationPhase::Waking), Some(HibernationPhase::Active)) => "wake",
            _ => return,
        };
        // Prefer our own sub-second start; after a restart only the status time (whole seconds)
        // is known.
        let seconds = match (self.round_started, previous.last_transition_time.as_ref()) {
            (Some(started), _) => started.elapsed().as_secs_f64(),
            (None, Some(started)) => started.0.duration_until(now).as_secs_f64().max(0.0),
            (None, None) => return,
        };
        self.ctx
            .metrics
            .transition_duration
            .get_or_create(&Transition { transition })
            .observe(seconds);
    }
}

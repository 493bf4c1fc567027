//! The one skeleton of both resource actors: drain the inbox into the view, ask the core for
//! the pass, execute its steps in order, hand each outcome back to the core, publish the Events
//! it makes, and schedule the next wake-up it asks for. Nothing here decides what a user sees:
//! the resource-specific part ([`Part`]) only holds the view and performs pod writes.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::inbox::{Inbox, Pending, PodsView};
use super::stats::{ActorStats, ActorStatus};
use super::{ActorKey, Context, ResourceMsg};
use crate::k8s::{ErrorCategory, outcome};
use crate::metrics::{Kind, KindCategory, KindResult};
use crate::plan::{Next, Outcome, OwnWrite, Pass, Recorded, Step};

/// A planned pass and what the actor tree shows about it.
pub struct Planned<P, S> {
    /// The steps and the next wake-up.
    pub pass: Pass<P, S>,
    /// Phase for the actor tree.
    pub phase: Option<&'static str>,
    /// Pods in the view, for the actor tree.
    pub pod_count: usize,
}

impl<P, S> Planned<P, S> {
    /// A pass with nothing to do (no object in view).
    pub fn idle() -> Self {
        Self { pass: Pass { steps: Vec::new(), wake_after: None }, phase: None, pod_count: 0 }
    }
}

/// The resource-specific half of an actor: its view, the core calls, and its pod writes.
pub trait Part: Send + Sync + Sized + 'static {
    /// The custom resource.
    type Object: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static;
    /// A pod write of this resource's passes.
    type PodWrite: Send + Sync + std::fmt::Debug;
    /// The status subresource.
    type Status: Serialize + Send + Sync + std::fmt::Debug;

    /// An empty view.
    fn new() -> Self;
    /// Applies drained updates to the view.
    fn absorb(&mut self, pending: Pending);
    /// The pods and snapshot entries of the view.
    fn view(&mut self) -> &mut PodsView;
    /// The object, while it exists.
    fn object(&self) -> Option<&Arc<Self::Object>>;
    /// Plans a pass (the core).
    fn plan(&mut self, ctx: &Context, now: Timestamp) -> Planned<Self::PodWrite, Self::Status>;
    /// Performs one pod write.
    fn write_pod(
        &self,
        ctx: &Context,
        namespace: &str,
        write: &Self::PodWrite,
    ) -> impl Future<Output = Outcome> + Send;
    /// Records the outcome of a step (the core).
    fn record(
        &mut self,
        ctx: &Context,
        step: &Step<Self::PodWrite, Self::Status>,
        outcome: &Outcome,
        now: Timestamp,
    ) -> Recorded;
    /// What the API server answered to a status write of this actor (the core reads it when it
    /// guards a finalizer patch).
    fn wrote_status(&mut self, own: OwnWrite);
    /// Every step of the pass went through.
    fn completed(&mut self);
    /// Reports what the pass measured (metrics).
    fn observe(&mut self, _ctx: &Context) {}
    /// Gives back the room its bookkeeping holds but does not use (emptied maps, spare
    /// capacity), before it is parked at rest.
    fn compact(&mut self);
}

/// The actor for any [`Part`].
pub struct ResourceActor<P>(PhantomData<fn() -> P>);

impl<P> Default for ResourceActor<P> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// Arguments of a resource actor.
pub struct Args {
    pub key: ActorKey,
    pub ctx: Arc<Context>,
    pub inbox: Arc<Inbox>,
    pub stats: Arc<Mutex<ActorStats>>,
    /// The part an actor at rest left (a revival), or none (a new actor begins empty).
    pub part: Option<Box<dyn Any + Send + Sync>>,
}

type RetryTimer = JoinHandle<Result<(), MessagingErr<ResourceMsg>>>;

/// State of a resource actor: its part, and the timers and stats around every part.
pub struct State<P> {
    key: ActorKey,
    ctx: Arc<Context>,
    inbox: Arc<Inbox>,
    stats: Arc<Mutex<ActorStats>>,
    retry: Option<RetryTimer>,
    /// It went to rest and stops: a message still in its mailbox is not handled (its part is
    /// parked in the registry).
    resting: bool,
    part: P,
}

impl<P> State<P> {
    fn stats(&self) -> MutexGuard<'_, ActorStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cancel_timers(&mut self) {
        if let Some(t) = self.retry.take() {
            t.abort();
        }
    }
}

impl<P: Part> Actor for ResourceActor<P> {
    type Msg = ResourceMsg;
    type State = State<P>;
    type Arguments = Args;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Args,
    ) -> Result<Self::State, ActorProcessingErr> {
        // The supervisor's resync clock tells this actor to re-plan once per period.
        let part = match args.part.map(|p| p.downcast::<P>()) {
            Some(Ok(part)) => *part,
            Some(Err(_)) => {
                return Err(format!("{}: a parked part of another kind", args.key).into());
            }
            None => P::new(),
        };
        Ok(State {
            key: args.key,
            ctx: args.ctx,
            inbox: args.inbox,
            stats: args.stats,
            retry: None,
            resting: false,
            part,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel_timers();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if state.resting {
            return Ok(());
        }
        let resync = match message {
            #[cfg(feature = "fault-injection")]
            ResourceMsg::Panic => panic!("fault injected into actor {}", state.key),
            ResourceMsg::Resync => true,
            ResourceMsg::Wake | ResourceMsg::Retry => false,
        };
        state.part.absorb(state.inbox.drain());
        if state.part.object().is_none() {
            state.stats().status = ActorStatus::Stopping;
            state.cancel_timers();
            myself.stop(Some("object deleted".into()));
            return Ok(());
        }
        if !state.ctx.is_synced() {
            return Ok(()); // every actor is woken once the watches have listed everything
        }
        let started = Instant::now();
        // Boxed: the pass future (its writes' request futures) is kilobytes, and an actor at
        // rest would otherwise carry that space in its loop for its whole life.
        let (wake, quiet) = Box::pin(run_pass(state)).await;
        let kind = state.key.kind.as_str();
        state
            .ctx
            .metrics
            .reconcile_duration
            .get_or_create(&Kind { kind })
            .observe(started.elapsed().as_secs_f64());
        if let Some(t) = state.retry.take() {
            t.abort();
        }
        if let Some(delay) = wake {
            state.retry = Some(myself.send_after(delay, || ResourceMsg::Retry));
        } else if resync && quiet && state.ctx.actor_rest {
            rest(&myself, state);
        }
        Ok(())
    }
}

/// An actor whose resync pass found nothing to do and set no timer goes to rest: its part is
/// parked in the registry and its ractor actor stops. Nothing it would have handled is lost:
/// an update, a nudge or the resync clock revives it with its part as it was, and without a
/// timer no message of its own was due.
fn rest<P: Part>(myself: &ActorRef<ResourceMsg>, state: &mut State<P>) {
    let registry = state.ctx.registry.clone();
    let mut part = std::mem::replace(&mut state.part, P::new());
    part.compact();
    let (inbox, stats) = (state.inbox.clone(), state.stats.clone());
    if !registry.park(myself.get_id(), inbox, stats, Box::new(part)) {
        return restore(state, &registry);
    }
    if !state.inbox.rest() {
        // Something arrived since the drain: its wake-up is on its way to this actor.
        return restore(state, &registry);
    }
    registry.rested(myself.get_id());
    state.resting = true;
    let kind = Kind { kind: state.key.kind.as_str() };
    state.ctx.metrics.actors_resting.get_or_create(&kind).inc();
    myself.stop(Some("at rest".into()));
}

/// Takes back a part parked for a rest that did not happen.
fn restore<P: Part>(state: &mut State<P>, registry: &super::registry::Registry) {
    if let Some(parked) = registry.unpark(&state.key)
        && let Ok(part) = parked.part.downcast::<P>()
    {
        state.part = *part;
    }
}

/// Executes one pass, its steps planned and recorded on the view as the pass began; returns
/// when to plan again, and whether the pass had nothing to do.
async fn run_pass<P: Part>(state: &mut State<P>) -> (Option<Duration>, bool) {
    let now = Timestamp::now();
    let ctx = state.ctx.clone();
    let Some(object) = state.part.object().cloned() else { return (None, false) };
    // The snapshot entries are read by the plan only: a pass awaiting its writes keeps no copy
    // (a thousand passes in flight during a burst of provider writes would each keep another
    // version of the namespace's entries alive).
    state.part.view().begin_plan();
    let planned = state.part.plan(&ctx, now);
    state.part.view().end_plan();
    let kind = state.key.kind.as_str();
    let mut stopped = None;
    let mut failure = None;
    for step in &planned.pass.steps {
        let (result, own_write) =
            execute(&ctx, &state.part, &state.key.namespace, object.as_ref(), step).await;
        if let Some(own) = own_write {
            state.part.wrote_status(own);
        }
        if let Some(category) = ErrorCategory::of(&result) {
            note_failure(&state.key, &result, category);
            if !matches!(category, ErrorCategory::NotFound) {
                ctx.metrics
                    .errors
                    .get_or_create(&KindCategory { kind, category: category.as_str() })
                    .inc();
                failure = Some(describe(&result));
            }
        }
        // What a write's answer starts (an expectation's lifetime, a backoff) counts from the
        // answer: under load a pass's writes wait their turn for many seconds, and an
        // expectation dated from the pass's start could expire before the watch shows the write
        // (a release planned again, answered 404).
        let recorded = state.part.record(&ctx, step, &result, Timestamp::now());
        let reference = object.object_ref(&());
        for event in &recorded.events {
            ctx.writer.event(&reference, event, "Reconcile").await;
        }
        if let Next::Stop(delay) = recorded.next {
            stopped = Some(delay);
            break;
        }
    }
    if stopped.is_none() {
        state.part.completed();
    }
    state.part.observe(&ctx);
    let outcome = if failure.is_some() { "error" } else { "ok" };
    ctx.metrics.reconciles.get_or_create(&KindResult { kind, result: outcome }).inc();
    let mut stats = state.stats();
    let quiet = planned.pass.steps.is_empty() && failure.is_none();
    stats.status = if failure.is_some() { ActorStatus::Backoff } else { ActorStatus::Running };
    stats.last_error = failure;
    stats.phase = planned.phase;
    stats.observed_generation = object.meta().generation;
    stats.pod_count = planned.pod_count;
    stats.reconciles += 1;
    stats.last_reconcile = Some(now);
    match stopped {
        Some(delay) => (Some(delay), false),
        None => (planned.pass.wake_after, quiet),
    }
}

/// Performs one step against the API server; a status write also returns what the API server
/// answered of the object.
async fn execute<P: Part>(
    ctx: &Context,
    part: &P,
    namespace: &str,
    object: &P::Object,
    step: &Step<P::PodWrite, P::Status>,
) -> (Outcome, Option<OwnWrite>) {
    match step {
        Step::SetFinalizers { finalizers, guard } => (
            outcome(ctx.writer.set_finalizers(object, guard.clone(), finalizers.clone()).await),
            None,
        ),
        Step::Pod(write) => (part.write_pod(ctx, namespace, write).await, None),
        // Events are published by the writer, which logs a failure: a courtesy, never fatal.
        Step::Event(event) => {
            ctx.writer.event(&object.object_ref(&()), event, "Reconcile").await;
            (Outcome::Done, None)
        }
        Step::WriteStatus(status) => {
            let answer = ctx.writer.apply_status(object, status.as_ref()).await;
            let own =
                answer.as_ref().ok().map(|written| OwnWrite::new(object.meta(), written.meta()));
            (outcome(answer.map(|_| ())), own)
        }
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Rejected { detail, .. } | Outcome::Failed { detail } => detail.clone(),
        other => format!("{other:?}"),
    }
}

/// Every failed write is logged with its object and category (nothing is swallowed).
fn note_failure(key: &ActorKey, outcome: &Outcome, category: ErrorCategory) {
    match category {
        ErrorCategory::Conflict | ErrorCategory::NotFound => {
            tracing::debug!(actor = %key, category = category.as_str(), "write answered {outcome:?}; planning again from a fresh view")
        }
        _ => {
            tracing::warn!(actor = %key, category = category.as_str(), error = %describe(outcome), "write failed")
        }
    }
}

#[cfg(test)]
#[path = "resource_tests.rs"]
mod tests;

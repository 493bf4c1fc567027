//! The supervisor: spawns the actor the index asks for, owns the routing table, and restarts a
//! failed actor after a capped backoff (other actors are unaffected). ractor's default would
//! stop the supervisor when a child dies; we override that here. It tells the index when an
//! actor stopped or may restart, and the index decides whether a new one starts. It also keeps
//! the one resync clock: every actor is told to re-plan once per resync period, spread over
//! [`RESYNC_SLICES`] ticks (an actor carries no timer of its own for it). It revives an actor
//! at rest (its ractor actor stopped, its part parked in the registry) when an update or a
//! nudge arrives for it, and on its resync tick.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc::UnboundedSender;

use super::cocoon_set::CocoonSetPart;
use super::hibernation::HibernationPart;
use super::inbox::{Inbox, Signal};
use super::registry::{Ended, Resting};
use super::resource::{Args, ResourceActor};
use super::stats::ActorStats;
use super::{ActorHandle, Context, ResourceMsg};
use crate::index::{ActorKey, ActorKind, Incarnation, Input};
use crate::metrics::Kind;
use crate::plan::Backoff;

/// Parts of the resync period: each tick resyncs the actors of one part.
pub const RESYNC_SLICES: u64 = 15;

/// Messages of the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Start an actor for `key` reading `inbox` (the index asked for it).
    Spawn { key: ActorKey, incarnation: Incarnation, inbox: Arc<Inbox> },
    /// A failed actor's restart backoff ended.
    RestartDue { key: ActorKey, incarnation: Incarnation },
    /// One part of the resync period passed: resync the actors of the next part.
    ResyncTick,
    /// Something arrived for an actor at rest (its inbox said so to the one who brought it).
    Revive { key: ActorKey },
    /// Fault injection for the runtime's tests: make the key's actor panic, reviving it first
    /// if it is at rest.
    #[cfg(feature = "fault-injection")]
    InjectPanic { key: ActorKey },
}

pub struct Supervisor;

pub struct SupervisorArgs {
    pub ctx: Arc<Context>,
    /// Where the supervisor reports actors that stopped or may restart.
    pub index: UnboundedSender<Input>,
}

pub struct SupervisorState {
    ctx: Arc<Context>,
    index: UnboundedSender<Input>,
    /// Resync ticks so far.
    ticks: u64,
    /// One part of the resync period.
    tick: Duration,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let tick = (args.ctx.resync / RESYNC_SLICES as u32).max(Duration::from_millis(1));
        myself.send_after(tick, || SupervisorMsg::ResyncTick);
        Ok(SupervisorState { ctx: args.ctx, index: args.index, ticks: 0, tick })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Spawn { key, incarnation, inbox } => {
                let restarts = state.ctx.registry.failures(&key);
                let fresh = Fresh { incarnation, inbox, stats: Arc::default(), restarts };
                start(&myself, state, key, fresh, None, ResourceMsg::Wake).await
            }
            SupervisorMsg::Revive { key } => revive(&myself, state, key, ResourceMsg::Wake).await,
            #[cfg(feature = "fault-injection")]
            SupervisorMsg::InjectPanic { key } => {
                let resting = state.ctx.registry.resting_inbox(&key);
                if let Some(inbox) = resting
                    && inbox.nudge() == Signal::Revive
                {
                    revive(&myself, state, key.clone(), ResourceMsg::Wake).await;
                }
                if let Some(handle) = state.ctx.registry.get(&key) {
                    let _ = handle.actor.cast(ResourceMsg::Panic);
                }
            }
            SupervisorMsg::RestartDue { key, incarnation } => {
                if !state.ctx.is_shutting_down() {
                    let _ = state.index.send(Input::RestartDue { key, incarnation });
                }
            }
            SupervisorMsg::ResyncTick => {
                let slice = state.ticks % RESYNC_SLICES;
                state.ticks += 1;
                for entry in state.ctx.registry.iter() {
                    if entry.key().resync_slice(RESYNC_SLICES) == slice {
                        let _ = entry.actor.cast(ResourceMsg::Resync);
                    }
                }
                let resting: Vec<(ActorKey, Arc<Inbox>)> = state
                    .ctx
                    .registry
                    .iter_resting()
                    .filter(|e| e.key().resync_slice(RESYNC_SLICES) == slice)
                    .map(|e| (e.key().clone(), e.inbox.clone()))
                    .collect();
                for (key, inbox) in resting {
                    match inbox.nudge() {
                        Signal::Revive => revive(&myself, state, key, ResourceMsg::Resync).await,
                        // Its rest was being called off: it runs, and resyncs now.
                        Signal::Wake => {
                            if let Some(handle) = state.ctx.registry.get(&key) {
                                let _ = handle.actor.cast(ResourceMsg::Resync);
                            }
                        }
                        Signal::None => {}
                    }
                }
                // The next tick is asked for once this one is done, never on a fixed clock: a
                // supervisor that fell behind (thousands of revivals on a busy machine) would
                // otherwise find the missed ticks queued and revive their slices all at once,
                // half the actors at rest alive together at 10,000 sets.
                myself.send_after(state.tick, || SupervisorMsg::ResyncTick);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(ended) = state.ctx.registry.ended(cell.get_id(), false) {
                    count_ended(state, &ended);
                    if ended.rested {
                        return Ok(()); // its key lives on, parked or revived
                    }
                    let Ended { key, incarnation, .. } = ended;
                    // The index knows whether the object still exists (an update may have
                    // raced with the stop) and whether this was the current incarnation.
                    let _ = state.index.send(Input::ActorStopped { key, incarnation });
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(ended) = state.ctx.registry.ended(cell.get_id(), true) {
                    count_ended(state, &ended);
                    if ended.rested {
                        return Ok(()); // it failed on its way to rest: its part is parked
                    }
                    let Ended { key, incarnation, .. } = ended;
                    let failures = state.ctx.registry.failures(&key);
                    let delay =
                        Backoff::restart(state.ctx.max_backoff).delay(failures.saturating_sub(1));
                    tracing::error!(actor = %key, %error, restart_in = ?delay, "actor failed; restarting");
                    state
                        .ctx
                        .metrics
                        .actor_restarts
                        .get_or_create(&Kind { kind: key.kind.as_str() })
                        .inc();
                    // Events for the key meanwhile wait in its inbox; nothing respawns it early.
                    myself
                        .send_after(delay, move || SupervisorMsg::RestartDue { key, incarnation });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The actor gauge counts running actors: one less if the ended actor was its key's.
fn count_ended(state: &SupervisorState, ended: &Ended) {
    if ended.was_running {
        state.ctx.metrics.actors.get_or_create(&Kind { kind: ended.key.kind.as_str() }).dec();
    }
}

/// What a new actor begins with besides its part.
struct Fresh {
    incarnation: Incarnation,
    inbox: Arc<Inbox>,
    stats: Arc<Mutex<ActorStats>>,
    restarts: u32,
}

/// Revives the actor at rest of `key` with the part it left; `first` is its first message
/// (`Resync` from the clock: it may rest again at once).
async fn revive(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    key: ActorKey,
    first: ResourceMsg,
) {
    let Some(Resting { incarnation, inbox, stats, restarts, part }) =
        state.ctx.registry.unpark(&key)
    else {
        return; // revived already, or its rest was called off
    };
    state.ctx.metrics.actors_resting.get_or_create(&Kind { kind: key.kind.as_str() }).dec();
    let fresh = Fresh { incarnation, inbox, stats, restarts };
    start(myself, state, key, fresh, Some(part), first).await;
}

async fn start(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    key: ActorKey,
    fresh: Fresh,
    part: Option<Box<dyn Any + Send + Sync>>,
    first: ResourceMsg,
) {
    if state.ctx.is_shutting_down() {
        return; // children stopping for shutdown are not replaced
    }
    let Fresh { incarnation, inbox, stats, restarts } = fresh;
    let args = Args {
        key: key.clone(),
        ctx: state.ctx.clone(),
        inbox: inbox.clone(),
        stats: stats.clone(),
        part,
    };
    let spawned = match key.kind {
        ActorKind::CocoonSet => {
            let actor = ResourceActor::<CocoonSetPart>::default();
            Actor::spawn_linked(None, actor, args, myself.get_cell()).await
        }
        ActorKind::Hibernation => {
            let actor = ResourceActor::<HibernationPart>::default();
            Actor::spawn_linked(None, actor, args, myself.get_cell()).await
        }
    };
    match spawned {
        Ok((actor, _)) => {
            let handle = ActorHandle { actor: actor.clone(), inbox, stats, restarts };
            if state.ctx.registry.started(key.clone(), incarnation, handle) {
                state.ctx.metrics.actors.get_or_create(&Kind { kind: key.kind.as_str() }).inc();
            }
            // Whatever the inbox holds (its whole view, and anything routed since) is drained.
            let _ = actor.cast(first);
        }
        Err(error) => {
            tracing::error!(actor = %key, %error, "could not spawn actor");
            let _ = state.index.send(Input::ActorStopped { key, incarnation });
        }
    }
}

//! The supervisor: spawns one actor per CocoonSet and per Hibernation on first sight, owns the
//! routing table, and restarts a failed actor with capped backoff (other actors are unaffected).
//! ractor's default would stop the supervisor when a child dies; we override that here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::cocoon_set::CocoonSetPart;
use super::hibernation::HibernationPart;
use super::inbox::Inbox;
use super::resource::{Args, ResourceActor};
use super::stats::ActorStats;
use super::{ActorHandle, ActorKey, ActorKind, Context, ResourceMsg, Router};
use crate::metrics::Kind;
use crate::plan::Backoff;

/// Messages of the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Make sure an actor runs for this key (no-op when one does).
    Ensure(ActorKey),
    /// A restart backoff ended.
    Restart(ActorKey),
}

pub struct Supervisor;

pub struct SupervisorArgs {
    pub ctx: Arc<Context>,
    pub router: Arc<Router>,
}

pub struct SupervisorState {
    ctx: Arc<Context>,
    router: Arc<Router>,
    by_id: HashMap<ActorId, ActorKey>,
    /// Failures per key, for the restart backoff and the tree's restart count.
    failures: HashMap<ActorKey, u32>,
    /// Keys waiting out a restart backoff: not respawned early by a new event.
    backing_off: HashMap<ActorKey, ()>,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            ctx: args.ctx,
            router: args.router,
            by_id: HashMap::new(),
            failures: HashMap::new(),
            backing_off: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Ensure(key) => {
                if !state.backing_off.contains_key(&key) {
                    ensure(&myself, state, key).await;
                }
            }
            SupervisorMsg::Restart(key) => {
                state.backing_off.remove(&key);
                ensure(&myself, state, key).await;
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
                if let Some(key) = state.by_id.remove(&cell.get_id()) {
                    remove(state, &key, cell.get_id());
                    // An update may have raced with the stop: if the object still exists,
                    // the actor comes back.
                    if state.router.initial_updates(&key).is_some() {
                        ensure(&myself, state, key).await;
                    }
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(key) = state.by_id.remove(&cell.get_id()) {
                    remove(state, &key, cell.get_id());
                    let failures = state.failures.entry(key.clone()).or_insert(0);
                    *failures += 1;
                    let delay =
                        Backoff::restart(state.ctx.max_backoff).delay(failures.saturating_sub(1));
                    tracing::error!(actor = %key, %error, restart_in = ?delay, "actor failed; restarting");
                    state
                        .ctx
                        .metrics
                        .actor_restarts
                        .get_or_create(&Kind { kind: key.kind.as_str() })
                        .inc();
                    state.backing_off.insert(key.clone(), ());
                    myself.send_after(delay, move || SupervisorMsg::Restart(key));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn remove(state: &mut SupervisorState, key: &ActorKey, id: ActorId) {
    // Only remove the entry if it is still this actor's (a replacement may already be in).
    let stale = state.ctx.table.get(key).is_some_and(|h| h.actor.get_id() == id);
    if stale {
        state.ctx.table.remove(key);
        state.ctx.metrics.actors.get_or_create(&Kind { kind: key.kind.as_str() }).dec();
    }
}

async fn ensure(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, key: ActorKey) {
    if state.ctx.is_shutting_down() {
        return; // children stopping for shutdown are not replaced
    }
    if let Some(handle) = state.ctx.table.get(&key)
        && handle.actor.get_status() != ractor::ActorStatus::Stopped
    {
        let _ = handle.actor.cast(ResourceMsg::Wake);
        return;
    }
    if state.router.initial_updates(&key).is_none() {
        return; // the object is gone
    }
    let inbox = Arc::new(Inbox::default());
    let stats = Arc::new(Mutex::new(ActorStats::default()));
    let restarts = state.failures.get(&key).copied().unwrap_or(0);
    let args = Args {
        key: key.clone(),
        ctx: state.ctx.clone(),
        inbox: inbox.clone(),
        stats: stats.clone(),
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
            state.by_id.insert(actor.get_id(), key.clone());
            // The handle goes into the table before the inbox is filled from the router's
            // cache: an event routed meanwhile lands in the inbox instead of being dropped, and
            // the fill (under the router's lock) never overwrites a newer delivery.
            let handle =
                ActorHandle { actor: actor.clone(), inbox: inbox.clone(), stats, restarts };
            state.ctx.table.insert(key.clone(), handle);
            state.ctx.metrics.actors.get_or_create(&Kind { kind: key.kind.as_str() }).inc();
            if state.router.fill_inbox(&key, &inbox) {
                let _ = actor.cast(ResourceMsg::Wake);
            } else {
                actor.stop(Some("object gone before start".into()));
            }
        }
        Err(error) => {
            tracing::error!(actor = %key, %error, "could not spawn actor");
        }
    }
}

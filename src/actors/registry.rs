//! The record of the running actors: for each key the actor that runs it (its ref, inbox and
//! stats), by actor id the key and incarnation of every running actor, and the failures of each
//! key (its restart backoff and the tree's restart count). Only the supervisor writes it; the
//! delivery task (to wake), the resync clock, `/debug/actors` and `/metrics` read it.
//!
//! Liveness has three owners, each of its own question: the index decides which incarnation of
//! a key should live (pure, [`crate::index::Index`]); the delivery task holds the inbox of each
//! key it asked for from the spawn to the retire (updates arrive before the actor runs); this
//! registry records which actor runs now, and keeps what an actor at rest knew (its view and
//! bookkeeping) while its ractor actor is stopped: an actor at rest costs its part only, not
//! ractor's channels and task.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use dashmap::mapref::multiple::RefMulti;
use ractor::ActorId;

use super::ActorHandle;
use super::inbox::Inbox;
use super::stats::ActorStats;
use crate::index::{ActorKey, Incarnation};

/// The running actors, and the actors at rest.
#[derive(Default)]
pub struct Registry {
    running: DashMap<ActorKey, ActorHandle>,
    resting: DashMap<ActorKey, Resting>,
    /// Keys and incarnations by actor id (supervision events name the actor only), and the
    /// failures per key; the supervisor is the only writer.
    books: Mutex<Books>,
}

/// An actor at rest: its ractor actor stopped after a pass that left nothing to do and no
/// timer; what it knew waits here for the supervisor to revive it.
pub struct Resting {
    pub incarnation: Incarnation,
    pub inbox: Arc<Inbox>,
    pub stats: Arc<Mutex<ActorStats>>,
    pub restarts: u32,
    /// The actor's part (its view and bookkeeping), as it was.
    pub part: Box<dyn Any + Send + Sync>,
}

#[derive(Default)]
struct Books {
    by_id: HashMap<ActorId, Entry>,
    failures: HashMap<ActorKey, u32>,
}

struct Entry {
    key: ActorKey,
    incarnation: Incarnation,
    /// The actor went to rest; whether that took its running entry out (a revived actor may
    /// have taken its place already).
    rested: Option<bool>,
}

/// What a supervision event was about.
#[derive(Debug, PartialEq, Eq)]
pub struct Ended {
    /// The key the actor ran.
    pub key: ActorKey,
    /// Its incarnation.
    pub incarnation: Incarnation,
    /// Whether it was the key's running actor (a replacement may already run).
    pub was_running: bool,
    /// It stopped to rest: the key lives on, parked (or revived already).
    pub rested: bool,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running actor of `key`.
    pub fn get(&self, key: &ActorKey) -> Option<ActorHandle> {
        self.running.get(key).map(|h| h.clone())
    }

    /// Every running actor.
    pub fn iter(&self) -> impl Iterator<Item = RefMulti<'_, ActorKey, ActorHandle>> {
        self.running.iter()
    }

    /// Every actor at rest.
    pub fn iter_resting(&self) -> impl Iterator<Item = RefMulti<'_, ActorKey, Resting>> {
        self.resting.iter()
    }

    /// The inbox of `key`'s actor, if it is at rest.
    pub fn resting_inbox(&self, key: &ActorKey) -> Option<Arc<Inbox>> {
        self.resting.get(key).map(|r| r.inbox.clone())
    }

    /// Running actor `id` parks its part, inbox and stats before it asks its inbox to rest;
    /// false (and nothing parked) for an actor this registry does not run.
    pub fn park(
        &self,
        id: ActorId,
        inbox: Arc<Inbox>,
        stats: Arc<Mutex<ActorStats>>,
        part: Box<dyn Any + Send + Sync>,
    ) -> bool {
        let Some((key, incarnation)) =
            self.books().by_id.get(&id).map(|e| (e.key.clone(), e.incarnation))
        else {
            return false;
        };
        let Some(restarts) =
            self.running.get(&key).filter(|h| h.actor.get_id() == id).map(|h| h.restarts)
        else {
            return false;
        };
        self.resting.insert(key, Resting { incarnation, inbox, stats, restarts, part });
        true
    }

    /// Takes what an actor at rest left (to revive it, or because its rest was called off).
    pub fn unpark(&self, key: &ActorKey) -> Option<Resting> {
        self.resting.remove(key).map(|(_, r)| r)
    }

    /// Actor `id` is at rest (its inbox said so): it leaves the running actors, unless a
    /// revived actor took its place already; it stops next.
    pub fn rested(&self, id: ActorId) {
        let mut books = self.books();
        let Some(entry) = books.by_id.get_mut(&id) else { return };
        let removed = self.running.remove_if(&entry.key, |_, h| h.actor.get_id() == id).is_some();
        entry.rested = Some(removed);
    }

    /// How many times `key` failed so far.
    pub fn failures(&self, key: &ActorKey) -> u32 {
        self.books().failures.get(key).copied().unwrap_or(0)
    }

    /// Records an actor the supervisor started for `key`; whether it is the first running
    /// actor of the key (none ran before).
    pub fn started(&self, key: ActorKey, incarnation: Incarnation, handle: ActorHandle) -> bool {
        let entry = Entry { key: key.clone(), incarnation, rested: None };
        self.books().by_id.insert(handle.actor.get_id(), entry);
        self.running.insert(key, handle).is_none()
    }

    /// Records that actor `id` stopped: `failed` counts a failure of its key; a clean stop (its
    /// object went, or shutdown) ends the key's streak of failures. `None` for an actor this
    /// registry never recorded.
    pub fn ended(&self, id: ActorId, failed: bool) -> Option<Ended> {
        let mut books = self.books();
        let Entry { key, incarnation, rested } = books.by_id.remove(&id)?;
        if let Some(was_running) = rested {
            return Some(Ended { key, incarnation, was_running, rested: true });
        }
        if failed {
            *books.failures.entry(key.clone()).or_insert(0) += 1;
        } else {
            books.failures.remove(&key);
        }
        drop(books);
        // Only its own entry goes: a replacement may already run.
        let was_running = self.running.remove_if(&key, |_, h| h.actor.get_id() == id).is_some();
        Some(Ended { key, incarnation, was_running, rested: false })
    }

    #[cfg(test)]
    pub fn insert_for_test(&self, key: ActorKey, handle: ActorHandle) {
        self.started(key, 0, handle);
    }
}

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr, ActorRef};

    use super::*;

    struct Idle;

    impl Actor for Idle {
        type Msg = ();
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    async fn handle() -> ActorHandle {
        let (actor, _) = Actor::spawn(None, Idle, ()).await.unwrap();
        // The registry keeps refs of resource actors; any actor's cell stands in here.
        let actor: ActorRef<super::super::ResourceMsg> = actor.get_cell().into();
        ActorHandle { actor, inbox: Arc::default(), stats: Arc::default(), restarts: 0 }
    }

    #[tokio::test]
    async fn an_ended_actor_leaves_the_registry_but_never_takes_its_replacement_with_it() {
        let registry = Registry::new();
        let key = ActorKey::cocoon_set("ns", "a");
        let old = handle().await;
        let old_id = old.actor.get_id();
        assert!(registry.started(key.clone(), 1, old));
        let new = handle().await;
        let new_id = new.actor.get_id();
        assert!(!registry.started(key.clone(), 2, new), "a replacement, not a new key");
        let ended = registry.ended(old_id, true).expect("recorded");
        assert_eq!(
            (ended.key.clone(), ended.incarnation, ended.was_running),
            (key.clone(), 1, false)
        );
        assert!(!ended.rested);
        assert_eq!(registry.get(&key).map(|h| h.actor.get_id()), Some(new_id));
        assert_eq!(registry.failures(&key), 1);
        assert_eq!(registry.ended(old_id, false), None, "told once");
        let ended = registry.ended(new_id, false).expect("recorded");
        assert!(ended.was_running);
        assert!(registry.get(&key).is_none());
        assert_eq!(registry.failures(&key), 0, "a clean stop ends the streak of failures");
    }
}

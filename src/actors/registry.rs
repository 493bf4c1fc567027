//! The record of the running actors: for each key the actor that runs it (its ref, inbox and
//! stats), by actor id the key and incarnation of every running actor, and the failures of each
//! key (its restart backoff and the tree's restart count). Only the supervisor writes it; the
//! delivery task (to wake), the resync clock, `/debug/actors` and `/metrics` read it.
//!
//! Liveness has three owners, each of its own question: the index decides which incarnation of
//! a key should live (pure, [`crate::index::Index`]); the delivery task holds the inbox of each
//! key it asked for from the spawn to the retire (updates arrive before the actor runs); this
//! registry records which actor runs now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use dashmap::mapref::multiple::RefMulti;
use ractor::ActorId;

use super::ActorHandle;
use crate::index::{ActorKey, Incarnation};

/// The running actors.
#[derive(Default)]
pub struct Registry {
    running: DashMap<ActorKey, ActorHandle>,
    /// Keys and incarnations by actor id (supervision events name the actor only), and the
    /// failures per key; the supervisor is the only writer.
    books: Mutex<Books>,
}

#[derive(Default)]
struct Books {
    by_id: HashMap<ActorId, (ActorKey, Incarnation)>,
    failures: HashMap<ActorKey, u32>,
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

    /// How many times `key` failed so far.
    pub fn failures(&self, key: &ActorKey) -> u32 {
        self.books().failures.get(key).copied().unwrap_or(0)
    }

    /// Records an actor the supervisor started for `key`; whether it is the first running
    /// actor of the key (none ran before).
    pub fn started(&self, key: ActorKey, incarnation: Incarnation, handle: ActorHandle) -> bool {
        self.books().by_id.insert(handle.actor.get_id(), (key.clone(), incarnation));
        self.running.insert(key, handle).is_none()
    }

    /// Records that actor `id` stopped: `failed` counts a failure of its key; a clean stop (its
    /// object went, or shutdown) ends the key's streak of failures. `None` for an actor this
    /// registry never recorded.
    pub fn ended(&self, id: ActorId, failed: bool) -> Option<Ended> {
        let mut books = self.books();
        let (key, incarnation) = books.by_id.remove(&id)?;
        if failed {
            *books.failures.entry(key.clone()).or_insert(0) += 1;
        } else {
            books.failures.remove(&key);
        }
        drop(books);
        // Only its own entry goes: a replacement may already run.
        let was_running = self.running.remove_if(&key, |_, h| h.actor.get_id() == id).is_some();
        Some(Ended { key, incarnation, was_running })
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
        assert_eq!(registry.get(&key).map(|h| h.actor.get_id()), Some(new_id));
        assert_eq!(registry.failures(&key), 1);
        assert_eq!(registry.ended(old_id, false), None, "told once");
        let ended = registry.ended(new_id, false).expect("recorded");
        assert!(ended.was_running);
        assert!(registry.get(&key).is_none());
        assert_eq!(registry.failures(&key), 0, "a clean stop ends the streak of failures");
    }
}

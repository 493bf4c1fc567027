//! The one small task that applies the index's deliveries: it reads the typed input stream
//! (watch events, the sync signal, actor lifecycle notes from the supervisor), asks the pure
//! [`Index`] what they imply, and carries that out: fill and wake inboxes, ask the supervisor
//! for an actor, start or stop a narrow pod watch. It decides nothing itself.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::ActorRef;
use tokio::sync::mpsc::{Receiver, UnboundedReceiver, UnboundedSender};

use super::inbox::{Inbox, Signal};
use super::registry::Registry;
use super::{ResourceMsg, SupervisorMsg};
use crate::index::{ActorKey, Delivery, Index, Input};
use crate::k8s::watch::{TargetCommand, WatchEvent};

/// Owns the index and the inboxes of the actors it asked for (from the spawn, before the actor
/// runs, to the retire).
pub struct Deliverer {
    index: Index,
    inboxes: HashMap<ActorKey, Arc<Inbox>>,
    registry: Arc<Registry>,
    supervisor: ActorRef<SupervisorMsg>,
    targets: UnboundedSender<TargetCommand>,
}

impl Deliverer {
    pub fn new(
        registry: Arc<Registry>,
        supervisor: ActorRef<SupervisorMsg>,
        targets: UnboundedSender<TargetCommand>,
        nodes: Arc<crate::index::NodeCell>,
    ) -> Self {
        let index = Index::with_nodes(nodes);
        Self { index, inboxes: HashMap::new(), registry, supervisor, targets }
    }

    /// Applies the watches' events and the supervisor's lifecycle notes until the watches are
    /// gone. The watches' stream is bounded (a busy index makes them wait); the lifecycle notes
    /// are not, and need not be: each is one actor's stop or restart, at most one outstanding per
    /// actor incarnation the index asked for.
    pub async fn run(
        mut self,
        mut events: Receiver<WatchEvent>,
        mut lifecycle: UnboundedReceiver<Input>,
    ) {
        loop {
            let input = tokio::select! {
                // Lifecycle notes first: a restart is not queued behind a burst of events.
                biased;
                Some(input) = lifecycle.recv() => input,
                event = events.recv() => match event {
                    Some(event) => Input::Watch(Box::new(event)),
                    None => return,
                },
            };
            for delivery in self.index.apply(input) {
                self.execute(delivery);
            }
        }
    }

    /// Does what an inbox said its actor needs to see what was just stored.
    fn notify(&self, key: &ActorKey, signal: Signal) {
        match signal {
            // An actor not in the table yet is woken by the supervisor once it is.
            Signal::Wake => {
                if let Some(handle) = self.registry.get(key) {
                    let _ = handle.actor.cast(ResourceMsg::Wake);
                }
            }
            Signal::Revive => {
                let _ = self.supervisor.cast(SupervisorMsg::Revive { key: key.clone() });
            }
            Signal::None => {}
        }
    }

    fn execute(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Spawn { key, incarnation, updates } => {
                let inbox = Arc::new(Inbox::default());
                for update in updates {
                    inbox.push(update);
                }
                self.inboxes.insert(key.clone(), inbox.clone());
                let _ = self.supervisor.cast(SupervisorMsg::Spawn { key, incarnation, inbox });
            }
            Delivery::Update { key, updates } => {
                let Some(inbox) = self.inboxes.get(&key) else { return };
                for update in updates {
                    let signal = inbox.push(update);
                    self.notify(&key, signal);
                }
            }
            Delivery::Retire { key, update } => {
                if let Some(inbox) = self.inboxes.remove(&key) {
                    self.notify(&key, inbox.push(update));
                }
            }
            Delivery::Forget { key } => {
                self.inboxes.remove(&key);
            }
            Delivery::WakeAll => {
                for (key, inbox) in &self.inboxes {
                    self.notify(key, inbox.nudge());
                }
            }
            Delivery::Target(command) => {
                let _ = self.targets.send(command);
            }
        }
    }
}

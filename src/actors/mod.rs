//! The actor runtime: a supervisor, one ractor actor per CocoonSet and per Hibernation (one
//! skeleton, two parts), the task that applies the index's deliveries, and the actor tree.

pub mod cocoon_set;
pub mod context;
pub mod delivery;
pub mod hibernation;
pub mod inbox;
pub mod registry;
pub mod resource;
pub mod stats;
pub mod supervisor;
pub mod tree;

use std::sync::{Arc, Mutex};

use ractor::ActorRef;

pub use crate::index::{ActorKey, ActorKind};
pub use context::Context;
pub use supervisor::{Supervisor, SupervisorMsg};

/// Messages of a per-resource actor. Object changes do not travel in messages: they wait in the
/// actor's [`inbox::Inbox`], and `Wake` says "drain it".
#[derive(Debug)]
pub enum ResourceMsg {
    /// New updates wait in the inbox (or the watches just synced): re-plan.
    Wake,
    /// Periodic re-evaluation from the in-memory view (no API request unless something differs).
    Resync,
    /// A backoff or requeue timer fired.
    Retry,
    /// Fault injection for the runtime's tests (feature `fault-injection`, never in the
    /// production binary): the actor panics while handling this message.
    #[cfg(feature = "fault-injection")]
    Panic,
}

/// What the registry holds for a running actor. Only the supervisor writes the registry.
#[derive(Clone, Debug)]
pub struct ActorHandle {
    pub actor: ActorRef<ResourceMsg>,
    pub inbox: Arc<inbox::Inbox>,
    pub stats: Arc<Mutex<stats::ActorStats>>,
    pub restarts: u32,
}

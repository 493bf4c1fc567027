//! What every actor shares: the writer, settings, metrics and the routing table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::registry::Registry;
use crate::k8s::Writer;
use crate::metrics::Metrics;
use crate::plan::{Backoff, HibernationSettings};

/// Shared, read-mostly state of the runtime.
pub struct Context {
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub resync: Duration,
    /// Actors with nothing to do go to rest (`--actor-rest`).
    pub actor_rest: bool,
    pub max_backoff: Duration,
    /// How long a CocoonSet status change that flips no condition may wait to be batched.
    pub status_batch: Duration,
    pub hibernation: HibernationSettings,
    /// The running actors; written only by the supervisor.
    pub registry: Arc<Registry>,
    /// Every watch has delivered its first complete list: actors may write.
    pub synced: Arc<AtomicBool>,
    /// The provider's snapshot registry, when configured.
    pub snapshot_registry: Option<Arc<crate::registry::Registry>>,
    /// The provider's nodes (their dialects), as the index last saw them.
    pub nodes: Arc<crate::index::NodeCell>,
    /// Set before the actors are stopped for shutdown: they are not replaced.
    pub shutting_down: AtomicBool,
}

impl Context {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The retry curve of failing objects: 1 s doubling up to `--max-backoff`.
    pub fn backoff(&self) -> Backoff {
        Backoff::retry(self.max_backoff)
    }
}

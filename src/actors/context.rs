//! What every actor shares: the writer, settings, metrics, the router and the routing table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use super::{ActorHandle, ActorKey};
use crate::k8s::Writer;
use crate::metrics::Metrics;
use crate::plan::HibernationSettings;

/// Shared, read-mostly state of the runtime.
pub struct Context {
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub resync: Duration,
    pub max_backoff: Duration,
    pub hibernation: HibernationSettings,
    /// Routing table; written only by the supervisor.
    pub table: Arc<DashMap<ActorKey, ActorHandle>>,
    /// Every watch has delivered its first complete list: actors may write.
    pub synced: Arc<AtomicBool>,
}

impl Context {
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Capped exponential backoff: 1 s, 2 s, 4 s, ... up to `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let secs = 1u64.checked_shl(attempt.min(20)).unwrap_or(u64::MAX);
        Duration::from_secs(secs).min(self.max_backoff)
    }
}

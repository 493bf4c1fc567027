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

    /// Capped exponential backoff: 1 s, 2 s, 4 s, ... up to `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        capped_backoff(attempt, self.max_backoff)
    }
}

/// 1 s doubling per attempt, never above `cap`.
pub fn capped_backoff(attempt: u32, cap: Duration) -> Duration {
    let secs = 1u64.checked_shl(attempt.min(20)).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let cap = Duration::from_secs(60);
        let delays: Vec<u64> = (0..9).map(|a| capped_backoff(a, cap).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(capped_backoff(u32::MAX, cap), cap, "no overflow on a long failure streak");
    }
}

//! What both resource actors do around a reconcile pass: metrics, the retry decision (capped
//! backoff on errors, a quick retry on conflicts, the plan's requeue otherwise), the timers, and
//! the self-reported stats of the actor tree.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ractor::concurrency::JoinHandle;
use ractor::{ActorRef, MessagingErr};

use super::stats::ActorStats;
use super::{ActorKey, CONFLICT_RETRY, Context, Failure, ResourceMsg};
use crate::metrics::{Kind, KindCategory, KindResult};

/// Retry bookkeeping and timers of one resource actor.
pub struct PassControl {
    pub key: ActorKey,
    stats: Arc<Mutex<ActorStats>>,
    attempts: u32,
    retry: Option<JoinHandle<Result<(), MessagingErr<ResourceMsg>>>>,
    resync: Option<JoinHandle<()>>,
}

impl PassControl {
    /// Starts the periodic resync of `myself`.
    pub fn new(
        key: ActorKey,
        stats: Arc<Mutex<ActorStats>>,
        ctx: &Context,
        myself: &ActorRef<ResourceMsg>,
    ) -> Self {
        let resync = Some(myself.send_interval(ctx.resync, || ResourceMsg::Resync));
        Self { key, stats, attempts: 0, retry: None, resync }
    }

    /// Consecutive failed passes.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn stats(&self) -> MutexGuard<'_, ActorStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The actor's object is gone: report it and stop.
    pub fn stop(&mut self, myself: &ActorRef<ResourceMsg>) {
        self.stats().status = "stopping".into();
        self.cancel_timers();
        myself.stop(Some("object deleted".into()));
    }

    pub fn cancel_timers(&mut self) {
        if let Some(t) = self.retry.take() {
            t.abort();
        }
        if let Some(t) = self.resync.take() {
            t.abort();
        }
    }

    /// Records a finished pass and schedules the next one it asks for.
    pub fn finish(
        &mut self,
        ctx: &Context,
        myself: &ActorRef<ResourceMsg>,
        started: Instant,
        result: Result<Option<Duration>, Failure>,
    ) {
        let kind = self.key.kind.as_str();
        ctx.metrics
            .reconcile_duration
            .get_or_create(&Kind { kind })
            .observe(started.elapsed().as_secs_f64());
        let outcome = if result.is_ok() { "ok" } else { "error" };
        ctx.metrics.reconciles.get_or_create(&KindResult { kind, result: outcome }).inc();
        if let Err(failure) = &result {
            let category = failure.category.as_str();
            ctx.metrics.errors.get_or_create(&KindCategory { kind, category }).inc();
        }
        let delay = match result {
            Ok(requeue) => {
                self.attempts = 0;
                self.stats().last_error = None;
                requeue
            }
            Err(failure) if failure.is_conflict() => {
                tracing::debug!(actor = %self.key, error = %failure.message, "write conflict; retrying from a fresh view");
                Some(CONFLICT_RETRY)
            }
            Err(failure) => {
                tracing::warn!(actor = %self.key, error = %failure.message, "reconcile failed; backing off");
                let delay = ctx.backoff(self.attempts);
                self.attempts += 1;
                let mut stats = self.stats();
                stats.last_error = Some(failure.message);
                stats.status = "backoff".into();
                Some(delay)
            }
        };
        if let Some(t) = self.retry.take() {
            t.abort();
        }
        if let Some(delay) = delay {
            self.retry = Some(myself.send_after(delay, || ResourceMsg::Retry));
        }
    }
}

//! What each actor reports about itself for `/debug/actors`.

use serde::Serialize;

/// Self-reported state of one actor, updated after every reconcile.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorStats {
    /// `starting`, `running`, `backoff`, `stopping`.
    pub status: String,
    pub phase: Option<String>,
    pub observed_generation: Option<i64>,
    pub pod_count: usize,
    pub reconciles: u64,
    /// RFC 3339 time of the last reconcile.
    pub last_reconcile: Option<String>,
    pub last_error: Option<String>,
}

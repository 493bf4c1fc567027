//! What each actor reports about itself for `/debug/actors`.

use serde::Serialize;

/// Where an actor is in its life, as the actor tree shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorStatus {
    /// Spawned; has not finished a pass yet.
    #[default]
    Starting,
    /// Its last pass went through.
    Running,
    /// Its last pass failed; a retry is scheduled.
    Backoff,
    /// Its object is gone; it is stopping.
    Stopping,
}

impl ActorStatus {
    /// The lower-case word of the text tree.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Backoff => "backoff",
            Self::Stopping => "stopping",
        }
    }
}

/// Self-reported state of one actor, updated after every reconcile.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorStats {
    pub status: ActorStatus,
    pub phase: Option<String>,
    pub observed_generation: Option<i64>,
    pub pod_count: usize,
    pub reconciles: u64,
    /// RFC 3339 time of the last reconcile.
    pub last_reconcile: Option<String>,
    pub last_error: Option<String>,
}

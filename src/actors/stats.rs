//! What each actor reports about itself for `/debug/actors`.

use k8s_openapi::jiff::Timestamp;
use serde::{Serialize, Serializer};

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
    pub phase: Option<&'static str>,
    pub observed_generation: Option<i64>,
    pub pod_count: usize,
    pub reconciles: u64,
    /// Time of the last reconcile (RFC 3339 when shown).
    #[serde(serialize_with = "rfc3339")]
    pub last_reconcile: Option<Timestamp>,
    pub last_error: Option<String>,
}

fn rfc3339<S: Serializer>(at: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serializer.collect_str(at),
        None => serializer.serialize_none(),
    }
}

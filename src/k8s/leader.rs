//! Leader election with a `coordination.k8s.io/v1` Lease: only the holder runs actors; a
//! standby retries until the holder stops renewing. RBAC: leases get/create/update in the
//! Lease's namespace.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use kube::{Api, Client};

use super::error::{Error, Result};
pub use crate::lease::{LEASE_DURATION, RENEW_DEADLINE, RENEW_INTERVAL, RETRY_INTERVAL};
use crate::lease::{LeaseDecision, LeaseRecord, Observed, decide};

/// One candidate for the leader Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// The Lease record last seen and when, by our own clock (see `lease::decide`).
    observed: std::sync::Mutex<Option<Observed>>,
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            observed: std::sync::Mutex::new(None),
        }
    }

    /// Takes or renews the Lease; `Ok(true)` when this candidate holds it afterwards. The
    /// decision is `lease::decide`; this only reads and writes.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let what = || format!("lease {}", self.name);
        let existing =
            self.api.get_opt(&self.name).await.map_err(|e| Error::api("get", what(), e))?;
        let record = existing.as_ref().map(record_of);
        let decision = {
            let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
            let clock = std::time::Instant::now();
            decide(record.as_ref(), &self.identity, &mut observed, Timestamp::now(), clock)
        };
        let written = match (decision, existing) {
            (LeaseDecision::Wait, _) => return Ok(false),
            (LeaseDecision::Create, _) | (LeaseDecision::Write(_), None) => {
                let now = Timestamp::now();
                let ours = LeaseRecord {
                    holder: Some(self.identity.clone()),
                    renew_time: Some(now),
                    duration: Some(LEASE_DURATION),
                    acquire_time: Some(now),
                    transitions: 0,
                };
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(spec_of(&ours)),
                };
                self.api
                    .create(&super::writer::post_params(), &lease)
                    .await
                    .map_err(|e| Error::api("create", what(), e))
            }
            (LeaseDecision::Write(ours), Some(mut lease)) => {
                lease.spec = Some(spec_of(&ours));
                self.api
                    .replace(&self.name, &super::writer::post_params(), &lease)
                    .await
                    .map_err(|e| Error::api("update", what(), e))
            }
        };
        match written {
            Ok(_) => Ok(true),
            // Another candidate wrote first.
            Err(e) if e.code() == Some(409) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up so a standby takes over at once instead of after it expires.
    pub async fn release(&self) -> Result<()> {
        let what = || format!("lease {}", self.name);
        let Some(mut lease) =
            self.api.get_opt(&self.name).await.map_err(|e| Error::api("get", what(), e))?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        self.api
            .replace(&self.name, &super::writer::post_params(), &lease)
            .await
            .map(|_| ())
            .map_err(|e| Error::api("update", what(), e))
    }
}

fn record_of(lease: &Lease) -> LeaseRecord {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseRecord {
        holder: spec.holder_identity,
        renew_time: spec.renew_time.map(|t| t.0),
        duration: spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(std::time::Duration::from_secs),
        acquire_time: spec.acquire_time.map(|t| t.0),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

fn spec_of(record: &LeaseRecord) -> LeaseSpec {
    LeaseSpec {
        holder_identity: record.holder.clone(),
        lease_duration_seconds: record.duration.and_then(|d| i32::try_from(d.as_secs()).ok()),
        acquire_time: record.acquire_time.map(MicroTime),
        renew_time: record.renew_time.map(MicroTime),
        lease_transitions: Some(record.transitions),
        ..Default::default()
    }
}

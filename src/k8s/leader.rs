//! Leader election with a `coordination.k8s.io/v1` Lease: only the holder runs actors; a
//! standby retries until the holder stops renewing. RBAC: leases get/create/update in the
//! Lease's namespace.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::error::{Error, Result};

/// How long a Lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews (and a standby retries).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);
/// A holder that could not renew for this long stops acting, well before a standby may take
/// over (`LEASE_DURATION` after the last renewal it saw).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// One candidate for the leader Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// The Lease record last seen and when, by our own clock: expiry is judged by how long the
    /// record stayed unchanged here, never by comparing another host's timestamps with ours.
    observed: std::sync::Mutex<Option<(String, Option<MicroTime>, std::time::Instant)>>,
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

    /// Takes or renews the Lease; `Ok(true)` when this candidate holds it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = Timestamp::now();
        let what = || format!("lease {}", self.name);
        let existing =
            self.api.get_opt(&self.name).await.map_err(|e| Error::api("get", what(), e))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(self.spec(now, 0, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) => {
                    let e = Error::api("create", what(), e);
                    if e.code() == Some(409) { Ok(false) } else { Err(e) }
                }
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let duration = SignedDuration::from_secs(i64::from(
            spec.lease_duration_seconds.unwrap_or(LEASE_DURATION.as_secs() as i32),
        ));
        let expired = {
            let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
            let unchanged =
                observed.as_ref().is_some_and(|(h, r, _)| *h == holder && *r == spec.renew_time);
            if !unchanged {
                *observed =
                    Some((holder.clone(), spec.renew_time.clone(), std::time::Instant::now()));
            }
            observed
                .as_ref()
                .is_some_and(|(_, _, since)| since.elapsed() >= duration.unsigned_abs())
        };
        let mine = holder == self.identity;
        if !mine && !holder.is_empty() && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine { spec.acquire_time.map(|t| t.0).unwrap_or(now) } else { now };
        lease.spec = Some(self.spec(now, transitions, acquired));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = Error::api("update", what(), e);
                if e.code() == Some(409) { Ok(false) } else { Err(e) }
            }
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
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
            .map_err(|e| Error::api("update", what(), e))
    }

    fn spec(&self, now: Timestamp, transitions: i32, acquired: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }
}

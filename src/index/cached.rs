//! A CocoonSet as the operator keeps it between passes.

use std::sync::Arc;

use crate::api::{CocoonSet, CocoonSetStatus};

/// A CocoonSet as the index and its actor keep it: the object without its status, and the
/// status as the JSON it stands for. A set's status is read only when its actor plans a pass
/// (at rest, once per resync period), and parsed it takes more than twice its text: about
/// 4.6 KB in 58 allocations against one of 2 KB for a set of five VMs, some 26 MB at 10,000
/// sets.
#[derive(Clone, Debug)]
pub struct CachedSet {
    object: Arc<CocoonSet>,
    status: Option<Arc<[u8]>>,
}

impl CachedSet {
    /// Keeps `set`, its status as JSON.
    pub fn new(mut set: CocoonSet) -> Self {
        let status = match set.status.take().map(|s| (serde_json::to_vec(&s), s)) {
            None => None,
            Some((Ok(json), _)) => Some(Arc::from(json)),
            // Never seen: a status that does not serialise is kept parsed.
            Some((Err(_), s)) => {
                set.status = Some(s);
                None
            }
        };
        Self { object: Arc::new(set), status }
    }

    /// The set, without its status.
    pub fn object(&self) -> &Arc<CocoonSet> {
        &self.object
    }

    /// The set's status as last watched.
    pub fn status(&self) -> Option<CocoonSetStatus> {
        let Some(json) = &self.status else { return self.object.status.clone() };
        match serde_json::from_slice(json) {
            Ok(status) => Some(status),
            Err(error) => {
                // Written by `new` from a status of the same type: cannot happen.
                tracing::error!(%error, "a cached CocoonSet status does not parse back");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AgentStatus, CocoonSetPhase, VmPhase};

    #[test]
    fn a_status_kept_as_json_reads_back_as_it_was_and_the_object_carries_none() {
        let spec = serde_json::from_value(serde_json::json!({"agent": {"image": "i"}})).unwrap();
        let mut set = CocoonSet::new("demo", spec);
        let status = CocoonSetStatus {
            phase: Some(CocoonSetPhase::Suspended),
            agents: vec![AgentStatus {
                slot: 0,
                role: "main".into(),
                pod_name: "demo-0".into(),
                vm_name: Some("vk-prod-demo-0".into()),
                phase: VmPhase::Hibernated,
                snapshot_ref: Some("vk-prod-demo-0:hibernate".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        set.status = Some(status.clone());
        let cached = CachedSet::new(set);
        assert_eq!(cached.object().status, None);
        assert_eq!(cached.status(), Some(status));
        let fresh = CachedSet::new(CocoonSet::new("new", cached.object().spec.clone()));
        assert_eq!(fresh.status(), None, "a set with no status yet");
    }
}

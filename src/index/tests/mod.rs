//! The index without a client or a runtime: inputs in, deliveries out. The fixtures are here;
//! the tests are grouped by what they route: sets and their pods, snapshot entries, and the
//! pods Hibernations name.

mod nodes;
mod routing;
mod snapshots;
mod targets;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::watcher::Event;

use super::*;
use crate::api::{CocoonSet, CocoonSetSpec, HibernationAction, HibernationSpec};

pub(super) fn set(name: &str, uid: &str) -> CocoonSet {
    let spec: CocoonSetSpec =
        serde_json::from_value(serde_json::json!({"agent": {"image": "x"}})).unwrap();
    let mut set = CocoonSet::new(name, spec);
    set.metadata.namespace = Some("ns".into());
    set.metadata.uid = Some(uid.into());
    set
}

pub(super) fn hib(name: &str, pod: &str) -> Hibernation {
    let spec = HibernationSpec { pod_name: pod.into(), action: HibernationAction::Hibernate };
    let mut h = Hibernation::new(name, spec);
    h.metadata.namespace = Some("ns".into());
    h.metadata.uid = Some(format!("uid-{name}"));
    h
}

pub(super) fn pod(name: &str, owner_uid: &str, label_set: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            labels: Some(BTreeMap::from([(
                "cocoon.cis/cocoonset".to_string(),
                label_set.to_string(),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: "cocoon.cis/v1alpha1".into(),
                kind: "CocoonSet".into(),
                name: label_set.into(),
                uid: owner_uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub(super) fn set_event(e: Event<CocoonSet>) -> Input {
    Input::Watch(Box::new(WatchEvent::CocoonSet(e)))
}

pub(super) fn pod_event(e: Event<Pod>) -> Input {
    Input::Watch(Box::new(WatchEvent::OwnedPod(crate::k8s::watch::viewed(e))))
}

pub(super) fn hib_event(e: Event<Hibernation>) -> Input {
    Input::Watch(Box::new(WatchEvent::Hibernation(e)))
}

pub(super) fn target_event(pod: &str, event: Event<Pod>) -> Input {
    Input::Watch(Box::new(WatchEvent::TargetPod {
        namespace: "ns".into(),
        name: pod.into(),
        event: crate::k8s::watch::viewed(event),
    }))
}

/// `(key, pod names)` of every delivery that carries pod updates.
pub(super) fn pod_updates(deliveries: &[Delivery]) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for d in deliveries {
        let (key, updates) = match d {
            Delivery::Update { key, updates } | Delivery::Spawn { key, updates, .. } => {
                (key, updates)
            }
            _ => continue,
        };
        for u in updates {
            if let Update::Pod { name, pod } = u {
                out.push((key.to_string(), name.to_string(), pod.is_some()));
            }
        }
    }
    out
}

pub(super) fn spawns(deliveries: &[Delivery]) -> Vec<(String, Incarnation)> {
    deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::Spawn { key, incarnation, .. } => Some((key.to_string(), *incarnation)),
            _ => None,
        })
        .collect()
}

/// Every main watch has listed.
pub(super) fn synced() -> Input {
    Input::Watch(Box::new(WatchEvent::Synced))
}

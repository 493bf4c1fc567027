//! A pod as the operator reads it from the API server: the metadata and status its decisions
//! read, parsed straight from the JSON; the spec and `managedFields` are skipped while parsing.
//!
//! Every pod event of the watches (a thousand sets are five thousand pods, each updated several
//! times on its way up) was parsed as a whole `Pod`: its spec (containers, volumes, tolerations,
//! security context) and its `managedFields` (a JSON tree per writer) were built, then dropped
//! by [`PodView::from_pod`], which reads neither. They were about a fifth of the operator's CPU
//! in a converge (profile of 300 sets) and most of its allocations.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer};

use crate::plan::PodView;

/// The parts of a pod the operator reads. Usable with `Api` and the watcher like `Pod` (same
/// kind and path).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WatchedPod {
    /// Name, namespace, UID, resourceVersion, labels, annotations, ownerReferences and the
    /// creation and deletion times; nothing else.
    #[serde(default, deserialize_with = "read_meta")]
    pub metadata: ObjectMeta,
    /// The node the pod is bound to; nothing else of the spec.
    #[serde(default, deserialize_with = "read_spec")]
    pub spec: Option<PodSpec>,
    /// Phase, reason, message, start time, address, conditions and each container's name and
    /// state.
    #[serde(default, deserialize_with = "read_status")]
    pub status: Option<PodStatus>,
}

impl WatchedPod {
    /// The operator's view of the pod.
    pub fn view(self) -> PodView {
        PodView::from_pod(&Pod { metadata: self.metadata, spec: self.spec, status: self.status })
    }
}

impl kube::Resource for WatchedPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<Pod as k8s_openapi::Resource>::KIND)
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<Pod as k8s_openapi::Resource>::GROUP)
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<Pod as k8s_openapi::Resource>::VERSION)
    }

    fn api_version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<Pod as k8s_openapi::Resource>::API_VERSION)
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The metadata fields that are read; the others (`managedFields` above all) are skipped.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
}

fn read_meta<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let m = Option::<Meta>::deserialize(deserializer)?.unwrap_or_default();
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        labels: m.labels,
        annotations: m.annotations,
        owner_references: m.owner_references,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        ..ObjectMeta::default()
    })
}

/// The spec fields that are read.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Spec {
    node_name: Option<String>,
}

fn read_spec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PodSpec>, D::Error> {
    Ok(Option::<Spec>::deserialize(deserializer)?
        .map(|s| PodSpec { node_name: s.node_name, ..PodSpec::default() }))
}

/// The status fields that are read.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Status {
    phase: Option<String>,
    reason: Option<String>,
    message: Option<String>,
    start_time: Option<Time>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    conditions: Option<Vec<PodCondition>>,
    container_statuses: Option<Vec<Container>>,
}

/// A container's name and state; image, IDs, restart counts and the rest are skipped.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Container {
    name: String,
    state: Option<ContainerState>,
}

fn read_status<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PodStatus>, D::Error> {
    Ok(Option::<Status>::deserialize(deserializer)?.map(|s| PodStatus {
        phase: s.phase,
        reason: s.reason,
        message: s.message,
        start_time: s.start_time,
        pod_ip: s.pod_ip,
        conditions: s.conditions,
        container_statuses: s.container_statuses.map(|cs| {
            cs.into_iter()
                .map(|c| ContainerStatus { name: c.name, state: c.state, ..Default::default() })
                .collect()
        }),
        ..PodStatus::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod as the API server sends it, with a spec and managedFields.
    const POD: &str = r#"{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "demo-1", "namespace": "prod", "uid": "u-1", "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "deletionTimestamp": "2026-01-01T00:05:00Z",
            "labels": {"cocoon.cis/cocoonset": "demo", "cocoon.cis/slot": "1", "team": "sre"},
            "annotations": {"cocoon.cis/vm-name": "vk-prod-demo-1", "cocoon.cis/hibernate": "true",
                            "cocoon.cis/hibernated-by": "h", "controller.kubernetes.io/pod-deletion-cost": "1000"},
            "ownerReferences": [{"apiVersion": "cocoon.cis/v1alpha1", "kind": "CocoonSet", "name": "demo",
                                 "uid": "set-uid", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "cocoon-operator", "operation": "Update", "apiVersion": "v1",
                               "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {}}}}],
            "finalizers": ["x"], "generation": 3
        },
        "spec": {"nodeName": "cocoon-pool", "containers": [{"name": "vm", "image": "ubuntu"}],
                 "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]},
        "status": {
            "phase": "Running", "reason": "R", "message": "M", "podIP": "10.88.0.2",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:01:00Z"}],
            "containerStatuses": [{"name": "vm", "image": "ubuntu", "imageID": "", "ready": false,
                                   "restartCount": 0, "state": {"waiting": {"reason": "Hibernated"}}}]
        }
    }"#;

    #[test]
    fn the_view_of_a_watched_pod_is_the_view_of_the_whole_pod() {
        let whole: Pod = serde_json::from_str(POD).unwrap();
        let watched: WatchedPod = serde_json::from_str(POD).unwrap();
        assert_eq!(watched.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(watched.view(), PodView::from_pod(&whole));
        let view = PodView::from_pod(&whole);
        assert!(view.hibernated && view.hibernate_requested && view.terminating);
        assert_eq!(view.controller_uid.as_deref(), Some("set-uid"));
    }

    #[test]
    fn what_no_decision_reads_is_not_kept() {
        let watched: WatchedPod = serde_json::from_str(POD).unwrap();
        assert!(watched.metadata.managed_fields.is_none());
        assert!(watched.metadata.finalizers.is_none());
        let spec = watched.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("cocoon-pool"));
        assert!(spec.containers.is_empty() && spec.tolerations.is_none());
        let status = watched.status.unwrap();
        assert!(status.container_statuses.unwrap()[0].image.is_empty());
    }

    /// A hibernated pod of vk-cocoon v0.2: Pending, started once, no container, no VM id.
    const HIBERNATED_V02: &str = r#"{
        "metadata": {"name": "demo-1", "namespace": "prod", "uid": "u-1",
            "annotations": {"vm.cocoonstack.io/name": "vk-prod-demo-1",
                            "vm.cocoonstack.io/hibernate": "true",
                            "cocoonset.cocoonstack.io/mode": "clone"}},
        "spec": {"nodeName": "vk-v02", "containers": [{"name": "agent", "image": "x"}]},
        "status": {"phase": "Pending", "startTime": "2026-01-01T00:00:00Z"}
    }"#;

    #[test]
    fn a_cocoonstack_pod_reads_the_same_watched_or_whole() {
        let whole: Pod = serde_json::from_str(HIBERNATED_V02).unwrap();
        let watched: WatchedPod = serde_json::from_str(HIBERNATED_V02).unwrap();
        let view = watched.view();
        assert_eq!(view, PodView::from_pod(&whole));
        assert_eq!(view.dialect, Some(crate::contract::Dialect::V02));
        assert!(view.hibernated && view.reports_hibernated(), "{view:?}");
        assert_eq!(view.node.as_deref(), Some("vk-v02"));
    }

    #[test]
    fn a_pod_without_status_or_metadata_parses() {
        let bare: WatchedPod = serde_json::from_str(r#"{"metadata": {"name": "p"}}"#).unwrap();
        assert!(bare.status.is_none());
        let null: WatchedPod =
            serde_json::from_str(r#"{"metadata": {"name": "p"}, "status": null}"#).unwrap();
        assert!(null.status.is_none());
        assert_eq!(null.view().name, "p");
    }
}

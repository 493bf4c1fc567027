//! Every write the operator makes, with one field manager, each idempotent: pod creates and
//! deletes, annotation patches, status applies, finalizers and Events.
//!
//! RBAC this needs: pods create/delete/patch; cocoonsets and hibernations patch (finalizers),
//! their `/status` patch; events.k8s.io events create/patch.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;

use super::error::{Error, Result};
use crate::contract::FIELD_MANAGER;
use crate::plan::PlanEvent;

/// Writes to the API server on behalf of the actors.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    events: std::sync::Arc<super::events::EventPublisher>,
}

/// The body of a status apply: the object's type and its whole status.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a, S> {
    api_version: std::borrow::Cow<'a, str>,
    kind: std::borrow::Cow<'a, str>,
    status: &'a S,
}

impl Writer {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let events = super::events::EventPublisher::new(client.clone(), FIELD_MANAGER, instance);
        Self { events: std::sync::Arc::new(events), client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a pod. `AlreadyExists` is an error like any other: what it means is decided by
    /// the core (see [`super::outcome`]).
    pub async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        api.create(&params, pod)
            .await
            .map(|_| ())
            .map_err(|e| Error::api("create", format!("pod {namespace}/{}", pod.name_any()), e))
    }

    /// Deletes a pod with its own grace period; `uid` guards against deleting a replacement of
    /// the same name (the API server answers 409).
    pub async fn delete_pod(&self, namespace: &str, name: &str, uid: Option<String>) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
            ..Default::default()
        };
        api.delete(name, &params)
            .await
            .map(|_| ())
            .map_err(|e| Error::api("delete", format!("pod {namespace}/{name}"), e))
    }

    /// Merge-patches annotations on a pod (`None` removes a key).
    pub async fn patch_pod_annotations(
        &self,
        namespace: &str,
        name: &str,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.patch_pod_metadata(namespace, name, annotations, &BTreeMap::new()).await
    }

    /// Merge-patches labels on a pod (`None` removes a key).
    pub async fn patch_pod_labels(
        &self,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.patch_pod_metadata(namespace, name, &BTreeMap::new(), labels).await
    }

    /// One merge patch of a pod's annotations and labels (`None` removes a key; an empty map
    /// is left out).
    pub async fn patch_pod_metadata(
        &self,
        namespace: &str,
        name: &str,
        annotations: &BTreeMap<String, Option<String>>,
        labels: &BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut metadata = serde_json::Map::new();
        if !annotations.is_empty() {
            metadata.insert("annotations".into(), json!(annotations));
        }
        if !labels.is_empty() {
            metadata.insert("labels".into(), json!(labels));
        }
        let body = json!({ "metadata": metadata });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map(|_| ())
            .map_err(|e| Error::api("patch", format!("pod {namespace}/{name} metadata"), e))
    }

    /// Server-side applies the whole status of a custom resource (fields we no longer set are
    /// removed because this manager owned them).
    pub async fn apply_status<K, S>(&self, obj: &K, status: &S) -> Result<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        S: Serialize + std::fmt::Debug,
    {
        let namespace = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        // Serialized straight into the request body: a status burst of a thousand sets waits
        // for the API server as bytes, not as trees of JSON values.
        let body = StatusApply { api_version: K::api_version(&()), kind: K::kind(&()), status };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch_status(&name, &params, &Patch::Apply(&body)).await.map_err(|e| {
            Error::api("patch", format!("{} {namespace}/{name} status", K::kind(&())), e)
        })
    }

    /// Replaces the finalizer list, guarded by `resource_version`, the version the decision holds
    /// on (a concurrent change answers 409 and the actor retries from a fresh view).
    pub async fn set_finalizers<K>(
        &self,
        obj: &K,
        resource_version: Option<String>,
        finalizers: Vec<String>,
    ) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let namespace = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        let body = json!({
            "metadata": { "resourceVersion": resource_version, "finalizers": finalizers }
        });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&body)).await.map(|_| ()).map_err(
            |e| Error::api("patch", format!("{} {namespace}/{name} finalizers", K::kind(&())), e),
        )
    }

    /// Records an Event on an object. Failures are logged, never fatal: an Event is a courtesy.
    pub async fn event(&self, reference: &ObjectReference, event: &PlanEvent, action: &str) {
        let note = truncate(&event.message, 1000);
        if let Err(e) =
            self.events.publish(reference, event.warning, event.reason, action, &note).await
        {
            tracing::warn!(error = %e, reason = event.reason, "failed to record event");
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

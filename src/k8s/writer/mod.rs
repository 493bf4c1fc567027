//! Every write the operator makes to the objects it manages, with one field manager, each
//! idempotent: pod creates and deletes, annotation and label patches (the labels of the pods
//! Hibernations name among them), status applies, finalizers and Events ([`events`]). The leader
//! Lease is written by its elector on a client of its own (a renewal must never wait behind a
//! burst of writes), with the same field manager.
//!
//! RBAC this needs: pods create/delete/patch; cocoonsets and hibernations patch (finalizers),
//! their `/status` patch; events.k8s.io events create/patch.

pub mod events;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::error::{Error, Result};
use super::watched_pod::WatchedPod;

/// The parameters of every merge patch: our field manager.
pub(crate) fn merge_params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

/// The parameters of every create and replace: our field manager.
pub(crate) fn post_params() -> PostParams {
    PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}
use crate::contract::FIELD_MANAGER;
use crate::plan::PlanEvent;

/// Writes to the API server on behalf of the actors.
///
/// At most `max_in_flight` writes are in flight at once; the others wait for a turn before
/// their request is even built. A thousand actors writing at once (a teardown, a wake round)
/// then hold a thousand small waits, not a thousand request futures of ~2 KiB each. The
/// client's own bound (`counted_client`) still covers every request, writes and watch lists
/// alike; with both bounds the same size, writes seldom wait at the second.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    events: Arc<events::EventPublisher>,
    turns: Arc<Semaphore>,
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
    pub fn new(client: Client, instance: Option<String>, max_in_flight: usize) -> Self {
        let events = events::EventPublisher::new(client.clone(), FIELD_MANAGER, instance);
        let turns = Arc::new(Semaphore::new(max_in_flight.max(1)));
        Self { events: Arc::new(events), client, turns }
    }

    /// Waits for a turn, then builds the request with `request` and runs it boxed, holding the
    /// turn until it is answered.
    async fn in_turn<F, Fut>(&self, request: F) -> Fut::Output
    where
        F: FnOnce() -> Fut,
        Fut: Future,
    {
        let _turn = self.turns.acquire().await.ok();
        Box::pin(request()).await
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a pod. `AlreadyExists` is an error like any other: what it means is decided by
    /// the core (see [`super::outcome`]).
    pub async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = post_params();
        self.in_turn(|| api.create(&params, pod))
            .await
            .map(|_| ())
            .map_err(|e| Error::api("create", format!("pod {namespace}/{}", pod.name_any()), e))
    }

    /// Deletes a pod with its own grace period, or `grace_seconds` when given (0 for a pod on a
    /// node gone from the cluster); `uid` guards against deleting a replacement of the same
    /// name (the API server answers 409).
    pub async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<String>,
        grace_seconds: Option<u32>,
    ) -> Result<()> {
        // The answer (the pod, terminating) is read only as far as `WatchedPod` reads it.
        let api: Api<WatchedPod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
            grace_period_seconds: grace_seconds,
            ..Default::default()
        };
        self.in_turn(|| api.delete(name, &params))
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

    /// Labels a pod a Hibernation names (`cocoon.cis/hibernation-target`), so that the label
    /// watch shows it. The answer says whether the pod exists.
    pub async fn label_target(&self, namespace: &str, pod: &str) -> Result<()> {
        let labels = BTreeMap::from([(
            crate::contract::LABEL_HIBERNATION_TARGET.to_string(),
            Some(crate::contract::HIBERNATION_TARGET_VALUE.to_string()),
        )]);
        self.patch_pod_labels(namespace, pod, &labels).await
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
        let api: Api<WatchedPod> = Api::namespaced(self.client.clone(), namespace);
        let mut metadata = serde_json::Map::new();
        if !annotations.is_empty() {
            metadata.insert("annotations".into(), json!(annotations));
        }
        if !labels.is_empty() {
            metadata.insert("labels".into(), json!(labels));
        }
        let body = json!({ "metadata": metadata });
        let (params, patch) = (merge_params(), Patch::Merge(&body));
        self.in_turn(|| api.patch(name, &params, &patch))
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
        let patch = Patch::Apply(&body);
        self.in_turn(|| api.patch_status(&name, &params, &patch)).await.map_err(|e| {
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
        let (params, patch) = (merge_params(), Patch::Merge(&body));
        self.in_turn(|| api.patch(&name, &params, &patch)).await.map(|_| ()).map_err(|e| {
            Error::api("patch", format!("{} {namespace}/{name} finalizers", K::kind(&())), e)
        })
    }

    /// Records an Event on an object. Failures are logged, never fatal: an Event is a courtesy.
    pub async fn event(&self, reference: &ObjectReference, event: &PlanEvent, action: &str) {
        let note = truncate(&event.message, 1000);
        let publish = || self.events.publish(reference, event.warning, event.reason, action, &note);
        if let Err(e) = self.in_turn(publish).await {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn a_write_waits_for_its_turn_before_its_request_goes_out() {
        // An API server that reads requests and answers only when told.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let client = Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        let writer = Writer::new(client, None, 1);
        let pod = |name: &str| Pod {
            metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        };
        let (first, second) = (writer.clone(), writer.clone());
        let a = tokio::spawn(async move { first.create_pod("ns", &pod("a")).await });
        let b = tokio::spawn(async move { second.create_pod("ns", &pod("b")).await });
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = vec![0; 64 * 1024];
        let _ = conn.read(&mut buf).await.unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(quiet.is_err(), "the second write waits for the turn: no second request");
        conn.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        drop(conn);
        assert!(a.await.unwrap().is_err());
        let (mut conn, _) = listener.accept().await.unwrap();
        let n = conn.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("POST "), "the second went out");
        drop(conn);
        assert!(b.await.unwrap().is_err());
    }
}

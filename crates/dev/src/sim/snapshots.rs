//! Snapshot entries in the per-namespace `cocoon-vm-snapshots` ConfigMap.
//!
//! RBAC: `configmaps` get, create, patch (in pod namespaces) and list (cluster-wide, once at
//! start, to rebuild the VM table).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::error::{Error, Result, status_code};
use crate::contract;

/// Attempts before giving up on a ConfigMap that keeps changing under us.
const ATTEMPTS: u32 = 5;

/// One queued change of an entry: `Some(value)` writes it, `None` removes it.
struct Change {
    namespace: String,
    vm: String,
    value: Option<String>,
    done: oneshot::Sender<std::result::Result<(), String>>,
}

/// The simulator's writer of snapshot entries. Changes queued while a write is in flight go
/// out together, one merge patch per namespace: hundreds of VMs hibernating at once would
/// otherwise patch one ConfigMap concurrently, and the API server's retries on that one object
/// end in timeouts.
#[derive(Clone)]
pub struct SnapshotWriter {
    tx: mpsc::UnboundedSender<Change>,
}

impl SnapshotWriter {
    /// Starts the writer task; it ends when every handle is dropped.
    pub fn start(client: Client) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(client, rx));
        Self { tx }
    }

    /// Writes `cocoon-vm-snapshots[<vm>] = <vm>-suspend`, creating the ConfigMap on demand.
    pub async fn write_entry(&self, namespace: &str, vm_name: &str) -> Result<()> {
        self.change(namespace, vm_name, Some(contract::snapshot_value(vm_name))).await
    }

    /// Removes the entry of `vm_name`; a missing ConfigMap or entry is already the goal.
    pub async fn delete_entry(&self, namespace: &str, vm_name: &str) -> Result<()> {
        self.change(namespace, vm_name, None).await
    }

    async fn change(&self, namespace: &str, vm: &str, value: Option<String>) -> Result<()> {
        let (done, answer) = oneshot::channel();
        let change = Change { namespace: namespace.to_string(), vm: vm.to_string(), value, done };
        let stopped = || Error::Snapshot {
            namespace: namespace.to_string(),
            detail: "the snapshot writer stopped".into(),
        };
        self.tx.send(change).map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(|detail| Error::Snapshot { namespace: namespace.to_string(), detail })
    }
}

async fn write_loop(client: Client, mut rx: mpsc::UnboundedReceiver<Change>) {
    while let Some(first) = rx.recv().await {
        let mut by_namespace: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        by_namespace.entry(first.namespace.clone()).or_default().push(first);
        while let Ok(more) = rx.try_recv() {
            by_namespace.entry(more.namespace.clone()).or_default().push(more);
        }
        let writes = by_namespace.into_iter().map(|(namespace, changes)| {
            let client = client.clone();
            async move {
                // The latest change of an entry wins.
                let data: BTreeMap<String, Option<String>> =
                    changes.iter().map(|c| (c.vm.clone(), c.value.clone())).collect();
                let result = apply(&client, &namespace, &data).await.map_err(|e| e.to_string());
                for change in changes {
                    let _ = change.done.send(result.clone());
                }
            }
        });
        futures::future::join_all(writes).await;
    }
}

/// One merge patch of entries (a merge patch touches only these keys, so other writers of
/// other keys never conflict); a missing ConfigMap is created with the entries written, and
/// the race between two creators (409) is retried as a patch.
async fn apply(
    client: &Client,
    namespace: &str,
    data: &BTreeMap<String, Option<String>>,
) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let patch = json!({ "data": data });
    let written: BTreeMap<String, String> =
        data.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
    for _ in 0..ATTEMPTS {
        match api.patch(contract::SNAPSHOT_CONFIGMAP, &patch_params(), &Patch::Merge(&patch)).await
        {
            Ok(_) => return Ok(()),
            Err(e) if status_code(&e) == Some(404) && written.is_empty() => return Ok(()),
            Err(e) if status_code(&e) == Some(404) => {}
            Err(e) => {
                return Err(Error::api(
                    format!("patch {namespace}/{}", contract::SNAPSHOT_CONFIGMAP),
                    e,
                ));
            }
        }
        let fresh = ConfigMap {
            metadata: ObjectMeta {
                name: Some(contract::SNAPSHOT_CONFIGMAP.to_string()),
                namespace: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            data: Some(written.clone()),
            ..ConfigMap::default()
        };
        let params = PostParams {
            field_manager: Some(super::FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match api.create(&params, &fresh).await {
            Ok(_) => return Ok(()),
            // Someone else created it between our patch and our create: patch again.
            Err(e) if matches!(status_code(&e), Some(409)) => continue,
            Err(e) => {
                return Err(Error::api(
                    format!("create {namespace}/{}", contract::SNAPSHOT_CONFIGMAP),
                    e,
                ));
            }
        }
    }
    Err(Error::SnapshotContention {
        namespace: namespace.to_string(),
        name: contract::SNAPSHOT_CONFIGMAP.to_string(),
        attempts: ATTEMPTS,
    })
}

/// The entry of `vm_name`, if the namespace's ConfigMap holds one (one GET: what vk-cocoon
/// reads before it creates a VM in clone mode).
pub async fn read_entry(client: &Client, namespace: &str, vm_name: &str) -> Result<Option<String>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let map = api
        .get_opt(contract::SNAPSHOT_CONFIGMAP)
        .await
        .map_err(|e| Error::api(format!("get {namespace}/{}", contract::SNAPSHOT_CONFIGMAP), e))?;
    Ok(map.and_then(|m| m.data?.remove(vm_name)).filter(|v| !v.is_empty()))
}

/// Every snapshot entry in the cluster as `(namespace, vm name)`: one list at start-up.
pub async fn list_entries(client: &Client) -> Result<HashSet<(String, String)>> {
    let api: Api<ConfigMap> = Api::all(client.clone());
    let params =
        ListParams::default().fields(&format!("metadata.name={}", contract::SNAPSHOT_CONFIGMAP));
    let list = api
        .list(&params)
        .await
        .map_err(|e| Error::api(format!("list {} ConfigMaps", contract::SNAPSHOT_CONFIGMAP), e))?;
    Ok(list
        .items
        .into_iter()
        .flat_map(|cm| {
            let namespace = cm.metadata.namespace.unwrap_or_default();
            cm.data.unwrap_or_default().into_keys().map(move |vm| (namespace.clone(), vm))
        })
        .collect())
}

fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(super::FIELD_MANAGER.to_string()), ..PatchParams::default() }
}

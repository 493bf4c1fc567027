//! Snapshot entries in the per-namespace `cocoon-vm-snapshots` ConfigMap.
//!
//! RBAC: `configmaps` get, create, patch (in pod namespaces) and list (cluster-wide, once at
//! start, to rebuild the VM table).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::error::{Error, Result, status_code};
use crate::contract;

/// Attempts before giving up on a ConfigMap that keeps changing under us.
const ATTEMPTS: u32 = 5;

/// Writes `cocoon-vm-snapshots[<vm>] = <vm>-suspend`, creating the ConfigMap on demand. A merge
/// patch touches only our key, so concurrent writers of other keys never conflict; the race
/// between two creators (409 AlreadyExists) is retried as a patch.
pub async fn write_entry(client: &Client, namespace: &str, vm_name: &str) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let value = contract::snapshot_value(vm_name);
    let patch = json!({ "data": { vm_name: value } });
    for _ in 0..ATTEMPTS {
        match api.patch(contract::SNAPSHOT_CONFIGMAP, &patch_params(), &Patch::Merge(&patch)).await
        {
            Ok(_) => return Ok(()),
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
            data: Some([(vm_name.to_string(), value.clone())].into()),
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

/// Removes the entry of `vm_name`; a missing ConfigMap or entry is already the goal.
pub async fn delete_entry(client: &Client, namespace: &str, vm_name: &str) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let patch = json!({ "data": { vm_name: null } });
    match api.patch(contract::SNAPSHOT_CONFIGMAP, &patch_params(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(e) if status_code(&e) == Some(404) => Ok(()),
        Err(e) => Err(Error::api(format!("patch {namespace}/{}", contract::SNAPSHOT_CONFIGMAP), e)),
    }
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

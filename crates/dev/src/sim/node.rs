//! Registers the virtual node and keeps it alive: a Ready condition and a Lease heartbeat.
//!
//! RBAC: `nodes` get, patch (server-side apply creates it), `nodes/status` patch, and `leases`
//! (coordination.k8s.io, namespace `kube-node-lease`) get, patch.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, Resource};

use super::error::{Error, Result};
use super::vm::HOST_IP;
use crate::contract::{self, Dialect};

/// Namespace of node heartbeat Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long the Lease stays valid without renewal (the kubelet's default).
const LEASE_DURATION_SECONDS: i32 = 40;
/// Node status (the Ready condition's heartbeat time) is refreshed every this many Lease renewals,
/// like the kubelet, which reports status far less often than it renews its Lease.
const STATUS_EVERY: u32 = 6;

/// What a node is: its dialect and, for cocoonstack nodes, CPU class and pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeKind {
    pub dialect: Dialect,
    pub cpu_class: Option<String>,
    pub pool: String,
}

impl NodeKind {
    /// The kind of node a simulator's config describes.
    pub fn of(config: &super::SimConfig) -> Self {
        Self {
            dialect: config.dialect,
            cpu_class: config.cpu_class.clone(),
            pool: config.pool.clone(),
        }
    }
}

/// The registered node: what the heartbeat needs to keep it alive.
#[derive(Clone, Debug)]
pub struct RegisteredNode {
    pub name: String,
    uid: String,
    ready_since: Timestamp,
    kind: NodeKind,
}

/// The version a node of `dialect` reports (`status.nodeInfo.kubeletVersion`): none for the
/// seed (v0.1.x never set it), the tag of a build for the others.
fn kubelet_version(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Seed => "",
        Dialect::V02 => "v0.2.9",
        Dialect::Current => "v0.3.7",
    }
}

/// Creates or updates the node (labels and taint of its dialect, PROVIDERS.md §1), marks it
/// Ready and writes its first Lease.
pub async fn register(client: &Client, name: &str, kind: &NodeKind) -> Result<RegisteredNode> {
    let dialect = kind.dialect;
    let nodes: Api<Node> = Api::all(client.clone());
    let mut labels = BTreeMap::from([
        (contract::NODE_LABEL_TYPE.to_string(), contract::NODE_TYPE_VIRTUAL_KUBELET.to_string()),
        (contract::NODE_LABEL_ROLE.to_string(), contract::NODE_ROLE_AGENT.to_string()),
        (contract::NODE_LABEL_HOSTNAME.to_string(), name.to_string()),
    ]);
    // The seed's node carries the framework's labels only and no taint; v0.2 and current add
    // their pool, role and provider taint, current its CPU class.
    let mut taints = Vec::new();
    if dialect != Dialect::Seed {
        labels.insert(contract::dialect::NODE_LABEL_POOL.into(), kind.pool.clone());
        labels.insert("node-role.kubernetes.io/cocoon-vm".into(), String::new());
        taints.push(Taint {
            key: contract::TAINT_VIRTUAL_KUBELET.to_string(),
            value: Some(contract::TAINT_VIRTUAL_KUBELET_VALUE.to_string()),
            effect: "NoSchedule".to_string(),
            ..Taint::default()
        });
    }
    if let (Dialect::Current, Some(class)) = (dialect, &kind.cpu_class) {
        labels.insert(contract::dialect::NODE_LABEL_CPU_CLASS.into(), class.to_string());
    }
    let desired = Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec { taints: Some(taints), ..NodeSpec::default() }),
        status: None,
    };
    let applied = nodes
        .patch(name, &apply_params(), &Patch::Apply(&desired))
        .await
        .map_err(|e| Error::api(format!("apply node {name}"), e))?;
    let node = RegisteredNode {
        name: name.to_string(),
        uid: applied.metadata.uid.unwrap_or_default(),
        ready_since: Timestamp::now(),
        kind: kind.clone(),
    };
    report_status(client, &node).await?;
    renew_lease(client, &node).await?;
    Ok(node)
}

/// Renews the Lease every `interval` and refreshes the Ready condition now and then, until the
/// task is aborted. Failures are logged and retried on the next beat; a node deleted behind our
/// back is registered again, as a kubelet would.
pub async fn heartbeat(client: Client, mut node: RegisteredNode, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // The first tick is immediate; registration just renewed.
    let mut beats: u32 = 0;
    loop {
        ticker.tick().await;
        beats = beats.wrapping_add(1);
        if let Err(error) = renew_lease(&client, &node).await {
            tracing::warn!(node = %node.name, %error, "node lease renewal failed");
        }
        if !beats.is_multiple_of(STATUS_EVERY) {
            continue;
        }
        match report_status(&client, &node).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {
                match register(&client, &node.name, &node.kind).await {
                    Ok(again) => {
                        tracing::info!(node = %node.name, "node was deleted; registered it again");
                        node = again;
                    }
                    Err(error) => {
                        tracing::warn!(node = %node.name, %error, "node re-registration failed")
                    }
                }
            }
            Err(error) => tracing::warn!(node = %node.name, %error, "node status refresh failed"),
        }
    }
}

async fn report_status(client: &Client, node: &RegisteredNode) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = Timestamp::now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(node.ready_since)),
    };
    // Room for far more VMs than a demo or benchmark starts; the simulator does not model limits.
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity("1000".to_string())),
        ("memory".to_string(), Quantity("4Ti".to_string())),
        ("pods".to_string(), Quantity("10000".to_string())),
        ("ephemeral-storage".to_string(), Quantity("100Ti".to_string())),
    ]);
    let status = Node {
        metadata: ObjectMeta { name: Some(node.name.clone()), ..ObjectMeta::default() },
        spec: None,
        status: Some(NodeStatus {
            conditions: Some(vec![
                condition("Ready", "True", "KubeletReady", "vk-cocoon simulator is ready"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "simulated"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "simulated"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "simulated"),
            ]),
            capacity: Some(capacity.clone()),
            allocatable: Some(capacity),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".to_string(), address: HOST_IP.to_string() },
                NodeAddress { type_: "Hostname".to_string(), address: node.name.clone() },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".to_string(),
                operating_system: "linux".to_string(),
                os_image: "vk-cocoon simulator".to_string(),
                kernel_version: "simulated".to_string(),
                container_runtime_version: "cocoon://sim".to_string(),
                kubelet_version: kubelet_version(node.kind.dialect).to_string(),
                ..NodeSystemInfo::default()
            }),
            ..NodeStatus::default()
        }),
    };
    nodes
        .patch_status(&node.name, &apply_params(), &Patch::Apply(&status))
        .await
        .map_err(|e| Error::api(format!("apply status of node {}", node.name), e))?;
    Ok(())
}

async fn renew_lease(client: &Client, node: &RegisteredNode) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    // Owned by the node, as the kubelet does, so deleting the node removes its Lease.
    let owner = OwnerReference {
        api_version: Node::api_version(&()).to_string(),
        kind: Node::kind(&()).to_string(),
        name: node.name.clone(),
        uid: node.uid.clone(),
        ..OwnerReference::default()
    };
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            namespace: Some(LEASE_NAMESPACE.to_string()),
            owner_references: (!node.uid.is_empty()).then(|| vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }),
    };
    leases
        .patch(&node.name, &apply_params(), &Patch::Apply(&lease))
        .await
        .map_err(|e| Error::api(format!("renew lease {LEASE_NAMESPACE}/{}", node.name), e))?;
    Ok(())
}

fn apply_params() -> PatchParams {
    PatchParams::apply(super::FIELD_MANAGER).force()
}

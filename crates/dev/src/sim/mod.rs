//! A simulator of vk-cocoon: VM-backed pods without VMs.
//!
//! It registers a Ready virtual node, watches the pods bound to it and plays vk-cocoon's part of
//! the contract (SPEC §4) in the dialect it is told to speak (PROVIDERS.md): VM ids and
//! addresses in annotations, Running/Ready status, forks, hibernation (into the
//! `cocoon-vm-snapshots` ConfigMap for the seed, `<vm>:hibernate` in a registry for v0.2 and
//! current), wake, snapshot-on-delete, current's lifecycle states, plus fault injection. See
//! `docs/simulator.md`.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> cocoon_dev::sim::Result<()> {
//! use cocoon_dev::sim::{SimConfig, Simulator};
//! let handle = Simulator::start(client, SimConfig::default()).await?;
//! // ... create pods with spec.nodeName = handle.node_name() ...
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! RBAC needed (cluster-wide): nodes get/patch, nodes/status patch, leases in `kube-node-lease`
//! get/patch, pods list/watch/patch/delete, pods/status patch, configmaps list/get/create/patch,
//! replicasets get (a Deployment's pod is named after its Deployment), events.k8s.io events
//! create/patch.

mod cocoonstack;
mod config;
mod decide;
mod dispatch;
mod error;
mod intent;
mod node;
mod restore;
mod snapshots;
mod status;
pub mod tags;
mod vm;
mod worker;

use std::sync::{Arc, Mutex};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{NodeShape, SimConfig, parse_node};
pub use error::{Error, Result};

/// Field manager of every write the simulator makes (distinct from the operator's).
const FIELD_MANAGER: &str = "vk-cocoon-sim";

/// Entry point of the simulator.
pub struct Simulator;

impl Simulator {
    /// Registers the node (returns once it exists and is Ready), reads the snapshot ConfigMaps,
    /// then serves pods in background tasks until the handle is shut down or dropped.
    pub async fn start(client: Client, config: SimConfig) -> Result<SimHandle> {
        let tags = tags_for(&config)?;
        Self::start_with(client, config, tags).await
    }

    /// As [`Simulator::start`], keeping cocoonstack snapshots in `tags` (several simulated
    /// nodes of one cluster share one store, as a cluster shares its registry).
    pub async fn start_with(
        client: Client,
        config: SimConfig,
        tags: tags::Tags,
    ) -> Result<SimHandle> {
        config.validate().map_err(Error::Config)?;
        let node = node::register(&client, &config.node_name, &node::NodeKind::of(&config)).await?;
        let snapshots = snapshots::list_entries(&client).await?;
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: Some(config.node_name.clone()),
        };
        let context = Arc::new(worker::SimContext {
            recorder: Recorder::new(client.clone(), reporter),
            table: Mutex::new(vm::VmTable::new(vm::random_seed())),
            client: client.clone(),
            config: config.clone(),
            snapshots: snapshots::SnapshotWriter::start(client.clone()),
            tags,
        });
        let (stop, stopped) = oneshot::channel();
        let pods = tokio::spawn(dispatch::run(context, snapshots, stopped));
        let heartbeat = tokio::spawn(node::heartbeat(client, node, config.heartbeat_interval));
        tracing::info!(node = %config.node_name, "vk-cocoon simulator started");
        Ok(SimHandle { node_name: config.node_name, stop: Some(stop), pods: Some(pods), heartbeat })
    }
}

/// A running simulator. Dropping it stops every task (abruptly, like a killed process);
/// [`SimHandle::shutdown`] also waits until they have stopped.
#[derive(Debug)]
pub struct SimHandle {
    node_name: String,
    stop: Option<oneshot::Sender<()>>,
    pods: Option<JoinHandle<()>>,
    heartbeat: JoinHandle<()>,
}

impl SimHandle {
    /// Name of the node this simulator serves.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Stops the node's heartbeat (its Lease and status are no longer renewed) while the
    /// VMs keep running: the provider went silent. The node lifecycle controller then marks
    /// the node NotReady; a new simulator for the same node brings it back.
    pub fn stop_heartbeat(&self) {
        self.heartbeat.abort();
    }

    /// Stops the pod tasks and the heartbeat, and waits for them. The node and the pods stay as
    /// they are, so a new simulator picks up where this one stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(pods) = self.pods.take()
            && let Err(error) = pods.await
        {
            tracing::warn!(%error, "pod dispatcher ended abnormally");
        }
        self.heartbeat.abort();
        tracing::info!(node = %self.node_name, "vk-cocoon simulator stopped");
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        // Aborting the dispatcher drops its task set, which aborts every pod task.
        if let Some(pods) = &self.pods {
            pods.abort();
        }
        self.heartbeat.abort();
    }
}

/// Starts the config's nodes ([`SimConfig::node_configs`]): the `--node` entries, each with
/// its dialect, CPU class and pool; else one named `config.node_name`, or, for more,
/// `<node_name>-1` … `<node_name>-N`. The v0.2 and current nodes share one snapshot store (the
/// registry, or memory), as a fleet shares its registry.
pub async fn start_fleet(client: Client, config: SimConfig) -> Result<Vec<SimHandle>> {
    config.validate().map_err(Error::Config)?;
    let tags = tags_for(&config)?;
    let mut handles = Vec::new();
    for node in config.node_configs() {
        handles.push(Simulator::start_with(client.clone(), node, tags.clone()).await?);
    }
    Ok(handles)
}

/// The snapshot store of cocoonstack dialects: the registry the config names, else memory.
fn tags_for(config: &SimConfig) -> Result<tags::Tags> {
    Ok(match &config.registry {
        Some(address) => {
            let registry = cocoon_operator::registry::RegistryConfig {
                address: address.clone(),
                auth_file: None,
            };
            let registry = cocoon_operator::registry::Registry::new(&registry)
                .map_err(|e| Error::Config(e.to_string()))?;
            tags::Tags::Registry(Arc::new(registry))
        }
        None => tags::Tags::default(),
    })
}

/// Runs the simulator until Ctrl-C or SIGTERM (the `simulate` command).
pub async fn run(client: Client, config: SimConfig) -> Result<()> {
    let handles = start_fleet(client, config).await?;
    cocoon_operator::signal::shutdown().await;
    for handle in handles {
        handle.shutdown().await;
    }
    Ok(())
}

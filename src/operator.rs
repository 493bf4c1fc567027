//! Assembles the runtime: counted client, HTTP endpoints, optional leader election, supervisor,
//! router and watches; and shuts it down gracefully (stop watches, let actors finish the message
//! in hand, release the Lease).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use tokio::task::JoinHandle;

use crate::actors::delivery::Deliverer;
use crate::actors::supervisor::SupervisorArgs;
use crate::actors::tree::{self, ActorTree};
use crate::actors::{Context, Supervisor, SupervisorMsg};
use crate::config::OperatorConfig;
use crate::http::{HttpState, serve};
use crate::index::Input;
use crate::k8s::leader::{LeaderElector, RENEW_INTERVAL, RETRY_INTERVAL};
use crate::k8s::{Writer, client::counted_client, watch};
use crate::metrics::Metrics;

/// Why the operator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("build client: {0}")]
    Client(#[source] kube::Error),
    #[error("bind HTTP endpoints: {0}")]
    Bind(#[source] std::io::Error),
    #[error("start supervisor: {0}")]
    Spawn(String),
    #[error("leader election: {0}")]
    Leader(#[source] crate::k8s::Error),
    #[error("lost the leader Lease")]
    LostLease,
    #[error("registry: {0}")]
    Registry(#[source] crate::registry::Error),
}

/// A cheap, clonable view of a running operator for tests, `dev` and benchmarks.
#[derive(Clone)]
pub struct OperatorProbe {
    metrics: Arc<Metrics>,
    ctx: Arc<Context>,
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    supervisor: ActorRef<SupervisorMsg>,
}

impl OperatorProbe {
    /// Requests sent to the API server so far (every verb and result).
    pub fn api_requests(&self) -> u64 {
        self.metrics.api_request_total()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn is_synced(&self) -> bool {
        self.ctx.is_synced()
    }

    /// The live actor tree.
    pub fn tree(&self) -> ActorTree {
        tree::snapshot(&self.ctx.registry, self.ctx.is_synced())
    }

    /// Fault injection (feature `fault-injection`): makes one actor panic while handling a
    /// message (an actor at rest is revived first). Returns false when no such actor lives.
    #[cfg(feature = "fault-injection")]
    pub fn inject_panic(&self, key: &crate::actors::ActorKey) -> bool {
        let registry = &self.ctx.registry;
        let lives = registry.get(key).is_some() || registry.resting_inbox(key).is_some();
        let inject = SupervisorMsg::InjectPanic { key: key.clone() };
        lives && self.supervisor.cast(inject).is_ok()
    }
}

/// Loads a kubeconfig file into a client configuration.
pub async fn config_from_kubeconfig(
    path: &std::path::Path,
) -> Result<kube::Config, Box<dyn std::error::Error + Send + Sync>> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    Ok(kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?)
}

/// A running operator (leading, or alone without leader election).
pub struct Operator {
    ctx: Arc<Context>,
    supervisor: ActorRef<SupervisorMsg>,
    supervisor_task: JoinHandle<()>,
    watches: watch::Watches,
    http: Vec<JoinHandle<()>>,
    sync_task: JoinHandle<()>,
    delivery_task: JoinHandle<()>,
    metrics_addr: SocketAddr,
    probe_addr: SocketAddr,
    metrics: Arc<Metrics>,
}

impl Operator {
    /// Starts everything, HTTP endpoints included; the actors begin writing once every watch
    /// has synced.
    pub async fn start(kube_config: kube::Config, config: &OperatorConfig) -> Result<Self, Error> {
        let shared = HttpState::new(Metrics::new());
        let (metrics_addr, probe_addr, http) =
            serve(shared.clone(), config.metrics_addr, config.probe_addr)
                .await
                .map_err(Error::Bind)?;
        let mut operator = Self::start_with(kube_config, config, shared).await?;
        (operator.metrics_addr, operator.probe_addr, operator.http) =
            (metrics_addr, probe_addr, http);
        Ok(operator)
    }

    /// Starts the runtime behind endpoints that already serve `shared` (leader election keeps
    /// one HTTP server for the life of the process).
    async fn start_with(
        kube_config: kube::Config,
        config: &OperatorConfig,
        shared: HttpState,
    ) -> Result<Self, Error> {
        let HttpState { metrics, registry, ready, synced } = shared;
        ready.store(false, Ordering::Release);
        let client =
            counted_client(kube_config, metrics.clone(), config.api_max_in_flight as usize)
                .map_err(Error::Client)?;
        let snapshot_registry = config.registry().map_err(Error::Registry)?.map(Arc::new);
        let ctx = Arc::new(Context {
            snapshot_registry,
            writer: Writer::new(
                client.clone(),
                config.identity.clone(),
                config.api_max_in_flight as usize,
            ),
            metrics: metrics.clone(),
            resync: config.resync,
            actor_rest: config.actor_rest,
            max_backoff: config.max_backoff,
            status_batch: config.status_batch,
            hibernation: config.hibernation_settings(),
            registry,
            synced: synced.clone(),
            nodes: Arc::new(crate::index::NodeCell::new(config.dialect.nodes())),
            shutting_down: Default::default(),
        });
        let (metrics_addr, probe_addr, http) = (config.metrics_addr, config.probe_addr, Vec::new());
        // The watches feed one bounded stream of events, the supervisor one of actor lifecycle
        // notes; one task applies the index's deliveries; the supervisor spawns what the index
        // asks for.
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(watch::EVENT_BUFFER);
        let (lifecycle_tx, lifecycle_rx) = tokio::sync::mpsc::unbounded_channel::<Input>();
        let (targets_tx, targets_rx) = tokio::sync::mpsc::unbounded_channel();
        let args = SupervisorArgs { ctx: ctx.clone(), index: lifecycle_tx };
        let (supervisor, supervisor_task) =
            Actor::spawn(None, Supervisor, args).await.map_err(|e| Error::Spawn(e.to_string()))?;
        let deliverer =
            Deliverer::new(ctx.registry.clone(), supervisor.clone(), targets_tx, ctx.nodes.clone());
        let delivery_task = tokio::spawn(deliverer.run(events_rx, lifecycle_rx));
        let watches = watch::start(
            client,
            ctx.writer.clone(),
            events_tx,
            targets_rx,
            metrics.pod_name_watches.clone(),
        );
        let sync = watches.sync.clone();
        let sync_task = tokio::spawn(async move {
            sync.wait().await;
            synced.store(true, Ordering::Release);
            ready.store(true, Ordering::Release);
            tracing::info!("watches synced; actors may write");
        });
        Ok(Self {
            ctx,
            supervisor,
            supervisor_task,
            watches,
            http,
            sync_task,
            delivery_task,
            metrics_addr,
            probe_addr,
            metrics,
        })
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn probe_addr(&self) -> SocketAddr {
        self.probe_addr
    }

    /// A clonable view for tests and tools.
    pub fn probe(&self) -> OperatorProbe {
        OperatorProbe {
            metrics: self.metrics.clone(),
            ctx: self.ctx.clone(),
            supervisor: self.supervisor.clone(),
        }
    }

    /// Stops watches first (no new work), then the actors after the message in hand.
    pub async fn shutdown(self, grace: Duration) {
        drop(self.watches);
        self.sync_task.abort();
        self.delivery_task.abort();
        // No writes from here on, and no replacement for the actors being stopped.
        self.ctx.synced.store(false, Ordering::Release);
        self.ctx.shutting_down.store(true, Ordering::Release);
        self.supervisor.stop_children_and_wait(Some("shutdown".into()), Some(grace)).await;
        self.supervisor.stop(Some("shutdown".into()));
        let _ = tokio::time::timeout(grace, self.supervisor_task).await;
        for task in self.http {
            task.abort();
        }
    }
}

/// `cocoon-operator run`: until SIGTERM or Ctrl-C, with leader election when configured.
pub async fn run_until_signal(
    kube_config: kube::Config,
    config: OperatorConfig,
) -> Result<(), Error> {
    run_until(kube_config, config, crate::signal::shutdown()).await
}

/// Runs the operator until `shutdown` resolves; with leader election, actors run only while
/// this candidate holds the Lease, and the Lease is released on the way out.
pub async fn run_until(
    kube_config: kube::Config,
    config: OperatorConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let grace = Duration::from_secs(20);
    let mut signal = std::pin::pin!(shutdown);
    if !config.leader_elect {
        let operator = Operator::start(kube_config, &config).await?;
        tracing::info!(metrics = %operator.metrics_addr(), probes = %operator.probe_addr(), "operator running");
        signal.await;
        tracing::info!("shutting down");
        operator.shutdown(grace).await;
        return Ok(());
    }
    // One HTTP server for the life of the process. Probes answer from the start: a standby is
    // ready (standing by is its job); the leader's runtime shares the same state.
    let shared = HttpState::new(Metrics::new());
    let plain = crate::k8s::client::prompt_client(kube_config.clone()).map_err(Error::Client)?;
    let namespace =
        config.lease_namespace.clone().unwrap_or_else(|| plain.default_namespace().to_string());
    let identity = config.identity.clone().unwrap_or_else(hostname);
    let elector = LeaderElector::new(plain, &namespace, &config.lease_name, &identity);
    let (_, _, http) =
        serve(shared.clone(), config.metrics_addr, config.probe_addr).await.map_err(Error::Bind)?;
    shared.ready.store(true, Ordering::Release);
    tracing::info!(%identity, lease = %config.lease_name, "waiting for the leader Lease");
    loop {
        match elector.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
        }
        tokio::select! {
            _ = &mut signal => {
                for t in http { t.abort(); }
                return Ok(());
            }
            _ = tokio::time::sleep(RETRY_INTERVAL) => {}
        }
    }
    tracing::info!(%identity, "acquired the leader Lease");
    let mut operator = Operator::start_with(kube_config, &config, shared).await?;
    operator.http = http;
    let mut last_renewal = std::time::Instant::now();
    let outcome = loop {
        tokio::select! {
            _ = &mut signal => break Ok(()),
            _ = tokio::time::sleep(RENEW_INTERVAL) => {}
        }
        // A hung request must not keep a deposed leader acting: each renewal has a deadline.
        match tokio::time::timeout(RENEW_INTERVAL, elector.try_acquire_or_renew()).await {
            Ok(Ok(true)) => last_renewal = std::time::Instant::now(),
            Ok(Ok(false)) => break Err(Error::LostLease),
            Ok(Err(e)) => tracing::warn!(error = %e, "renewing the leader Lease failed"),
            Err(_) => tracing::warn!("renewing the leader Lease timed out"),
        }
        if crate::lease::must_step_down(last_renewal, std::time::Instant::now()) {
            break Err(Error::LostLease);
        }
    };
    tracing::info!("shutting down; releasing the leader Lease");
    operator.shutdown(grace).await;
    if let Err(e) = elector.release().await {
        tracing::warn!(error = %e, "releasing the leader Lease failed");
    }
    outcome
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("cocoon-operator-{}", std::process::id()))
}

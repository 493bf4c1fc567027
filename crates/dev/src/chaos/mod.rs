//! `cocoon-dev chaos`: the operator, as a separate process, SIGKILLed again and again at seeded
//! random points while a seeded random workload runs (create, scale up/down, suspend, resume,
//! hibernate, wake, delete) against a provider that fails 30 % of creates and never hibernates
//! one main VM. Afterwards every object must converge, and a watch that saw every pod change
//! checks that no pod was deleted that should not have been and none is left orphaned.

//!
//! [`workload`] drives the random operations and remembers what they asked; [`operator`] runs
//! and kills the operator; [`checks`] waits for convergence and judges it.

mod checks;
pub mod operator;
mod workload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::PostParams;

use crate::api::{CocoonSet, Hibernation};
use crate::devcluster::{DevCluster, DevClusterOptions};
use crate::sim::{SimConfig, Simulator};
use operator::Operator;
use workload::{PodLog, Rng, Workload, watch_pods};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Flags of `cocoon-dev chaos`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Seed of every random choice (kill points, operations): a run is reproducible.
    #[arg(long, env = "COCOON_CHAOS_SEED", default_value_t = 1)]
    pub seed: u64,
    /// How many times the operator is SIGKILLed.
    #[arg(long, env = "COCOON_CHAOS_KILLS", default_value_t = 100)]
    pub kills: u32,
    /// The operator binary to run and kill.
    #[arg(long, env = "COCOON_CHAOS_OPERATOR", default_value = "target/debug/cocoon-operator")]
    pub operator: PathBuf,
    /// Share of pod creates the simulated provider fails.
    #[arg(long, env = "COCOON_CHAOS_CREATE_FAILURES", default_value_t = 0.3)]
    pub create_failure_rate: f64,
    /// Give up waiting for convergence after this long.
    #[arg(long, env = "COCOON_CHAOS_SETTLE", default_value = "180s", value_parser = crate::duration::parse_duration)]
    pub settle: Duration,
    /// The dialect the simulated provider speaks (`seed`, `v0.2`, `current`); v0.2 and current
    /// run with a local OCI registry, the operator's `--registry`.
    #[arg(long, env = "COCOON_CHAOS_DIALECT", default_value = "seed", value_parser = parse_dialect)]
    pub dialect: cocoon_core::contract::Dialect,
    /// Append every operator incarnation's log to this file (at `RUST_LOG`, else info): what
    /// tells why a seeded run did not converge.
    #[arg(long, env = "COCOON_CHAOS_OPERATOR_LOG")]
    pub operator_log: Option<PathBuf>,
    /// The registry the run uses (set by the run).
    #[arg(skip)]
    pub registry: Option<String>,
}

fn parse_dialect(text: &str) -> Result<cocoon_core::contract::Dialect, String> {
    cocoon_core::contract::Dialect::parse(text)
        .ok_or_else(|| format!("{text:?} is no dialect: seed, v0.2 or current"))
}

impl ChaosArgs {
    /// The operator's flags of this run.
    pub(crate) fn operator_flags(&self) -> Vec<String> {
        match &self.registry {
            Some(address) => vec!["--registry".to_string(), address.clone()],
            None => Vec::new(),
        }
    }
}

/// What a run measured and found.
#[derive(Debug, Default)]
pub struct ChaosReport {
    /// SIGKILLs the operator survived.
    pub kills: u32,
    /// Restarts of kube-apiserver (etcd kept) during the run.
    pub apiserver_restarts: u32,
    /// With two replicas and leader election: from a SIGKILL of the leader mid-suspend until
    /// the set was `Suspended`, finished by the standby.
    pub leader_takeover: Option<Duration>,
    /// Workload operations issued.
    pub operations: u32,
    /// Objects checked after convergence.
    pub objects_checked: usize,
    /// API requests of the operator per minute while the faults ran.
    pub requests_per_minute: f64,
    /// How long the faults ran.
    pub chaos_time: Duration,
    /// How long convergence took after the last kill.
    pub settle_time: Duration,
    /// Broken invariants; empty on success.
    pub violations: Vec<String>,
}

impl std::fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "kills survived:      {}", self.kills)?;
        writeln!(f, "API server restarts: {}", self.apiserver_restarts)?;
        writeln!(f, "operations:          {}", self.operations)?;
        writeln!(f, "objects checked:     {}", self.objects_checked)?;
        writeln!(f, "chaos time:          {:.1}s", self.chaos_time.as_secs_f64())?;
        writeln!(
            f,
            "requests per minute: {:.0} (operator, during the faults)",
            self.requests_per_minute
        )?;
        writeln!(
            f,
            "settled in:          {:.1}s after the last kill",
            self.settle_time.as_secs_f64()
        )?;
        if let Some(t) = self.leader_takeover {
            let secs = t.as_secs_f64();
            writeln!(f, "leader SIGKILLed mid-suspend: the standby finished it in {secs:.1}s")?;
        }
        if self.violations.is_empty() {
            write!(f, "violations:          none")
        } else {
            write!(
                f,
                "violations:          {}\n  {}",
                self.violations.len(),
                self.violations.join("\n  ")
            )
        }
    }
}

/// Runs the whole chaos scenario on a fresh local control plane.
pub async fn run(mut args: ChaosArgs) -> Result<ChaosReport, BoxError> {
    let mut rng = Rng::new(args.seed);
    let registry = match args.dialect {
        cocoon_core::contract::Dialect::Seed => None,
        _ => Some(crate::registry::LocalRegistry::start().await?),
    };
    args.registry = registry.as_ref().map(|r| r.address().to_string());
    let flags = args.operator_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let operator_log = args.operator_log.clone();
    let opts = DevClusterOptions::default();
    let mut cluster = DevCluster::start(opts).await?;
    // One operator incarnation, with this run's flags and log (the API server keeps its
    // address across its restart).
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let start =
        || Operator::start_with(&args.operator, &kubeconfig, &flags, operator_log.as_deref());
    let client = cluster.client().await?;
    crate::dev::install_crds(&client).await?;
    let ns = "chaos";
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    // The default ServiceAccount must exist before pods can be created.
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    for _ in 0..100 {
        if sa.get_opt("default").await?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let node = "chaos-pool".to_string();
    let sim_config = SimConfig {
        node_name: node.clone(),
        create_failure_rate: args.create_failure_rate,
        // A provider that refuses to hibernate one main VM (vk-cocoon v0.1.1 refuses every main).
        never_hibernate: vec![format!("{ns}/c0-0")],
        create_delay: Duration::from_millis(50),
        hibernate_delay: Duration::from_millis(50),
        wake_delay: Duration::from_millis(50),
        delete_delay: Duration::from_millis(20),
        dialect: args.dialect,
        registry: args.registry.clone(),
        ..SimConfig::default()
    };
    let sim = Simulator::start(client.clone(), sim_config).await?;
    let sets: Api<CocoonSet> = Api::namespaced(client.clone(), ns);
    let hibs: Api<Hibernation> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let log = Arc::new(Mutex::new(PodLog::default()));
    let pod_watch = watch_pods(pods.clone(), log.clone());
    let mut workload = Workload::new(sets.clone(), hibs.clone(), node.clone());
    let mut report = ChaosReport::default();
    let mut operator = Some(start().await?);
    let mut requests = 0.0;
    let chaos_started = Instant::now();
    while report.kills < args.kills {
        // A few operations, then a kill at a random point.
        for _ in 0..=rng.below(3) {
            report.operations += 1;
            workload.step(&mut rng).await?;
        }
        if let Some(running) = operator.take() {
            tokio::time::sleep(Duration::from_millis(50 + rng.below(700))).await;
            requests += running.requests().await.unwrap_or(0.0);
            running.kill().await;
            report.kills += 1;
            if report.kills == args.kills / 2 {
                // Half-way: the API server restarts (etcd kept); every watch breaks.
                cluster.restart_apiserver(Duration::from_secs(60)).await?;
                report.apiserver_restarts += 1;
            }
            if rng.below(4) == 0 {
                continue; // the next operations happen while no operator runs
            }
        }
        operator = Some(start().await?);
    }
    let operator = match operator {
        Some(running) => running,
        None => start().await?,
    };
    report.chaos_time = chaos_started.elapsed();
    report.requests_per_minute = requests / report.chaos_time.as_secs_f64().max(1.0) * 60.0;

    // Settle: the provider stops failing creates; every object must converge.
    let settle_started = Instant::now();
    let outcome = checks::settle(&workload, &pods, args.settle).await;
    report.settle_time = settle_started.elapsed();
    match outcome {
        Ok(checked) => report.objects_checked = checked,
        Err(e) => report.violations.push(e),
    }
    // Deletions the workload never asked for.
    let unasked = workload.unasked_deletions(&log.lock().unwrap_or_else(|e| e.into_inner()));
    report.violations.extend(unasked);
    pod_watch.abort();
    operator.kill().await;
    match checks::leader_takeover(&args, &cluster, &sets, &node).await {
        Ok(took) => report.leader_takeover = Some(took),
        Err(e) => report.violations.push(format!("leader election: {e}")),
    }
    sim.shutdown().await;
    drop(cluster);
    Ok(report)
}

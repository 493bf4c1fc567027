//! `cocoon-dev conformance` (`make conformance`): the real vk-cocoon, built from
//! `../shared/providers`, run as the virtual node of a local control plane against the fake
//! hypervisor CLI ([`crate::fake_cli`]), with our operator; every documented workflow runs on
//! it and on the simulator, and the two runs' statuses and Event reasons must agree (the
//! differential check). Writes `report.json`: per workflow, passed or not, its time, what the
//! provider ran, and any difference.

pub mod compare;
pub mod provider;
mod quirks;
pub mod steps;
pub mod workflows;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::Client;
use serde::Serialize;

use crate::bench::process::{Contender, OperatorProcess};
use crate::devcluster::{DevCluster, DevClusterOptions};
use crate::sim::{SimConfig, Simulator};
use provider::{Hypervisor, Provider, Version};
use steps::{Ctx, IMAGE, Target};
use workflows::{Harness, Workflow};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Flags of `cocoon-dev conformance`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConformanceArgs {
    /// Our operator binary.
    #[arg(long, env = "CONFORMANCE_OPERATOR", default_value = "target/debug/cocoon-operator")]
    pub operator: PathBuf,
    /// The fake hypervisor CLI (`fake-cocoon`).
    #[arg(long, env = "CONFORMANCE_FAKE_COCOON", default_value = "target/debug/fake-cocoon")]
    pub fake_cocoon: PathBuf,
    /// Only these workflows (comma-separated names); default all.
    #[arg(long, env = "CONFORMANCE_WORKFLOWS", value_delimiter = ',')]
    pub workflows: Vec<String>,
    /// Skip the quirk tests (real provider only).
    #[arg(long, env = "CONFORMANCE_NO_QUIRKS")]
    pub no_quirks: bool,
    /// Where `report.json` goes.
    #[arg(long, env = "CONFORMANCE_OUT", default_value = "target/conformance")]
    pub out: PathBuf,
    /// Keep the control plane's, the provider's and the operator's logs in this directory
    /// (default: a temporary one, removed at the end).
    #[arg(long, env = "CONFORMANCE_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
}

/// One run of a workflow on one provider.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunResult {
    pub passed: bool,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Calls of the fake hypervisor by subcommand (real runs).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub provider_calls: BTreeMap<String, u64>,
    /// What was checked against what the provider did (real runs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verified: Vec<String>,
    #[serde(skip)]
    checkpoints: Vec<compare::Checkpoint>,
    #[serde(skip)]
    events: BTreeSet<String>,
}

/// A workflow on both providers.
#[derive(Clone, Debug, Serialize)]
pub struct WorkflowReport {
    pub workflow: &'static str,
    pub real: RunResult,
    pub simulator: RunResult,
    /// Differences between the two runs' statuses and Event reasons; empty when they agree.
    pub differences: Vec<String>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub provider: String,
    pub binary: String,
    pub workflows: Vec<WorkflowReport>,
    /// Provider quirks the operator must survive (real provider only).
    pub quirks: Vec<quirks::QuirkReport>,
    pub passed: bool,
    pub took_seconds: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "conformance against {} ({})", self.provider, self.binary)?;
        for w in &self.workflows {
            let mark = |r: &RunResult| if r.passed { "ok" } else { "FAILED" };
            writeln!(
                f,
                "  {:<30} real {:<6} {:>6.1}s   simulator {:<6} {:>6.1}s   differences {}",
                w.workflow,
                mark(&w.real),
                w.real.seconds,
                mark(&w.simulator),
                w.simulator.seconds,
                w.differences.len()
            )?;
            for e in w.real.error.iter().chain(&w.simulator.error) {
                writeln!(f, "      error: {e}")?;
            }
            for d in &w.differences {
                writeln!(f, "      differs: {d}")?;
            }
        }
        for q in &self.quirks {
            let mark = if q.passed { "ok" } else { "FAILED" };
            writeln!(f, "  quirk {:<24} {mark:<6} {:>6.1}s", q.quirk, q.seconds)?;
            if let Some(e) = &q.error {
                writeln!(f, "      error: {e}")?;
            }
        }
        write!(f, "{} in {:.0}s", if self.passed { "passed" } else { "FAILED" }, self.took_seconds)
    }
}

/// The operator under test, restartable.
pub struct OperatorHandle {
    binary: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
    process: Option<OperatorProcess>,
}

/// Timeouts short enough for a suspend deadline to pass within a workflow.
const OPERATOR_FLAGS: [&str; 8] = [
    "--hibernate-timeout",
    "30s",
    "--wake-timeout",
    "90s",
    "--resync",
    "10s",
    "--max-backoff",
    "5s",
];

impl OperatorHandle {
    fn start(binary: &Path, kubeconfig: &Path, log: &Path) -> Result<Self, BoxError> {
        let subject = Contender::Ours(binary.to_path_buf());
        let process = OperatorProcess::start_with(&subject, kubeconfig, log, &OPERATOR_FLAGS)?;
        Ok(Self {
            binary: binary.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            log: log.to_path_buf(),
            process: Some(process),
        })
    }

    async fn stop(&mut self) {
        if let Some(p) = self.process.take() {
            p.stop().await;
        }
    }
}

impl Harness for OperatorHandle {
    async fn restart_operator(&mut self) -> Result<(), String> {
        if let Some(p) = self.process.take() {
            p.kill().await;
        }
        let subject = Contender::Ours(self.binary.clone());
        let process =
            OperatorProcess::start_with(&subject, &self.kubeconfig, &self.log, &OPERATOR_FLAGS)
                .map_err(|e| e.to_string())?;
        self.process = Some(process);
        Ok(())
    }
}

/// The repository: the current directory or the nearest above it holding `deploy/`.
fn repo_root() -> Result<PathBuf, BoxError> {
    let here = std::env::current_dir()?;
    here.ancestors()
        .find(|d| d.join("deploy/deploy.yaml").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("no deploy/deploy.yaml in {} or above it", here.display()).into())
}

/// Creates a namespace and waits for its default ServiceAccount (pods need it).
async fn namespace(client: &Client, name: &str) -> Result<(), BoxError> {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use kube::Api;
    use kube::api::PostParams;
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    for _ in 0..200 {
        if accounts.get_opt("default").await?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("namespace {name} got no default ServiceAccount").into())
}

/// Runs the conformance check; the report is written to `<out>/report.json`.
pub async fn run(args: ConformanceArgs) -> Result<Report, BoxError> {
    let started = Instant::now();
    let repo = repo_root()?;
    let kit = provider::kit(&repo)?;
    for (what, path) in [("operator", &args.operator), ("fake hypervisor CLI", &args.fake_cocoon)] {
        if !path.is_file() {
            return Err(format!(
                "the {what} {} is not built (make conformance builds it)",
                path.display()
            )
            .into());
        }
    }
    let version = Version::V011;
    eprintln!("conformance: building (or finding) vk-cocoon {}", version.tag());
    let binary = provider::build(&kit, version).await?;
    let options = DevClusterOptions { work_dir: args.work_dir.clone(), ..Default::default() };
    let cluster = DevCluster::start(options).await?;
    let client = cluster.client().await?;
    crate::dev::install_crds(&client).await?;
    let work = cluster.work_dir().to_path_buf();
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let fake = std::path::absolute(&args.fake_cocoon)?;
    let hypervisor =
        Hypervisor::install(&work.join("hypervisor"), &fake, Path::new(provider::DNSMASQ_LEASES))?;
    hypervisor.seed_images(&[IMAGE])?;
    let provider =
        Provider::start(&binary, &kubeconfig, &hypervisor, "cocoon-pool", &work, &client).await?;
    let mut operator = OperatorHandle::start(
        &std::path::absolute(&args.operator)?,
        &kubeconfig,
        &work.join("operator.log"),
    )?;
    eprintln!(
        "conformance: vk-cocoon {} serves node cocoon-pool (log {})",
        version.tag(),
        provider.log.display()
    );

    let chosen: Vec<Workflow> = workflows::ALL
        .into_iter()
        .filter(|w| args.workflows.is_empty() || args.workflows.iter().any(|n| n == w.name()))
        .collect();
    let mut reports = Vec::new();
    for (i, workflow) in chosen.into_iter().enumerate() {
        eprintln!("conformance: {}", workflow.name());
        let real_ns = format!("r{i}-{}", workflow.name());
        let real = run_one(
            workflow,
            Target::Real,
            &client,
            &real_ns,
            "cocoon-pool",
            Some(&hypervisor),
            &mut operator,
        )
        .await;
        let _ = hypervisor.set_faults(&Default::default());
        let sim_ns = format!("s{i}-{}", workflow.name());
        let node = format!("sim-{i}");
        let sim_config = SimConfig {
            node_name: node.clone(),
            refuse_main_hibernate: true,
            fork_failures: workflow.simulated_fork_failures(),
            ..SimConfig::default()
        };
        let sim = Simulator::start(client.clone(), sim_config).await?;
        let simulated =
            run_one(workflow, Target::Simulator, &client, &sim_ns, &node, None, &mut operator)
                .await;
        sim.shutdown().await;
        let differences = if real.passed && simulated.passed {
            compare::differences(
                &real.checkpoints,
                &simulated.checkpoints,
                &real.events,
                &simulated.events,
            )
        } else {
            Vec::new()
        };
        reports.push(WorkflowReport {
            workflow: workflow.name(),
            real,
            simulator: simulated,
            differences,
        });
    }
    let quirks =
        if args.no_quirks { Vec::new() } else { quirks::run_all(&client, &hypervisor).await };
    operator.stop().await;
    provider.stop().await;
    drop(hypervisor);
    let passed =
        reports.iter().all(|w| w.real.passed && w.simulator.passed && w.differences.is_empty())
            && quirks.iter().all(|q| q.passed);
    let report = Report {
        provider: format!("vk-cocoon {}", version.tag()),
        binary: binary.display().to_string(),
        workflows: reports,
        quirks,
        passed,
        took_seconds: started.elapsed().as_secs_f64(),
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    drop(cluster);
    Ok(report)
}

/// Runs one workflow on one provider in a fresh namespace.
async fn run_one(
    workflow: Workflow,
    target: Target,
    client: &Client,
    ns: &str,
    node: &str,
    hypervisor: Option<&Hypervisor>,
    operator: &mut OperatorHandle,
) -> RunResult {
    let started = Instant::now();
    let calls_before = hypervisor.map(|h| h.calls().len()).unwrap_or(0);
    if let Err(e) = namespace(client, ns).await {
        return RunResult { error: Some(e.to_string()), ..Default::default() };
    }
    let mut ctx = Ctx {
        client: client.clone(),
        ns: ns.to_string(),
        node: node.to_string(),
        target,
        hypervisor,
        checkpoints: Vec::new(),
        verified: Vec::new(),
    };
    let outcome = workflows::run(workflow, &mut ctx, operator).await;
    let seconds = started.elapsed().as_secs_f64();
    let events = settled_events(&ctx).await;
    let provider_calls = hypervisor
        .map(|h| {
            let mut counts = BTreeMap::new();
            for call in h.calls().into_iter().skip(calls_before).filter(|c| c.program == "cocoon") {
                *counts.entry(call.command()).or_insert(0) += 1;
            }
            counts
        })
        .unwrap_or_default();
    RunResult {
        passed: outcome.is_ok(),
        seconds,
        error: outcome.err(),
        provider_calls,
        verified: ctx.verified,
        checkpoints: ctx.checkpoints,
        events,
    }
}

/// The Event reasons once they stop changing (the operator records an Event after the status
/// it follows from; bounded at ten seconds).
async fn settled_events(ctx: &Ctx<'_>) -> BTreeSet<String> {
    let mut last = ctx.event_reasons().await.unwrap_or_default();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = ctx.event_reasons().await.unwrap_or_default();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

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
    /// The provider versions to check (comma-separated tags); default every one the kit
    /// builds: v0.1.1 (seed dialect) and v0.2.9 (v0.2 dialect).
    #[arg(long, env = "CONFORMANCE_PROVIDERS", value_delimiter = ',')]
    pub providers: Vec<String>,
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
    /// Pods the provider deleted as "VM gone" (real runs; v0.2.9's quirk 14 when it follows a
    /// hibernation). The simulator run of the workflow is told to do the same to the same pods,
    /// so the differential check compares the operator's reading of one provider behaviour.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub provider_evicted: Vec<String>,
    /// Provider races that struck a real run, which then ran again (quirk 3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub provider_quirks: Vec<String>,
    #[serde(skip)]
    checkpoints: Vec<compare::Checkpoint>,
    #[serde(skip)]
    events: BTreeSet<String>,
    /// The words of each Event (the last one of its reason).
    #[serde(skip)]
    event_words: BTreeMap<String, String>,
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

/// The whole report: one part per provider version.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub providers: Vec<ProviderReport>,
    pub passed: bool,
    pub took_seconds: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.providers {
            writeln!(f, "{p}")?;
        }
        write!(f, "{} in {:.0}s", if self.passed { "passed" } else { "FAILED" }, self.took_seconds)
    }
}

/// The report of one provider version.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderReport {
    pub provider: String,
    pub dialect: String,
    pub binary: String,
    pub workflows: Vec<WorkflowReport>,
    /// Workflows that do not apply to this provider, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_applicable: Vec<String>,
    /// Provider quirks the operator must survive (real provider only).
    pub quirks: Vec<quirks::QuirkReport>,
    pub passed: bool,
    pub took_seconds: f64,
}

impl std::fmt::Display for ProviderReport {
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
            if !w.real.provider_evicted.is_empty() {
                writeln!(
                    f,
                    "      the provider deleted {} as VM gone (quirk 14); the simulator was told to do the same",
                    w.real.provider_evicted.join(", ")
                )?;
            }
            for q in &w.real.provider_quirks {
                writeln!(f, "      {q}")?;
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
        for n in &self.not_applicable {
            writeln!(f, "  not applicable: {n}")?;
        }
        write!(f, "{} in {:.0}s", if self.passed { "passed" } else { "FAILED" }, self.took_seconds)
    }
}

/// The operator under test, restartable.
pub struct OperatorHandle {
    binary: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
    /// `--registry` (v0.2.9: the epoch stand-in).
    registry: Option<String>,
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
    fn start(
        binary: &Path,
        kubeconfig: &Path,
        log: &Path,
        registry: Option<String>,
    ) -> Result<Self, BoxError> {
        let flags = Self::flags(registry.as_deref());
        let subject = Contender::Ours(binary.to_path_buf());
        let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        let process = OperatorProcess::start_with(&subject, kubeconfig, log, &flag_refs, None)?;
        Ok(Self {
            binary: binary.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            log: log.to_path_buf(),
            registry,
            process: Some(process),
        })
    }

    fn flags(registry: Option<&str>) -> Vec<String> {
        let mut flags: Vec<String> = OPERATOR_FLAGS.iter().map(|f| f.to_string()).collect();
        if let Some(registry) = registry {
            flags.extend(["--registry".to_string(), registry.to_string()]);
        }
        flags
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
        let flags = Self::flags(self.registry.as_deref());
        let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        let process =
            OperatorProcess::start_with(&subject, &self.kubeconfig, &self.log, &flag_refs, None)
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
    let versions: Vec<Version> = if args.providers.is_empty() {
        Version::ALL.to_vec()
    } else {
        args.providers
            .iter()
            .map(|t| Version::parse(t).ok_or_else(|| format!("no provider version {t}")))
            .collect::<Result<_, _>>()?
    };
    let mut providers = Vec::new();
    for version in versions {
        providers.push(run_provider(&args, &kit, version).await?);
    }
    let report = Report {
        passed: providers.iter().all(|p| p.passed),
        providers,
        took_seconds: started.elapsed().as_secs_f64(),
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

/// Every workflow on one provider version (and on the simulator speaking its dialect), on a
/// control plane of its own.
async fn run_provider(
    args: &ConformanceArgs,
    kit: &Path,
    version: Version,
) -> Result<ProviderReport, BoxError> {
    let started = Instant::now();
    let dialect = version.dialect();
    eprintln!("conformance: building (or finding) vk-cocoon {}", version.tag());
    let binary = provider::build(kit, version).await?;
    let work_dir = args.work_dir.as_ref().map(|d| d.join(version.tag()));
    let options = DevClusterOptions { work_dir, ..Default::default() };
    let cluster = DevCluster::start(options).await?;
    let client = cluster.client().await?;
    crate::dev::install_crds(&client).await?;
    let work = cluster.work_dir().to_path_buf();
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let fake = std::path::absolute(&args.fake_cocoon)?;
    let leases = match version {
        Version::V011 => PathBuf::from(provider::DNSMASQ_LEASES),
        Version::V029 => work.join("leases.json"),
    };
    let hypervisor = Hypervisor::install(&work.join("hypervisor"), &fake, &leases, version)?;
    hypervisor.seed_images(&[IMAGE])?;
    // v0.2.9 pushes its snapshots to epoch; the operator collects them there.
    let epoch = match version {
        Version::V011 => None,
        Version::V029 => Some(crate::epoch::Epoch::start().await?),
    };
    let epoch_url = epoch.as_ref().map(crate::epoch::Epoch::url);
    let provider = Provider::start(
        &binary,
        version,
        &kubeconfig,
        &hypervisor,
        "cocoon-pool",
        &work,
        epoch_url.as_deref(),
        &client,
    )
    .await?;
    let mut operator = OperatorHandle::start(
        &std::path::absolute(&args.operator)?,
        &kubeconfig,
        &work.join("operator.log"),
        epoch_url.clone(),
    )?;
    eprintln!(
        "conformance: vk-cocoon {} serves node cocoon-pool (log {})",
        version.tag(),
        provider.log.display()
    );

    let mut not_applicable = Vec::new();
    let chosen: Vec<Workflow> = workflows::ALL
        .into_iter()
        .filter(|w| args.workflows.is_empty() || args.workflows.iter().any(|n| n == w.name()))
        .filter(|w| match w.not_applicable(dialect) {
            Some(why) => {
                not_applicable.push(format!("{}: {why}", w.name()));
                false
            }
            None => true,
        })
        .collect();
    let mut reports = Vec::new();
    for (i, workflow) in chosen.into_iter().enumerate() {
        eprintln!("conformance: {} {}", version.tag(), workflow.name());
        let real_ns = format!("r{i}-{}", workflow.name());
        // vk-cocoon v0.1.1's 30 s poll can wake a VM a second time while a wake runs (quirk
        // 3): the VM then boots from the image. It is a race of the provider with itself that
        // the operator reports (the double-wake quirk check holds it to that) but cannot
        // prevent; a workflow it struck runs once more, and the report says so.
        let mut provider_quirks = Vec::new();
        let (mut real, real_ns, log_from) = loop {
            let first = provider_quirks.is_empty();
            let ns =
                if first { real_ns.clone() } else { format!("r{i}-again-{}", workflow.name()) };
            let log_from = provider.log_len();
            let calls_from = hypervisor.calls().len();
            let run = Run {
                target: Target::Real,
                dialect,
                ns: &ns,
                node: "cocoon-pool",
                hypervisor: Some(&hypervisor),
                epoch: epoch.as_ref(),
            };
            let result = run_one(workflow, run, &client, &mut operator).await;
            let _ = hypervisor.set_faults(&Default::default());
            let twice = woken_twice(hypervisor.calls().get(calls_from..).unwrap_or_default());
            if twice.is_empty() {
                break (result, ns, log_from);
            }
            provider_quirks.push(format!(
                "the provider woke {} twice (quirk 3) in {ns} ({})",
                twice.into_iter().collect::<Vec<_>>().join(", "),
                result.error.as_deref().unwrap_or("the run passed")
            ));
            if !first {
                break (result, ns, log_from);
            }
        };
        real.provider_quirks = provider_quirks;
        real.provider_evicted = provider.evicted_since(log_from, &real_ns);
        let sim_ns = format!("s{i}-{}", workflow.name());
        let node = format!("sim-{i}");
        let sim_config = SimConfig {
            node_name: node.clone(),
            dialect,
            refuse_main_hibernate: true,
            fork_failures: workflow.simulated_fork_failures(),
            vanish_after_hibernate: real.provider_evicted.clone(),
            // The simulated provider pushes where the real one does, so the operator probes
            // and collects both runs' snapshots in the same registry.
            registry: epoch_url.clone(),
            ..SimConfig::default()
        };
        let sim = Simulator::start(client.clone(), sim_config).await?;
        let simulated = run_one(
            workflow,
            Run {
                target: Target::Simulator,
                dialect,
                ns: &sim_ns,
                node: &node,
                hypervisor: None,
                epoch: None,
            },
            &client,
            &mut operator,
        )
        .await;
        sim.shutdown().await;
        let differences = if real.passed && simulated.passed {
            let mut lines = compare::differences(
                &real.checkpoints,
                &simulated.checkpoints,
                &real.events,
                &simulated.events,
            );
            // What an Event of one side only said: the first clue to why.
            for line in &mut lines {
                let said = line.strip_prefix("event ").and_then(|l| l.rsplit_once(": ")).and_then(
                    |(event, side)| match side {
                        "real only" => real.event_words.get(event),
                        "simulator only" => simulated.event_words.get(event),
                        _ => None,
                    },
                );
                if let Some(words) = said.filter(|w| !w.is_empty()) {
                    line.push_str(&format!(" ({words})"));
                }
            }
            lines
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
    let quirks = if args.no_quirks || version != Version::V011 {
        Vec::new()
    } else {
        quirks::run_all(&client, &hypervisor).await
    };
    operator.stop().await;
    provider.stop().await;
    drop(hypervisor);
    drop(epoch);
    let passed =
        reports.iter().all(|w| w.real.passed && w.simulator.passed && w.differences.is_empty())
            && quirks.iter().all(|q| q.passed);
    drop(cluster);
    Ok(ProviderReport {
        provider: format!("vk-cocoon {}", version.tag()),
        dialect: dialect.to_string(),
        binary: binary.display().to_string(),
        workflows: reports,
        not_applicable,
        quirks,
        passed,
        took_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Where one run of a workflow happens.
struct Run<'a> {
    target: Target,
    dialect: cocoon_core::contract::Dialect,
    ns: &'a str,
    node: &'a str,
    hypervisor: Option<&'a Hypervisor>,
    epoch: Option<&'a crate::epoch::Epoch>,
}

/// Runs one workflow on one provider in a fresh namespace.
async fn run_one(
    workflow: Workflow,
    run: Run<'_>,
    client: &Client,
    operator: &mut OperatorHandle,
) -> RunResult {
    let Run { target, dialect, ns, node, hypervisor, epoch } = run;
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
        dialect,
        hypervisor,
        epoch,
        checkpoints: Vec::new(),
        verified: Vec::new(),
    };
    let outcome = workflows::run(workflow, &mut ctx, operator).await;
    let seconds = started.elapsed().as_secs_f64();
    let events = settled_events(&ctx).await;
    let event_words = ctx.events().await.unwrap_or_default();
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
        provider_evicted: Vec::new(),
        provider_quirks: Vec::new(),
        checkpoints: ctx.checkpoints,
        events,
        event_words,
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

/// VMs the provider woke twice in `calls` (quirk 3): a clone of a VM from its `-suspend`
/// snapshot followed, with no new snapshot of it between, by a clone of the same VM from
/// something else (the second wake found the entry taken and booted the image).
fn woken_twice(calls: &[crate::fake_cli::log::Call]) -> BTreeSet<String> {
    let mut from_suspend = BTreeSet::new();
    let mut twice = BTreeSet::new();
    for call in calls.iter().filter(|c| c.program == "cocoon") {
        match call.command().as_str() {
            "vm clone" => {
                let name = flag_value(&call.argv, "--name");
                let (Some(name), Some(source)) = (name, call.argv.last()) else { continue };
                if *source == format!("{name}-suspend") {
                    from_suspend.insert(name.to_string());
                } else if from_suspend.remove(name) {
                    twice.insert(name.to_string());
                }
            }
            "snapshot save" => {
                if let Some(vm) =
                    flag_value(&call.argv, "--name").and_then(|s| s.strip_suffix("-suspend"))
                {
                    from_suspend.remove(vm);
                }
            }
            _ => {}
        }
    }
    twice
}

fn flag_value<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    argv.iter().position(|a| a == flag).and_then(|i| argv.get(i + 1)).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_cli::log::Call;

    fn cocoon(argv: &str) -> Call {
        Call {
            at: String::new(),
            program: "cocoon".into(),
            argv: argv.split(' ').map(String::from).collect(),
            exit: 0,
            millis: 0,
        }
    }

    fn clone(vm: &str, source: &str) -> Call {
        cocoon(&format!("vm clone --cold --name {vm} --cpu 2 --memory 4G --storage 100G {source}"))
    }

    #[test]
    fn a_wake_from_the_suspend_snapshot_then_an_image_boot_is_a_double_wake() {
        let calls = [
            cocoon("snapshot save --name vk-a-1-suspend 0123"),
            clone("vk-a-1", "vk-a-1-suspend"),
            cocoon("vm rm --force 4567"),
            clone("vk-a-1", "ubuntu-dev-base"),
        ];
        assert_eq!(woken_twice(&calls), BTreeSet::from(["vk-a-1".to_string()]));
    }

    #[test]
    fn a_fork_a_wake_or_a_new_hibernation_between_clones_is_not() {
        let calls = [
            clone("vk-a-1", "vk-a-0-fork"),
            clone("vk-a-2", "ubuntu-dev-base"),
            clone("vk-a-1", "vk-a-1-suspend"),
            cocoon("snapshot save --name vk-a-1-suspend 89ab"),
            clone("vk-a-1", "vk-a-0-fork"),
            clone("vk-a-2", "vk-a-2-suspend"),
            clone("vk-a-2", "vk-a-2-suspend"),
        ];
        assert!(woken_twice(&calls).is_empty());
    }
}

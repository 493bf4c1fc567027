//! `cocoon-dev bench` (`make bench`): the same scenarios against our operator and, optionally,
//! any other operator binary, on a fresh local control plane each, counted at the API server
//! (its audit log, by identity) and timed from outside. Figures, never assertions.
//!
//! Identities: the operator runs as the `cocoon-operator` ServiceAccount of `deploy/deploy.yaml`
//! (a token kubeconfig, as in a cluster), the simulator as `cocoon-sim`, the raw-client baseline
//! as `bench-raw`, and the driver (creating and editing the objects) as the admin.
//!
//! [`lab`] sets up a column's control plane and identities, [`process`] runs the operator under
//! test, [`workload`] drives the scenarios, [`baseline`] the raw-client limit, and [`report`]
//! types the figures and judges the targets.

pub mod api;
pub mod audit;
mod baseline;
mod chart;
mod lab;
pub(crate) mod process;
pub mod procstat;
pub mod report;
mod watched;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use crate::sim::SimConfig;
use cocoon_operator::duration::parse_duration;
use lab::Lab;
use process::{Contender, OperatorProcess};
use report::{Baseline, Column, Judging, Machine, Report, Run, Scenario, ShapeInfo};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The namespace of the operator's and the simulator's ServiceAccounts.
const SYSTEM_NS: &str = "cocoon-system";
/// Audit user of the driver (the admin client certificate).
pub const DRIVER: &str = "cocoon-dev-admin";
/// Audit user of the operator under test.
pub const OPERATOR: &str = "system:serviceaccount:cocoon-system:cocoon-operator";
/// Audit user of the simulator.
pub const SIMULATOR: &str = "system:serviceaccount:cocoon-system:cocoon-sim";
/// Audit user of the raw-client baseline.
pub const RAW: &str = "system:serviceaccount:cocoon-system:bench-raw";
/// The name of our column.
pub const OURS: &str = "cocoon-operator";

/// `cocoon-dev bench`. Every flag is also an environment variable.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Our operator binary (`cocoon-operator`), run as a process with the ServiceAccount's
    /// kubeconfig in `KUBECONFIG`.
    #[arg(long, env = "BENCH_OPERATOR", default_value = "target/release/cocoon-operator")]
    pub operator: PathBuf,
    /// Also measure another operator: a shell command, run with `KUBECONFIG` set to the same
    /// ServiceAccount kubeconfig; the report gets a second column.
    #[arg(long, env = "BENCH_EXTERNAL_OPERATOR")]
    pub external_operator: Option<String>,
    /// CRD files the external operator needs (comma-separated); default: ours.
    #[arg(long, env = "BENCH_EXTERNAL_CRDS", value_delimiter = ',')]
    pub external_crds: Vec<PathBuf>,
    /// The external operator's own manifests (comma-separated): their ClusterRoles and Roles
    /// are applied and bound to the identity it runs as. Without: cluster-admin, stated.
    #[arg(long, env = "BENCH_EXTERNAL_RBAC", value_delimiter = ',')]
    pub external_rbac: Vec<PathBuf>,
    /// The API the external operator serves: `cocoon.cis` (ours, upstream v0.1.1) or
    /// `cocoonstack.io` (upstream v0.3.3's CocoonSet and CocoonHibernation).
    #[arg(long, env = "BENCH_EXTERNAL_API", default_value = "cocoon.cis", value_parser = api::Flavour::parse)]
    pub external_api: api::Flavour,
    /// Small N only (finishes in under 3 minutes). The env var takes 1/0, true/false, yes/no.
    #[arg(long, env = "BENCH_QUICK", value_parser = clap::builder::BoolishValueParser::new())]
    pub quick: bool,
    /// Numbers of CocoonSets (comma-separated); default 10,100,1000, quick 10.
    #[arg(long, env = "BENCH_SETS", value_delimiter = ',')]
    pub sets: Vec<usize>,
    /// Scenario groups to run after converge (comma-separated, of scale, warm, suspend,
    /// release, hibernate, idle, delete); default all.
    #[arg(long, env = "BENCH_SCENARIOS", value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(workload::GROUPS))]
    pub scenarios: Vec<String>,
    /// Sub-agents per set (each set also has a main and one toolbox).
    #[arg(long, env = "BENCH_REPLICAS", default_value_t = 3)]
    pub replicas: i32,
    /// The longest wait for one scenario's state; an operator that does not reach it within
    /// this gets the scenario marked `not_reached`, and the run goes on.
    #[arg(long, env = "BENCH_SCENARIO_LIMIT", default_value = "300s", value_parser = parse_duration)]
    pub scenario_limit: Duration,
    /// Nodes converge runs on (default 1; 20 at 10,000 sets). More than one: a fleet of
    /// simulated nodes, the sets name none and the scheduler places each main; the raw-client
    /// baseline binds each set to a node of the fleet in turn (its limit without a scheduler).
    #[arg(long, env = "BENCH_FLEET")]
    pub fleet: Option<usize>,
    /// The idle window (default 20s, quick 10s).
    #[arg(long, env = "BENCH_IDLE", value_parser = parse_duration)]
    pub idle: Option<Duration>,
    /// Also keep each run's API server audit log and operator log, in `<out>/logs-<N>/`
    /// (`logs-<N>-external/` for the second column).
    #[arg(long, env = "BENCH_KEEP_LOGS", value_parser = clap::builder::BoolishValueParser::new())]
    pub keep_logs: bool,
    /// Where `report.json` and `report.svg` go.
    #[arg(long, env = "BENCH_OUT", default_value = "target/bench")]
    pub out: PathBuf,
    /// The simulated provider's time to create (boot or fork) a VM; 0 measures the operator
    /// alone. Set it (and the wake delay) to your provider's to see what warm slots save.
    #[arg(long, env = "BENCH_SIM_CREATE_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub sim_create_delay: Duration,
    /// The simulated provider's time to wake a hibernated VM.
    #[arg(long, env = "BENCH_SIM_WAKE_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub sim_wake_delay: Duration,
    /// The dialect the simulated provider speaks (`seed`, `v0.2`, `current`); v0.2 and current
    /// keep their snapshots in a local OCI registry (built from the distribution project),
    /// which the operator gets as `--registry`.
    #[arg(long, env = "BENCH_DIALECT", default_value = "seed", value_parser = parse_dialect)]
    pub dialect: cocoon_operator::contract::Dialect,
}

fn parse_dialect(text: &str) -> Result<cocoon_operator::contract::Dialect, String> {
    cocoon_operator::contract::Dialect::parse(text)
        .ok_or_else(|| format!("{text:?} is no dialect: seed, v0.2 or current"))
}

/// The figures of one column at one N.
struct ColumnRun {
    scenarios: Vec<Scenario>,
    baseline: Option<Baseline>,
    /// Requests the snapshot registry answered during the scenarios, by method.
    registry_requests: BTreeMap<String, u64>,
}

async fn run_column(
    subject: &Contender,
    n: usize,
    hibernations: usize,
    args: &BenchArgs,
    repo: &Path,
    with_baseline: bool,
) -> Result<ColumnRun, BoxError> {
    let registry = match args.dialect {
        cocoon_operator::contract::Dialect::Seed => None,
        _ => Some(crate::registry::LocalRegistry::start().await?),
    };
    let sim = SimConfig {
        create_delay: args.sim_create_delay,
        wake_delay: args.sim_wake_delay,
        dialect: args.dialect,
        registry: registry.as_ref().map(|r| r.address().to_string()),
        ..SimConfig::default()
    };
    let mut lab = Lab::start(subject, repo, sim).await?;
    let shape = workload::Shape {
        sets: n,
        replicas: args.replicas,
        hibernations,
        only: args.scenarios.clone(),
        limit: args.scenario_limit,
        fleet: args.fleet.unwrap_or_else(|| workload::converge_fleet(n)).max(1),
    };
    let log = lab.cluster.work_dir().join("operator.log");
    let flags: Vec<String> = registry
        .as_ref()
        .map(|r| vec!["--registry".to_string(), r.address().to_string()])
        .unwrap_or_default();
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let address = registry.as_ref().map(|r| r.address().to_string());
    let mut process = OperatorProcess::start_with(
        subject,
        &lab.operator_kubeconfig,
        &log,
        &flag_refs,
        address.as_deref(),
    )?;
    lab.wait_operator_ready(&mut process).await?;
    let idle = args.idle.unwrap_or(if args.quick {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(20)
    });
    let flavour = match subject {
        Contender::Ours(_) => api::Flavour::CocoonCis,
        Contender::External { api, .. } => *api,
    };
    let scenarios = workload::scenarios(&mut lab, &shape, flavour, process.pid, idle).await;
    process.stop().await;
    let registry_requests = registry.as_ref().map(|r| r.requests()).unwrap_or_default();
    // The limit, on the same (now as warm) control plane with no operator running.
    let failed = scenarios.iter().any(|s| s.error.is_some());
    let baseline = if with_baseline && !failed {
        eprintln!("  raw-client baseline, {n} sets");
        Some(match baseline::run(&mut lab, &shape, args.dialect).await {
            Ok(b) => b,
            Err(e) => Baseline { sets: n, error: Some(e.to_string()), ..Default::default() },
        })
    } else {
        None
    };
    if args.keep_logs {
        let column = if with_baseline { String::new() } else { "-external".to_string() };
        let kept = args.out.join(format!("logs-{n}{column}"));
        std::fs::create_dir_all(&kept)?;
        for file in ["audit.log", "operator.log"] {
            std::fs::copy(lab.cluster.work_dir().join(file), kept.join(file))?;
        }
        eprintln!("  kept the audit and operator logs in {}", kept.display());
    }
    lab.stop().await;
    Ok(ColumnRun { scenarios, baseline, registry_requests })
}

/// The repository the bench runs in: the current directory or the nearest one above it that
/// holds `deploy/deploy.yaml` (a crate's tests run in the crate's directory).
fn repo_root() -> Result<PathBuf, BoxError> {
    let here = std::env::current_dir()?;
    here.ancestors()
        .find(|dir| dir.join("deploy/deploy.yaml").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("no deploy/deploy.yaml in {} or above it", here.display()).into())
}

/// Runs every scenario for every column and N; writes the report and the chart.
pub async fn run(args: BenchArgs) -> Result<Report, BoxError> {
    let repo = repo_root()?;
    let sets = if !args.sets.is_empty() {
        args.sets.clone()
    } else if args.quick {
        vec![10]
    } else {
        vec![10, 100, 1000]
    };
    if !args.operator.is_file() {
        return Err(
            format!("{} is not built (make bench builds it)", args.operator.display()).into()
        );
    }
    let mut columns = vec![(OURS.to_string(), Contender::Ours(args.operator.clone()))];
    if let Some(command) = &args.external_operator {
        let external = Contender::External {
            command: command.clone(),
            crds: args.external_crds.clone(),
            rbac: args.external_rbac.clone(),
            api: args.external_api,
        };
        columns.push(("external".to_string(), external));
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "bench: this is a debug build of cocoon-dev; its simulator and driver take about twice \
             the CPU they take optimized, on the cores the API server is measured on \
             (`make bench` builds it with `--profile tools`)"
        );
    }
    let started = Instant::now();
    let mut runs = Vec::new();
    let mut baselines = Vec::new();
    for &n in &sets {
        let hibernations = if n >= 1000 { 1000 } else { 10 };
        for (i, (name, subject)) in columns.iter().enumerate() {
            eprintln!(
                "bench: {name}, {n} sets x (1 main + {} sub-agents + 1 toolbox), {hibernations} Hibernations",
                args.replicas
            );
            let run = run_column(subject, n, hibernations, &args, &repo, i == 0).await?;
            baselines.extend(run.baseline);
            runs.push(Run {
                operator: name.clone(),
                sets: n,
                hibernations,
                scenarios: run.scenarios,
                registry_requests: run.registry_requests,
            });
        }
    }
    let pods_per_set = 2 + args.replicas.max(0) as u64;
    let judging = Judging {
        pods_per_set,
        fork_slower_than_wake: args.sim_create_delay > args.sim_wake_delay,
    };
    let report = Report {
        machine: Machine::here(),
        took_seconds: started.elapsed().as_secs_f64(),
        shape: ShapeInfo {
            sets: sets.clone(),
            pods_per_set,
            replicas: args.replicas,
            toolboxes_per_set: 1,
            simulator_delays: report::delays(args.sim_create_delay, args.sim_wake_delay),
            dialect: args.dialect.to_string(),
            identities: BTreeMap::from([
                ("operator", OPERATOR),
                ("simulator", SIMULATOR),
                ("raw_client", RAW),
                ("driver", DRIVER),
            ]),
        },
        columns: columns
            .iter()
            .map(|(name, s)| Column {
                name: name.clone(),
                command: match s {
                    Contender::Ours(bin) => format!("{} run", bin.display()),
                    Contender::External { command, .. } => command.clone(),
                },
                api: match s {
                    Contender::Ours(_) => api::Flavour::CocoonCis.as_str().to_string(),
                    Contender::External { api, .. } => api.as_str().to_string(),
                },
                rbac: match s {
                    Contender::Ours(_) => "deploy/deploy.yaml".to_string(),
                    Contender::External { rbac, .. } if rbac.is_empty() => {
                        "cluster-admin (no --external-rbac given)".to_string()
                    }
                    Contender::External { rbac, .. } => {
                        let files: Vec<String> =
                            rbac.iter().map(|f| f.display().to_string()).collect();
                        format!("the roles of {}", files.join(", "))
                    }
                },
            })
            .collect(),
        targets: report::judge(&runs, &baselines, &judging),
        rss_growth_kib_per_pod: report::rss_growth(&runs, &sets, pods_per_set),
        baseline: baselines,
        runs,
    };
    std::fs::create_dir_all(&args.out)?;
    let json_path = args.out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let svg_path = args.out.join("report.svg");
    std::fs::write(&svg_path, report::render_chart(&report))?;
    eprintln!("wrote {} and {}", json_path.display(), svg_path.display());
    Ok(report)
}

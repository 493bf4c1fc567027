//! `cocoon-dev bench` (`make bench`): the same scenarios against our operator and, optionally,
//! any other operator binary, on a fresh local control plane each, counted at the API server
//! (its audit log, by identity) and timed from outside. Figures, never assertions.
//!
//! Identities: the operator runs as the `cocoon-operator` ServiceAccount of `deploy/deploy.yaml`
//! (a token kubeconfig, as in a cluster), the simulator as `cocoon-sim`, the raw-client baseline
//! as `bench-raw`, and the driver (creating and editing the objects) as the admin.

pub mod audit;
mod chart;
pub mod procstat;
mod workload;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use serde_json::{Value, json};

use crate::devcluster::{Binaries, DevCluster, DevClusterOptions, client_from_kubeconfig};
use crate::sim::{SimConfig, Simulator};
use cocoon_operator::api::{CocoonSet, Hibernation};
use cocoon_operator::duration::parse_duration;

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
}

/// Which operator a column runs.
#[derive(Clone, Debug)]
enum Contender {
    Ours(PathBuf),
    External { command: String, crds: Vec<PathBuf> },
}

/// The operator under test, as a process leading its own process group: the figures count
/// every process of the group (a wrapper script or `go run` starts the operator as a child),
/// and stopping it stops them all.
struct OperatorProcess {
    child: tokio::process::Child,
    /// The leader's pid, which is also the group's id.
    pid: u32,
    stopped: bool,
}

impl OperatorProcess {
    fn start(subject: &Contender, kubeconfig: &Path, log: &Path) -> Result<Self, BoxError> {
        let log_file = std::fs::File::create(log)?;
        let mut command = match subject {
            Contender::Ours(bin) => {
                let mut c = tokio::process::Command::new(bin);
                c.args(["run", "--metrics-addr", "127.0.0.1:0", "--probe-addr", "127.0.0.1:0"]);
                c
            }
            Contender::External { command, .. } => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(format!("exec {command}"));
                c
            }
        };
        let child = command
            .env("KUBECONFIG", kubeconfig)
            // The operator's log filter: `BENCH_OPERATOR_LOG` (with BENCH_KEEP_LOGS), else warn.
            .env("RUST_LOG", std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("start the operator: {e}"))?;
        let pid = child.id().ok_or("the operator exited at once")?;
        Ok(Self { child, pid, stopped: false })
    }

    /// SIGTERM to the group, a grace for an orderly exit, then SIGKILL to whatever of the group
    /// is left (children that outlived their parent included).
    async fn stop(mut self) {
        self.signal_group("-TERM");
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        self.signal_group("-KILL");
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.stopped = true;
    }

    fn signal_group(&self, signal: &str) {
        let _ = std::process::Command::new("kill")
            .args([signal, "--", &format!("-{}", self.pid)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for OperatorProcess {
    /// A run that ends in an error still leaves no operator process behind.
    fn drop(&mut self) {
        if !self.stopped {
            self.signal_group("-KILL");
        }
    }
}

/// Everything one column's run at one N needs.
pub(crate) struct Lab {
    pub cluster: DevCluster,
    pub admin: Client,
    pub audit: audit::AuditLog,
    pub apiserver_group: u32,
    pub raw_kubeconfig: PathBuf,
    operator_kubeconfig: PathBuf,
    sim: Option<crate::sim::SimHandle>,
}

async fn token_kubeconfig(
    cluster: &DevCluster,
    admin: &Client,
    account: &str,
) -> Result<PathBuf, BoxError> {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), SYSTEM_NS);
    if accounts.get_opt(account).await?.is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta { name: Some(account.into()), ..Default::default() },
            ..Default::default()
        };
        accounts.create(&PostParams::default(), &sa).await?;
    }
    let request = TokenRequest {
        spec: Some(TokenRequestSpec { expiration_seconds: Some(24 * 3600), ..Default::default() }),
        ..Default::default()
    };
    let token = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .ok_or("no token in the TokenRequest answer")?;
    let admin_text = std::fs::read_to_string(cluster.kubeconfig_path())?;
    let mut config: serde_yaml::Value = serde_yaml::from_str(&admin_text)?;
    let users = config["users"].as_sequence_mut().ok_or("kubeconfig without users")?;
    users[0]["user"] = serde_yaml::from_str(&format!("{{token: {token}}}"))?;
    let path = cluster.work_dir().join(format!("{account}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok(path)
}

async fn bind_cluster_admin(admin: &Client, account: &str) -> Result<(), BoxError> {
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(format!("bench-{account}")), ..Default::default() },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account.into(),
            namespace: Some(SYSTEM_NS.into()),
            ..Default::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch(
            &format!("bench-{account}"),
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&binding),
        )
        .await?;
    Ok(())
}

async fn apply_crds(admin: &Client, crds: Vec<CustomResourceDefinition>) -> Result<(), BoxError> {
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&crd)).await?;
        kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::conditions::is_crd_established(),
        )
        .await?;
    }
    Ok(())
}

fn crds_from_files(files: &[PathBuf]) -> Result<Vec<CustomResourceDefinition>, BoxError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("read CRD file {}: {e}", file.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)?;
            if value.is_null() {
                continue;
            }
            out.push(serde_yaml::from_value(value)?);
        }
    }
    Ok(out)
}

impl Lab {
    /// A fresh control plane with an audit log, the CRDs, `deploy/deploy.yaml`'s RBAC, the
    /// identities' kubeconfigs and the simulator.
    async fn start(subject: &Contender, repo: &Path, sim: SimConfig) -> Result<Self, BoxError> {
        let cluster =
            DevCluster::start(DevClusterOptions { audit_log: true, ..Default::default() }).await?;
        let admin = cluster.client().await?;
        let crds = match subject {
            Contender::External { crds, .. } if !crds.is_empty() => crds_from_files(crds)?,
            _ => vec![Hibernation::crd(), CocoonSet::crd()],
        };
        apply_crds(&admin, crds).await?;
        let kubectl = Binaries::locate(None).await?.kubectl;
        let deploy = repo.join("deploy/deploy.yaml");
        let out = tokio::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig_path())
            .args(["apply", "-f"])
            .arg(&deploy)
            .output()
            .await?;
        if !out.status.success() {
            return Err(format!(
                "kubectl apply -f {}: {}",
                deploy.display(),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let operator_kubeconfig = token_kubeconfig(&cluster, &admin, "cocoon-operator").await?;
        for account in ["cocoon-sim", "bench-raw"] {
            bind_cluster_admin(&admin, account).await?;
        }
        let sim_kubeconfig = token_kubeconfig(&cluster, &admin, "cocoon-sim").await?;
        let raw_kubeconfig = token_kubeconfig(&cluster, &admin, "bench-raw").await?;
        let sim_client = client_from_kubeconfig(&sim_kubeconfig).await?;
        let sim = Simulator::start(sim_client, sim).await?;
        let audit_path = cluster.audit_log_path().ok_or("no audit log")?.to_path_buf();
        let apiserver_group =
            cluster.component_group("kube-apiserver").ok_or("no kube-apiserver process")?;
        Ok(Self {
            cluster,
            admin,
            audit: audit::AuditLog::new(&audit_path),
            apiserver_group,
            raw_kubeconfig,
            operator_kubeconfig,
            sim: Some(sim),
        })
    }

    pub(crate) async fn namespace(&self, name: &str) -> Result<(), BoxError> {
        let ns = Namespace {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(self.admin.clone()).create(&PostParams::default(), &ns).await?;
        Ok(())
    }

    /// Waits until the operator has opened its watches, then until it has been quiet for a
    /// second (its start-up lists are done).
    async fn wait_operator_ready(&mut self, process: &mut OperatorProcess) -> Result<(), BoxError> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                return Err(format!("the operator exited: {status}").into());
            }
            self.audit.catch_up()?;
            let watches = audit::open_watches(&self.audit.events, OPERATOR);
            if watches >= 2 {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err("the operator opened no watches within 60s (see operator.log)".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    }

    async fn stop(mut self) {
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }
}

/// The figures of one column at one N.
struct ColumnRun {
    scenarios: Vec<Value>,
    baseline: Option<Value>,
}

async fn run_column(
    subject: &Contender,
    n: usize,
    hibernations: usize,
    args: &BenchArgs,
    repo: &Path,
    with_baseline: bool,
) -> Result<ColumnRun, BoxError> {
    let sim = SimConfig {
        create_delay: args.sim_create_delay,
        wake_delay: args.sim_wake_delay,
        ..SimConfig::default()
    };
    let mut lab = Lab::start(subject, repo, sim).await?;
    let shape = workload::Shape {
        sets: n,
        replicas: args.replicas,
        hibernations,
        only: args.scenarios.clone(),
    };
    let log = lab.cluster.work_dir().join("operator.log");
    let mut process = OperatorProcess::start(subject, &lab.operator_kubeconfig, &log)?;
    lab.wait_operator_ready(&mut process).await?;
    let idle = args.idle.unwrap_or(if args.quick {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(20)
    });
    let scenarios = workload::scenarios(&mut lab, &shape, process.pid, idle).await;
    process.stop().await;
    // The limit, on the same (now as warm) control plane with no operator running.
    let failed = scenarios.iter().any(|s| s["scenario"] == "error");
    let baseline = if with_baseline && !failed {
        eprintln!("  raw-client baseline, {n} sets");
        Some(match workload::baseline(&mut lab, &shape).await {
            Ok(b) => b,
            Err(e) => json!({"sets": n, "error": e.to_string()}),
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
    Ok(ColumnRun { scenarios, baseline })
}

fn machine() -> Value {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or_default().trim().to_string())
        })
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    // The simulator, the driver and the raw-client baseline run in this process, on the cores
    // the API server is measured on: a debug build of it takes about twice the CPU.
    let harness = if cfg!(debug_assertions) { "debug" } else { "optimized" };
    json!({"cores": cores, "cpu": model, "memory_gib": mem_kib / 1024 / 1024, "harness_build": harness})
}

/// Runs every scenario for every column and N; writes the report and the chart.
pub async fn run(args: BenchArgs) -> Result<Value, BoxError> {
    let repo = std::env::current_dir()?;
    let sets = if !args.sets.is_empty() {
        args.sets.clone()
    } else if args.quick {
        vec![10]
    } else {
        vec![10, 100, 1000]
    };
    let mut columns = vec![("cocoon-operator".to_string(), Contender::Ours(args.operator.clone()))];
    if !args.operator.is_file() {
        return Err(
            format!("{} is not built (make bench builds it)", args.operator.display()).into()
        );
    }
    if let Some(command) = &args.external_operator {
        let crds = args.external_crds.clone();
        columns
            .push(("external".to_string(), Contender::External { command: command.clone(), crds }));
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
            if let Some(b) = run.baseline {
                baselines.push(b);
            }
            runs.push(json!({"operator": name, "sets": n, "hibernations": hibernations, "scenarios": run.scenarios}));
        }
    }
    let report = summarize(&args, &sets, &columns, runs, baselines, started.elapsed());
    std::fs::create_dir_all(&args.out)?;
    let json_path = args.out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let svg_path = args.out.join("report.svg");
    std::fs::write(&svg_path, render_chart(&report))?;
    eprintln!("wrote {} and {}", json_path.display(), svg_path.display());
    Ok(report)
}

fn scenario<'a>(run: &'a Value, name: &str) -> Option<&'a Value> {
    run["scenarios"].as_array()?.iter().find(|s| s["scenario"] == name)
}

/// The report: the runs as measured, plus each target of the performance issue against the
/// figures of this run.
fn summarize(
    args: &BenchArgs,
    sets: &[usize],
    columns: &[(String, Contender)],
    runs: Vec<Value>,
    baselines: Vec<Value>,
    took: Duration,
) -> Value {
    let pods_per_set = 2 + args.replicas.max(0) as u64;
    let ours: Vec<&Value> = runs.iter().filter(|r| r["operator"] == "cocoon-operator").collect();
    let mut targets = Vec::new();
    for run in &ours {
        let n = run["sets"].as_u64().unwrap_or(0);
        if let Some(c) = scenario(run, "converge") {
            let per_set = c["operator"]["writes_per_set"].as_f64().unwrap_or(f64::NAN);
            targets.push(json!({"target": "writes per set on converge <= pods + 3", "sets": n,
                "value": per_set, "limit": pods_per_set + 3, "met": per_set <= (pods_per_set + 3) as f64}));
            let wall = c["wall_seconds"].as_f64().unwrap_or(f64::NAN);
            if let Some(b) = baselines.iter().find(|b| b["sets"].as_u64() == Some(n)) {
                let limit = b["wall_seconds"].as_f64().unwrap_or(f64::NAN);
                targets
                    .push(json!({"target": "converge time <= 1.2 x raw-client limit", "sets": n,
                    "value": wall / limit, "limit": 1.2, "met": wall <= 1.2 * limit}));
            }
            if n == 100 {
                let p99 = c["event_to_first_write_seconds"]["p99"].as_f64().unwrap_or(f64::NAN);
                targets
                    .push(json!({"target": "event -> first write p99 < 50 ms at N=100", "sets": n,
                    "value": p99, "limit": 0.05, "met": p99 < 0.05}));
            }
        }
        for s in run["scenarios"].as_array().into_iter().flatten() {
            if s["scenario"] == "idle" {
                let idle = s["operator"]["requests"].as_u64().unwrap_or(u64::MAX);
                targets.push(json!({"target": "0 requests idle", "sets": n, "value": idle, "limit": 0, "met": idle == 0}));
            }
        }
        if let (Some(fork), Some(warm)) =
            (scenario(run, "scale-up"), scenario(run, "scale-up-warm"))
        {
            // Judged on each set's own time to Running from its patch (`settle_seconds`); the
            // wall time also counts the driver's patches, sent one at a time.
            let (fork_p50, warm_p50) =
                (&fork["settle_seconds"]["p50"], &warm["settle_seconds"]["p50"]);
            let faster = warm_p50.as_f64().unwrap_or(f64::MAX) <= fork_p50.as_f64().unwrap_or(0.0);
            let (fork, warm) = (&fork["wall_seconds"], &warm["wall_seconds"]);
            // What a warm slot saves is the provider's fork time. With a simulator that forks
            // as fast as it wakes there is nothing to save, and waking costs the refill's
            // writes: the comparison is only judged with a fork slower than a wake.
            let judged = args.sim_create_delay > args.sim_wake_delay;
            let mut target = json!({"target": "scale-up (+2 per set): forking vs waking warm slots", "sets": n,
                "fork_seconds": fork, "warm_seconds": warm,
                "fork_settle_p50_seconds": fork_p50, "warm_settle_p50_seconds": warm_p50,
                "met": if judged { json!(faster) } else { Value::Null }});
            if !judged {
                target["note"] = json!(
                    "not judged: the simulator forks as fast as it wakes \
                     (set BENCH_SIM_CREATE_DELAY above BENCH_SIM_WAKE_DELAY)"
                );
            }
            targets.push(target);
        }
        if let (Some(retain), Some(release)) =
            (scenario(run, "suspend"), scenario(run, "suspend-release"))
        {
            // Seats a suspended set holds: one pod per VM with retain; only the run-mode
            // toolbox (which would not restore) with release.
            let kept = release["pods_held"].as_u64().unwrap_or(u64::MAX);
            targets.push(
                json!({"target": "pods held by suspended sets: retain vs release", "sets": n,
                "retain": retain["pods_held"], "release": kept, "limit": n, "met": kept <= n}),
            );
        }
        if let (Some(c), Some(w)) = (scenario(run, "converge"), scenario(run, "wake")) {
            // Watches the operator holds with H Hibernations, beyond those it held without any.
            let before = c["operator"]["watches_open"].as_i64().unwrap_or(-1);
            let with = w["operator"]["watches_open"].as_i64().unwrap_or(-1);
            let hibs = run["hibernations"].as_u64().unwrap_or(0);
            targets.push(json!({"target": "no extra pod watch per Hibernation", "sets": n,
                "hibernations": hibs, "watches_without": before, "watches_with": with,
                "value": with - before, "limit": 0, "met": before >= 0 && with == before}));
        }
        let peak = run["scenarios"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["operator"]["peak_rss_kib"].as_u64())
            .max();
        if n == 1000 {
            // The target's load (1,000 sets, 5,000 pods) is what converge leaves; the whole run
            // adds up to 2,000 warm pods and the Hibernations, and is reported beside it.
            let converged =
                scenario(run, "converge").and_then(|c| c["operator"]["peak_rss_kib"].as_u64());
            if let Some(at_load) = converged {
                targets.push(json!({"target": "peak RSS < 64 MiB at 1,000 sets / 5,000 pods", "sets": n,
                    "value_mib": at_load as f64 / 1024.0, "limit_mib": 64, "met": at_load < 64 * 1024}));
            }
            if let Some(peak) = peak {
                let hibs = run["hibernations"].as_u64().unwrap_or(0);
                targets.push(json!({"target": "peak RSS < 64 MiB over the whole run", "sets": n,
                    "hibernations": hibs, "value_mib": peak as f64 / 1024.0, "limit_mib": 64,
                    "met": peak < 64 * 1024}));
            }
        }
    }
    // Memory growth per pod between the smallest and the largest N of our runs.
    let rss_at = |n: u64| -> Option<f64> {
        let run = ours.iter().find(|r| r["sets"].as_u64() == Some(n))?;
        let c = scenario(run, "converge")?;
        c["operator"]["rss_kib_after"].as_f64()
    };
    let growth = match (sets.first(), sets.last()) {
        (Some(&a), Some(&b)) if b > a => match (rss_at(a as u64), rss_at(b as u64)) {
            (Some(ra), Some(rb)) => Some((rb - ra) / ((b - a) as f64 * pods_per_set as f64)),
            _ => None,
        },
        _ => None,
    };
    json!({
        "machine": machine(),
        "took_seconds": took.as_secs_f64(),
        "shape": {"sets": sets, "pods_per_set": pods_per_set, "replicas": args.replicas, "toolboxes_per_set": 1,
                  "simulator_delays": {"create_seconds": args.sim_create_delay.as_secs_f64(), "wake_seconds": args.sim_wake_delay.as_secs_f64()}, "identities": {"operator": OPERATOR, "simulator": SIMULATOR, "raw_client": RAW, "driver": DRIVER}},
        "columns": columns.iter().map(|(name, s)| json!({"name": name, "command": match s {
            Contender::Ours(bin) => format!("{} run", bin.display()),
            Contender::External { command, .. } => command.clone(),
        }})).collect::<Vec<_>>(),
        "targets": targets,
        "rss_growth_kib_per_pod": growth,
        "baseline": baselines,
        "runs": runs,
    })
}

fn render_chart(report: &Value) -> String {
    let mut seconds = Vec::new();
    let mut requests = Vec::new();
    let columns: Vec<String> = report["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    for column in &columns {
        let runs: Vec<&Value> = report["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["operator"].as_str() == Some(column))
            .collect();
        let points = |f: &dyn Fn(&Value) -> Option<f64>| -> Vec<(f64, f64)> {
            runs.iter()
                .filter_map(|r| Some((r["sets"].as_f64()?, f(scenario(r, "converge")?)?)))
                .collect()
        };
        seconds.push(chart::Series {
            label: column.clone(),
            points: points(&|c| c["wall_seconds"].as_f64()),
        });
        requests.push(chart::Series {
            label: column.clone(),
            points: points(&|c| c["operator"]["requests"].as_f64()),
        });
    }
    let baseline: Vec<(f64, f64)> = report["baseline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| Some((b["sets"].as_f64()?, b["wall_seconds"].as_f64()?)))
        .collect();
    if !baseline.is_empty() {
        seconds.push(chart::Series { label: "raw client (limit)".into(), points: baseline });
    }
    chart::render(&seconds, &requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_operator_started_through_a_wrapper_is_measured_and_stopped_as_one_group() {
        let dir = tempfile::tempdir().unwrap();
        // A wrapper that starts the "operator" as a child and waits, as `go run` does.
        let subject = Contender::External {
            command: "sh -c 'sleep 300 & sleep 300 & wait'".into(),
            crds: Vec::new(),
        };
        let process = OperatorProcess::start(
            &subject,
            &dir.path().join("kubeconfig"),
            &dir.path().join("log"),
        )
        .unwrap();
        let pgid = process.pid;
        let deadline = Instant::now() + Duration::from_secs(10);
        while procstat::group_pids(pgid).len() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(procstat::group_pids(pgid).len(), 3, "the wrapper and its two children");
        let (peak, now) = procstat::group_rss_kib(pgid);
        assert!(peak.unwrap_or(0) >= now.unwrap_or(0) && now.unwrap_or(0) > 0);
        process.stop().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !procstat::group_pids(pgid).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(procstat::group_pids(pgid), Vec::<u32>::new(), "nothing of the group is left");
    }
}

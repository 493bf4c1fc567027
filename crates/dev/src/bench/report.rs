//! The bench report, typed: what each scenario measured, the raw-client baseline, and each
//! performance target judged against the figures of the run. Built as structs, serialised once
//! into `report.json` (and drawn into `report.svg`); nothing reads a figure back by key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::audit::Tally;
use super::chart;

/// Quantiles of a list of seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Quantiles {
    /// How many values.
    pub count: usize,
    /// Median, if any value.
    pub p50: Option<f64>,
    /// 99th percentile, if any value.
    pub p99: Option<f64>,
}

impl Quantiles {
    /// The quantiles of `values`.
    pub fn of(values: &[f64]) -> Self {
        let q = |p| super::audit::quantile(values, p);
        Self { count: values.len(), p50: q(0.5), p99: q(0.99) }
    }
}

/// What the operator under test did during one scenario, counted at the API server and from
/// its processes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OperatorFigures {
    /// Completed requests (watches aside).
    pub requests: u64,
    /// Of them, writes.
    pub writes: u64,
    pub requests_per_object: f64,
    pub writes_per_object: f64,
    pub writes_per_set: f64,
    pub by_verb: BTreeMap<String, u64>,
    pub by_verb_resource: BTreeMap<String, u64>,
    pub errors_by_code: BTreeMap<String, u64>,
    pub watches_opened: u64,
    /// Watches open at the end of the scenario.
    pub watches_open: i64,
    pub cpu_seconds: f64,
    pub peak_rss_kib: Option<u64>,
    pub sockets_open: Option<usize>,
    pub rss_kib_after: Option<u64>,
}

/// Requests of another identity.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Requests {
    pub requests: u64,
    pub writes: u64,
}

impl From<&Tally> for Requests {
    fn from(t: &Tally) -> Self {
        Self { requests: t.requests, writes: t.writes }
    }
}

/// One scenario of one column at one N.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Scenario {
    /// Its name (`converge`, `scale-up`, ..., or `error`).
    pub scenario: String,
    /// What went wrong, for `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub wall_seconds: f64,
    /// Objects the scenario acted on (sets or Hibernations).
    pub objects: usize,
    pub operator: OperatorFigures,
    pub apiserver_cpu_seconds: f64,
    /// From a driver's write to the operator's first write on the same object.
    pub event_to_first_write_seconds: Quantiles,
    pub simulator: Requests,
    pub driver: Requests,
    /// Each set's time from its own patch to settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_seconds: Option<Quantiles>,
    /// Pods in the namespace once the scenario settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pods_held: Option<usize>,
    /// Whether the warm pool filled within its capped wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filled: Option<bool>,
    /// The placement scenario (and converge on a fleet): how the sets spread over the nodes,
    /// and the scheduler's part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Set when the pods never showed the scenario's state within the bench's limit for one
    /// scenario: what was not reached (the wall time is then the limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_reached: Option<String>,
}

/// How N sets placed by the scheduler spread over M nodes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Placement {
    /// The simulated nodes.
    pub nodes: usize,
    /// Sets whose main landed on each node, by node.
    pub sets_per_node: BTreeMap<String, usize>,
    /// Sets with a pod on another node than their main's (0 when every set lives on one node).
    pub split_sets: usize,
    /// From a pod's create to the scheduler's binding of it.
    pub binding_seconds: Quantiles,
    /// The scheduler's requests in the scenario.
    pub scheduler: Requests,
}

impl Scenario {
    /// A scenario that failed; the run ends there.
    pub fn error(error: String) -> Self {
        Self { scenario: "error".into(), error: Some(error), ..Default::default() }
    }
}

/// The raw-client limit of converge at one N.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Baseline {
    pub sets: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub pods: usize,
    pub wall_seconds: f64,
    pub requests: u64,
    pub writes: u64,
    pub writes_per_set: f64,
    pub by_verb_resource: BTreeMap<String, u64>,
}

/// One column at one N.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// The column's name (`cocoon-operator`, `external`).
    pub operator: String,
    pub sets: usize,
    pub hibernations: usize,
    pub scenarios: Vec<Scenario>,
    /// Requests the snapshot registry answered (v0.2 and current), by method: the operator's
    /// probes and collections and the simulator's pushes and probes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub registry_requests: BTreeMap<String, u64>,
}

impl Run {
    /// The scenario of that name, if it ran.
    pub fn scenario(&self, name: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.scenario == name)
    }
}

/// One performance target, judged on this run's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Target {
    pub target: &'static str,
    pub sets: usize,
    /// The figure judged, and its limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// Figures beside the judged one, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<&'static str, Option<f64>>,
    /// `None` when not judged (see `note`).
    pub met: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The machine the run was on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: u64,
    /// `debug` or `optimized`: the simulator and driver share the cores being measured.
    pub harness_build: &'static str,
}

impl Machine {
    /// This machine.
    pub fn here() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
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
        let harness_build = if cfg!(debug_assertions) { "debug" } else { "optimized" };
        Self { cores, cpu, memory_gib: mem_kib / 1024 / 1024, harness_build }
    }
}

/// The shape of the workload.
#[derive(Clone, Debug, Serialize)]
pub struct ShapeInfo {
    pub sets: Vec<usize>,
    pub pods_per_set: u64,
    pub replicas: i32,
    pub toolboxes_per_set: u32,
    pub simulator_delays: SimulatorDelays,
    /// The dialect the simulated provider spoke.
    pub dialect: String,
    pub identities: BTreeMap<&'static str, &'static str>,
}

/// The simulated provider's delays.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SimulatorDelays {
    pub create_seconds: f64,
    pub wake_seconds: f64,
}

/// A column: a name and the command it ran.
#[derive(Clone, Debug, Serialize)]
pub struct Column {
    pub name: String,
    pub command: String,
    /// The API the driver created the workload in.
    pub api: String,
    /// The roles the operator ran under.
    pub rbac: String,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub took_seconds: f64,
    pub shape: ShapeInfo,
    pub columns: Vec<Column>,
    pub targets: Vec<Target>,
    pub rss_growth_kib_per_pod: Option<f64>,
    pub baseline: Vec<Baseline>,
    pub runs: Vec<Run>,
}

/// What judging needs beyond the figures.
pub struct Judging {
    pub pods_per_set: u64,
    /// The simulator forks more slowly than it wakes: only then do warm slots save anything.
    pub fork_slower_than_wake: bool,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Each performance target against the runs of our column.
pub fn judge(runs: &[Run], baselines: &[Baseline], j: &Judging) -> Vec<Target> {
    let mut targets = Vec::new();
    for run in runs.iter().filter(|r| r.operator == super::OURS) {
        let n = run.sets;
        if let Some(c) = run.scenario("converge") {
            let per_set = c.operator.writes_per_set;
            let limit = (j.pods_per_set + 3) as f64;
            targets.push(Target {
                target: "writes per set on converge <= pods + 3",
                sets: n,
                value: Some(per_set),
                limit: Some(limit),
                met: Some(per_set <= limit),
                ..Default::default()
            });
            if let Some(b) = baselines.iter().find(|b| b.sets == n && b.error.is_none()) {
                let ratio = c.wall_seconds / b.wall_seconds;
                targets.push(Target {
                    target: "converge time <= 1.2 x raw-client limit",
                    sets: n,
                    value: Some(ratio),
                    limit: Some(1.2),
                    met: Some(c.wall_seconds <= 1.2 * b.wall_seconds),
                    ..Default::default()
                });
            }
            if n == 100 {
                let p99 = c.event_to_first_write_seconds.p99;
                targets.push(Target {
                    target: "event -> first write p99 < 50 ms at N=100",
                    sets: n,
                    value: p99,
                    limit: Some(0.05),
                    met: Some(p99.is_some_and(|p| p < 0.05)),
                    ..Default::default()
                });
            }
        }
        if let Some(idle) = run.scenario("idle") {
            let requests = idle.operator.requests;
            targets.push(Target {
                target: "0 requests idle",
                sets: n,
                value: Some(requests as f64),
                limit: Some(0.0),
                met: Some(requests == 0),
                ..Default::default()
            });
        }
        if let (Some(fork), Some(warm)) = (run.scenario("scale-up"), run.scenario("scale-up-warm"))
        {
            // Judged on each set's own time to Running from its patch; the wall time also counts
            // the driver's patches, sent one at a time. What a warm slot saves is the provider's
            // fork time: with a simulator that forks as fast as it wakes there is nothing to
            // save, and waking costs the refill's writes.
            let p50 = |s: &Scenario| s.settle_seconds.and_then(|q| q.p50);
            let faster = p50(warm).unwrap_or(f64::MAX) <= p50(fork).unwrap_or(0.0);
            let judged = j.fork_slower_than_wake;
            targets.push(Target {
                target: "scale-up (+2 per set): forking vs waking warm slots",
                sets: n,
                figures: BTreeMap::from([
                    ("fork_seconds", Some(fork.wall_seconds)),
                    ("warm_seconds", Some(warm.wall_seconds)),
                    ("fork_settle_p50_seconds", p50(fork)),
                    ("warm_settle_p50_seconds", p50(warm)),
                ]),
                met: judged.then_some(faster),
                note: (!judged).then(|| {
                    "not judged: the simulator forks as fast as it wakes \
                     (set BENCH_SIM_CREATE_DELAY above BENCH_SIM_WAKE_DELAY)"
                        .to_string()
                }),
                ..Default::default()
            });
        }
        if let (Some(retain), Some(release)) =
            (run.scenario("suspend"), run.scenario("suspend-release"))
        {
            // Seats a suspended set holds: one pod per VM with retain; only the run-mode
            // toolbox (which would not restore) with release.
            let kept = release.pods_held.unwrap_or(usize::MAX);
            targets.push(Target {
                target: "pods held by suspended sets: retain vs release",
                sets: n,
                value: Some(kept as f64),
                limit: Some(n as f64),
                figures: BTreeMap::from([("retain", retain.pods_held.map(|p| p as f64))]),
                met: Some(kept <= n),
                ..Default::default()
            });
        }
        if let (Some(c), Some(w)) = (run.scenario("converge"), run.scenario("wake")) {
            // Watches the operator holds with H Hibernations, beyond those it held without any.
            let (before, with) = (c.operator.watches_open, w.operator.watches_open);
            targets.push(Target {
                target: "no extra pod watch per Hibernation",
                sets: n,
                value: Some((with - before) as f64),
                limit: Some(0.0),
                figures: BTreeMap::from([
                    ("hibernations", Some(run.hibernations as f64)),
                    ("watches_without", Some(before as f64)),
                    ("watches_with", Some(with as f64)),
                ]),
                met: Some(before >= 0 && with == before),
                ..Default::default()
            });
        }
        if n == 1000 {
            // The target's load (1,000 sets, 5,000 pods) is what converge leaves; the whole run
            // adds up to 2,000 warm pods and the Hibernations, and is reported beside it.
            let mib = |kib: u64| kib as f64 / 1024.0;
            if let Some(at_load) = run.scenario("converge").and_then(|c| c.operator.peak_rss_kib) {
                targets.push(Target {
                    target: "peak RSS < 64 MiB at 1,000 sets / 5,000 pods",
                    sets: n,
                    value: Some(mib(at_load)),
                    limit: Some(64.0),
                    met: Some(at_load < 64 * 1024),
                    ..Default::default()
                });
            }
            let peak = run.scenarios.iter().filter_map(|s| s.operator.peak_rss_kib).max();
            if let Some(peak) = peak {
                targets.push(Target {
                    target: "peak RSS < 64 MiB over the whole run",
                    sets: n,
                    value: Some(mib(peak)),
                    limit: Some(64.0),
                    figures: BTreeMap::from([("hibernations", Some(run.hibernations as f64))]),
                    met: Some(peak < 64 * 1024),
                    ..Default::default()
                });
            }
        }
        if n == 10_000 {
            // The size a large platform runs (opt-in: BENCH_SETS=10000): 50,000 VM pods, on
            // a fleet of 20 nodes unless BENCH_FLEET says otherwise.
            let peak = run.scenarios.iter().filter_map(|s| s.operator.peak_rss_kib).max();
            let nodes = run
                .scenario("converge")
                .map(|c| c.placement.as_ref().map_or(1, |p| p.nodes) as f64);
            if let Some(peak) = peak {
                targets.push(Target {
                    target: "peak RSS < 128 MiB at 10,000 sets / 50,000 pods",
                    sets: n,
                    value: Some(peak as f64 / 1024.0),
                    limit: Some(128.0),
                    figures: BTreeMap::from([("nodes", nodes)]),
                    met: Some(peak < 128 * 1024),
                    ..Default::default()
                });
            }
        }
    }
    targets
}

/// Memory growth per pod between the smallest and the largest N of our runs.
pub fn rss_growth(runs: &[Run], sets: &[usize], pods_per_set: u64) -> Option<f64> {
    let rss_at = |n: usize| -> Option<f64> {
        let run = runs.iter().find(|r| r.operator == super::OURS && r.sets == n)?;
        Some(run.scenario("converge")?.operator.rss_kib_after? as f64)
    };
    match (sets.first(), sets.last()) {
        (Some(&a), Some(&b)) if b > a => {
            Some((rss_at(b)? - rss_at(a)?) / ((b - a) as f64 * pods_per_set as f64))
        }
        _ => None,
    }
}

/// Converge time and operator requests against N, one line per column (and the limit).
pub fn render_chart(report: &Report) -> String {
    let mut seconds = Vec::new();
    let mut requests = Vec::new();
    for column in &report.columns {
        let converge: Vec<(f64, &Scenario)> = report
            .runs
            .iter()
            .filter(|r| r.operator == column.name)
            .filter_map(|r| Some((r.sets as f64, r.scenario("converge")?)))
            .collect();
        seconds.push(chart::Series {
            label: column.name.clone(),
            points: converge.iter().map(|(n, c)| (*n, c.wall_seconds)).collect(),
        });
        requests.push(chart::Series {
            label: column.name.clone(),
            points: converge.iter().map(|(n, c)| (*n, c.operator.requests as f64)).collect(),
        });
    }
    let limit: Vec<(f64, f64)> = report
        .baseline
        .iter()
        .filter(|b| b.error.is_none())
        .map(|b| (b.sets as f64, b.wall_seconds))
        .collect();
    if !limit.is_empty() {
        seconds.push(chart::Series { label: "raw client (limit)".into(), points: limit });
    }
    chart::render(&seconds, &requests)
}

/// The simulator's delays, as reported.
pub fn delays(create: Duration, wake: Duration) -> SimulatorDelays {
    SimulatorDelays { create_seconds: secs(create), wake_seconds: secs(wake) }
}

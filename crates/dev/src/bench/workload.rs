//! The scenarios, driven as a user would (create, patch, delete), waited on through the
//! driver's watches ([`super::watched`]), and figured from the audit log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::api::Flavour;
use super::audit::{self, Tally};
use super::procstat;
use super::report::{OperatorFigures, Quantiles, Requests, Scenario};
use super::watched::{Settles, Want, Watched, all_reached, moved, reached, serving, set_of_pod};
use super::{BoxError, DRIVER, Lab, OPERATOR, SIMULATOR};
use cocoon_operator::api::CocoonSetSpec;

/// The namespace of the scenarios.
pub const NS: &str = "bench";

/// How big a run is.
pub struct Shape {
    /// CocoonSets.
    pub sets: usize,
    /// Sub-agents per set (plus a main and one toolbox).
    pub replicas: i32,
    /// Hibernations (on sub-agent pods).
    pub hibernations: usize,
    /// The scenario groups to run after converge (empty: all of [`GROUPS`]).
    pub only: Vec<String>,
    /// The longest wait for one scenario.
    pub limit: Duration,
    /// Nodes converge runs on: 1, the lab's one node (every set names it); more, a fleet of
    /// simulated nodes its sets name none of, each main placed by the scheduler.
    pub fleet: usize,
}

/// The scenario groups after converge, in the order they run. Each group leaves the sets as
/// converge left them, so any subset runs.
pub const GROUPS: [&str; 9] = [
    "scale",
    "warm",
    "suspend",
    "release",
    "hibernate",
    "idle",
    "delete",
    "placement",
    "migration",
];

/// Namespace of the placement scenario's sets.
const FLEET_NS: &str = "bench-fleet";

/// Simulated nodes of the placement scenario: one per 100 sets, 2 to 20 (10 at N = 1000).
pub fn fleet_size(sets: usize) -> usize {
    (sets / 100).clamp(2, 20)
}

/// The nodes converge runs on by default: one, but the size a large platform runs (10,000
/// sets) on a fleet of [`fleet_size`] nodes, as it would be.
pub fn converge_fleet(sets: usize) -> usize {
    if sets >= 10_000 { fleet_size(sets) } else { 1 }
}

/// A set of `flavour` that names no node: the scheduler places it.
fn unplaced(flavour: Flavour, name: &str, replicas: i32) -> DynamicObject {
    let mut set = flavour.set(name, replicas);
    if let Some(spec) = set.data.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("nodeName");
    }
    set
}

impl Shape {
    pub fn runs(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }

    pub fn pods_per_set(&self) -> usize {
        2 + self.replicas.max(0) as usize
    }
}

pub fn set_spec(replicas: i32) -> CocoonSetSpec {
    // Bound to the lab's one node, as the figures before placement were taken (placement by
    // the scheduler is measured on its own).
    serde_json::from_value(json!({
        "nodeName": cocoon_core::contract::DEFAULT_NODE_NAME,
        "agent": {"image": "ubuntu-dev-base", "replicas": replicas},
        "toolboxes": [{"name": "box", "image": "chromium"}]
    }))
    .unwrap_or_else(|e| panic!("the bench's set spec parses: {e}"))
}

/// Where one scenario started.
struct Mark {
    /// The operator process whose CPU and memory are read.
    pid: u32,
    audit_index: usize,
    apiserver_cpu: f64,
    operator_cpu: f64,
    started: Instant,
}

fn mark(lab: &mut Lab, pid: u32) -> Result<Mark, BoxError> {
    lab.audit.catch_up()?;
    Ok(Mark {
        pid,
        audit_index: lab.audit.events.len(),
        apiserver_cpu: procstat::group_cpu_seconds(lab.apiserver_group),
        operator_cpu: procstat::group_cpu_seconds(pid),
        started: Instant::now(),
    })
}

/// The set a request's object concerns: the set itself or one of its pods.
fn set_of(resource: &str, name: &str) -> Option<String> {
    match resource {
        "cocoonsets" => Some(name.to_string()),
        "pods" => name.rsplit_once('-').map(|(set, _)| set.to_string()),
        _ => None,
    }
}

/// Figures of a scenario once the operator is done with it: judged by the pods, a scenario
/// can end before the operator's last status write, which belongs to it all the same.
async fn figures(
    lab: &mut Lab,
    driver: &Driver,
    name: &str,
    mark: &Mark,
    wall: Duration,
    over: Over<'_>,
) -> Result<Scenario, BoxError> {
    lab.quiesce(OPERATOR).await?;
    let mut figures = idle_or_done(lab, name, mark, wall, over)?;
    figures.not_reached = driver.take_missed();
    Ok(figures)
}

/// What a scenario's figures are counted over: its objects, the sets they belong to, and the
/// owner of a request's object (`resource`, `name`).
struct Over<'a> {
    objects: usize,
    sets: usize,
    owner: &'a dyn Fn(&str, &str) -> Option<String>,
}

impl Over<'static> {
    /// `n` sets, each its own object.
    fn sets(n: usize) -> Self {
        Self { objects: n, sets: n, owner: &set_of }
    }
}

/// Figures of the idle window, which is its own measure (no wait for quiet).
fn idle_figures(
    lab: &mut Lab,
    mark: &Mark,
    wall: Duration,
    objects: usize,
    sets: usize,
) -> Result<Scenario, BoxError> {
    idle_or_done(lab, "idle", mark, wall, Over { objects, sets, owner: &set_of })
}

fn idle_or_done(
    lab: &mut Lab,
    name: &str,
    mark: &Mark,
    wall: Duration,
    over: Over<'_>,
) -> Result<Scenario, BoxError> {
    let Over { objects, sets, owner } = over;
    let pid = mark.pid;
    lab.audit.catch_up()?;
    let events = &lab.audit.events[mark.audit_index..];
    let op = Tally::of(events, OPERATOR);
    let sim = Tally::of(events, SIMULATOR);
    let driver = Tally::of(events, DRIVER);
    let latencies = audit::first_write_latencies(events, DRIVER, OPERATOR, owner);
    let (peak, now) = procstat::group_rss_kib(pid);
    let per = |v: u64, n: usize| if n == 0 { 0.0 } else { v as f64 / n as f64 };
    let micro = |s: Option<f64>| s.map(|s| (s * 1e6).round() / 1e6);
    let quantiles = Quantiles::of(&latencies);
    eprintln!(
        "    {name:<11} {:>7.2}s  operator {:>6} requests ({:>6} writes, {:>5.1}/object)",
        wall.as_secs_f64(),
        op.requests,
        op.writes,
        per(op.writes, objects)
    );
    Ok(Scenario {
        scenario: name.to_string(),
        wall_seconds: wall.as_secs_f64(),
        objects,
        operator: OperatorFigures {
            requests: op.requests,
            writes: op.writes,
            requests_per_object: per(op.requests, objects),
            writes_per_object: per(op.writes, objects),
            writes_per_set: per(op.writes, sets),
            by_verb: op.by_verb,
            by_verb_resource: op.by_verb_resource,
            errors_by_code: op.errors_by_code,
            watches_opened: op.watches_opened,
            watches_open: audit::open_watches(&lab.audit.events, OPERATOR),
            cpu_seconds: procstat::group_cpu_seconds(pid) - mark.operator_cpu,
            peak_rss_kib: peak,
            sockets_open: procstat::group_sockets(pid),
            rss_kib_after: now,
        },
        apiserver_cpu_seconds: procstat::group_cpu_seconds(lab.apiserver_group)
            - mark.apiserver_cpu,
        event_to_first_write_seconds: Quantiles {
            p50: micro(quantiles.p50),
            p99: micro(quantiles.p99),
            ..quantiles
        },
        simulator: Requests::from(&sim),
        driver: Requests::from(&driver),
        ..Default::default()
    })
}

/// Every scenario, in order, against the running operator `pid`. A scenario that fails ends
/// the run with an `error` entry; the figures so far are kept.
pub async fn scenarios(
    lab: &mut Lab,
    shape: &Shape,
    flavour: Flavour,
    pid: u32,
    idle: Duration,
) -> Vec<Scenario> {
    let mut out = Vec::new();
    if let Err(e) = run_scenarios(lab, shape, flavour, pid, idle, &mut out).await {
        eprintln!("    error: {e}");
        out.push(Scenario::error(e.to_string()));
    }
    out
}

/// Whether a set's pods (looked up by name) show what a scenario waits for.
type Settled = Arc<dyn Fn(&str, &dyn Fn(&str) -> Option<Arc<Pod>>) -> bool + Send + Sync>;

/// The driver's views and handles of one run.
struct Driver {
    flavour: Flavour,
    sets_api: Api<DynamicObject>,
    hibs_api: Api<DynamicObject>,
    pods: Arc<Watched<Pod>>,
    n: usize,
    /// The longest wait for one scenario's state: an operator that never reaches it (a
    /// feature it lacks, a bug) gets the scenario marked, and the run goes on.
    limit: Duration,
    /// What the last wait did not reach, for the scenario's figures.
    missed: std::sync::Mutex<Option<String>>,
}

impl Driver {
    /// Waits until every set's pods show `want` with `replicas` sub-agents.
    async fn until(
        &self,
        what: &str,
        since: Instant,
        replicas: i32,
        want: Want,
    ) -> Result<Duration, BoxError> {
        let n = self.n;
        self.until_pods(what, since, move |p| all_reached(p, n, replicas, want)).await
    }

    /// Waits until `done` holds for the pods, at most [`Driver::limit`]; past it the scenario
    /// is marked not reached and its wall time is the limit.
    async fn until_pods(
        &self,
        what: &str,
        since: Instant,
        done: impl Fn(&[Arc<Pod>]) -> bool,
    ) -> Result<Duration, BoxError> {
        let left = self.limit.saturating_sub(since.elapsed());
        match tokio::time::timeout(left, self.pods.until(what, since, done)).await {
            Ok(reached) => reached,
            Err(_) => {
                let note = format!("{what}: the pods did not show it within {:?}", self.limit);
                eprintln!("    {note}");
                *self.missed.lock().unwrap_or_else(|e| e.into_inner()) = Some(note);
                Ok(since.elapsed())
            }
        }
    }

    /// What the scenario's waits did not reach (and forget it for the next scenario).
    fn take_missed(&self) -> Option<String> {
        self.missed.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Merge-patches every set with `patch`, one request at a time as a user's script would,
    /// and times each set from its patch's answer until its own pods show `want`.
    async fn patch_each(
        &self,
        what: &'static str,
        patch: &Value,
        replicas: i32,
        want: Want,
    ) -> Result<Settles, BoxError> {
        let settled: Settled = Arc::new(move |name, pod| reached(name, replicas, want, pod));
        self.patch_each_with(what, &|_| patch.clone(), settled).await
    }

    /// Merge-patches every set with its own patch, one request at a time, and times each set
    /// from its patch's answer until `settled` holds for its pods.
    async fn patch_each_with(
        &self,
        what: &'static str,
        patch: &dyn Fn(&str) -> Value,
        settled: Settled,
    ) -> Result<Settles, BoxError> {
        let mut waiters = Vec::with_capacity(self.n);
        for i in 0..self.n {
            let name = format!("set-{i}");
            let patch = patch(&name);
            self.sets_api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            let since = Instant::now();
            let pods = self.pods.clone();
            let limit = self.limit;
            let settled = settled.clone();
            waiters.push(tokio::spawn(async move {
                let lookup = |pod: &str| pods.get(pod);
                let done = || settled(&name, &lookup);
                match tokio::time::timeout(limit, pods.until_named(&name, what, since, done)).await
                {
                    Ok(settled) => settled.map(Some),
                    Err(_) => Ok(None),
                }
            }));
        }
        Ok(Settles(waiters))
    }

    /// Merge-patches every set with `patch`, one request at a time.
    async fn patch_all(&self, patch: &Value) -> Result<(), kube::Error> {
        for i in 0..self.n {
            self.sets_api
                .patch(&format!("set-{i}"), &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
        Ok(())
    }
}

async fn run_scenarios(
    lab: &mut Lab,
    shape: &Shape,
    flavour: Flavour,
    pid: u32,
    idle: Duration,
    out: &mut Vec<Scenario>,
) -> Result<(), BoxError> {
    lab.namespace(NS).await?;
    let client = lab.admin.clone();
    let n = shape.sets;
    let r = shape.replicas;
    // Pods are what every operator must get right: each scenario is judged by them. Waits by
    // name wake on the pods of one set.
    let pods = Arc::new(
        Watched::start_keyed(Api::<Pod>::namespaced(client.clone(), NS), (), set_of_pod).await?,
    );
    let driver = Driver {
        flavour,
        sets_api: flavour.sets(client.clone(), NS),
        hibs_api: flavour.hibernations(client.clone(), NS),
        pods,
        n,
        limit: shape.limit,
        missed: Default::default(),
    };

    // converge
    let nodes = if shape.fleet > 1 { lab.grow_fleet(shape.fleet).await? } else { Vec::new() };
    let m = mark(lab, pid)?;
    for i in 0..n {
        let name = format!("set-{i}");
        let set =
            if nodes.is_empty() { flavour.set(&name, r) } else { unplaced(flavour, &name, r) };
        driver.sets_api.create(&PostParams::default(), &set).await?;
    }
    let wall = driver.until("converge", m.started, r, Want::Running).await?;
    let mut f = figures(lab, &driver, "converge", &m, wall, Over::sets(n)).await?;
    if !nodes.is_empty() {
        let events = &lab.audit.events[m.audit_index..];
        f.placement = Some(spread(&driver.pods.all(), nodes.len(), events));
    }
    out.push(f);

    // scale up by 2, then back down
    let scales: &[(&str, i32)] =
        if shape.runs("scale") { &[("scale-up", r + 2), ("scale-down", r)] } else { &[] };
    for &(name, replicas) in scales {
        let m = mark(lab, pid)?;
        let patch = json!({"spec": {"agent": {"replicas": replicas}}});
        let settles = driver.patch_each(name, &patch, replicas, Want::Running).await?;
        let wall = driver.until(name, m.started, replicas, Want::Running).await?;
        let mut f = figures(lab, &driver, name, &m, wall, Over::sets(n)).await?;
        f.settle_seconds = Some(settles.figures().await?);
        out.push(f);
    }

    // warm pool: two warm sub-agent slots per set, forked and hibernated in the background
    // (capped wait: an operator without `warm` never fills it); a scale-up by 2 that wakes
    // them instead of forking (compare with scale-up); then back to no warm slots.
    if shape.runs("warm") {
        let m = mark(lab, pid)?;
        driver.patch_all(&json!({"spec": {"agent": {"warm": 2}}})).await?;
        let fill = tokio::time::timeout(
            Duration::from_secs(60),
            driver.until("warm-fill", m.started, r, Want::Warm(2)),
        )
        .await;
        let (wall, filled) = match fill {
            Ok(Ok(wall)) => (wall, true),
            _ => (m.started.elapsed(), false),
        };
        let mut f = figures(lab, &driver, "warm-fill", &m, wall, Over::sets(n)).await?;
        f.filled = Some(filled);
        out.push(f);
        let m = mark(lab, pid)?;
        let patch = json!({"spec": {"agent": {"replicas": r + 2}}});
        let want = Want::RunningRefilling;
        let settles = driver.patch_each("scale-up-warm", &patch, r + 2, want).await?;
        let wall = driver.until("scale-up-warm", m.started, r + 2, want).await?;
        let mut f = figures(lab, &driver, "scale-up-warm", &m, wall, Over::sets(n)).await?;
        f.settle_seconds = Some(settles.figures().await?);
        out.push(f);
        let m = mark(lab, pid)?;
        driver.patch_all(&json!({"spec": {"agent": {"replicas": r, "warm": 0}}})).await?;
        let wall = driver.until("warm-drain", m.started, r, Want::Running).await?;
        out.push(figures(lab, &driver, "warm-drain", &m, wall, Over::sets(n)).await?);
    }

    // suspend, resume
    let suspends: &[(&str, bool, Want)] = if shape.runs("suspend") {
        &[("suspend", true, Want::Suspended), ("resume", false, Want::Running)]
    } else {
        &[]
    };
    for &(name, suspend, want) in suspends {
        let m = mark(lab, pid)?;
        let patch = json!({"spec": {"suspend": suspend}});
        let settles = driver.patch_each(name, &patch, r, want).await?;
        let wall = driver.until(name, m.started, r, want).await?;
        let mut f = figures(lab, &driver, name, &m, wall, Over::sets(n)).await?;
        f.settle_seconds = Some(settles.figures().await?);
        f.pods_held = Some(driver.pods.all().len());
        out.push(f);
    }

    // suspend and resume again with hibernatePolicy: release: an agent pod is done once
    // hibernated or gone; then (capped: an operator without the policy keeps every pod) until
    // only the toolboxes are held. Run-mode toolboxes stay.
    let releases: &[(&str, bool, Want)] = if shape.runs("release") {
        &[("suspend-release", true, Want::Released), ("resume-release", false, Want::Running)]
    } else {
        &[]
    };
    for &(name, suspend, want) in releases {
        let m = mark(lab, pid)?;
        let patch = json!({"spec": {"suspend": suspend, "hibernatePolicy": "release"}});
        match driver.patch_all(&patch).await {
            Ok(()) => {}
            // An API that refuses the policy for this shape (upstream v0.3.3 allows it only
            // for a lone main): the group is reported as refused, and the run goes on.
            Err(kube::Error::Api(refusal)) if refusal.code == 422 => {
                eprintln!("    {name}: refused by the API: {}", refusal.message);
                let note = format!("refused by the API: {}", refusal.message);
                out.push(Scenario {
                    scenario: name.to_string(),
                    not_reached: Some(note),
                    ..Default::default()
                });
                break;
            }
            Err(e) => return Err(e.into()),
        }
        let mut wall = driver.until(name, m.started, r, want).await?;
        if suspend {
            let released = tokio::time::timeout(
                Duration::from_secs(30),
                driver.pods.until(name, m.started, |p| p.len() <= n),
            )
            .await;
            if let Ok(Ok(done)) = released {
                wall = wall.max(done);
            }
        }
        let mut f = figures(lab, &driver, name, &m, wall, Over::sets(n)).await?;
        f.pods_held = Some(driver.pods.all().len());
        out.push(f);
    }

    // hibernate and wake H sub-agents, one Hibernation each
    let h = if shape.runs("hibernate") { shape.hibernations.min(n * r.max(1) as usize) } else { 0 };
    if h > 0 {
        hibernate_and_wake(lab, shape, pid, h, &driver, out).await?;
    }

    // idle: everything settled, nothing to do
    if shape.runs("idle") {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let m = mark(lab, pid)?;
        tokio::time::sleep(idle).await;
        out.push(idle_figures(lab, &m, idle, n + h, n)?);
    }

    if shape.runs("delete") {
        delete_all(lab, shape, pid, h, &driver, out).await?;
    }

    if shape.runs("placement") || shape.runs("migration") {
        let (fleet, nodes) = placement(lab, shape, flavour, pid, out).await?;
        if shape.runs("migration") {
            migration(lab, shape, pid, &fleet, &nodes, out).await?;
        }
    }
    Ok(())
}

/// N sets that name no node, created on a fleet of [`fleet_size`] nodes in a namespace of
/// their own: judged by the pods (every set Running); the spread, the scheduler's bindings
/// and how long each took, beside the operator's requests.
async fn placement(
    lab: &mut Lab,
    shape: &Shape,
    flavour: Flavour,
    pid: u32,
    out: &mut Vec<Scenario>,
) -> Result<(Driver, Vec<String>), BoxError> {
    let (n, r) = (shape.sets, shape.replicas);
    let nodes = lab.grow_fleet(fleet_size(n)).await?;
    lab.namespace(FLEET_NS).await?;
    let client = lab.admin.clone();
    let pods = Api::<Pod>::namespaced(client.clone(), FLEET_NS);
    let driver = Driver {
        flavour,
        sets_api: flavour.sets(client.clone(), FLEET_NS),
        hibs_api: flavour.hibernations(client.clone(), FLEET_NS),
        pods: Arc::new(Watched::start_keyed(pods, (), set_of_pod).await?),
        n,
        limit: shape.limit,
        missed: Default::default(),
    };
    let m = mark(lab, pid)?;
    for i in 0..n {
        driver
            .sets_api
            .create(&PostParams::default(), &unplaced(flavour, &format!("set-{i}"), r))
            .await?;
    }
    let wall = driver.until("placement", m.started, r, Want::Running).await?;
    let mut f = figures(lab, &driver, "placement", &m, wall, Over::sets(n)).await?;
    let events = &lab.audit.events[m.audit_index..];
    f.placement = Some(spread(&driver.pods.all(), nodes.len(), events));
    out.push(f);
    Ok((driver, nodes))
}

/// Every placed set moved to the next node of the fleet (`spec.nodeName`, as `kubectl cocoon
/// migrate` does): its VMs hibernated into the registry, recreated there and restored. Judged
/// by the pods: each set serving whole on its new node. Only where a VM can move: our API, a
/// cocoonstack dialect (a seed provider keeps its snapshots on its host; the scenario says so
/// and is not run).
async fn migration(
    lab: &mut Lab,
    shape: &Shape,
    pid: u32,
    driver: &Driver,
    nodes: &[String],
    out: &mut Vec<Scenario>,
) -> Result<(), BoxError> {
    let skip = |why: &str| Scenario {
        scenario: "migration".to_string(),
        not_reached: Some(why.to_string()),
        ..Default::default()
    };
    if driver.flavour != Flavour::CocoonCis {
        out.push(skip("not driven for this API: its migration is not spec.nodeName"));
        return Ok(());
    }
    if lab.dialect() == cocoon_operator::contract::Dialect::Seed {
        out.push(skip(
            "the seed dialect keeps snapshots on the host: run with BENCH_DIALECT=current",
        ));
        return Ok(());
    }
    let (n, r) = (shape.sets, shape.replicas);
    let pods = driver.pods.all();
    let main_node: HashMap<String, String> = pods
        .iter()
        .filter(|p| p.name_any().ends_with("-0"))
        .filter_map(|p| Some((set_of_pod(&p.name_any()), p.spec.as_ref()?.node_name.clone()?)))
        .collect();
    let next = |node: &str| {
        let at = nodes.iter().position(|n| n == node).unwrap_or(0);
        nodes[(at + 1) % nodes.len()].clone()
    };
    let target: Arc<HashMap<String, String>> =
        Arc::new(main_node.iter().map(|(set, node)| (set.clone(), next(node))).collect());
    let m = mark(lab, pid)?;
    let to = target.clone();
    let settled: Settled =
        Arc::new(move |name, pod| to.get(name).is_some_and(|node| moved(name, r, node, pod)));
    let patch = |name: &str| json!({"spec": {"nodeName": target.get(name)}});
    let settles = driver.patch_each_with("migration", &patch, settled).await?;
    let to = target.clone();
    let wall = driver
        .until_pods("migration", m.started, move |pods| {
            let by_name: HashMap<String, Arc<Pod>> =
                pods.iter().map(|p| (p.name_any(), p.clone())).collect();
            let lookup = |name: &str| by_name.get(name).cloned();
            (0..n).all(|i| {
                let set = format!("set-{i}");
                to.get(&set).is_some_and(|node| moved(&set, r, node, &lookup))
            })
        })
        .await?;
    let mut f = figures(lab, driver, "migration", &m, wall, Over::sets(n)).await?;
    f.settle_seconds = Some(settles.figures().await?);
    out.push(f);
    Ok(())
}

/// Where the sets' pods are, and the scheduler's part in it.
fn spread(
    pods: &[Arc<Pod>],
    nodes: usize,
    events: &[audit::AuditEvent],
) -> super::report::Placement {
    let node_of = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let mut main_node: HashMap<String, String> = HashMap::new();
    for pod in pods.iter().filter(|p| p.name_any().ends_with("-0")) {
        main_node.insert(set_of_pod(&pod.name_any()), node_of(pod));
    }
    let mut sets_per_node = std::collections::BTreeMap::new();
    for node in main_node.values() {
        *sets_per_node.entry(node.clone()).or_insert(0) += 1;
    }
    let split: std::collections::HashSet<String> = pods
        .iter()
        .map(|p| (set_of_pod(&p.name_any()), node_of(p)))
        .filter(|(set, node)| main_node.get(set).is_some_and(|main| main != node))
        .map(|(set, _)| set)
        .collect();
    let latencies = audit::binding_latencies(events, audit::SCHEDULER);
    super::report::Placement {
        nodes,
        sets_per_node,
        split_sets: split.len(),
        binding_seconds: Quantiles::of(&latencies),
        scheduler: Requests::from(&Tally::of(events, audit::SCHEDULER)),
    }
}

/// The pod Hibernation `h-<i>` targets: sub-agents round-robin over the sets.
fn hibernation_target(i: usize, n: usize, replicas: i32) -> String {
    format!("set-{}-{}", i % n, 1 + (i / n) % replicas.max(1) as usize)
}

/// H Hibernations on sub-agent pods: hibernate them, then wake them; judged by the pods.
async fn hibernate_and_wake(
    lab: &mut Lab,
    shape: &Shape,
    pid: u32,
    h: usize,
    driver: &Driver,
    out: &mut Vec<Scenario>,
) -> Result<(), BoxError> {
    let (n, r) = (shape.sets, shape.replicas);
    let targets: Vec<String> = (0..h).map(|i| hibernation_target(i, n, r)).collect();
    let by_pod: HashMap<String, String> =
        targets.iter().enumerate().map(|(i, t)| (t.clone(), format!("h-{i}"))).collect();
    let hib_of = move |resource: &str, name: &str| -> Option<String> {
        match resource {
            "hibernations" | "cocoonhibernations" => Some(name.to_string()),
            "pods" => by_pod.get(name).cloned(),
            _ => None,
        }
    };
    let shown = |want_hibernated: bool| {
        let targets = targets.clone();
        move |pods: &[Arc<Pod>]| {
            let by_name: HashMap<String, &Arc<Pod>> =
                pods.iter().map(|p| (p.name_any(), p)).collect();
            targets.iter().all(|t| {
                by_name.get(t).is_some_and(|p| {
                    if want_hibernated {
                        cocoon_operator::plan::PodView::from_pod(p).reports_hibernated()
                    } else {
                        serving(p)
                    }
                })
            })
        }
    };
    let m = mark(lab, pid)?;
    for (i, target) in targets.iter().enumerate() {
        let hib = driver.flavour.hibernation(&format!("h-{i}"), target, true);
        driver.hibs_api.create(&PostParams::default(), &hib).await?;
    }
    let wall = driver.until_pods("hibernate", m.started, shown(true)).await?;
    out.push(
        figures(lab, driver, "hibernate", &m, wall, Over { objects: h, sets: n, owner: &hib_of })
            .await?,
    );
    let m = mark(lab, pid)?;
    let patch = driver.flavour.action_patch(false);
    for i in 0..h {
        driver
            .hibs_api
            .patch(&format!("h-{i}"), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let wall = driver.until_pods("wake", m.started, shown(false)).await?;
    out.push(
        figures(lab, driver, "wake", &m, wall, Over { objects: h, sets: n, owner: &hib_of })
            .await?,
    );
    Ok(())
}

/// Deletes every Hibernation and set, one request per object; waits until they and their
/// pods are gone.
async fn delete_all(
    lab: &mut Lab,
    shape: &Shape,
    pid: u32,
    h: usize,
    driver: &Driver,
    out: &mut Vec<Scenario>,
) -> Result<(), BoxError> {
    let n = shape.sets;
    let m = mark(lab, pid)?;
    // One request per object, as users and tools do (a collection delete of a thousand
    // custom resources can outlast the request timeout).
    let hib_names = (0..h).map(|i| format!("h-{i}"));
    let set_names = (0..n).map(|i| format!("set-{i}"));
    for (api, names) in
        [(&driver.hibs_api, hib_names.collect::<Vec<_>>()), (&driver.sets_api, set_names.collect())]
    {
        let deletes = names.into_iter().map(|name| {
            let api = api.clone();
            async move { api.delete(&name, &DeleteParams::default()).await.map(|_| ()) }
        });
        for result in futures::stream::iter(deletes).buffer_unordered(8).collect::<Vec<_>>().await {
            result?;
        }
    }
    let mut wall = driver.until_pods("delete", m.started, |p| p.is_empty()).await?;
    // The objects themselves (an operator's finalizer holds them until it is done).
    let kinds = [
        (&driver.sets_api, driver.flavour.set_resource()),
        (&driver.hibs_api, driver.flavour.hibernation_resource()),
    ];
    for (api, kind) in kinds {
        let left = Watched::start_keyed(api.clone(), kind, |name| name.to_string()).await?;
        wall = wall.max(left.until("delete", m.started, |s| s.is_empty()).await?);
    }
    out.push(figures(lab, driver, "delete", &m, wall, Over::sets(n)).await?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hibernations_go_round_robin_over_the_sub_agents_of_every_set() {
        let targets: Vec<String> = (0..5).map(|i| hibernation_target(i, 2, 2)).collect();
        assert_eq!(targets, ["set-0-1", "set-1-1", "set-0-2", "set-1-2", "set-0-1"]);
    }

    #[test]
    fn no_group_named_runs_them_all_and_naming_some_runs_only_those() {
        let shape = |only: &[&str]| Shape {
            sets: 1,
            replicas: 1,
            hibernations: 1,
            only: only.iter().map(|g| g.to_string()).collect(),
            limit: Duration::from_secs(1),
            fleet: 1,
        };
        assert!(GROUPS.iter().all(|g| shape(&[]).runs(g)));
        let some = shape(&["delete", "idle"]);
        let ran: Vec<&str> = GROUPS.iter().copied().filter(|g| some.runs(g)).collect();
        assert_eq!(ran, ["idle", "delete"]);
    }
}

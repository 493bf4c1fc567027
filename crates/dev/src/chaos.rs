//! `cocoon-dev chaos`: the operator, as a separate process, SIGKILLed again and again at seeded
//! random points while a seeded random workload runs (create, scale up/down, suspend, resume,
//! hibernate, wake, delete) against a provider that fails 30 % of creates and never hibernates
//! one main VM. Afterwards every object must converge, and a watch that saw every pod change
//! checks that no pod was deleted that should not have been and none is left orphaned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::api::{
    CocoonSet, CocoonSetPhase, CocoonSetSpec, Hibernation, HibernationAction, HibernationPhase,
    HibernationSpec, VmPhase,
};
use crate::devcluster::{DevCluster, DevClusterOptions};
use crate::sim::{SimConfig, Simulator};

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

/// A small seeded generator (xorshift64*): reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The desired state the driver asked for, per set.
#[derive(Clone, Debug)]
struct Desired {
    replicas: i32,
    suspend: bool,
    /// The lowest `replicas` since each slot's pod was last created: a slot above it may be
    /// deleted by a scale-down, one at or below it never.
    low_water: i32,
    /// `hibernatePolicy: release`: a suspended set deletes its hibernated pods.
    release: bool,
}

/// The operator child process.
struct Operator {
    child: tokio::process::Child,
    metrics: String,
}

impl Operator {
    async fn start(bin: &PathBuf, kubeconfig: &std::path::Path) -> Result<Self, BoxError> {
        Self::start_with(bin, kubeconfig, &[]).await
    }

    async fn start_with(
        bin: &PathBuf,
        kubeconfig: &std::path::Path,
        extra: &[&str],
    ) -> Result<Self, BoxError> {
        let port = free_port()?;
        let child = tokio::process::Command::new(bin)
            .args(["run", "--resync", "5s", "--hibernate-timeout", "20s", "--wake-timeout", "20s"])
            .args(extra)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--probe-addr")
            .arg(format!("127.0.0.1:{}", free_port()?))
            .arg("--max-backoff")
            .arg("5s")
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        Ok(Self { child, metrics: format!("127.0.0.1:{port}") })
    }

    /// Requests the operator has sent so far (its own counter), if it answers.
    async fn requests(&self) -> Option<f64> {
        let body = http_get(&self.metrics, "/metrics").await?;
        let total = body
            .lines()
            .filter(|l| l.starts_with("cocoon_operator_api_requests_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Some(total)
    }

    /// SIGKILL: no shutdown, no Lease release, whatever was in flight is cut.
    async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    Some(body)
}

/// Watches every pod of the namespace and records each deletion with what the pod was then.
#[derive(Default)]
struct PodLog {
    /// Names whose pod went Failed/Succeeded at some point (the provider's faults).
    terminal: BTreeSet<String>,
    /// Pods whose deletion started: (name, uid).
    deleted: Vec<(String, String)>,
    /// Creation count per name.
    created: BTreeMap<String, u32>,
}

fn watch_pods(api: Api<Pod>, log: Arc<Mutex<PodLog>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: BTreeMap<String, (String, bool)> = BTreeMap::new();
        let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
        while let Some(event) = stream.next().await {
            let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else {
                continue;
            };
            let name = pod.name_any();
            let uid = pod.uid().unwrap_or_default();
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(phase.as_str(), "Failed" | "Succeeded") {
                log.terminal.insert(name.clone());
            }
            let deleting = pod.metadata.deletion_timestamp.is_some();
            let entry = seen.entry(name.clone()).or_insert_with(|| (String::new(), false));
            if entry.0 != uid {
                *entry = (uid.clone(), false);
                *log.created.entry(name.clone()).or_insert(0) += 1;
            }
            if deleting && !entry.1 {
                entry.1 = true;
                log.deleted.push((name, uid));
            }
        }
    })
}

fn slot_of(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// Runs the whole chaos scenario on a fresh local control plane.
pub async fn run(args: ChaosArgs) -> Result<ChaosReport, BoxError> {
    let mut rng = Rng::new(args.seed);
    let opts = DevClusterOptions::default();
    let mut cluster = DevCluster::start(opts).await?;
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
        ..SimConfig::default()
    };
    let sim = Simulator::start(client.clone(), sim_config).await?;
    let sets: Api<CocoonSet> = Api::namespaced(client.clone(), ns);
    let hibs: Api<Hibernation> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let log = Arc::new(Mutex::new(PodLog::default()));
    let pod_watch = watch_pods(pods.clone(), log.clone());

    let mut desired: BTreeMap<String, Desired> = BTreeMap::new();
    let mut deleted_sets: BTreeSet<String> = BTreeSet::new();
    let mut hib_targets: BTreeMap<String, (String, HibernationAction)> = BTreeMap::new();
    let mut report = ChaosReport::default();
    let mut next_set = 0u32;
    let mut operator = Some(Operator::start(&args.operator, cluster.kubeconfig_path()).await?);
    let mut requests = 0.0;
    let chaos_started = Instant::now();
    while report.kills < args.kills {
        // A few operations, then a kill at a random point.
        for _ in 0..=rng.below(3) {
            report.operations += 1;
            let live: Vec<String> = desired.keys().cloned().collect();
            match rng.below(10) {
                0..=1 if desired.len() < 6 => {
                    let name = format!("c{next_set}");
                    next_set += 1;
                    let replicas = i32::try_from(rng.below(4)).unwrap_or(0);
                    let mut spec: CocoonSetSpec = serde_json::from_value(serde_json::json!({
                        "agent": {"image": "ubuntu-dev-base", "replicas": replicas}
                    }))?;
                    spec.node_name = node.clone();
                    // Every other set releases its seats when suspended.
                    let release = next_set.is_multiple_of(2);
                    if release {
                        spec.hibernate_policy = crate::api::HibernatePolicy::Release;
                    }
                    sets.create(&PostParams::default(), &CocoonSet::new(&name, spec)).await?;
                    desired.insert(
                        name,
                        Desired { replicas, suspend: false, low_water: replicas, release },
                    );
                }
                2..=4 if !live.is_empty() => {
                    let name = &live[usize::try_from(rng.below(live.len() as u64)).unwrap_or(0)];
                    let replicas = i32::try_from(rng.below(4)).unwrap_or(0);
                    let patch = serde_json::json!({"spec": {"agent": {"replicas": replicas}}});
                    sets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                    if let Some(d) = desired.get_mut(name) {
                        d.replicas = replicas;
                        d.low_water = d.low_water.min(replicas);
                    }
                }
                5..=6 if !live.is_empty() => {
                    let name = &live[usize::try_from(rng.below(live.len() as u64)).unwrap_or(0)];
                    let Some(d) = desired.get_mut(name) else { continue };
                    d.suspend = !d.suspend;
                    let patch = serde_json::json!({"spec": {"suspend": d.suspend}});
                    sets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                }
                7 if !live.is_empty() => {
                    // Hibernate or wake a sub-agent through a Hibernation of its own.
                    let name = &live[usize::try_from(rng.below(live.len() as u64)).unwrap_or(0)];
                    let pod = format!("{name}-1");
                    let hib = format!("hib-{pod}");
                    let action = if rng.below(2) == 0 {
                        HibernationAction::Hibernate
                    } else {
                        HibernationAction::Wake
                    };
                    if hib_targets.contains_key(&hib) {
                        let patch = serde_json::json!({"spec": {"action": action}});
                        hibs.patch(&hib, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                    } else {
                        let spec = HibernationSpec { pod_name: pod.clone(), action };
                        hibs.create(&PostParams::default(), &Hibernation::new(&hib, spec)).await?;
                    }
                    hib_targets.insert(hib, (pod, action));
                }
                8 if live.len() > 2 => {
                    let name =
                        live[usize::try_from(rng.below(live.len() as u64)).unwrap_or(0)].clone();
                    // Its Hibernations go with it (they would wait for their pod forever).
                    let owned: Vec<String> = hib_targets
                        .iter()
                        .filter(|(_, (pod, _))| slot_of(&name, pod).is_some())
                        .map(|(h, _)| h.clone())
                        .collect();
                    for hib in owned {
                        hibs.delete(&hib, &DeleteParams::default()).await?;
                        hib_targets.remove(&hib);
                    }
                    sets.delete(&name, &DeleteParams::default()).await?;
                    desired.remove(&name);
                    deleted_sets.insert(name);
                }
                _ => {}
            }
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
        operator = Some(Operator::start(&args.operator, cluster.kubeconfig_path()).await?);
    }
    let operator = match operator {
        Some(running) => running,
        None => Operator::start(&args.operator, cluster.kubeconfig_path()).await?,
    };
    report.chaos_time = chaos_started.elapsed();
    report.requests_per_minute = requests / report.chaos_time.as_secs_f64().max(1.0) * 60.0;

    // Settle: the provider stops failing creates; every object must converge.
    let settle_started = Instant::now();
    let outcome =
        settle(&sets, &hibs, &pods, &desired, &deleted_sets, &hib_targets, args.settle).await;
    report.settle_time = settle_started.elapsed();
    match outcome {
        Ok(checked) => report.objects_checked = checked,
        Err(e) => report.violations.push(e),
    }
    // Deletions the workload never asked for.
    {
        let log = log.lock().unwrap_or_else(|e| e.into_inner());
        for (pod, _) in &log.deleted {
            let Some((set, d)) = desired.iter().find(|(set, _)| slot_of(set, pod).is_some()) else {
                continue; // a deleted set's pods, or a toolbox
            };
            let slot = slot_of(set, pod).unwrap_or(0);
            // A release set deletes its hibernated pods while suspended, by design; the
            // convergence check sees them back after resume.
            if slot <= d.low_water && !log.terminal.contains(pod) && !d.release {
                report.violations.push(format!(
                    "{pod} was deleted though its slot was never scaled away and it never failed"
                ));
            }
        }
    }
    pod_watch.abort();
    operator.kill().await;
    match leader_takeover(&args, &cluster, &sets, &node).await {
        Ok(took) => report.leader_takeover = Some(took),
        Err(e) => report.violations.push(format!("leader election: {e}")),
    }
    sim.shutdown().await;
    drop(cluster);
    Ok(report)
}

/// Waits until every set and Hibernation converged; returns how many objects were checked.
async fn settle(
    sets: &Api<CocoonSet>,
    hibs: &Api<Hibernation>,
    pods: &Api<Pod>,
    desired: &BTreeMap<String, Desired>,
    deleted: &BTreeSet<String>,
    hib_targets: &BTreeMap<String, (String, HibernationAction)>,
    within: Duration,
) -> Result<usize, String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        match check(sets, hibs, pods, desired, deleted, hib_targets).await {
            Ok(n) => return Ok(n),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("did not converge within {}s: {last}", within.as_secs()))
}

async fn check(
    sets: &Api<CocoonSet>,
    hibs: &Api<Hibernation>,
    pods: &Api<Pod>,
    desired: &BTreeMap<String, Desired>,
    deleted: &BTreeSet<String>,
    hib_targets: &BTreeMap<String, (String, HibernationAction)>,
) -> Result<usize, String> {
    let e = |e: kube::Error| e.to_string();
    let all_pods = pods.list(&ListParams::default()).await.map_err(e)?.items;

    let mut checked = 0;
    for (name, d) in desired {
        let set = sets.get(name).await.map_err(e)?;
        let status = set.status.clone().unwrap_or_default();
        let wanted = if d.suspend { CocoonSetPhase::Suspended } else { CocoonSetPhase::Running };
        // The main the provider never hibernates keeps its set Suspending, by design.
        let refused = d.suspend && name == "c0";
        if !refused && status.phase != Some(wanted) {
            return Err(format!(
                "{name}: {:?} ({:?}), want {wanted:?}",
                status.phase, status.message
            ));
        }
        if status.observed_generation != set.metadata.generation {
            return Err(format!("{name}: status is behind the spec"));
        }
        let mut names: Vec<String> = all_pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.owner_references().iter().any(|o| Some(&o.uid) == set.metadata.uid.as_ref())
            })
            .map(|p| p.name_any())
            .collect();
        names.sort();
        let mut expected: Vec<String> = (0..=d.replicas).map(|s| format!("{name}-{s}")).collect();
        expected.sort();
        // No pod is created while a set is suspended (that would boot a VM): a slot whose
        // pod failed meanwhile comes back on resume. Running sets have every slot.
        let fits =
            if d.suspend { names.iter().all(|n| expected.contains(n)) } else { names == expected };
        if !fits {
            return Err(format!("{name}: pods {names:?}, want {expected:?}"));
        }
        // A released set holds no hibernated pod once suspended (the provider's refused main
        // excepted): each is deleted once its snapshot entry exists.
        if d.suspend && d.release && !refused {
            let held = status.agents.iter().filter(|a| a.phase == VmPhase::Hibernated).count();
            if held > 0 && status.agents.iter().all(|a| a.phase != VmPhase::Terminating) {
                // Pods held by a Hibernation stay: the user's.
                let by_hibernation =
                    hib_targets.values().filter(|(p, _)| slot_of(name, p).is_some()).count();
                if held > by_hibernation {
                    return Err(format!("{name}: {held} hibernated pod(s) kept despite release"));
                }
            }
        }
        checked += 1 + names.len();
    }
    for name in deleted {
        if sets.get_opt(name).await.map_err(e)?.is_some() {
            return Err(format!("{name}: deleted but still there"));
        }
    }
    // No orphan: every pod belongs to a live set.
    for pod in &all_pods {
        let owned = pod.owner_references().iter().any(|o| desired.contains_key(&o.name));
        if !owned && pod.metadata.deletion_timestamp.is_none() {
            return Err(format!("orphaned pod {}", pod.name_any()));
        }
    }
    for (hib, (pod, action)) in hib_targets {
        let status = hibs.get(hib).await.map_err(e)?.status.unwrap_or_default();
        let done = match action {
            HibernationAction::Hibernate => HibernationPhase::Hibernated,
            HibernationAction::Wake => HibernationPhase::Active,
        };
        // A Hibernation fights no other writer: while its set suspends or its slot is scaled
        // away it may fail by design; it must not be stuck mid-round.
        let set_suspended = desired.iter().any(|(s, d)| slot_of(s, pod).is_some() && d.suspend);
        let slot_gone =
            desired.iter().any(|(s, d)| slot_of(s, pod).is_some_and(|slot| slot > d.replicas));
        let settled = status.phase == Some(done)
            || (status.phase == Some(HibernationPhase::Failed) && (set_suspended || slot_gone));
        if !settled && !set_suspended {
            return Err(format!("{hib}: {:?} ({:?}), want {done:?}", status.phase, status.message));
        }
        checked += 1;
    }
    Ok(checked)
}

/// Two replicas with leader election: a set is suspended and the leader is SIGKILLed at once;
/// the standby must take the Lease over (after it expires) and finish the suspend.
async fn leader_takeover(
    args: &ChaosArgs,
    cluster: &DevCluster,
    sets: &Api<CocoonSet>,
    node: &str,
) -> Result<Duration, String> {
    let start = |identity: &'static str| {
        let bin = args.operator.clone();
        let kubeconfig = cluster.kubeconfig_path().to_path_buf();
        async move {
            let extra = ["--leader-elect", "--lease-namespace", "chaos", "--identity", identity];
            Operator::start_with(&bin, &kubeconfig, &extra).await.map_err(|e| e.to_string())
        }
    };
    let mut replicas = vec![("a", start("a").await?), ("b", start("b").await?)];
    let mut spec: CocoonSetSpec = serde_json::from_value(serde_json::json!({
        "agent": {"image": "ubuntu-dev-base", "replicas": 1}
    }))
    .map_err(|e| e.to_string())?;
    spec.node_name = node.to_string();
    sets.create(&PostParams::default(), &CocoonSet::new("lead", spec))
        .await
        .map_err(|e| e.to_string())?;
    wait_phase(sets, "lead", CocoonSetPhase::Running, Duration::from_secs(90)).await?;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(sets.clone().into_client(), "chaos");
    let holder = leases
        .get("cocoon-operator-leader")
        .await
        .map_err(|e| e.to_string())?
        .spec
        .and_then(|s| s.holder_identity)
        .ok_or("no leader")?;
    let patch = serde_json::json!({"spec": {"suspend": true}});
    sets.patch("lead", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| e.to_string())?;
    let killed = Instant::now();
    let at = replicas.iter().position(|(id, _)| *id == holder).ok_or("the holder is not ours")?;
    replicas.remove(at).1.kill().await;
    let limit = cocoon_core::lease::LEASE_DURATION + Duration::from_secs(30);
    wait_phase(sets, "lead", CocoonSetPhase::Suspended, limit).await?;
    let took = killed.elapsed();
    for (_, op) in replicas {
        op.kill().await;
    }
    Ok(took)
}

async fn wait_phase(
    sets: &Api<CocoonSet>,
    name: &str,
    phase: CocoonSetPhase,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let set = sets.get(name).await.map_err(|e| e.to_string())?;
        let status = set.status.unwrap_or_default();
        if status.phase == Some(phase) && status.observed_generation == set.metadata.generation {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{name} not {phase:?} within {}s: {:?}",
                within.as_secs(),
                status.phase
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

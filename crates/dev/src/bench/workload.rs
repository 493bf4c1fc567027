//! The scenarios, driven as a user would (create, patch, delete), waited on through watches
//! (the driver never polls the API), and figured from the audit log; and the raw-client
//! baseline: the same pod creates, finalizer and final status writes with no reconcile logic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::audit::{self, Tally};
use super::procstat;
use super::{BoxError, DRIVER, Lab, OPERATOR, RAW, SIMULATOR};
use crate::devcluster::client_from_kubeconfig;
use cocoon_operator::api::{
    CocoonSet, CocoonSetPhase, CocoonSetSpec, Hibernation, HibernationAction, HibernationPhase,
    HibernationSpec, VmPhase,
};
use cocoon_operator::contract;
use cocoon_operator::plan::cocoon_set::pods::{AgentKind, SetIdentity, agent_pod, toolbox_pod};

/// The namespace of the scenarios.
const NS: &str = "bench";
/// The namespace of the raw-client baseline.
const BASELINE_NS: &str = "baseline";
/// Longest wait for one scenario.
const LIMIT: Duration = Duration::from_secs(1800);

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
}

/// The scenario groups after converge, in the order they run. Each group leaves the sets as
/// converge left them, so any subset runs.
pub const GROUPS: [&str; 7] =
    ["scale", "warm", "suspend", "release", "hibernate", "idle", "delete"];

impl Shape {
    fn runs(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }

    fn pods_per_set(&self) -> usize {
        2 + self.replicas.max(0) as usize
    }
}

fn set_spec(replicas: i32) -> CocoonSetSpec {
    serde_json::from_value(json!({
        "agent": {"image": "ubuntu-dev-base", "replicas": replicas},
        "toolboxes": [{"name": "box", "image": "chromium"}]
    }))
    .unwrap_or_else(|e| panic!("the bench's set spec parses: {e}"))
}

/// A reflector: the driver's view of one kind in one namespace (one watch).
struct Watched<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    /// Told after every event the store took in: a wait looks again then, so the end of a
    /// scenario is seen when the watch shows it, not at the next tick of a poll.
    changed: Arc<Notify>,
    /// Told when the object of that name changes: the raw client's sets each wait on their
    /// own pods, and a thousand of them are not all woken by every pod event.
    by_name: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The shortest time between two looks at a whole store: a burst of events (thousands of pods)
/// makes one look per interval, not one per event.
const LOOK_INTERVAL: Duration = Duration::from_millis(5);

impl<K> Watched<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    async fn start(api: Api<K>) -> Result<Self, BoxError> {
        let (store, writer) = reflector::store();
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff();
        let changed = Arc::new(Notify::new());
        let by_name: Arc<Mutex<HashMap<String, Arc<Notify>>>> = Arc::default();
        let (tell, tell_named) = (changed.clone(), by_name.clone());
        let task = tokio::spawn(async move {
            stream
                .for_each(|event| {
                    let named = tell_named.lock().unwrap_or_else(|e| e.into_inner());
                    match &event {
                        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))
                        | Ok(watcher::Event::Delete(o)) => {
                            if let Some(n) = named.get(&o.name_any()) {
                                n.notify_waiters();
                            }
                        }
                        _ => named.values().for_each(|n| n.notify_waiters()),
                    }
                    tell.notify_waiters();
                    std::future::ready(())
                })
                .await;
        });
        store.wait_until_ready().await?;
        Ok(Self { store, changed, by_name, task })
    }

    fn all(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// Waits until `done` holds for the whole store; returns how long that took.
    async fn until(
        &self,
        what: &str,
        since: Instant,
        done: impl Fn(&[Arc<K>]) -> bool,
    ) -> Result<Duration, BoxError> {
        self.wait(&self.changed, what, since, || done(&self.all()), LOOK_INTERVAL).await
    }

    /// Waits until `done` holds, looking again whenever the object `name` changes.
    async fn until_named(
        &self,
        name: &str,
        what: &str,
        since: Instant,
        done: impl Fn() -> bool,
    ) -> Result<Duration, BoxError> {
        let notify = {
            let mut named = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
            named.entry(name.to_string()).or_default().clone()
        };
        self.wait(&notify, what, since, done, Duration::ZERO).await
    }

    async fn wait(
        &self,
        changed: &Notify,
        what: &str,
        since: Instant,
        done: impl Fn() -> bool,
        spacing: Duration,
    ) -> Result<Duration, BoxError> {
        loop {
            // Registered before the look, so that an event between the two is not missed.
            let next = changed.notified();
            let looked = Instant::now();
            if done() {
                return Ok(since.elapsed());
            }
            if since.elapsed() > LIMIT {
                return Err(format!("{what}: not reached within {LIMIT:?}").into());
            }
            // After an event, or after a while in any case (a missed event costs no more).
            let _ = tokio::time::timeout(Duration::from_millis(200), next).await;
            tokio::time::sleep(spacing.saturating_sub(looked.elapsed())).await;
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Drop for Watched<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Each set's time to settle after its own patch, measured while the driver goes on patching
/// the others: the wall time of a scenario also counts the driver's patches, sent one at a
/// time, which a busier API server answers more slowly.
struct Settles(Vec<tokio::task::JoinHandle<Result<Duration, BoxError>>>);

impl Settles {
    /// `count`, `p50` and `p99` of the settle times, in seconds.
    async fn figures(self) -> Result<Value, BoxError> {
        let mut seconds = Vec::with_capacity(self.0.len());
        for waiter in self.0 {
            seconds.push(waiter.await??.as_secs_f64());
        }
        let (p50, p99) = (audit::quantile(&seconds, 0.5), audit::quantile(&seconds, 0.99));
        if let (Some(p50), Some(p99)) = (p50, p99) {
            eprintln!("                  each set, patch to settled: p50 {p50:.2}s, p99 {p99:.2}s");
        }
        Ok(json!({"count": seconds.len(), "p50": p50, "p99": p99}))
    }
}

/// Merge-patches `set-0` .. `set-<n-1>` with `patch`, one request at a time as a user's script
/// would, and times each from its patch's answer until the driver's watch shows a version at
/// least as new as that answer for which `settled` holds.
async fn patch_each<F>(
    api: &Api<CocoonSet>,
    sets: &Arc<Watched<CocoonSet>>,
    what: &'static str,
    n: usize,
    patch: &Value,
    settled: F,
) -> Result<Settles, BoxError>
where
    F: Fn(&CocoonSet) -> bool + Copy + Send + Sync + 'static,
{
    let mut waiters = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("set-{i}");
        let answer = api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        let since = Instant::now();
        let generation = answer.metadata.generation.unwrap_or(0);
        let watched = sets.clone();
        waiters.push(tokio::spawn(async move {
            let key = reflector::ObjectRef::<CocoonSet>::new(&name).within(NS);
            let done = || {
                watched.store.get(&key).is_some_and(|s| {
                    s.metadata.generation.unwrap_or(0) >= generation && settled(&s)
                })
            };
            watched.until_named(&name, what, since, done).await
        }));
    }
    Ok(Settles(waiters))
}

fn serving(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn set_settled(set: &CocoonSet, phase: CocoonSetPhase, ready: i32) -> bool {
    set.status.as_ref().is_some_and(|s| {
        s.phase == Some(phase)
            && (phase != CocoonSetPhase::Running || s.ready_agents == ready)
            && s.observed_generation == set.metadata.generation
    })
}

fn hib_phase(hib: &Hibernation) -> Option<HibernationPhase> {
    hib.status.as_ref().and_then(|s| s.phase)
}

/// Where one scenario started.
struct Mark {
    audit_index: usize,
    apiserver_cpu: f64,
    operator_cpu: f64,
    started: Instant,
}

fn mark(lab: &mut Lab, pid: u32) -> Result<Mark, BoxError> {
    lab.audit.catch_up()?;
    Ok(Mark {
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

#[allow(clippy::too_many_arguments)]
fn figures(
    lab: &mut Lab,
    pid: u32,
    name: &str,
    mark: &Mark,
    wall: Duration,
    objects: usize,
    sets: usize,
    owner: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<Value, BoxError> {
    lab.audit.catch_up()?;
    let events = &lab.audit.events[mark.audit_index..];
    let op = Tally::of(events, OPERATOR);
    let sim = Tally::of(events, SIMULATOR);
    let driver = Tally::of(events, DRIVER);
    let latencies = audit::first_write_latencies(events, DRIVER, OPERATOR, owner);
    let (peak, now) = procstat::group_rss_kib(pid);
    let per = |v: u64, n: usize| if n == 0 { 0.0 } else { v as f64 / n as f64 };
    let ms = |q: f64| audit::quantile(&latencies, q).map(|s| (s * 1e6).round() / 1e6);
    eprintln!(
        "    {name:<11} {:>7.2}s  operator {:>6} requests ({:>6} writes, {:>5.1}/object)",
        wall.as_secs_f64(),
        op.requests,
        op.writes,
        per(op.writes, objects)
    );
    Ok(json!({
        "scenario": name,
        "wall_seconds": wall.as_secs_f64(),
        "objects": objects,
        "operator": {
            "requests": op.requests,
            "writes": op.writes,
            "requests_per_object": per(op.requests, objects),
            "writes_per_object": per(op.writes, objects),
            "writes_per_set": per(op.writes, sets),
            "by_verb": op.by_verb,
            "by_verb_resource": op.by_verb_resource,
            "errors_by_code": op.errors_by_code,
            "watches_opened": op.watches_opened,
            "watches_open": audit::open_watches(&lab.audit.events, OPERATOR),
            "cpu_seconds": procstat::group_cpu_seconds(pid) - mark.operator_cpu,
            "peak_rss_kib": peak,
            "sockets_open": procstat::group_sockets(pid),
            "rss_kib_after": now,
        },
        "apiserver_cpu_seconds": procstat::group_cpu_seconds(lab.apiserver_group) - mark.apiserver_cpu,
        "event_to_first_write_seconds": {"count": latencies.len(), "p50": ms(0.5), "p99": ms(0.99)},
        "simulator": {"requests": sim.requests, "writes": sim.writes},
        "driver": {"requests": driver.requests},
    }))
}

/// Every scenario, in order, against the running operator `pid`. A scenario that fails ends
/// the run with an `error` entry; the figures so far are kept.
pub async fn scenarios(lab: &mut Lab, shape: &Shape, pid: u32, idle: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    if let Err(e) = run_scenarios(lab, shape, pid, idle, &mut out).await {
        eprintln!("    error: {e}");
        out.push(json!({"scenario": "error", "error": e.to_string()}));
    }
    out
}

async fn run_scenarios(
    lab: &mut Lab,
    shape: &Shape,
    pid: u32,
    idle: Duration,
    out: &mut Vec<Value>,
) -> Result<(), BoxError> {
    lab.namespace(NS).await?;
    let client = lab.admin.clone();
    let sets_api: Api<CocoonSet> = Api::namespaced(client.clone(), NS);
    let hibs_api: Api<Hibernation> = Api::namespaced(client.clone(), NS);
    let sets = Arc::new(Watched::start(sets_api.clone()).await?);
    let hibs = Watched::start(hibs_api.clone()).await?;
    let n = shape.sets;
    let r = shape.replicas;
    let all_running = |ready: i32| {
        move |s: &[Arc<CocoonSet>]| {
            s.len() == n && s.iter().all(|s| set_settled(s, CocoonSetPhase::Running, ready))
        }
    };

    // converge
    let m = mark(lab, pid)?;
    for i in 0..n {
        sets_api
            .create(&PostParams::default(), &CocoonSet::new(&format!("set-{i}"), set_spec(r)))
            .await?;
    }
    let wall = sets.until("converge", m.started, all_running(1 + r)).await?;
    out.push(figures(lab, pid, "converge", &m, wall, n, n, &set_of)?);
    // The later scenarios count pods; watching them from here on keeps the driver's own pod
    // watch (a third watcher of every pod event, decoded in this process) out of converge,
    // which the raw-client baseline is compared with.
    let pods = Watched::start(Api::<Pod>::namespaced(client.clone(), NS)).await?;

    // scale up by 2, then back down
    let scales: &[(&str, i32)] =
        if shape.runs("scale") { &[("scale-up", r + 2), ("scale-down", r)] } else { &[] };
    for &(name, replicas) in scales {
        let m = mark(lab, pid)?;
        let patch = json!({"spec": {"agent": {"replicas": replicas}}});
        let running = move |s: &CocoonSet| set_settled(s, CocoonSetPhase::Running, 1 + replicas);
        let settles = patch_each(&sets_api, &sets, name, n, &patch, running).await?;
        let mut wall = sets.until(name, m.started, all_running(1 + replicas)).await?;
        let want = n * (2 + replicas as usize);
        wall = wall.max(pods.until(name, m.started, |p| p.len() == want).await?);
        let mut f = figures(lab, pid, name, &m, wall, n, n, &set_of)?;
        f["settle_seconds"] = settles.figures().await?;
        out.push(f);
    }

    // warm pool: two warm sub-agent slots per set, forked and hibernated in the background
    // (capped wait: an operator without `warm` never fills it); a scale-up by 2 that wakes
    // them instead of forking (compare with scale-up); then back to no warm slots.
    if shape.runs("warm") {
        let m = mark(lab, pid)?;
        for i in 0..n {
            let patch = json!({"spec": {"agent": {"warm": 2}}});
            sets_api
                .patch(&format!("set-{i}"), &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        let filled = |s: &[Arc<CocoonSet>]| {
            s.len() == n
                && s.iter().all(|s| {
                    let warm =
                        s.status.as_ref().map(|st| st.warm_agents.as_slice()).unwrap_or_default();
                    warm.len() == 2 && warm.iter().all(|a| a.phase == VmPhase::Hibernated)
                })
        };
        let fill = tokio::time::timeout(
            Duration::from_secs(60),
            sets.until("warm-fill", m.started, filled),
        )
        .await;
        let wall = match fill {
            Ok(Ok(wall)) => wall,
            _ => m.started.elapsed(),
        };
        let mut f = figures(lab, pid, "warm-fill", &m, wall, n, n, &set_of)?;
        f["filled"] = json!(filled(&sets.all()));
        out.push(f);
        let m = mark(lab, pid)?;
        let patch = json!({"spec": {"agent": {"replicas": r + 2}}});
        let running = move |s: &CocoonSet| set_settled(s, CocoonSetPhase::Running, 3 + r);
        let settles = patch_each(&sets_api, &sets, "scale-up-warm", n, &patch, running).await?;
        let wall = sets.until("scale-up-warm", m.started, all_running(3 + r)).await?;
        let mut f = figures(lab, pid, "scale-up-warm", &m, wall, n, n, &set_of)?;
        f["settle_seconds"] = settles.figures().await?;
        out.push(f);
        let m = mark(lab, pid)?;
        for i in 0..n {
            let patch = json!({"spec": {"agent": {"replicas": r, "warm": 0}}});
            sets_api
                .patch(&format!("set-{i}"), &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        let mut wall = sets.until("warm-drain", m.started, all_running(1 + r)).await?;
        let want = n * shape.pods_per_set();
        wall = wall.max(pods.until("warm-drain", m.started, |p| p.len() == want).await?);
        out.push(figures(lab, pid, "warm-drain", &m, wall, n, n, &set_of)?);
    }

    // suspend, resume
    let suspends: &[(&str, bool, CocoonSetPhase)] = if shape.runs("suspend") {
        &[("suspend", true, CocoonSetPhase::Suspended), ("resume", false, CocoonSetPhase::Running)]
    } else {
        &[]
    };
    for &(name, suspend, phase) in suspends {
        let m = mark(lab, pid)?;
        let patch = json!({"spec": {"suspend": suspend}});
        let settled = move |s: &CocoonSet| set_settled(s, phase, 1 + r);
        let settles = patch_each(&sets_api, &sets, name, n, &patch, settled).await?;
        let wall = sets
            .until(name, m.started, |s| {
                s.len() == n && s.iter().all(|s| set_settled(s, phase, 1 + r))
            })
            .await?;
        let mut f = figures(lab, pid, name, &m, wall, n, n, &set_of)?;
        f["settle_seconds"] = settles.figures().await?;
        f["pods_held"] = json!(pods.all().len());
        out.push(f);
    }

    // suspend and resume again with hibernatePolicy: release; pods held once suspended
    // (hibernated agent pods are deleted once their snapshot entry exists; run-mode toolboxes
    // stay). An operator without the policy keeps every pod: the wait for pods to go is capped.
    let releases: &[(&str, bool, CocoonSetPhase)] = if shape.runs("release") {
        &[
            ("suspend-release", true, CocoonSetPhase::Suspended),
            ("resume-release", false, CocoonSetPhase::Running),
        ]
    } else {
        &[]
    };
    for &(name, suspend, phase) in releases {
        let m = mark(lab, pid)?;
        for i in 0..n {
            let patch = json!({"spec": {"suspend": suspend, "hibernatePolicy": "release"}});
            sets_api
                .patch(&format!("set-{i}"), &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        let mut wall = sets
            .until(name, m.started, |s| {
                s.len() == n && s.iter().all(|s| set_settled(s, phase, 1 + r))
            })
            .await?;
        if suspend {
            let released = tokio::time::timeout(
                Duration::from_secs(30),
                pods.until(name, m.started, |p| p.len() <= n),
            )
            .await;
            if let Ok(Ok(done)) = released {
                wall = wall.max(done);
            }
        } else {
            let want = n * shape.pods_per_set();
            wall = wall.max(pods.until(name, m.started, |p| p.len() == want).await?);
        }
        let mut f = figures(lab, pid, name, &m, wall, n, n, &set_of)?;
        f["pods_held"] = json!(pods.all().len());
        out.push(f);
    }

    // hibernate and wake H sub-agents, one Hibernation each
    let h = if shape.runs("hibernate") { shape.hibernations.min(n * r.max(1) as usize) } else { 0 };
    if h > 0 {
        hibernate_and_wake(lab, shape, pid, h, &hibs, out).await?;
    }

    // idle: everything settled, nothing to do
    if shape.runs("idle") {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let m = mark(lab, pid)?;
        tokio::time::sleep(idle).await;
        out.push(figures(lab, pid, "idle", &m, idle, n + h, n, &set_of)?);
    }

    if shape.runs("delete") {
        delete_all(lab, shape, pid, h, (&sets_api, &hibs_api), (&sets, &hibs, &pods), out).await?;
    }
    Ok(())
}

/// H Hibernations on sub-agent pods: hibernate them, then wake them.
async fn hibernate_and_wake(
    lab: &mut Lab,
    shape: &Shape,
    pid: u32,
    h: usize,
    hibs: &Watched<Hibernation>,
    out: &mut Vec<Value>,
) -> Result<(), BoxError> {
    let (n, r) = (shape.sets, shape.replicas);
    let hibs_api: Api<Hibernation> = Api::namespaced(lab.admin.clone(), NS);
    let target = |i: usize| format!("set-{}-{}", i % n, 1 + (i / n) % r.max(1) as usize);
    let by_pod: HashMap<String, String> = (0..h).map(|i| (target(i), format!("h-{i}"))).collect();
    let hib_of = move |resource: &str, name: &str| -> Option<String> {
        match resource {
            "hibernations" => Some(name.to_string()),
            "pods" => by_pod.get(name).cloned(),
            _ => None,
        }
    };
    let m = mark(lab, pid)?;
    for i in 0..h {
        let spec = HibernationSpec { pod_name: target(i), action: HibernationAction::Hibernate };
        hibs_api.create(&PostParams::default(), &Hibernation::new(&format!("h-{i}"), spec)).await?;
    }
    let wall = hibs
        .until("hibernate", m.started, |hs| {
            hs.len() == h && hs.iter().all(|x| hib_phase(x) == Some(HibernationPhase::Hibernated))
        })
        .await?;
    out.push(figures(lab, pid, "hibernate", &m, wall, h, n, &hib_of)?);
    let m = mark(lab, pid)?;
    for i in 0..h {
        let patch = json!({"spec": {"action": "wake"}});
        hibs_api.patch(&format!("h-{i}"), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    let wall = hibs
        .until("wake", m.started, |hs| {
            hs.iter().all(|x| {
                hib_phase(x) == Some(HibernationPhase::Active)
                    && x.status.as_ref().and_then(|s| s.observed_generation)
                        == x.metadata.generation
            })
        })
        .await?;
    out.push(figures(lab, pid, "wake", &m, wall, h, n, &hib_of)?);
    Ok(())
}

/// Deletes every Hibernation and set, one request per object; waits until their pods are gone.
#[allow(clippy::type_complexity)]
async fn delete_all(
    lab: &mut Lab,
    shape: &Shape,
    pid: u32,
    h: usize,
    (sets_api, hibs_api): (&Api<CocoonSet>, &Api<Hibernation>),
    (sets, hibs, pods): (&Watched<CocoonSet>, &Watched<Hibernation>, &Watched<Pod>),
    out: &mut Vec<Value>,
) -> Result<(), BoxError> {
    let n = shape.sets;
    // delete everything
    let m = mark(lab, pid)?;
    // One request per object, as users and tools do (a collection delete of a thousand
    // custom resources can outlast the request timeout).
    let deletes =
        (0..h)
            .map(|i| (hibs_api.clone(), format!("h-{i}")))
            .map(|(api, name)| async move {
                api.delete(&name, &DeleteParams::default()).await.map(|_| ())
            })
            .collect::<Vec<_>>();
    for result in futures::stream::iter(deletes).buffer_unordered(8).collect::<Vec<_>>().await {
        result?;
    }
    let deletes =
        (0..n)
            .map(|i| (sets_api.clone(), format!("set-{i}")))
            .map(|(api, name)| async move {
                api.delete(&name, &DeleteParams::default()).await.map(|_| ())
            })
            .collect::<Vec<_>>();
    for result in futures::stream::iter(deletes).buffer_unordered(8).collect::<Vec<_>>().await {
        result?;
    }
    let mut wall = sets.until("delete", m.started, |s| s.is_empty()).await?;
    wall = wall.max(hibs.until("delete", m.started, |s| s.is_empty()).await?);
    wall = wall.max(pods.until("delete", m.started, |p| p.is_empty()).await?);
    out.push(figures(lab, pid, "delete", &m, wall, n, n, &set_of)?);
    Ok(())
}

/// The raw-client limit of converge: for every set at once, the finalizer patch, the main and
/// toolbox creates, the sub-agent creates once the main serves, and one final status write,
/// with no reconcile logic; timed like ours, from the first set create until the driver's
/// watch shows every set Running.
pub async fn baseline(lab: &mut Lab, shape: &Shape) -> Result<Value, BoxError> {
    lab.namespace(BASELINE_NS).await?;
    let raw = client_from_kubeconfig(&lab.raw_kubeconfig).await?;
    let sets_api: Api<CocoonSet> = Api::namespaced(lab.admin.clone(), BASELINE_NS);
    // The driver's view of the sets, as in converge: the limit pays the same watch delivery
    // (and polling) between the last status write and "all Running" as our operator does.
    let sets = Watched::start(sets_api.clone()).await?;
    let pods = Arc::new(Watched::start(Api::<Pod>::namespaced(raw.clone(), BASELINE_NS)).await?);
    lab.audit.catch_up()?;
    let first = lab.audit.events.len();
    let started = Instant::now();
    // Each set's work starts as soon as its create went through, as a watch-driven operator's
    // would.
    let mut work = Vec::new();
    for i in 0..shape.sets {
        let set = CocoonSet::new(&format!("base-{i}"), set_spec(shape.replicas));
        let set = sets_api.create(&PostParams::default(), &set).await?;
        work.push(tokio::spawn(raw_converge(raw.clone(), pods.clone(), set, shape.replicas)));
    }
    for task in work {
        task.await??;
    }
    let (n, ready) = (shape.sets, 1 + shape.replicas);
    let wall = sets
        .until("baseline", started, |s| {
            s.len() == n && s.iter().all(|s| set_settled(s, CocoonSetPhase::Running, ready))
        })
        .await?;
    lab.audit.catch_up()?;
    let tally = Tally::of(&lab.audit.events[first..], RAW);
    eprintln!(
        "    baseline    {:>7.2}s  raw client {:>6} requests ({} writes)",
        wall.as_secs_f64(),
        tally.requests,
        tally.writes
    );
    // Clean up (not timed): pods, finalizers, sets.
    let raw_pods: Api<Pod> = Api::namespaced(raw.clone(), BASELINE_NS);
    let names: Vec<String> = pods.all().iter().map(|p| p.name_any()).collect();
    let deletes = names.into_iter().map(|name| {
        let api = raw_pods.clone();
        async move { api.delete(&name, &DeleteParams::default()).await.map(|_| ()) }
    });
    for result in futures::stream::iter(deletes).buffer_unordered(8).collect::<Vec<_>>().await {
        result?;
    }
    let raw_sets: Api<CocoonSet> = Api::namespaced(raw.clone(), BASELINE_NS);
    let cleanups = sets_api.list(&ListParams::default()).await?.items.into_iter().map(|set| {
        let (raw_sets, sets_api) = (raw_sets.clone(), sets_api.clone());
        async move {
            let patch = json!({"metadata": {"finalizers": null}});
            let name = set.name_any();
            raw_sets.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            sets_api.delete(&name, &DeleteParams::default()).await.map(|_| ())
        }
    });
    for result in futures::stream::iter(cleanups).buffer_unordered(8).collect::<Vec<_>>().await {
        result?;
    }
    pods.until("baseline cleanup", Instant::now(), |p| p.is_empty()).await?;
    Ok(json!({
        "sets": shape.sets,
        "pods": shape.sets * shape.pods_per_set(),
        "wall_seconds": wall.as_secs_f64(),
        "requests": tally.requests,
        "writes": tally.writes,
        "writes_per_set": tally.writes as f64 / shape.sets.max(1) as f64,
        "by_verb_resource": tally.by_verb_resource,
    }))
}

async fn raw_converge(
    raw: Client,
    pods: Arc<Watched<Pod>>,
    set: CocoonSet,
    replicas: i32,
) -> Result<(), BoxError> {
    let name = set.name_any();
    let sets: Api<CocoonSet> = Api::namespaced(raw.clone(), BASELINE_NS);
    let pods_api: Api<Pod> = Api::namespaced(raw.clone(), BASELINE_NS);
    let finalizer = json!({"metadata": {"finalizers": [contract::FINALIZER_TEARDOWN]}});
    sets.patch(&name, &PatchParams::default(), &Patch::Merge(&finalizer)).await?;
    let identity = SetIdentity {
        namespace: BASELINE_NS.into(),
        name: name.clone(),
        uid: set.uid().unwrap_or_default(),
    };
    let pp = PostParams::default();
    pods_api.create(&pp, &agent_pod(&identity, &set.spec, 0, &AgentKind::Main)).await?;
    for toolbox in &set.spec.toolboxes {
        pods_api.create(&pp, &toolbox_pod(&identity, &set.spec, toolbox, None)).await?;
    }
    let main = contract::agent_pod_name(&name, 0);
    // One lookup by name, not a scan: a thousand sets wait at once.
    let serving_pod = |pod_name: &str| {
        let key = reflector::ObjectRef::new(pod_name).within(BASELINE_NS);
        pods.store.get(&key).filter(|p| serving(p))
    };
    let since = Instant::now();
    pods.until_named(&main, "baseline main", since, || serving_pod(&main).is_some()).await?;
    let fork_from = serving_pod(&main)
        .and_then(|p| p.annotations().get(contract::ANN_VM_NAME).cloned())
        .unwrap_or_default();
    for slot in 1..=replicas.max(0) as u32 {
        let kind = AgentKind::SubAgent { fork_from: fork_from.clone() };
        pods_api.create(&pp, &agent_pod(&identity, &set.spec, slot, &kind)).await?;
    }
    let mut names: Vec<String> =
        (0..=replicas.max(0) as u32).map(|s| contract::agent_pod_name(&name, s)).collect();
    names.extend(set.spec.toolboxes.iter().map(|t| contract::toolbox_pod_name(&name, &t.name)));
    for pod in &names {
        pods.until_named(pod, "baseline pods", since, || serving_pod(pod).is_some()).await?;
    }
    let status = json!({"status": {
        "phase": "Running",
        "readyAgents": 1 + replicas,
        "desiredAgents": 1 + replicas,
        "observedGeneration": set.metadata.generation,
    }});
    sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_group_named_runs_them_all_and_naming_some_runs_only_those() {
        let shape = |only: &[&str]| Shape {
            sets: 1,
            replicas: 1,
            hibernations: 1,
            only: only.iter().map(|g| g.to_string()).collect(),
        };
        assert!(GROUPS.iter().all(|g| shape(&[]).runs(g)));
        let some = shape(&["delete", "idle"]);
        let ran: Vec<&str> = GROUPS.iter().copied().filter(|g| some.runs(g)).collect();
        assert_eq!(ran, ["idle", "delete"]);
    }
}

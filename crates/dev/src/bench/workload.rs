//! The scenarios, driven as a user would (create, patch, delete), waited on through the
//! driver's watches ([`super::watched`]), and figured from the audit log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::audit::{self, Tally};
use super::procstat;
use super::report::{OperatorFigures, Quantiles, Requests, Scenario};
use super::watched::{Watched, hib_phase, patch_each, set_settled};
use super::{BoxError, DRIVER, Lab, OPERATOR, SIMULATOR};
use cocoon_operator::api::{
    CocoonSet, CocoonSetPhase, CocoonSetSpec, Hibernation, HibernationAction, HibernationPhase,
    HibernationSpec, VmPhase,
};

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
}

/// The scenario groups after converge, in the order they run. Each group leaves the sets as
/// converge left them, so any subset runs.
pub const GROUPS: [&str; 7] =
    ["scale", "warm", "suspend", "release", "hibernate", "idle", "delete"];

impl Shape {
    pub fn runs(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }

    pub fn pods_per_set(&self) -> usize {
        2 + self.replicas.max(0) as usize
    }
}

pub fn set_spec(replicas: i32) -> CocoonSetSpec {
    serde_json::from_value(json!({
        "agent": {"image": "ubuntu-dev-base", "replicas": replicas},
        "toolboxes": [{"name": "box", "image": "chromium"}]
    }))
    .unwrap_or_else(|e| panic!("the bench's set spec parses: {e}"))
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
) -> Result<Scenario, BoxError> {
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
pub async fn scenarios(lab: &mut Lab, shape: &Shape, pid: u32, idle: Duration) -> Vec<Scenario> {
    let mut out = Vec::new();
    if let Err(e) = run_scenarios(lab, shape, pid, idle, &mut out).await {
        eprintln!("    error: {e}");
        out.push(Scenario::error(e.to_string()));
    }
    out
}

async fn run_scenarios(
    lab: &mut Lab,
    shape: &Shape,
    pid: u32,
    idle: Duration,
    out: &mut Vec<Scenario>,
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
        f.settle_seconds = Some(settles.figures().await?);
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
        f.filled = Some(filled(&sets.all()));
        out.push(f);
        let m = mark(lab, pid)?;
        let patch = json!({"spec": {"agent": {"replicas": r + 2}}});
        let running = move |s: &CocoonSet| set_settled(s, CocoonSetPhase::Running, 3 + r);
        let settles = patch_each(&sets_api, &sets, "scale-up-warm", n, &patch, running).await?;
        let wall = sets.until("scale-up-warm", m.started, all_running(3 + r)).await?;
        let mut f = figures(lab, pid, "scale-up-warm", &m, wall, n, n, &set_of)?;
        f.settle_seconds = Some(settles.figures().await?);
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
        f.settle_seconds = Some(settles.figures().await?);
        f.pods_held = Some(pods.all().len());
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
        f.pods_held = Some(pods.all().len());
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
    out: &mut Vec<Scenario>,
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
    out: &mut Vec<Scenario>,
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

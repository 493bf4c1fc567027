//! `make bench`: measures the operator against a real control plane and the simulator, and
//! writes `target/bench/report.json`. Figures, not assertions: nothing here passes or fails on
//! timing.
//!
//! Scenario: N CocoonSets (main + 2 sub-agents + 1 toolbox each) created at once; time until all
//! are Running and the API requests that took; then H Hibernations hibernated and woken (round
//! latencies); then an idle window that should see zero requests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cocoon_dev::devcluster::{DevCluster, DevClusterOptions};
use cocoon_dev::sim::{SimConfig, Simulator};
use cocoon_operator::api::{
    CocoonSet, CocoonSetPhase, CocoonSetSpec, Hibernation, HibernationAction, HibernationPhase,
    HibernationSpec,
};
use cocoon_operator::config::OperatorConfig;
use cocoon_operator::metrics::{API_RESULTS, API_VERBS, VerbResult};
use cocoon_operator::operator::{Operator, OperatorProbe, config_from_kubeconfig};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn requests_by_verb(probe: &OperatorProbe) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for verb in API_VERBS {
        let n: u64 = API_RESULTS
            .iter()
            .map(|result| {
                probe.metrics().api_requests.get_or_create(&VerbResult { verb, result }).get()
            })
            .sum();
        if n > 0 {
            out.insert(verb.to_string(), n);
        }
    }
    out
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut done: F) -> Result<Duration, BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, BoxError>>,
{
    let start = Instant::now();
    loop {
        if done().await? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(format!("{what}: not reached within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let sets_n = env_usize("BENCH_SETS", 40);
    let hibs_n = env_usize("BENCH_HIBERNATIONS", 20).min(sets_n);
    let idle_secs = env_usize("BENCH_IDLE_SECONDS", 20) as u64;
    eprintln!("bench: {sets_n} CocoonSets, {hibs_n} Hibernations, {idle_secs}s idle window");

    let cluster = DevCluster::start(DevClusterOptions::default()).await?;
    let client: Client = cluster.client().await?;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in [Hibernation::crd(), CocoonSet::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&crd)).await?;
        kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::conditions::is_crd_established(),
        )
        .await?;
    }
    let ns = "bench";
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta { name: Some(ns.into()), ..Default::default() },
                ..Default::default()
            },
        )
        .await?;
    let sim = Simulator::start(client.clone(), SimConfig::default()).await?;
    let operator = Operator::start(
        config_from_kubeconfig(cluster.kubeconfig_path()).await?,
        &OperatorConfig::default(),
    )
    .await?;
    let probe = operator.probe();
    wait_until("watches synced", Duration::from_secs(60), || async { Ok(probe.is_synced()) })
        .await?;

    // Phase 1: N sets at once.
    let sets: Api<CocoonSet> = Api::namespaced(client.clone(), ns);
    let before = requests_by_verb(&probe);
    let start = Instant::now();
    for i in 0..sets_n {
        let spec: CocoonSetSpec = serde_json::from_value(json!({
            "agent": {"image": "ubuntu-dev-base", "replicas": 2},
            "toolboxes": [{"name": "box", "image": "chromium"}]
        }))?;
        sets.create(&PostParams::default(), &CocoonSet::new(&format!("set-{i}"), spec)).await?;
    }
    let created_in = start.elapsed();
    let converge = wait_until("all sets Running", Duration::from_secs(600), || async {
        let list = sets.list(&ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .filter(|s| s.status.as_ref().and_then(|s| s.phase) == Some(CocoonSetPhase::Running))
            .count()
            == sets_n)
    })
    .await?;
    let converge = start.elapsed().max(converge);
    let converge_requests = diff(&requests_by_verb(&probe), &before);
    let pods_per_set = 4u64;
    let writes: u64 = converge_requests
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "watch" | "list" | "get"))
        .map(|(_, v)| v)
        .sum();

    // Phase 2: hibernate and wake H sub-agents, one Hibernation each.
    let hibs: Api<Hibernation> = Api::namespaced(client.clone(), ns);
    for i in 0..hibs_n {
        let spec = HibernationSpec {
            pod_name: format!("set-{i}-1"),
            action: HibernationAction::Hibernate,
        };
        hibs.create(&PostParams::default(), &Hibernation::new(&format!("h-{i}"), spec)).await?;
    }
    let all_in = |phase: HibernationPhase| {
        let hibs = hibs.clone();
        move || {
            let hibs = hibs.clone();
            async move {
                let list = hibs.list(&ListParams::default()).await?;
                Ok(list
                    .items
                    .iter()
                    .filter(|h| h.status.as_ref().and_then(|s| s.phase) == Some(phase))
                    .count()
                    == hibs_n)
            }
        }
    };
    let hibernate_all = wait_until(
        "all Hibernated",
        Duration::from_secs(600),
        all_in(HibernationPhase::Hibernated),
    )
    .await?;
    for i in 0..hibs_n {
        hibs.patch(
            &format!("h-{i}"),
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"action": "wake"}})),
        )
        .await?;
    }
    let wake_all =
        wait_until("all Active", Duration::from_secs(600), all_in(HibernationPhase::Active))
            .await?;

    // Round latencies as the operator measured them (histogram sums / counts).
    let metrics_text = probe.metrics().render();
    let histogram = |transition: &str| -> (f64, f64) {
        let find = |suffix: &str| {
            metrics_text
                .lines()
                .find(|l| l.starts_with(&format!("cocoon_operator_transition_duration_seconds_{suffix}{{transition=\"{transition}\"}}")))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (find("sum"), find("count"))
    };

    // Phase 3: idle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_before = probe.api_requests();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle_requests = probe.api_requests() - idle_before;

    let reconcile_lines: Vec<String> = metrics_text
        .lines()
        .filter(|l| l.starts_with("cocoon_operator_reconciles_total"))
        .map(String::from)
        .collect();
    let mut durations = Vec::new();
    for (name, (sum, count)) in [
        ("hibernate", histogram("hibernate")),
        ("wake", histogram("wake")),
        ("fork", histogram("fork")),
    ] {
        durations.push((name, if count > 0.0 { sum / count } else { 0.0 }, count));
    }
    let report = json!({
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "scenario": {"cocoon_sets": sets_n, "pods_per_set": pods_per_set, "hibernations": hibs_n, "simulator_delays": "0"},
        "converge": {
            "create_calls_seconds": created_in.as_secs_f64(),
            "first_create_to_all_running_seconds": converge.as_secs_f64(),
            "api_requests_by_verb": converge_requests,
            "writes_per_set": writes as f64 / sets_n as f64,
            "writes_per_pod": writes as f64 / (sets_n as u64 * pods_per_set) as f64,
        },
        "hibernation": {
            "all_hibernated_seconds": hibernate_all.as_secs_f64(),
            "all_active_again_seconds": wake_all.as_secs_f64(),
            "mean_round_seconds": durations.iter().map(|(n, mean, count)| (n.to_string(), json!({"mean": mean, "count": count}))).collect::<serde_json::Map<_, _>>(),
        },
        "idle": {"window_seconds": idle_secs, "api_requests": idle_requests},
        "reconciles": reconcile_lines,
        "process_peak_rss_kib_including_simulator": rss_kib(),
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!("wrote {}", path.display());
    operator.shutdown(Duration::from_secs(10)).await;
    sim.shutdown().await;
    drop(cluster);
    Ok(())
}

//! After the faults: wait for convergence and judge it, and the leader-election drill.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use super::ChaosArgs;
use super::operator::Operator;
use super::workload::{Workload, slot_of};
use crate::api::{
    CocoonSet, CocoonSetPhase, CocoonSetSpec, HibernationAction, HibernationPhase, VmPhase,
};
use crate::devcluster::DevCluster;

/// Waits until every set and Hibernation converged; returns how many objects were checked.
pub async fn settle(
    workload: &Workload,
    pods: &Api<Pod>,
    within: Duration,
) -> Result<usize, String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        match check(workload, pods).await {
            Ok(n) => return Ok(n),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("did not converge within {}s: {last}", within.as_secs()))
}

/// One look: every set in its wanted phase with the pods it should have, every deleted one
/// gone, no orphaned pod, every Hibernation settled.
async fn check(workload: &Workload, pods: &Api<Pod>) -> Result<usize, String> {
    let Workload { sets, hibs, desired, deleted_sets: deleted, hib_targets, .. } = workload;
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
            let agents: Vec<String> = status
                .agents
                .iter()
                .map(|a| format!("{}={}", a.pod_name, a.phase.as_str()))
                .collect();
            let waiting: Vec<String> = status
                .conditions
                .iter()
                .filter(|c| c.status != "True")
                .map(|c| format!("{}={} {}", c.type_, c.status, c.message))
                .collect();
            return Err(format!(
                "{name}: {:?} ({:?}), want {wanted:?}; agents {agents:?}; conditions {waiting:?}",
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
pub async fn leader_takeover(
    args: &ChaosArgs,
    cluster: &DevCluster,
    sets: &Api<CocoonSet>,
    node: &str,
) -> Result<Duration, String> {
    let start = |identity: &'static str| {
        let bin = args.operator.clone();
        let kubeconfig = cluster.kubeconfig_path().to_path_buf();
        let log = args.operator_log.clone();
        let mut extra: Vec<String> =
            ["--leader-elect", "--lease-namespace", "chaos", "--identity", identity]
                .map(str::to_string)
                .to_vec();
        extra.extend(args.operator_flags());
        async move {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            Operator::start_with(&bin, &kubeconfig, &extra, log.as_deref())
                .await
                .map_err(|e| e.to_string())
        }
    };
    let mut replicas = vec![("a", start("a").await?), ("b", start("b").await?)];
    let mut spec: CocoonSetSpec = serde_json::from_value(serde_json::json!({
        "agent": {"image": "ubuntu-dev-base", "replicas": 1}
    }))
    .map_err(|e| e.to_string())?;
    spec.node_name = Some(node.to_string());
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

//! The raw-client limit of converge: the same pod creates, finalizer and final status writes as
//! an operator must make, with no reconcile logic, timed like ours.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::audit::Tally;
use super::report::Baseline;
use super::watched::{Watched, serving};
use super::workload::{Shape, set_spec};
use super::{BoxError, Lab, RAW};
use crate::devcluster::client_from_kubeconfig;
use cocoon_operator::api::CocoonSet;
use cocoon_operator::contract;
use cocoon_operator::plan::cocoon_set::pods::{
    AgentKind, Provider, SetIdentity, agent_pod, toolbox_pod,
};

/// The namespace of the raw-client baseline.
const BASELINE_NS: &str = "baseline";

/// The raw-client limit of converge: for every set at once, the finalizer patch, the main and
/// toolbox creates, the sub-agent creates once the main serves, and one final status write,
/// with no reconcile logic; timed like ours, from the first set create until the driver's
/// watch shows every set Running.
pub async fn run(
    lab: &mut Lab,
    shape: &Shape,
    dialect: cocoon_operator::contract::Dialect,
) -> Result<Baseline, BoxError> {
    lab.namespace(BASELINE_NS).await?;
    // On a fleet, set i is bound to node i mod M: placement without a scheduler's work.
    let nodes = if shape.fleet > 1 { lab.grow_fleet(shape.fleet).await? } else { Vec::new() };
    let raw = client_from_kubeconfig(&lab.raw_kubeconfig).await?;
    let sets_api: Api<CocoonSet> = Api::namespaced(lab.admin.clone(), BASELINE_NS);
    // Judged as converge is, by the pods: the limit is when the driver's pod watch shows every
    // pod serving (the final status writes belong to the work all the same).
    let pods = Arc::new(Watched::start(Api::<Pod>::namespaced(raw.clone(), BASELINE_NS)).await?);
    lab.audit.catch_up()?;
    let first = lab.audit.events.len();
    let started = Instant::now();
    // Each set's work starts as soon as its create went through, as a watch-driven operator's
    // would.
    let mut work = Vec::new();
    for i in 0..shape.sets {
        let mut spec = set_spec(shape.replicas);
        if !nodes.is_empty() {
            spec.node_name = Some(nodes[i % nodes.len()].clone());
        }
        let set = CocoonSet::new(&format!("base-{i}"), spec);
        let set = sets_api.create(&PostParams::default(), &set).await?;
        work.push(tokio::spawn(raw_converge(
            raw.clone(),
            pods.clone(),
            set,
            shape.replicas,
            dialect,
        )));
    }
    let want = shape.sets * shape.pods_per_set();
    let wall = pods
        .until("baseline", started, |p| p.len() == want && p.iter().all(|p| serving(p)))
        .await?;
    for task in work {
        task.await??;
    }
    lab.audit.catch_up()?;
    let tally = Tally::of(&lab.audit.events[first..], RAW);
    eprintln!(
        "    baseline    {:>7.2}s  raw client {:>6} requests ({} writes)",
        wall.as_secs_f64(),
        tally.requests,
        tally.writes
    );
    // No clean-up: the lab (its control plane and everything in it) is stopped right after,
    // and 50,000 pod deletes at 10,000 sets took longer than the baseline itself.
    Ok(Baseline {
        sets: shape.sets,
        error: None,
        pods: shape.sets * shape.pods_per_set(),
        wall_seconds: wall.as_secs_f64(),
        requests: tally.requests,
        writes: tally.writes,
        writes_per_set: tally.writes as f64 / shape.sets.max(1) as f64,
        by_verb_resource: tally.by_verb_resource,
    })
}

async fn raw_converge(
    raw: Client,
    pods: Arc<Watched<Pod>>,
    set: CocoonSet,
    replicas: i32,
    dialect: cocoon_operator::contract::Dialect,
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
    // The raw client builds the pods the operator would, in the lab's dialect.
    let provider = Provider { dialect, cpu_class: None, node: set.spec.node_name.clone() };
    pods_api
        .create(&pp, &agent_pod(&identity, &set.spec, 0, &AgentKind::Main, &provider, false))
        .await?;
    for toolbox in &set.spec.toolboxes {
        pods_api.create(&pp, &toolbox_pod(&identity, &set.spec, toolbox, None, &provider)).await?;
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
        .and_then(|p| p.annotations().get(dialect.keys().vm_name).cloned())
        .unwrap_or_default();
    for slot in 1..=replicas.max(0) as u32 {
        let kind = AgentKind::SubAgent { fork_from: fork_from.clone() };
        pods_api
            .create(&pp, &agent_pod(&identity, &set.spec, slot, &kind, &provider, false))
            .await?;
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

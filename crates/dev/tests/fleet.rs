//! A fleet: three simulated vk-cocoon nodes, the real kube-scheduler and node lifecycle
//! controller, and the operator. Sets that name no node are placed by the scheduler and live on
//! their main's node; a node whose provider goes silent is reported and comes back; a node
//! deleted with a set's VMs is reported, and only `onNodeLoss: recreate` places the set again.
//! A set migrates to another node (refused towards another CPU class); and under chaos — a
//! node's provider killed mid-suspend and mid-migration, the operator SIGKILLed at each step of
//! a migration — no VM is deleted before its snapshot is pushed, and everything finishes.

use std::time::Duration;

use cocoon_dev::devcluster::{DevCluster, DevClusterOptions};
use cocoon_dev::sim::{SimConfig, SimHandle, Simulator, parse_node, start_fleet};
use cocoon_dev::testing::eventually;
use cocoon_operator::api::{
    CocoonSet, CocoonSetPhase, CocoonSetSpec, CocoonSetStatus, MigrationPhase,
};
use cocoon_operator::config::OperatorConfig;
use cocoon_operator::contract;
use cocoon_operator::operator::{Operator, config_from_kubeconfig};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

const NS: &str = "fleet";
const DEADLINE: Duration = Duration::from_secs(90);

fn spec(extra: serde_json::Value) -> CocoonSetSpec {
    let mut value = json!({
        "agent": {"image": "ubuntu-dev-base", "replicas": 1},
        "toolboxes": [{"name": "box", "image": "chromium"}],
    });
    if let (Some(base), Some(more)) = (value.as_object_mut(), extra.as_object()) {
        base.extend(more.clone());
    }
    serde_json::from_value(value).expect("spec")
}

async fn wait_status(
    sets: &Api<CocoonSet>,
    name: &str,
    what: &str,
    ok: impl Fn(&CocoonSetStatus) -> bool,
) -> CocoonSetStatus {
    eventually(DEADLINE, || async {
        let set = sets.get(name).await.map_err(|e| e.to_string())?;
        let status = set.status.unwrap_or_default();
        if ok(&status) && status.observed_generation == set.metadata.generation {
            Ok(status)
        } else {
            Err(format!(
                "phase {:?}, node {:?}, message {:?}, conditions {:?}",
                status.phase,
                status.node,
                status.message,
                status.conditions.iter().map(|c| (&c.type_, &c.status)).collect::<Vec<_>>()
            ))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{name}: never {what}: {e}"))
}

fn running(s: &CocoonSetStatus) -> bool {
    s.phase == Some(CocoonSetPhase::Running)
}

fn node_lost(s: &CocoonSetStatus) -> Option<(String, String)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == "NodeLost" && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

async fn pods_of(pods: &Api<Pod>, set: &str) -> Vec<Pod> {
    let selector = format!("{}={set}", contract::LABEL_COCOONSET);
    pods.list(&ListParams::default().labels(&selector)).await.expect("list pods").items
}

async fn event_reasons(client: &kube::Client) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let list = events.list(&ListParams::default()).await.expect("list events");
    list.items.into_iter().filter_map(|e| e.reason).collect()
}

/// A control plane with kube-scheduler and the node lifecycle controller, the CRDs and the
/// test namespace.
async fn scheduling_cluster() -> (DevCluster, kube::Client) {
    let options = DevClusterOptions { scheduler: true, ..DevClusterOptions::default() };
    let cluster = DevCluster::start(options).await.expect("start the dev cluster");
    let client = cluster.client().await.expect("client");
    cocoon_dev::dev::install_crds(&client).await.expect("CRDs");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(NS.into()), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    namespaces.create(&PostParams::default(), &ns).await.expect("namespace");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    eventually(DEADLINE, || async { accounts.get("default").await.map(|_| ()) })
        .await
        .expect("the namespace's default ServiceAccount");
    (cluster, client)
}

/// A scheduling cluster and a local registry for a current-dialect fleet: `fleet` with the
/// dialect and the registry filled in, ready for `start_fleet`.
async fn registry_fleet(
    fleet: SimConfig,
) -> (cocoon_dev::registry::LocalRegistry, DevCluster, kube::Client, SimConfig) {
    let registry = cocoon_dev::registry::LocalRegistry::start().await.expect("registry");
    let (cluster, client) = scheduling_cluster().await;
    let fleet = SimConfig {
        dialect: contract::Dialect::Current,
        registry: Some(registry.address().to_string()),
        ..fleet
    };
    (registry, cluster, client, fleet)
}

/// The operator, in this process, with the fleet's registry.
async fn operator_with_registry(cluster: &DevCluster, registry: &str) -> Operator {
    let config = config_from_kubeconfig(cluster.kubeconfig_path()).await.expect("kube config");
    let settings =
        OperatorConfig { registry: Some(registry.to_string()), ..OperatorConfig::default() };
    Operator::start(config, &settings).await.expect("operator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_places_sets_and_reports_a_silent_node_and_a_deleted_one() {
    let (cluster, client) = scheduling_cluster().await;

    // Three seed nodes whose heartbeat is quick, so that the one that stops is missed soon.
    let fleet = SimConfig {
        node_name: "fleet".into(),
        nodes: 3,
        heartbeat_interval: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let mut sims: Vec<Option<SimHandle>> = start_fleet(client.clone(), fleet.clone())
        .await
        .expect("fleet")
        .into_iter()
        .map(Some)
        .collect();
    let config = config_from_kubeconfig(cluster.kubeconfig_path()).await.expect("kube config");
    let operator = Operator::start(config, &OperatorConfig::default()).await.expect("operator");

    let sets: Api<CocoonSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pp = PostParams::default();
    for name in ["a", "b"] {
        sets.create(&pp, &CocoonSet::new(name, spec(json!({})))).await.expect("create set");
    }
    // A set narrowed the way pods are: to the third node.
    let pinned = spec(json!({"nodeSelector": {"kubernetes.io/hostname": "fleet-3"}}));
    sets.create(&pp, &CocoonSet::new("c", pinned)).await.expect("create set");

    for name in ["a", "b", "c"] {
        let status = wait_status(&sets, name, "Running", running).await;
        let node = status.node.clone().expect("the set's node is recorded");
        assert!(node.starts_with("fleet-"), "{name} on {node}");
        for pod in pods_of(&pods, name).await {
            let bound = pod.spec.and_then(|s| s.node_name);
            assert_eq!(
                bound.as_deref(),
                Some(node.as_str()),
                "{name}: every VM on the main's node"
            );
        }
        for agent in status.agents.iter().chain(&status.warm_agents) {
            assert_eq!(agent.node.as_deref(), Some(node.as_str()), "status shows each VM's node");
        }
        assert_eq!(status.toolboxes[0].node.as_deref(), Some(node.as_str()));
        assert!(node_lost(&status).is_none(), "{name}: {status:?}");
    }
    let c = sets.get("c").await.expect("c").status.unwrap_or_default();
    assert_eq!(c.node.as_deref(), Some("fleet-3"), "the spec's nodeSelector narrows placement");

    // fleet-3's provider goes silent: the node lifecycle controller declares it NotReady. The
    // set says so, and keeps every pod (a VM pod is never evicted).
    let silent = sims[2].as_ref().expect("fleet-3");
    silent.stop_heartbeat();
    let status = wait_status(&sets, "c", "reporting fleet-3 NotReady", |s| {
        node_lost(s).is_some_and(|(reason, _)| reason == "NodeNotReady")
    })
    .await;
    let (_, message) = node_lost(&status).expect("condition");
    assert!(message.contains("node fleet-3"), "{message}");
    assert!(message.contains(&format!("vk-{NS}-c-0")), "names the VMs: {message}");
    assert_eq!(pods_of(&pods, "c").await.len(), 3, "no pod evicted or deleted");
    assert!(event_reasons(&client).await.contains(&"NodeLost".to_string()));
    // The provider comes back (a new process for the same node).
    sims[2].take().expect("fleet-3").shutdown().await;
    let back = SimConfig { node_name: "fleet-3".into(), nodes: 1, ..fleet.clone() };
    let revived = Simulator::start(client.clone(), back).await.expect("fleet-3 again");
    wait_status(&sets, "c", "clearing NodeLost", |s| running(s) && node_lost(s).is_none()).await;
    eventually(DEADLINE, || async {
        let reasons = event_reasons(&client).await;
        if reasons.contains(&"NodeRecovered".to_string()) {
            Ok(())
        } else {
            Err(format!("{reasons:?}"))
        }
    })
    .await
    .expect("a NodeRecovered Event");

    // fleet-3 is deleted from the cluster with set c's VMs on it: lost, reported, and nothing
    // is created in their place until the spec asks.
    revived.shutdown().await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.delete("fleet-3", &DeleteParams::default()).await.expect("delete the node");
    let status = wait_status(&sets, "c", "reporting fleet-3 gone", |s| {
        node_lost(s).is_some_and(|(reason, _)| reason == "NodeGone")
    })
    .await;
    assert_eq!(status.node.as_deref(), Some("fleet-3"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    for pod in pods_of(&pods, "c").await {
        assert_eq!(pod.spec.and_then(|s| s.node_name).as_deref(), Some("fleet-3"), "nothing new");
    }
    // onNodeLoss: recreate (and the selector lifted): the stranded pods go at once and the set
    // is placed again on a node that is there.
    let patch = json!({"spec": {"onNodeLoss": "recreate", "nodeSelector": null}});
    sets.patch("c", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch c");
    let status = wait_status(&sets, "c", "Running on another node", |s| {
        running(s) && s.node.as_deref().is_some_and(|n| n != "fleet-3")
    })
    .await;
    assert!(node_lost(&status).is_none(), "{status:?}");
    for pod in pods_of(&pods, "c").await {
        let bound = pod.spec.and_then(|s| s.node_name);
        assert_eq!(bound, status.node, "every VM of c on its new node");
    }

    operator.shutdown(Duration::from_secs(10)).await;
    for sim in sims.into_iter().flatten() {
        sim.shutdown().await;
    }
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_migrates_to_another_node_and_each_vm_restores_there() {
    // A mixed fleet, node by node as `--node` says it: two zen4 nodes of the default pool and
    // an icelake node of pool gpu.
    let shapes = ["cur-1", "cur-2", "cur-3,cpu-class=icelake,pool=gpu"];
    let (registry, cluster, client, fleet) = registry_fleet(SimConfig {
        fleet: shapes.iter().map(|s| parse_node(s).expect("node")).collect(),
        cpu_class: Some("zen4".into()),
        ..SimConfig::default()
    })
    .await;
    let sims = start_fleet(client.clone(), fleet).await.expect("fleet");
    let operator = operator_with_registry(&cluster, registry.address()).await;

    let sets: Api<CocoonSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let set = CocoonSet::new("m", spec(json!({"nodeName": "cur-1"})));
    sets.create(&PostParams::default(), &set).await.expect("create set");
    // A set narrowed to pool gpu lands on the one node of that pool, and the VMs made after
    // its main was placed ask for that node's CPU class.
    let gpu = spec(json!({"nodeSelector": {"cocoonstack.io/pool": "gpu"}}));
    sets.create(&PostParams::default(), &CocoonSet::new("g", gpu)).await.expect("create g");
    let placed = wait_status(&sets, "g", "Running", running).await;
    assert_eq!(placed.node.as_deref(), Some("cur-3"), "pool gpu is cur-3");
    for pod in
        pods_of(&pods, "g").await.into_iter().filter(|p| p.metadata.name.as_deref() != Some("g-0"))
    {
        let selector = pod.spec.and_then(|s| s.node_selector).unwrap_or_default();
        let class = selector.get("cocoonstack.io/snapshot-cpu-class").map(String::as_str);
        assert_eq!(class, Some("icelake"), "{:?}", pod.metadata.name);
    }

    let before = wait_status(&sets, "m", "Running on cur-1", running).await;
    assert_eq!(before.node.as_deref(), Some("cur-1"));
    let ids: Vec<Option<String>> = before.agents.iter().map(|a| a.vm_id.clone()).collect();

    // A node of another CPU class could not resume the VMs' memory: refused, nothing moves.
    let patch = json!({"spec": {"nodeName": "cur-3"}});
    sets.patch("m", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
    let refused = wait_status(&sets, "m", "refusing cur-3", |s| {
        s.message.as_deref().is_some_and(|m| m.contains("snapshot CPU class icelake"))
    })
    .await;
    assert_eq!(refused.migration, None, "{refused:?}");
    for pod in pods_of(&pods, "m").await {
        let bound = pod.spec.and_then(|s| s.node_name);
        assert_eq!(bound.as_deref(), Some("cur-1"), "{:?} stays", pod.metadata.name);
    }

    // kubectl cocoon migrate m --to cur-2 sets spec.nodeName.
    let patch = json!({"spec": {"nodeName": "cur-2"}});
    sets.patch("m", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("migrate");
    wait_status(&sets, "m", "Migrating", |s| s.phase == Some(CocoonSetPhase::Migrating)).await;
    let after = wait_status(&sets, "m", "Running on cur-2", |s| {
        running(s) && s.node.as_deref() == Some("cur-2") && s.migration.is_none()
    })
    .await;
    for pod in pods_of(&pods, "m").await {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        assert_eq!(bound.as_deref(), Some("cur-2"), "{name} moved");
        let annotations = pod.metadata.annotations.unwrap_or_default();
        if name != "m-box" {
            assert_eq!(
                annotations.get("vm.cocoonstack.io/restore-from-hibernate").map(String::as_str),
                Some("true"),
                "{name} restored from its snapshot instead of booting anew"
            );
        }
    }
    let new_ids: Vec<Option<String>> = after.agents.iter().map(|a| a.vm_id.clone()).collect();
    assert_ne!(ids, new_ids, "new VMs on the new node");
    let reasons = event_reasons(&client).await;
    for reason in ["Migrating", "Migrated"] {
        assert!(reasons.contains(&reason.to_string()), "{reason}: {reasons:?}");
    }

    operator.shutdown(Duration::from_secs(10)).await;
    for sim in sims {
        sim.shutdown().await;
    }
    drop(cluster);
}

/// A pod deletion the watch saw: which pod, and whether its VM was hibernated (its snapshot
/// pushed) when the deletion began.
#[derive(Clone, Debug)]
struct Deletion {
    name: String,
    uid: String,
    hibernated: bool,
}

/// Watches the namespace's pods and records each deletion once, as it begins.
fn watch_deletions(
    pods: Api<Pod>,
) -> (tokio::task::JoinHandle<()>, std::sync::Arc<std::sync::Mutex<Vec<Deletion>>>) {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Deletion>::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher::watcher(pods, watcher::Config::default()));
        while let Some(event) = stream.next().await {
            let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_none() {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if log.iter().any(|d| d.uid == uid) {
                continue;
            }
            let annotations = pod.metadata.annotations.clone().unwrap_or_default();
            let state = annotations.get("vm.cocoonstack.io/lifecycle-state").map(String::as_str);
            log.push(Deletion {
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid,
                hibernated: state == Some("hibernated"),
            });
        }
    });
    (task, seen)
}

/// The pods of a set that were deleted, as the watch saw them.
fn deleted_of(log: &std::sync::Mutex<Vec<Deletion>>, set: &str) -> Vec<Deletion> {
    let prefix = format!("{set}-");
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    log.iter().filter(|d| d.name.starts_with(&prefix)).cloned().collect()
}

/// Every agent of a migrated set was deleted once, and only once its VM was hibernated; the
/// toolbox once; every pod now runs on `node`, each agent restored from its snapshot.
async fn moved_whole(
    pods: &Api<Pod>,
    log: &std::sync::Mutex<Vec<Deletion>>,
    set: &str,
    node: &str,
    agents: u32,
) {
    let deleted = deleted_of(log, set);
    for slot in 0..agents {
        let name = format!("{set}-{slot}");
        let of: Vec<&Deletion> = deleted.iter().filter(|d| d.name == name).collect();
        assert_eq!(of.len(), 1, "{name} is deleted once, to move: {deleted:?}");
        assert!(of[0].hibernated, "{name} was deleted only once its VM was hibernated: {of:?}");
    }
    let boxes = deleted.iter().filter(|d| d.name == format!("{set}-box")).count();
    assert_eq!(boxes, 1, "the toolbox leaves once: {deleted:?}");
    let now = pods_of(pods, set).await;
    assert_eq!(now.len(), agents as usize + 1, "{set}: every VM is back");
    for pod in now {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        assert_eq!(bound.as_deref(), Some(node), "{name} runs on {node}");
        let annotations = pod.metadata.annotations.unwrap_or_default();
        let restored = annotations.get("vm.cocoonstack.io/restore-from-hibernate");
        if name != format!("{set}-box") {
            assert_eq!(restored.map(String::as_str), Some("true"), "{name} restored its snapshot");
        }
    }
}

/// Waits until the operator asked a pod of the set to hibernate.
async fn asked_to_hibernate(pods: &Api<Pod>, set: &str) {
    eventually(DEADLINE, || async {
        let asked = pods_of(pods, set).await.into_iter().any(|p| {
            let annotations = p.metadata.annotations.unwrap_or_default();
            annotations.get("vm.cocoonstack.io/hibernate").map(String::as_str) == Some("true")
        });
        if asked { Ok(()) } else { Err("no pod asked to hibernate yet") }
    })
    .await
    .unwrap_or_else(|e| panic!("{set}: {e}"));
}

/// Chaos with node loss: the provider of a set's node is killed (its process gone: no
/// heartbeat, nothing answered) while one set suspends and another migrates off that node.
/// Nothing is deleted while the node is silent, both sets report it, and when the provider
/// comes back the suspend finishes in place and the migration finishes on the other node with
/// every VM restored from its snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_suspend_and_mid_migration_loses_no_vm_and_both_finish_when_it_returns() {
    let (registry, cluster, client, fleet) = registry_fleet(SimConfig {
        node_name: "nk".into(),
        nodes: 2,
        heartbeat_interval: Duration::from_secs(2),
        // A window to kill the provider in, between the ask and the snapshot.
        hibernate_delay: Duration::from_secs(3),
        ..SimConfig::default()
    })
    .await;
    let mut sims = start_fleet(client.clone(), fleet.clone()).await.expect("fleet");
    let operator = operator_with_registry(&cluster, registry.address()).await;
    let sets: Api<CocoonSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let (watch, log) = watch_deletions(pods.clone());
    for name in ["s", "m"] {
        let set = CocoonSet::new(name, spec(json!({"nodeName": "nk-1"})));
        sets.create(&PostParams::default(), &set).await.expect("create set");
    }
    for name in ["s", "m"] {
        wait_status(&sets, name, "Running on nk-1", running).await;
    }
    let uids = |pods: Vec<Pod>| {
        let mut uids: Vec<String> = pods.into_iter().filter_map(|p| p.metadata.uid).collect();
        uids.sort();
        uids
    };
    let s_pods = uids(pods_of(&pods, "s").await);

    let suspend = json!({"spec": {"suspend": true}});
    sets.patch("s", &PatchParams::default(), &Patch::Merge(&suspend)).await.expect("suspend");
    let migrate = json!({"spec": {"nodeName": "nk-2"}});
    sets.patch("m", &PatchParams::default(), &Patch::Merge(&migrate)).await.expect("migrate");
    asked_to_hibernate(&pods, "s").await;
    asked_to_hibernate(&pods, "m").await;
    // nk-1's provider dies mid-hibernation: every task is cut, no heartbeat any more.
    drop(sims.remove(0));

    for name in ["s", "m"] {
        let status = wait_status(&sets, name, "reporting nk-1 NotReady", |s| {
            node_lost(s).is_some_and(|(reason, message)| {
                reason == "NodeNotReady" && message.contains("node nk-1")
            })
        })
        .await;
        assert_ne!(status.phase, Some(CocoonSetPhase::Suspended), "{name}: {status:?}");
    }
    let migrating = sets.get("m").await.expect("m").status.unwrap_or_default();
    let record = migrating.migration.expect("the migration is still on record");
    assert_eq!((record.from.as_str(), record.to.as_str()), ("nk-1", "nk-2"));
    assert!(deleted_of(&log, "s").is_empty(), "nothing of s deleted while nk-1 is silent");
    let early: Vec<Deletion> =
        deleted_of(&log, "m").into_iter().filter(|d| !d.hibernated && d.name != "m-box").collect();
    assert!(early.is_empty(), "no VM of m deleted before its snapshot: {early:?}");

    // The provider comes back: a new process for nk-1, which finds the pods as they were.
    let back = SimConfig { node_name: "nk-1".into(), nodes: 1, ..fleet.clone() };
    let revived = Simulator::start(client.clone(), back).await.expect("nk-1 again");
    let suspended = wait_status(&sets, "s", "Suspended with nk-1 back", |s| {
        s.phase == Some(CocoonSetPhase::Suspended) && node_lost(s).is_none()
    })
    .await;
    assert!(
        suspended.agents.iter().all(|a| a.phase == cocoon_operator::api::VmPhase::Hibernated),
        "{suspended:?}"
    );
    assert_eq!(uids(pods_of(&pods, "s").await), s_pods, "s suspended in place: the same pods");
    assert!(deleted_of(&log, "s").is_empty(), "nothing of s was ever deleted");
    wait_status(&sets, "m", "Running on nk-2", |s| {
        running(s) && s.node.as_deref() == Some("nk-2") && s.migration.is_none()
    })
    .await;
    moved_whole(&pods, &log, "m", "nk-2", 2).await;

    watch.abort();
    operator.shutdown(Duration::from_secs(10)).await;
    revived.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
    drop(cluster);
}

/// Chaos: the operator process is SIGKILLed mid-migration, once while the VMs hibernate on
/// the old node and once while they restore on the new one. Each new incarnation carries on
/// from `status.migration` and what the pods show: the set arrives whole, each VM moved once
/// and only after its snapshot was pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_at_each_step_of_a_migration_carries_on_from_the_record() {
    use cocoon_dev::chaos::operator::Operator as Process;
    let (registry, cluster, client, fleet) = registry_fleet(SimConfig {
        node_name: "ok".into(),
        nodes: 2,
        hibernate_delay: Duration::from_secs(2),
        create_delay: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await;
    let sims = start_fleet(client.clone(), fleet).await.expect("fleet");
    let binary = cocoon_dev::testing::workspace_binary("cocoon-operator");
    let flags = ["--registry", registry.address()];
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let start = || Process::start_with(&binary, &kubeconfig, &flags, None);
    let operator = start().await.expect("operator");
    let sets: Api<CocoonSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let (watch, log) = watch_deletions(pods.clone());
    let mut three = spec(json!({"nodeName": "ok-1"}));
    three.agent.replicas = 2;
    sets.create(&PostParams::default(), &CocoonSet::new("k", three)).await.expect("create");
    wait_status(&sets, "k", "Running on ok-1", running).await;

    let migrate = json!({"spec": {"nodeName": "ok-2"}});
    sets.patch("k", &PatchParams::default(), &Patch::Merge(&migrate)).await.expect("migrate");
    let phase = |wanted: MigrationPhase| {
        move |s: &CocoonSetStatus| s.migration.as_ref().is_some_and(|m| m.phase == wanted)
    };
    wait_status(&sets, "k", "Hibernating", phase(MigrationPhase::Hibernating)).await;
    asked_to_hibernate(&pods, "k").await;
    operator.kill().await;
    let operator = start().await.expect("operator, second incarnation");
    wait_status(&sets, "k", "Restoring", phase(MigrationPhase::Restoring)).await;
    operator.kill().await;
    // Some time with no operator at all: the provider finishes what it was asked.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let operator = start().await.expect("operator, third incarnation");
    wait_status(&sets, "k", "Running on ok-2", |s| {
        running(s) && s.node.as_deref() == Some("ok-2") && s.migration.is_none()
    })
    .await;
    moved_whole(&pods, &log, "k", "ok-2", 3).await;
    eventually(DEADLINE, || async {
        let reasons = event_reasons(&client).await;
        if reasons.contains(&"Migrated".to_string()) { Ok(()) } else { Err(format!("{reasons:?}")) }
    })
    .await
    .expect("a Migrated Event from the incarnation that finished it");

    watch.abort();
    operator.kill().await;
    for sim in sims {
        sim.shutdown().await;
    }
    drop(cluster);
}

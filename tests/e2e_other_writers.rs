//! Correct when others write, end to end: users editing labels and ownerReferences,
//! `--cascade=orphan`, admission (Pod Security `restricted`, a ResourceQuota), and the real
//! Deployment and StatefulSet controllers around a hibernated pod.

mod common;
mod e2e;

use cocoon_operator::contract::dialect::seed;
use std::collections::BTreeMap;

use cocoon_operator::api::{
    CocoonSet, CocoonSetPhase, Hibernation, HibernationAction, HibernationPhase,
};
use cocoon_operator::contract;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, ResourceQuota};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Api, ResourceExt};

use common::eventually;
use e2e::{DEADLINE, Env, wait_hib, wait_set};

async fn uid(api: &Api<Pod>, name: &str) -> String {
    api.get(name).await.unwrap().uid().unwrap()
}

async fn merge(api: &Api<Pod>, name: &str, patch: serde_json::Value) {
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_or_removed_labels_never_touch_a_vm_and_are_put_back() {
    let env = Env::new("ow-labels").await;
    let sets = env.ns.api::<CocoonSet>();
    let pods = env.ns.api::<Pod>();
    env.create_set("lab", env.set_spec(2)).await;
    wait_set(&sets, "lab", CocoonSetPhase::Running).await;
    let before = [uid(&pods, "lab-0").await, uid(&pods, "lab-1").await, uid(&pods, "lab-2").await];

    // A user moves sub-agent 1 to "slot 9" and removes the set label of sub-agent 2.
    merge(&pods, "lab-1", serde_json::json!({"metadata": {"labels": {contract::LABEL_SLOT: "9"}}}))
        .await;
    merge(
        &pods,
        "lab-2",
        serde_json::json!({"metadata": {"labels": {contract::LABEL_COCOONSET: null}}}),
    )
    .await;
    eventually(DEADLINE, || async {
        let one = pods.get("lab-1").await.map_err(|e| e.to_string())?;
        let two = pods.get("lab-2").await.map_err(|e| e.to_string())?;
        let slot = one.labels().get(contract::LABEL_SLOT).cloned();
        let set = two.labels().get(contract::LABEL_COCOONSET).cloned();
        if slot.as_deref() == Some("1") && set.as_deref() == Some("lab") {
            Ok(())
        } else {
            Err(format!("slot {slot:?}, set {set:?}"))
        }
    })
    .await
    .expect("the operator puts its labels back");
    let after = [uid(&pods, "lab-0").await, uid(&pods, "lab-1").await, uid(&pods, "lab-2").await];
    assert_eq!(before, after, "no VM was deleted or recreated");
    let status = wait_set(&sets, "lab", CocoonSetPhase::Running).await;
    assert_eq!(status.ready_agents, 3);
    assert_eq!(status.message, None, "no name conflict: {:?}", status.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascade_orphan_keeps_every_pod_and_removes_the_set_promptly() {
    let env = Env::new("ow-orphan").await;
    let sets = env.ns.api::<CocoonSet>();
    let pods = env.ns.api::<Pod>();
    env.create_set("keep", env.set_spec(1)).await;
    wait_set(&sets, "keep", CocoonSetPhase::Running).await;
    let before = [uid(&pods, "keep-0").await, uid(&pods, "keep-1").await];
    let orphan =
        DeleteParams { propagation_policy: Some(PropagationPolicy::Orphan), ..Default::default() };
    sets.delete("keep", &orphan).await.expect("delete with cascade=orphan");
    eventually(DEADLINE, || async {
        match sets.get_opt("keep").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(s) => Err(format!("still there: {:?}", s.metadata.finalizers)),
        }
    })
    .await
    .expect("the set goes");
    let after = [uid(&pods, "keep-0").await, uid(&pods, "keep-1").await];
    assert_eq!(before, after, "every pod the user asked to keep is kept");
    for name in ["keep-0", "keep-1"] {
        let pod = pods.get(name).await.unwrap();
        assert!(pod.metadata.deletion_timestamp.is_none(), "{name} is not being deleted");
        assert!(pod.owner_references().is_empty(), "{name} is orphaned");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_lost_its_owner_reference_never_blocks_teardown() {
    let env = Env::new("ow-ownerref").await;
    let sets = env.ns.api::<CocoonSet>();
    let pods = env.ns.api::<Pod>();
    env.create_set("own", env.set_spec(1)).await;
    wait_set(&sets, "own", CocoonSetPhase::Running).await;
    let taken = uid(&pods, "own-1").await;
    merge(&pods, "own-1", serde_json::json!({"metadata": {"ownerReferences": null}})).await;
    // The set no longer counts it; its name is taken by a foreign pod.
    eventually(DEADLINE, || async {
        let status = sets.get("own").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let message = status.message.unwrap_or_default();
        if message.contains("own-1 exists but is not owned by this set") {
            Ok(())
        } else {
            Err(message)
        }
    })
    .await
    .expect("the taken name is reported");
    sets.delete("own", &DeleteParams::default()).await.expect("delete the set");
    eventually(DEADLINE, || async {
        match sets.get_opt("own").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(s) => Err(format!("{:?}", s.status.and_then(|s| s.message))),
        }
    })
    .await
    .expect("teardown completes");
    assert_eq!(uid(&pods, "own-1").await, taken, "the pod that left the set is left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_runs_in_a_namespace_that_enforces_pod_security_restricted() {
    let env = Env::new("ow-restricted").await;
    let namespaces: Api<Namespace> = Api::all(env.ns.client.clone());
    let label = serde_json::json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }}});
    namespaces
        .patch(&env.ns.name, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("enforce restricted");
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("strict", env.set_spec(1)).await;
    let status = wait_set(&sets, "strict", CocoonSetPhase::Running).await;
    assert_eq!(status.ready_agents, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_that_refuses_pods_is_reported_and_the_set_recovers_when_it_is_raised() {
    let env = Env::new("ow-quota").await;
    let quotas = env.ns.api::<ResourceQuota>();
    let quota = |pods: &str| {
        serde_json::from_value::<ResourceQuota>(serde_json::json!({
            "metadata": {"name": "vms"},
            "spec": {"hard": {"pods": pods}}
        }))
        .unwrap()
    };
    quotas.create(&PostParams::default(), &quota("1")).await.expect("create quota");
    // The quota controller is not running: the API server's admission counts by itself once
    // the quota has a status; give it one.
    let status = serde_json::json!({"status": {"hard": {"pods": "1"}, "used": {"pods": "0"}}});
    quotas
        .patch_status("vms", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("quota status");
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("capped", env.set_spec(2)).await;
    let refused = eventually(DEADLINE, || async {
        let s = sets.get("capped").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let message = s.message.clone().unwrap_or_default();
        if message.contains("cannot create pod") && message.contains("quota") {
            Ok(s)
        } else {
            Err(format!("{:?} {message}", s.phase))
        }
    })
    .await
    .expect("the refusal is in status");
    assert_eq!(refused.phase, Some(CocoonSetPhase::Failed));
    let reasons = common::event_reasons(&env.ns.name, Some("capped"), true).await;
    assert!(reasons.contains("CreateRejected"), "{reasons}");
    // Raised: the set recovers on its own (the refused create is retried with backoff).
    let raised = serde_json::json!({"spec": {"hard": {"pods": "10"}},
        "status": {"hard": {"pods": "10"}, "used": {"pods": "1"}}});
    quotas.patch("vms", &PatchParams::default(), &Patch::Merge(&raised)).await.unwrap();
    quotas.patch_status("vms", &PatchParams::default(), &Patch::Merge(&raised)).await.unwrap();
    let status = wait_set(&sets, "capped", CocoonSetPhase::Running).await;
    assert_eq!(status.ready_agents, 3);
}

fn workload_template(env: &Env, app: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "nodeName": env.node,
            "terminationGracePeriodSeconds": 5,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "vm", "image": "ubuntu-dev-base"}]
        }
    })
}

async fn running_pods(api: &Api<Pod>, app: &str, count: usize) -> Vec<Pod> {
    eventually(DEADLINE, || async {
        let list = api
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .map_err(|e| e.to_string())?;
        let live: Vec<Pod> =
            list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let ready = live
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if live.len() == count && ready == count {
            Ok(live)
        } else {
            Err(format!("{} pods, {ready} ready", live.len()))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{app}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployments_pod_hibernates_in_place_and_a_scale_down_removes_it_first() {
    let env = Env::new("ow-deploy").await;
    let deployments = env.ns.api::<Deployment>();
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "agents"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "agents"}},
            "template": workload_template(&env, "agents")
        }
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &deployment).await.expect("create Deployment");
    let pods = env.ns.api::<Pod>();
    let live = running_pods(&pods, "agents", 3).await;
    let target = live[0].name_any();
    let target_uid = live[0].uid().unwrap();
    env.create_hibernation("hib-dep", &target, HibernationAction::Hibernate).await;
    let hibs = env.ns.api::<Hibernation>();
    wait_hib(&hibs, "hib-dep", HibernationPhase::Hibernated).await;
    // The ReplicaSet does not replace a hibernated pod: it is still Running (NotReady). Once
    // the ReplicaSet's status counts it NotReady, its controller has synced since the pod
    // changed: a replacement, had it wanted one, would be in the list by then.
    let replica_sets: Api<ReplicaSet> = env.ns.api();
    eventually(DEADLINE, || async {
        let list = replica_sets.list(&ListParams::default().labels("app=agents")).await;
        let rs =
            list.map_err(|e| e.to_string())?.items.into_iter().next().ok_or("no ReplicaSet")?;
        let status = rs.status.unwrap_or_default();
        let current = status.observed_generation == rs.metadata.generation;
        match (current, status.replicas, status.ready_replicas.unwrap_or(0)) {
            (true, 3, 2) => Ok(()),
            other => Err(format!("ReplicaSet status (current, replicas, ready): {other:?}")),
        }
    })
    .await
    .expect("the ReplicaSet saw the hibernated pod go NotReady");
    let all: Vec<Pod> = pods.list(&ListParams::default().labels("app=agents")).await.unwrap().items;
    assert_eq!(
        all.len(),
        3,
        "no replacement pod: {:?}",
        all.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );
    assert_eq!(uid(&pods, &target).await, target_uid, "the same pod object");
    let cost = pods
        .get(&target)
        .await
        .unwrap()
        .annotations()
        .get(contract::ANN_POD_DELETION_COST)
        .cloned();
    assert_eq!(cost.as_deref(), Some("1000"));

    // Scale down by one: the ReplicaSet ranks NotReady pods first, whatever their deletion cost.
    let scale = serde_json::json!({"spec": {"replicas": 2}});
    deployments.patch("agents", &PatchParams::default(), &Patch::Merge(&scale)).await.unwrap();
    eventually(DEADLINE, || async {
        match pods.get_opt(&target).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(p) if p.metadata.deletion_timestamp.is_some() => Ok(()),
            Some(_) => Err("the hibernated pod is still kept".to_string()),
        }
    })
    .await
    .expect("a scale-down removes the hibernated (NotReady) pod first");
    // The Hibernation says so and keeps its snapshot reference while the entry exists.
    eventually(DEADLINE, || async {
        let status =
            hibs.get("hib-dep").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let message = status.message.clone().unwrap_or_default();
        if message.contains("was removed") {
            Ok(())
        } else {
            Err(format!("{:?} {message}", status.phase))
        }
    })
    .await
    .expect("the Hibernation reports its pod was removed");
    let reasons = common::event_reasons(&env.ns.name, Some("hib-dep"), true).await;
    assert!(reasons.contains("PodRemoved"), "{reasons}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulsets_pod_hibernates_and_wakes_as_the_same_pod() {
    let env = Env::new("ow-sts").await;
    let sts: StatefulSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bots"},
        "spec": {
            "replicas": 1,
            "serviceName": "bots",
            "selector": {"matchLabels": {"app": "bots"}},
            "template": workload_template(&env, "bots")
        }
    }))
    .unwrap();
    env.ns
        .api::<StatefulSet>()
        .create(&PostParams::default(), &sts)
        .await
        .expect("create StatefulSet");
    let pods = env.ns.api::<Pod>();
    running_pods(&pods, "bots", 1).await;
    let original = uid(&pods, "bots-0").await;
    let hibs = env.ns.api::<Hibernation>();
    env.create_hibernation("hib-sts", "bots-0", HibernationAction::Hibernate).await;
    wait_hib(&hibs, "hib-sts", HibernationPhase::Hibernated).await;
    let wake = serde_json::json!({"spec": {"action": "wake"}});
    hibs.patch("hib-sts", &PatchParams::default(), &Patch::Merge(&wake)).await.unwrap();
    wait_hib(&hibs, "hib-sts", HibernationPhase::Active).await;
    assert_eq!(uid(&pods, "bots-0").await, original, "never replaced");
    let pod = pods.get("bots-0").await.unwrap();
    let annotations: BTreeMap<String, String> = pod.annotations().clone();
    assert!(!annotations.contains_key(seed::KEYS.hibernate), "{annotations:?}");
}

async fn gone(sets: &Api<CocoonSet>, name: &str) {
    eventually(DEADLINE, || async {
        match sets.get_opt(name).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(s) => Err(format!(
                "finalizers {:?}, deleting {:?}, status {:?}",
                s.metadata.finalizers,
                s.metadata.deletion_timestamp,
                s.status.map(|s| (
                    s.phase,
                    s.message,
                    s.agents.into_iter().map(|a| (a.pod_name, a.phase)).collect::<Vec<_>>()
                ))
            )),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{name} is never deleted: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_set_is_deleted_with_its_hibernated_pods() {
    let env = Env::new("ow-del-suspended").await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("sleepy", env.set_spec(1)).await;
    wait_set(&sets, "sleepy", CocoonSetPhase::Running).await;
    let patch = serde_json::json!({"spec": {"suspend": true}});
    sets.patch("sleepy", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_set(&sets, "sleepy", CocoonSetPhase::Suspended).await;
    sets.delete("sleepy", &DeleteParams::default()).await.expect("delete");
    gone(&sets, "sleepy").await;
    let left = env.ns.api::<Pod>().list(&ListParams::default()).await.unwrap().items;
    assert!(left.is_empty(), "{:?}", left.iter().map(|p| p.name_any()).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_deleted_with_its_namespace_goes() {
    let env = Env::new("ow-del-ns").await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("doomed", env.set_spec(1)).await;
    wait_set(&sets, "doomed", CocoonSetPhase::Running).await;
    let namespaces: Api<Namespace> = Api::all(env.ns.client.clone());
    namespaces.delete(&env.ns.name, &DeleteParams::default()).await.expect("delete namespace");
    gone(&sets, "doomed").await;
    eventually(DEADLINE, || async {
        match namespaces.get_opt(&env.ns.name).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(n) => Err(format!("{:?}", n.status.and_then(|s| s.conditions))),
        }
    })
    .await
    .expect("the namespace goes too");
}

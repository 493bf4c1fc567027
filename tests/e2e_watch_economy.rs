//! Pods named by Hibernations are seen through one label watch, whatever their number: a watch
//! on one pod name runs only while a named pod is not labelled (it does not exist yet, or a user
//! removed the label, which is put back). Its own binary: it reads the operator-wide gauge of
//! open pod-name watches, which no other test may move meanwhile.

mod common;
mod e2e;

use cocoon_operator::api::{Hibernation, HibernationAction, HibernationPhase};
use cocoon_operator::contract;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use common::eventually;
use e2e::{DEADLINE, Env, operator, wait_hib};

fn open_name_watches() -> i64 {
    operator().probe.metrics().pod_name_watches.get()
}

async fn wait_name_watches(n: i64) {
    eventually(DEADLINE, || async {
        let open = open_name_watches();
        if open == n { Ok(()) } else { Err(format!("{open} pod-name watches open, want {n}")) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

async fn wait_labelled(pods: &Api<Pod>, name: &str, labelled: bool) {
    eventually(DEADLINE, || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let has = pod.labels().get(contract::LABEL_HIBERNATION_TARGET).map(String::as_str)
            == Some(contract::HIBERNATION_TARGET_VALUE);
        if has == labelled { Ok(()) } else { Err(format!("{name}: target label {has}")) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_hibernations_share_one_label_watch_and_name_watches_only_wait_for_missing_pods() {
    let env = Env::new("watch-economy").await;
    let pods = env.ns.api::<Pod>();
    let hibs = env.ns.api::<Hibernation>();
    const N: usize = 6;
    for i in 0..N {
        env.create_pod(&format!("bot-{i}")).await;
    }
    for i in 0..N {
        let action =
            if i % 2 == 0 { HibernationAction::Hibernate } else { HibernationAction::Wake };
        env.create_hibernation(&format!("h-{i}"), &format!("bot-{i}"), action).await;
    }
    // One more for a pod that does not exist yet: the only name watch left open.
    env.create_hibernation("early", "late-pod", HibernationAction::Hibernate).await;
    for i in 0..N {
        let phase =
            if i % 2 == 0 { HibernationPhase::Hibernated } else { HibernationPhase::Active };
        wait_hib(&hibs, &format!("h-{i}"), phase).await;
        // Also a pod that needed no round (wake of an active pod) is labelled.
        wait_labelled(&pods, &format!("bot-{i}"), true).await;
    }
    wait_hib(&hibs, "early", HibernationPhase::Failed).await;
    wait_name_watches(1).await;

    // The late pod appears: its Hibernation labels it and the name watch closes.
    env.create_pod("late-pod").await;
    wait_hib(&hibs, "early", HibernationPhase::Hibernated).await;
    wait_labelled(&pods, "late-pod", true).await;
    wait_name_watches(0).await;

    // A user removes the label: it is put back, and the pod is still followed (a wake
    // completes).
    pods.patch(
        "bot-0",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({
            "metadata": {"labels": {contract::LABEL_HIBERNATION_TARGET: null}}
        })),
    )
    .await
    .unwrap();
    wait_labelled(&pods, "bot-0", true).await;
    wait_name_watches(0).await;
    hibs.patch(
        "h-0",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"action": "wake"}})),
    )
    .await
    .unwrap();
    wait_hib(&hibs, "h-0", HibernationPhase::Active).await;

    // The last Hibernation naming a pod takes the label away when it is deleted.
    hibs.delete("h-1", &DeleteParams::default()).await.unwrap();
    eventually(DEADLINE, || async {
        match hibs.get_opt("h-1").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("h-1 still exists".to_string()),
        }
    })
    .await
    .unwrap();
    wait_labelled(&pods, "bot-1", false).await;
    wait_name_watches(0).await;
}

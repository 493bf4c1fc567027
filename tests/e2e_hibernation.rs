//! Hibernation end to end: the seed workflow with the real kubectl, and the races of SPEC §3.4.

mod common;
mod e2e;

use std::time::Duration;

use cocoon_operator::api::{Hibernation, HibernationAction, HibernationPhase};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use common::{eventually, kubectl, kubectl_with_stdin};
use e2e::{DEADLINE, Env, wait_hib};

async fn wait_pod<F: Fn(&Pod) -> bool>(api: &Api<Pod>, name: &str, what: &str, check: F) -> Pod {
    eventually(DEADLINE, || async {
        let pod = api.get(name).await.map_err(|e| e.to_string())?;
        if check(&pod) { Ok(pod) } else { Err(format!("{name} is not {what}")) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn ann(pod: &Pod, key: &str) -> Option<String> {
    pod.annotations().get(key).cloned()
}

async fn snapshot_entries(env: &Env) -> std::collections::BTreeMap<String, String> {
    env.ns
        .api::<ConfigMap>()
        .get_opt("cocoon-vm-snapshots")
        .await
        .unwrap()
        .and_then(|c| c.data)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_workflow_works_verbatim_with_kubectl() {
    let env = Env::new("hib-seed").await;
    let pods = env.ns.api::<Pod>();
    env.create_pod("sre-agent-xxx").await;
    wait_pod(&pods, "sre-agent-xxx", "ready", ready).await;
    let ns = &env.ns.name;
    let manifest = format!(
        "apiVersion: cocoon.cis/v1alpha1\nkind: Hibernation\nmetadata: {{name: hibernate-bot-1, namespace: {ns}}}\nspec: {{podName: sre-agent-xxx, action: hibernate}}\n"
    );
    kubectl_with_stdin(&["apply", "-f", "-"], &manifest)
        .await
        .expect_success("apply the Hibernation");
    kubectl(&[
        "wait",
        "hib/hibernate-bot-1",
        "-n",
        ns,
        "--for=jsonpath={.status.phase}=Hibernated",
        "--timeout=90s",
    ])
    .await
    .expect_success("wait for Hibernated");
    let warnings = common::event_reasons(ns, Some("hibernate-bot-1"), true).await;
    assert_eq!(warnings.trim(), "", "an existing pod is never reported missing");
    let pod = pods.get("sre-agent-xxx").await.unwrap();
    assert_eq!(ann(&pod, "cocoon.cis/hibernate").as_deref(), Some("true"));
    assert_eq!(ann(&pod, "cocoon.cis/hibernated-by").as_deref(), Some("hibernate-bot-1"));
    assert_eq!(ann(&pod, "controller.kubernetes.io/pod-deletion-cost").as_deref(), Some("1000"));
    let vm = format!("vk-{ns}-sre-agent-xxx");
    assert_eq!(snapshot_entries(&env).await.get(&vm), Some(&format!("{vm}-suspend")));
    let status = env.ns.api::<Hibernation>().get("hibernate-bot-1").await.unwrap().status.unwrap();
    assert_eq!(status.snapshot_ref, Some(format!("{vm}-suspend")));
    assert_eq!(status.vm_name.as_deref(), Some(vm.as_str()));

    kubectl(&[
        "patch",
        "hibernation",
        "hibernate-bot-1",
        "-n",
        ns,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"action":"wake"}}"#,
    ])
    .await
    .expect_success("patch to wake");
    kubectl(&[
        "wait",
        "hib/hibernate-bot-1",
        "-n",
        ns,
        "--for=jsonpath={.status.phase}=Active",
        "--timeout=90s",
    ])
    .await
    .expect_success("wait for Active");
    let pod = pods.get("sre-agent-xxx").await.unwrap();
    assert!(ready(&pod));
    assert_eq!(ann(&pod, "cocoon.cis/hibernate"), None);
    assert_eq!(ann(&pod, "cocoon.cis/hibernated-by"), None);
    assert_eq!(
        ann(&pod, "controller.kubernetes.io/pod-deletion-cost"),
        None,
        "the previous (absent) cost is restored"
    );
    assert!(!snapshot_entries(&env).await.contains_key(&vm));
    let get = kubectl(&["get", "hib", "-n", ns]).await.expect_success("kubectl get hib");
    assert!(
        get.stdout.contains("POD")
            && get.stdout.contains("sre-agent-xxx")
            && get.stdout.contains("Active"),
        "{}",
        get.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pod_fails_clearly_and_recovers_when_the_pod_appears() {
    let env = Env::new("hib-missing").await;
    let hibs = env.ns.api::<Hibernation>();
    env.create_hibernation("early", "late-pod", HibernationAction::Hibernate).await;
    let status = wait_hib(&hibs, "early", HibernationPhase::Failed).await;
    assert!(status.message.unwrap_or_default().contains("pod late-pod not found"));
    env.create_pod("late-pod").await;
    wait_hib(&hibs, "early", HibernationPhase::Hibernated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reverse_desire_mid_round_finishes_the_round_first() {
    let env = Env::with_sim("hib-reverse", |c| c.hibernate_delay = Duration::from_secs(3)).await;
    let pods = env.ns.api::<Pod>();
    let hibs = env.ns.api::<Hibernation>();
    env.create_pod("flip").await;
    wait_pod(&pods, "flip", "ready", ready).await;
    env.create_hibernation("flipper", "flip", HibernationAction::Hibernate).await;
    wait_hib(&hibs, "flipper", HibernationPhase::Hibernating).await;
    // Status is written before the request (the round's start must be on record first).
    wait_pod(&pods, "flip", "asked to hibernate", |p| {
        ann(p, "cocoon.cis/hibernate").as_deref() == Some("true")
    })
    .await;
    let wake = serde_json::json!({"spec": {"action": "wake"}});
    hibs.patch("flipper", &PatchParams::default(), &Patch::Merge(&wake)).await.unwrap();
    // The hibernate round is still in flight: the request must stay on the pod.
    let pod = pods.get("flip").await.unwrap();
    assert_eq!(ann(&pod, "cocoon.cis/hibernate").as_deref(), Some("true"));
    let status = wait_hib(&hibs, "flipper", HibernationPhase::Active).await;
    assert_eq!(status.action, Some(HibernationAction::Wake));
    let pod = pods.get("flip").await.unwrap();
    assert!(ready(&pod));
    let vm = format!("vk-{}-flip", env.ns.name);
    assert!(
        !snapshot_entries(&env).await.contains_key(&vm),
        "the wake removed the snapshot the hibernate made"
    );
    let events = common::event_reasons(&env.ns.name, Some("flipper"), false).await;
    assert!(
        events.contains("Hibernated"),
        "the hibernate round completed before the wake: {}",
        events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_hibernations_on_one_pod_the_oldest_wins() {
    let env = Env::new("hib-two").await;
    let hibs = env.ns.api::<Hibernation>();
    env.create_pod("shared").await;
    env.create_hibernation("first", "shared", HibernationAction::Hibernate).await;
    wait_hib(&hibs, "first", HibernationPhase::Hibernated).await;
    env.create_hibernation("second", "shared", HibernationAction::Wake).await;
    let status = wait_hib(&hibs, "second", HibernationPhase::Failed).await;
    assert!(status.message.unwrap_or_default().contains("Hibernation first"));
    let pod = env.ns.api::<Pod>().get("shared").await.unwrap();
    assert_eq!(ann(&pod, "cocoon.cis/hibernated-by").as_deref(), Some("first"));
    assert_eq!(
        ann(&pod, "cocoon.cis/hibernate").as_deref(),
        Some("true"),
        "the loser never woke the pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_that_never_completes_times_out_into_failed_with_an_event() {
    let env = Env::with_sim("hib-timeout", |c| c.never_hibernate = vec!["stuck".into()]).await;
    let hibs = env.ns.api::<Hibernation>();
    env.create_pod("stuck").await;
    wait_pod(&env.ns.api(), "stuck", "ready", ready).await;
    env.create_hibernation("patience", "stuck", HibernationAction::Hibernate).await;
    let status = wait_hib(&hibs, "patience", HibernationPhase::Failed).await;
    assert!(status.message.unwrap_or_default().contains("did not complete within 12s"));
    let events = common::event_reasons(&env.ns.name, Some("patience"), true).await;
    assert!(events.contains("Timeout"), "{}", events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_hibernation_leaves_the_pod_but_removes_the_marker() {
    let env = Env::new("hib-delete").await;
    let hibs = env.ns.api::<Hibernation>();
    let pods = env.ns.api::<Pod>();
    env.create_pod("kept").await;
    env.create_hibernation("holder", "kept", HibernationAction::Hibernate).await;
    wait_hib(&hibs, "holder", HibernationPhase::Hibernated).await;
    hibs.delete("holder", &DeleteParams::default()).await.unwrap();
    let pod =
        wait_pod(&pods, "kept", "unmarked", |p| ann(p, "cocoon.cis/hibernated-by").is_none()).await;
    assert_eq!(
        ann(&pod, "cocoon.cis/hibernate").as_deref(),
        Some("true"),
        "the pod stays as it is"
    );
    eventually(DEADLINE, || async {
        match hibs.get_opt("holder").await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|o| o.map(|h| h.finalizers().to_vec())))),
        }
    })
    .await
    .expect("the finalizer is released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_does_not_fight_a_suspended_set_over_its_pod() {
    use cocoon_operator::api::{CocoonSet, CocoonSetPhase};
    // The VM takes a while to wake, so the set's suspend always comes back first.
    let env = Env::with_sim("hib-vs-set", |c| c.wake_delay = Duration::from_secs(3)).await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("sleepy", env.set_spec(1)).await;
    let phase_is = |want: CocoonSetPhase| {
        let sets = sets.clone();
        move || {
            let sets = sets.clone();
            async move {
                let st =
                    sets.get("sleepy").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
                if st.phase == Some(want) { Ok(()) } else { Err(format!("{:?}", st.phase)) }
            }
        }
    };
    eventually(DEADLINE, phase_is(CocoonSetPhase::Running)).await.expect("running");
    let suspend = serde_json::json!({"spec": {"suspend": true}});
    sets.patch("sleepy", &PatchParams::default(), &Patch::Merge(&suspend)).await.unwrap();
    eventually(DEADLINE, || async {
        let st = sets.get("sleepy").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if st.phase == Some(CocoonSetPhase::Suspended) {
            Ok(())
        } else {
            Err(format!("{:?}", st.phase))
        }
    })
    .await
    .expect("suspended");
    let hibs = env.ns.api::<Hibernation>();
    env.create_hibernation("alarm", "sleepy-1", HibernationAction::Wake).await;
    // The wake round removes the request once; the suspended set puts it back; the round must
    // not write it away again (that would flip the VM back and forth), so it times out.
    let status = wait_hib(&hibs, "alarm", HibernationPhase::Failed).await;
    let message = status.message.unwrap_or_default();
    assert!(message.contains("another writer"), "{message}");
    let pod = env.ns.api::<Pod>().get("sleepy-1").await.unwrap();
    assert_eq!(
        ann(&pod, "cocoon.cis/hibernate").as_deref(),
        Some("true"),
        "the set's suspend holds"
    );
}

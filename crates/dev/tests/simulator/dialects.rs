//! The simulator in the cocoonstack dialects (PROVIDERS.md §3.2, §3.3): what v0.2 and current
//! do with a pod, as the real providers do it.

use std::time::Duration;

use cocoon_core::contract::{Dialect, LifecycleState};
use cocoon_core::plan::PodView;
use cocoon_dev::sim::SimConfig;
use cocoon_dev::sim::tags::Tags;
use cocoon_dev::testing::TestNamespace;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};

use super::pods::*;

fn v02(vm: &str) -> Vec<(&'static str, String)> {
    vec![
        ("vm.cocoonstack.io/name", vm.to_string()),
        ("cocoonset.cocoonstack.io/managed", "true".into()),
        ("cocoonset.cocoonstack.io/mode", "clone".into()),
        ("cocoonset.cocoonstack.io/image", IMAGE.into()),
    ]
}

fn with(
    mut base: Vec<(&'static str, String)>,
    more: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    base.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    base
}

async fn create_in(ns: &TestNamespace, name: &str, annotations: &[(&'static str, String)]) {
    let pairs: Vec<(&str, &str)> = annotations.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut pod = vm_pod(name, &node_of(ns), &pairs, &[]);
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers[0].name = "agent".into();
    }
    create(ns, pod).await;
}

async fn annotate(ns: &TestNamespace, name: &str, patch: serde_json::Value) {
    ns.api::<Pod>()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch pod");
}

fn view(pod: &Pod) -> PodView {
    PodView::from_pod(pod)
}

async fn start_in(ns: &TestNamespace, dialect: Dialect, tags: &Tags) -> cocoon_dev::sim::SimHandle {
    let config = SimConfig { node_name: node_of(ns), dialect, ..SimConfig::default() };
    cocoon_dev::sim::Simulator::start_with(ns.client.clone(), config, tags.clone())
        .await
        .expect("start the simulator")
}

#[tokio::test]
async fn v02_runs_hibernates_into_its_registry_and_wakes_without_an_address_annotation() {
    let ns = TestNamespace::new("sim-v02").await;
    let tags = Tags::default();
    let _sim = start_in(&ns, Dialect::V02, &tags).await;
    let vm = format!("vk-{}-demo-0", ns.name);
    create_in(&ns, "demo-0", &v02(&vm)).await;
    let pod = wait_for(&ns, "demo-0", "serving", |p| view(p).is_serving()).await;
    let status = pod.status.clone().unwrap();
    assert_eq!(status.container_statuses.unwrap()[0].name, "agent");
    assert!(status.host_ip.is_none(), "v0.2 reports no hostIP");
    assert!(annotation(&pod, "vm.cocoonstack.io/ip").is_some());

    annotate(
        &ns,
        "demo-0",
        serde_json::json!({"metadata": {"annotations": {"vm.cocoonstack.io/hibernate": "true"}}}),
    )
    .await;
    let pod = wait_for(&ns, "demo-0", "hibernated", |p| view(p).reports_hibernated()).await;
    assert_eq!(phase(&pod), Some("Pending"));
    assert!(annotation(&pod, "vm.cocoonstack.io/id").is_none(), "the id goes with the VM");
    assert_eq!(tags.held(), vec![format!("{vm}:hibernate")]);

    annotate(
        &ns,
        "demo-0",
        serde_json::json!({"metadata": {"annotations": {"vm.cocoonstack.io/hibernate": null}}}),
    )
    .await;
    let pod = wait_for(&ns, "demo-0", "serving again", |p| view(p).is_serving()).await;
    assert!(annotation(&pod, "vm.cocoonstack.io/ip").is_none(), "quirk 16: no ip after a wake");
    assert!(pod_ip(&pod).is_some(), "the address is in the pod status");
    assert_eq!(tags.held(), vec![format!("{vm}:hibernate")], "the provider never deletes it");
}

#[tokio::test]
async fn v02_can_delete_a_pod_it_has_just_hibernated_with_the_tag_already_pushed() {
    let ns = TestNamespace::new("sim-v02-vanish").await;
    let tags = Tags::default();
    let config = SimConfig {
        node_name: node_of(&ns),
        dialect: Dialect::V02,
        vanish_after_hibernate: vec![format!("{}/demo-1", ns.name)],
        ..SimConfig::default()
    };
    let _sim = cocoon_dev::sim::Simulator::start_with(ns.client.clone(), config, tags.clone())
        .await
        .expect("start the simulator");
    let vm = format!("vk-{}-demo-1", ns.name);
    create_in(&ns, "demo-1", &v02(&vm)).await;
    wait_for(&ns, "demo-1", "serving", |p| view(p).is_serving()).await;
    annotate(
        &ns,
        "demo-1",
        serde_json::json!({"metadata": {"annotations": {"vm.cocoonstack.io/hibernate": "true"}}}),
    )
    .await;
    wait_gone(&ns, "demo-1").await;
    assert_eq!(tags.held(), vec![format!("{vm}:hibernate")], "pushed before the pod went");

    // Once only: the pod recreated from its tag hibernates and stays.
    let mut again = v02(&vm);
    again.retain(|(key, _)| *key != "cocoonset.cocoonstack.io/image");
    again.push(("cocoonset.cocoonstack.io/image", format!("{vm}:hibernate")));
    create_in(&ns, "demo-1", &again).await;
    wait_for(&ns, "demo-1", "serving again", |p| view(p).is_serving()).await;
    annotate(
        &ns,
        "demo-1",
        serde_json::json!({"metadata": {"annotations": {"vm.cocoonstack.io/hibernate": "true"}}}),
    )
    .await;
    wait_for(&ns, "demo-1", "hibernated", |p| view(p).reports_hibernated()).await;
}

#[tokio::test]
async fn v02_refuses_a_pod_without_its_name_and_a_fork_of_nothing_in_its_own_words() {
    let ns = TestNamespace::new("sim-v02-refuse").await;
    let _sim = start_in(&ns, Dialect::V02, &Tags::default()).await;
    create_in(&ns, "seedish", &[("cocoon.cis/vm-name", "vk-x-0".to_string())]).await;
    let pod = wait_for(&ns, "seedish", "refused", |p| reason(p) == Some("ProviderFailed")).await;
    let words = pod.status.clone().unwrap().message.unwrap_or_default();
    assert!(words.contains("missing vm.cocoonstack.io/name annotation"), "{words}");
    assert_eq!(phase(&pod), Some("Pending"), "not terminal: the provider retries");

    let vm = format!("vk-{}-demo-1", ns.name);
    create_in(&ns, "demo-1", &with(v02(&vm), &[("vm.cocoonstack.io/fork-from", "vk-nowhere-0")]))
        .await;
    let pod = wait_for(&ns, "demo-1", "refused", |p| reason(p) == Some("ProviderFailed")).await;
    let words = pod.status.unwrap().message.unwrap_or_default();
    assert!(words.contains("fork source vk-nowhere-0 not found"), "no image fallback: {words}");
}

#[tokio::test]
async fn current_publishes_each_state_for_the_stamp_it_saw_and_restores_a_marked_pod() {
    let ns = TestNamespace::new("sim-current").await;
    let tags = Tags::default();
    let _sim = start_in(&ns, Dialect::Current, &tags).await;
    let vm = format!("vk-{}-demo-0", ns.name);
    let pod_keys = with(v02(&vm), &[("cocoonset.cocoonstack.io/generation", "1")]);
    create_in(&ns, "demo-0", &pod_keys).await;
    let pod = wait_for(&ns, "demo-0", "ready", |p| view(p).is_serving()).await;
    let lifecycle = view(&pod).rare.lifecycle.clone().unwrap();
    assert_eq!((lifecycle.state, lifecycle.observed), (LifecycleState::Ready, Some(1)));

    annotate(
        &ns,
        "demo-0",
        serde_json::json!({"metadata": {"annotations": {
        "vm.cocoonstack.io/hibernate": "true", "cocoonset.cocoonstack.io/generation": "2"}}}),
    )
    .await;
    let pod =
        wait_for(&ns, "demo-0", "hibernated for stamp 2", |p| view(p).reports_hibernated()).await;
    assert_eq!(view(&pod).rare.lifecycle.clone().unwrap().observed, Some(2));

    // The pod is deleted (a seat release) and recreated marked to restore.
    ns.api::<Pod>().delete("demo-0", &Default::default()).await.expect("delete");
    wait_gone(&ns, "demo-0").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let marked = with(
        v02(&vm),
        &[
            ("cocoonset.cocoonstack.io/generation", "1"),
            ("vm.cocoonstack.io/restore-from-hibernate", "true"),
        ],
    );
    create_in(&ns, "demo-0", &marked).await;
    wait_for(&ns, "demo-0", "restored and ready", |p| view(p).is_serving()).await;

    // A pod marked to restore a snapshot that is not there fails, in the provider's words.
    let other = format!("vk-{}-demo-9", ns.name);
    let missing = with(
        v02(&other),
        &[
            ("cocoonset.cocoonstack.io/generation", "1"),
            ("vm.cocoonstack.io/restore-from-hibernate", "true"),
        ],
    );
    create_in(&ns, "demo-9", &missing).await;
    // The provider retries the create (publishing `creating` again), so wait for the state
    // itself, not for the pod's ProviderFailed reason, which outlives it between attempts.
    let failed = |p: &Pod| {
        view(p).rare.lifecycle.as_ref().is_some_and(|l| l.state == LifecycleState::Failed)
    };
    let pod = wait_for(&ns, "demo-9", "failed", failed).await;
    assert!(view(&pod).provider_failure().is_some());
    let lifecycle = view(&pod).rare.lifecycle.clone().unwrap();
    assert_eq!(lifecycle.state, LifecycleState::Failed);
    assert!(lifecycle.message.unwrap_or_default().contains("not found"));
}

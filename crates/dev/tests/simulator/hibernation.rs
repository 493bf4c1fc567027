//! Hibernation through the simulator: snapshot entries, hibernated status, wake, the "never
//! completes" fault, and a simulator restart in the middle of it all.

use cocoon_core::contract::dialect::seed;
use cocoon_dev::sim::SimConfig;
use cocoon_operator::contract;
use k8s_openapi::api::core::v1::Pod;

use super::pods::*;
use cocoon_dev::testing::{TestNamespace, kubectl};

#[tokio::test]
async fn hibernating_writes_the_snapshot_entry_then_reports_the_pod_hibernated() {
    let ns = TestNamespace::new("sim-hibernate").await;
    let sim = start(&ns, SimConfig::default()).await;
    create(&ns, vm_pod("bot", sim.node_name(), &[(seed::KEYS.vm_name, "vk-bot")], &[])).await;
    wait_running(&ns, "bot").await;

    let hibernate = format!("{}={}", seed::KEYS.hibernate, contract::HIBERNATE_TRUE);
    kubectl(&["annotate", "pod", "bot", "-n", &ns.name, &hibernate])
        .await
        .expect_success("annotate");
    let pod = wait_hibernated(&ns, "bot").await;

    // The entry is written before the status, so it is there as soon as the pod looks hibernated.
    let entries = snapshot_entries(&ns).await;
    assert_eq!(entries.get("vk-bot").map(String::as_str), Some("vk-bot-suspend"), "{entries:?}");
    assert_eq!(phase(&pod), Some("Running"), "the pod object lives on");
    assert_eq!(condition(&pod, "Ready"), Some("False"));
    assert_eq!(condition(&pod, "ContainersReady"), Some("False"));
    assert_eq!(pod_ip(&pod), None, "a hibernated VM has no address");
    assert_eq!(vm_waiting_reason(&pod).as_deref(), Some(contract::REASON_HIBERNATED));
}

#[tokio::test]
async fn vms_hibernating_at_once_share_one_snapshot_configmap() {
    let ns = TestNamespace::new("sim-hibernate-many").await;
    let sim = start(&ns, SimConfig::default()).await;
    let names = ["bot-a", "bot-b", "bot-c", "bot-d"];
    for name in names {
        let vm = format!("vk-{name}");
        create(&ns, vm_pod(name, sim.node_name(), &[(seed::KEYS.vm_name, &vm)], &[])).await;
    }
    for name in names {
        wait_running(&ns, name).await;
    }
    // Annotated back to back, the first writers race to create the ConfigMap.
    for name in names {
        annotate(&ns, name, seed::KEYS.hibernate, Some(contract::HIBERNATE_TRUE)).await;
    }
    for name in names {
        wait_hibernated(&ns, name).await;
    }
    let entries = snapshot_entries(&ns).await;
    for name in names {
        let vm = format!("vk-{name}");
        assert_eq!(entries.get(&vm), Some(&format!("{vm}-suspend")), "{entries:?}");
    }
}

#[tokio::test]
async fn waking_removes_the_snapshot_entry_and_boots_a_new_vm() {
    let ns = TestNamespace::new("sim-wake").await;
    let sim = start(&ns, SimConfig::default()).await;
    create(&ns, vm_pod("bot", sim.node_name(), &[(seed::KEYS.vm_name, "vk-bot")], &[])).await;
    let before = wait_running(&ns, "bot").await;
    annotate(&ns, "bot", seed::KEYS.hibernate, Some(contract::HIBERNATE_TRUE)).await;
    wait_hibernated(&ns, "bot").await;

    let unhibernate = format!("{}-", seed::KEYS.hibernate);
    kubectl(&["annotate", "pod", "bot", "-n", &ns.name, &unhibernate])
        .await
        .expect_success("annotate");
    let old_id = annotation(&before, seed::KEYS.vm_id).map(str::to_string);
    let after = wait_for(&ns, "bot", "Running with a new VM id", |p| {
        is_running_ready(p) && annotation(p, seed::KEYS.vm_id).map(str::to_string) != old_id
    })
    .await;
    assert!(vm_running(&after));
    assert_ne!(pod_ip(&after), pod_ip(&before), "a woken VM gets a new address");
    assert_eq!(annotation(&after, seed::KEYS.ip), pod_ip(&after));
    assert!(!snapshot_entries(&ns).await.contains_key("vk-bot"), "the entry is gone once awake");
}

#[tokio::test]
async fn a_pod_chosen_to_never_complete_hibernate_stays_running_without_a_snapshot() {
    let ns = TestNamespace::new("sim-stuck").await;
    let config = SimConfig { never_hibernate: vec!["stuck".to_string()], ..SimConfig::default() };
    let sim = start(&ns, config).await;
    create(&ns, vm_pod("stuck", sim.node_name(), &[(seed::KEYS.vm_name, "vk-stuck")], &[])).await;
    create(&ns, vm_pod("free", sim.node_name(), &[(seed::KEYS.vm_name, "vk-free")], &[])).await;
    wait_running(&ns, "stuck").await;
    wait_running(&ns, "free").await;

    annotate(&ns, "stuck", seed::KEYS.hibernate, Some(contract::HIBERNATE_TRUE)).await;
    annotate(&ns, "free", seed::KEYS.hibernate, Some(contract::HIBERNATE_TRUE)).await;
    wait_hibernated(&ns, "free").await;
    // The Event proves the simulator saw the request and chose to hold it.
    wait_event(&ns, "stuck", "HibernateHeld").await;
    let stuck = ns.api::<Pod>().get("stuck").await.expect("pod exists");
    assert!(is_running_ready(&stuck), "{}", describe(&stuck));
    assert!(!snapshot_entries(&ns).await.contains_key("vk-stuck"));
}

#[tokio::test]
async fn a_restarted_simulator_keeps_its_vms_and_can_wake_a_hibernated_pod() {
    let ns = TestNamespace::new("sim-restart").await;
    let first = start(&ns, SimConfig::default()).await;
    let node = first.node_name().to_string();
    create(&ns, vm_pod("awake", &node, &[(seed::KEYS.vm_name, "vk-awake")], &[])).await;
    create(&ns, vm_pod("sleeper", &node, &[(seed::KEYS.vm_name, "vk-sleeper")], &[])).await;
    let awake = wait_running(&ns, "awake").await;
    let sleeper = wait_running(&ns, "sleeper").await;
    annotate(&ns, "sleeper", seed::KEYS.hibernate, Some(contract::HIBERNATE_TRUE)).await;
    let hibernated = wait_hibernated(&ns, "sleeper").await;
    first.shutdown().await;

    let second = start(&ns, SimConfig::default()).await;
    create(&ns, vm_pod("newcomer", &node, &[], &[])).await;
    let newcomer = wait_running(&ns, "newcomer").await;
    // The new simulator has processed its first listing; it must not have rewritten either pod,
    // and the rebuilt table keeps the running VM's address from being handed out twice.
    let api = ns.api::<Pod>();
    let awake_now = api.get("awake").await.expect("pod exists");
    let sleeper_now = api.get("sleeper").await.expect("pod exists");
    assert_eq!(
        awake_now.metadata.resource_version,
        awake.metadata.resource_version,
        "{}",
        describe(&awake_now)
    );
    assert_eq!(
        sleeper_now.metadata.resource_version,
        hibernated.metadata.resource_version,
        "{}",
        describe(&sleeper_now)
    );
    assert_ne!(pod_ip(&newcomer), pod_ip(&awake));

    annotate(&ns, "sleeper", seed::KEYS.hibernate, None).await;
    let old_id = annotation(&sleeper, seed::KEYS.vm_id).map(str::to_string);
    wait_for(&ns, "sleeper", "awake with a new VM id", |p| {
        is_running_ready(p) && annotation(p, seed::KEYS.vm_id).map(str::to_string) != old_id
    })
    .await;
    wait_entry(&ns, "vk-sleeper", false).await;
    second.shutdown().await;
}

//! The vk-cocoon simulator against a real API server: every behaviour of the contract (SPEC §4)
//! as a user of `kubectl` would observe it. Each test serves a node of its own.

#[path = "simulator/pods.rs"]
mod pods;

#[path = "simulator/hibernation.rs"]
mod hibernation;

#[path = "simulator/dialects.rs"]
mod dialects;

use cocoon_core::contract::Dialect;
use cocoon_core::contract::dialect::seed;
use cocoon_dev::sim::SimConfig;
use cocoon_dev::testing::TestNamespace;
use cocoon_operator::contract;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use pods::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_simulator_registers_a_ready_node_of_its_dialect_and_renews_its_lease() {
    let ns = TestNamespace::new("sim-node").await;
    let sim = start(&ns, SimConfig::default()).await;
    let node = Api::<Node>::all(ns.client.clone()).get(sim.node_name()).await.expect("node exists");

    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(contract::NODE_LABEL_TYPE).map(String::as_str), Some("virtual-kubelet"));
    assert_eq!(labels.get(contract::NODE_LABEL_ROLE).map(String::as_str), Some("agent"));
    assert_eq!(
        labels.get(contract::NODE_LABEL_HOSTNAME).map(String::as_str),
        Some(sim.node_name())
    );
    // The seed's node: the framework's labels, no provider taint, no version (PROVIDERS.md §1).
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    assert!(!taints.iter().any(|t| t.key == contract::TAINT_VIRTUAL_KUBELET), "{taints:?}");
    assert_eq!(cocoon_core::plan::NodeSeen::of(&node).info.dialect, Dialect::Seed);
    let conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    assert!(conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"), "{conditions:?}");
    let pods = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("pods").cloned());
    // The server canonicalises quantities ("10000" reads back as "10k").
    let count = |q: &str| match q.strip_suffix('k') {
        Some(thousands) => thousands.parse::<u64>().ok().map(|n| n * 1000),
        None => q.parse::<u64>().ok(),
    };
    let room = pods.as_ref().and_then(|q| count(&q.0));
    assert!(room.is_some_and(|n| n >= 1000), "room for many pods: {pods:?}");

    let lease = Api::<Lease>::namespaced(ns.client.clone(), "kube-node-lease")
        .get(sim.node_name())
        .await
        .expect("heartbeat lease exists");
    let spec = lease.spec.unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some(sim.node_name()));
    assert!(spec.renew_time.is_some());
}

#[tokio::test]
async fn a_pod_bound_to_the_node_becomes_running_with_a_vm_id_ip_and_name() {
    let ns = TestNamespace::new("sim-create").await;
    let sim = start(&ns, SimConfig::default()).await;
    create(&ns, vm_pod("plain", sim.node_name(), &[], &[])).await;
    create(&ns, vm_pod("named", sim.node_name(), &[(seed::KEYS.vm_name, "vk-custom")], &[])).await;

    let plain = wait_running(&ns, "plain").await;
    let ip = annotation(&plain, seed::KEYS.ip).expect("ip annotation");
    assert!(ip.starts_with("10.88."), "VM address {ip} is in 10.88.0.0/16");
    assert_eq!(pod_ip(&plain), Some(ip), "podIP is the VM address");
    assert_eq!(
        annotation(&plain, seed::KEYS.vm_name),
        Some(format!("vk-{}-plain", ns.name).as_str())
    );
    assert_eq!(annotation(&plain, seed::SNAPSHOT_FROM), Some(IMAGE));
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(condition(&plain, kind), Some("True"), "{kind}: {}", describe(&plain));
    }
    assert!(vm_running(&plain), "container vm is running: {}", describe(&plain));
    let status = plain.status.clone().unwrap_or_default();
    assert!(status.host_ip.is_some() && status.start_time.is_some());

    let named = wait_running(&ns, "named").await;
    assert_eq!(
        annotation(&named, seed::KEYS.vm_name),
        Some("vk-custom"),
        "the operator's VM name is kept"
    );
    assert_ne!(annotation(&named, seed::KEYS.vm_id), annotation(&plain, seed::KEYS.vm_id));
    assert_ne!(pod_ip(&named), pod_ip(&plain));
}

#[tokio::test]
async fn delays_and_extra_latency_apply_before_a_pod_runs() {
    let ns = TestNamespace::new("sim-delays").await;
    let config = SimConfig {
        create_delay: Duration::from_millis(1000),
        extra_latency: Duration::from_millis(500),
        ..SimConfig::default()
    };
    let sim = start(&ns, config).await;
    let began = Instant::now();
    for name in ["slow-a", "slow-b", "slow-c"] {
        create(&ns, vm_pod(name, sim.node_name(), &[], &[])).await;
    }
    for name in ["slow-a", "slow-b", "slow-c"] {
        wait_running(&ns, name).await;
    }
    let took = began.elapsed();
    // A lower bound only: a boot can never be faster than its delays. (Whether pods boot side
    // by side is not asserted by wall-clock time, which a loaded CI machine stretches.)
    assert!(took >= Duration::from_millis(1500), "a boot takes create delay + latency: {took:?}");
}

#[tokio::test]
async fn pods_bound_to_another_node_are_left_untouched() {
    let ns = TestNamespace::new("sim-other-node").await;
    let sim = start(&ns, SimConfig::default()).await;
    create(&ns, vm_pod("elsewhere", "some-other-node", &[], &[])).await;
    create(&ns, vm_pod("mine", sim.node_name(), &[], &[])).await;
    // Once a pod created after it is served, the simulator has seen the other pod's node too.
    wait_running(&ns, "mine").await;

    let other = ns.api::<Pod>().get("elsewhere").await.expect("pod exists");
    assert_eq!(annotation(&other, seed::KEYS.vm_id), None, "{}", describe(&other));
    assert_ne!(phase(&other), Some("Running"));
    assert_eq!(pod_ip(&other), None);
}

#[tokio::test]
async fn a_sub_agent_forks_from_a_running_vm_and_boots_from_the_image_otherwise() {
    let ns = TestNamespace::new("sim-fork").await;
    let sim = start(&ns, SimConfig::default()).await;
    create(&ns, vm_pod("main", sim.node_name(), &[(seed::KEYS.vm_name, "vk-main")], &[])).await;
    wait_running(&ns, "main").await;

    create(&ns, vm_pod("sub", sim.node_name(), &[(seed::KEYS.fork_from, "vk-main")], &[])).await;
    create(&ns, vm_pod("orphan", sim.node_name(), &[(seed::KEYS.fork_from, "vk-missing")], &[]))
        .await;
    let sub = wait_running(&ns, "sub").await;
    let orphan = wait_running(&ns, "orphan").await;
    // The bare names vk-cocoon writes: the fork snapshot of the new VM, or the image.
    let sub_fork = contract::fork_snapshot(&contract::pod_vm_name(&ns.name, "sub"));
    assert_eq!(annotation(&sub, seed::SNAPSHOT_FROM), Some(sub_fork.as_str()));
    assert_eq!(annotation(&orphan, seed::SNAPSHOT_FROM), Some(IMAGE));
}

#[tokio::test]
async fn in_clone_mode_a_snapshot_entry_wins_over_fork_and_image_and_only_a_main_clears_it() {
    let ns = TestNamespace::new("sim-restore").await;
    let sim = start(&ns, SimConfig::default()).await;
    let clone = (seed::KEYS.mode, "clone");
    create(
        &ns,
        vm_pod(
            "set-0",
            sim.node_name(),
            &[(seed::KEYS.vm_name, "vk-set-0"), clone],
            &[(contract::LABEL_SLOT, "0")],
        ),
    )
    .await;
    wait_running(&ns, "set-0").await;
    // Entries left by earlier lives of both VMs (a delete with policy always, or a release).
    for (vm, pod, slot) in [("vk-set-0", "set-0", "0"), ("vk-set-1", "set-1", "1")] {
        if pod == "set-0" {
            delete(&ns, pod).await;
            wait_gone(&ns, pod).await;
        } else {
            let annotations =
                [(seed::KEYS.vm_name, vm), (seed::KEYS.snapshot_policy, "always"), clone];
            create(
                &ns,
                vm_pod(pod, sim.node_name(), &annotations, &[(contract::LABEL_SLOT, slot)]),
            )
            .await;
            wait_running(&ns, pod).await;
            delete(&ns, pod).await;
            wait_gone(&ns, pod).await;
        }
        wait_entry(&ns, vm, true).await;
    }
    // The main comes back: restored, and its entry is gone.
    create(
        &ns,
        vm_pod(
            "set-0",
            sim.node_name(),
            &[(seed::KEYS.vm_name, "vk-set-0"), clone],
            &[(contract::LABEL_SLOT, "0")],
        ),
    )
    .await;
    let main = wait_running(&ns, "set-0").await;
    assert_eq!(annotation(&main, seed::SNAPSHOT_FROM), Some("vk-set-0-suspend"));
    wait_entry(&ns, "vk-set-0", false).await;
    // The sub-agent: restore beats fork-from (the main runs), and its entry stays.
    let annotations = [(seed::KEYS.vm_name, "vk-set-1"), (seed::KEYS.fork_from, "vk-set-0"), clone];
    create(&ns, vm_pod("set-1", sim.node_name(), &annotations, &[(contract::LABEL_SLOT, "1")]))
        .await;
    let sub = wait_running(&ns, "set-1").await;
    assert_eq!(annotation(&sub, seed::SNAPSHOT_FROM), Some("vk-set-1-suspend"));
    assert!(snapshot_entries(&ns).await.contains_key("vk-set-1"), "a sub-agent's entry is kept");
    // Without an entry a clone forks; without clone mode an entry is ignored.
    let annotations = [(seed::KEYS.vm_name, "vk-set-2"), (seed::KEYS.fork_from, "vk-set-0"), clone];
    create(&ns, vm_pod("set-2", sim.node_name(), &annotations, &[(contract::LABEL_SLOT, "2")]))
        .await;
    let fresh = wait_running(&ns, "set-2").await;
    assert_eq!(annotation(&fresh, seed::SNAPSHOT_FROM), Some("vk-set-2-fork"));
    let annotations = [(seed::KEYS.vm_name, "vk-set-1"), (seed::KEYS.mode, "run")];
    create(&ns, vm_pod("runner", sim.node_name(), &annotations, &[])).await;
    let runner = wait_running(&ns, "runner").await;
    assert_eq!(annotation(&runner, seed::SNAPSHOT_FROM), Some(IMAGE));
}

#[tokio::test]
async fn a_provider_that_refuses_to_hibernate_main_vms_keeps_them_running_and_says_so() {
    let ns = TestNamespace::new("sim-refuse").await;
    let sim = start(&ns, SimConfig { refuse_main_hibernate: true, ..SimConfig::default() }).await;
    for pod in ["grp-0", "grp-1"] {
        create(&ns, vm_pod(pod, sim.node_name(), &[(seed::KEYS.hibernate, "true")], &[])).await;
    }
    wait_hibernated(&ns, "grp-1").await;
    let message = wait_event(&ns, "grp-0", "HibernateRefused").await;
    assert!(message.contains("refuses"), "{message}");
    let main = wait_running(&ns, "grp-0").await;
    assert!(vm_running(&main), "the main VM keeps running");
}

#[tokio::test]
async fn a_static_pod_adopts_the_vm_its_annotations_name() {
    let ns = TestNamespace::new("sim-static").await;
    let sim = start(&ns, SimConfig::default()).await;
    let annotations = [
        (seed::KEYS.mode, "static"),
        (seed::KEYS.ip, "192.168.7.20"),
        (seed::KEYS.vm_id, "win-42"),
    ];
    create(&ns, vm_pod("windows", sim.node_name(), &annotations, &[])).await;

    let pod = wait_running(&ns, "windows").await;
    assert_eq!(pod_ip(&pod), Some("192.168.7.20"));
    assert_eq!(annotation(&pod, seed::KEYS.vm_id), Some("win-42"));
    assert_eq!(
        annotation(&pod, seed::KEYS.vm_name),
        Some("windows"),
        "static VMs are named after the pod"
    );
}

#[tokio::test]
async fn a_static_pod_without_an_ip_stays_pending_with_provider_failed() {
    let ns = TestNamespace::new("sim-static-noip").await;
    let sim = start(&ns, SimConfig::default()).await;
    create(&ns, vm_pod("windows", sim.node_name(), &[(seed::KEYS.mode, "static")], &[])).await;

    let pod = wait_for(&ns, "windows", "ProviderFailed", |p| {
        reason(p) == Some(contract::REASON_PROVIDER_FAILED)
    })
    .await;
    assert_eq!(phase(&pod), Some("Pending"));
    let message = pod.status.and_then(|s| s.message).unwrap_or_default();
    assert!(message.contains(seed::KEYS.ip), "message names the missing annotation: {message:?}");
}

#[tokio::test]
async fn deleting_a_pod_with_policy_always_keeps_a_snapshot_and_removes_the_pod() {
    let ns = TestNamespace::new("sim-delete-always").await;
    let sim = start(&ns, SimConfig::default()).await;
    let annotations = [(seed::KEYS.vm_name, "vk-a"), (seed::KEYS.snapshot_policy, "always")];
    create(&ns, vm_pod("a", sim.node_name(), &annotations, &[(contract::LABEL_SLOT, "1")])).await;
    wait_running(&ns, "a").await;

    delete(&ns, "a").await;
    wait_gone(&ns, "a").await;
    assert_eq!(snapshot_entries(&ns).await.get("vk-a").map(String::as_str), Some("vk-a-suspend"));
}

#[tokio::test]
async fn deleting_with_policy_main_only_snapshots_the_main_but_not_a_sub_agent() {
    let ns = TestNamespace::new("sim-delete-main-only").await;
    let sim = start(&ns, SimConfig::default()).await;
    let policy = (seed::KEYS.snapshot_policy, "main-only");
    create(
        &ns,
        vm_pod(
            "set-0",
            sim.node_name(),
            &[(seed::KEYS.vm_name, "vk-set-0"), policy],
            &[(contract::LABEL_SLOT, "0")],
        ),
    )
    .await;
    create(
        &ns,
        vm_pod(
            "set-1",
            sim.node_name(),
            &[(seed::KEYS.vm_name, "vk-set-1"), policy],
            &[(contract::LABEL_SLOT, "1")],
        ),
    )
    .await;
    wait_running(&ns, "set-0").await;
    wait_running(&ns, "set-1").await;

    delete(&ns, "set-1").await;
    delete(&ns, "set-0").await;
    wait_gone(&ns, "set-1").await;
    wait_gone(&ns, "set-0").await;
    let entries = snapshot_entries(&ns).await;
    assert!(entries.contains_key("vk-set-0"), "the main is snapshotted: {entries:?}");
    assert!(!entries.contains_key("vk-set-1"), "a sub-agent is not: {entries:?}");
}

#[tokio::test]
async fn deleting_with_policy_never_takes_no_snapshot() {
    let ns = TestNamespace::new("sim-delete-never").await;
    let sim = start(&ns, SimConfig::default()).await;
    let annotations = [(seed::KEYS.vm_name, "vk-n"), (seed::KEYS.snapshot_policy, "never")];
    create(&ns, vm_pod("n", sim.node_name(), &annotations, &[(contract::LABEL_SLOT, "0")])).await;
    wait_running(&ns, "n").await;

    delete(&ns, "n").await;
    wait_gone(&ns, "n").await;
    assert!(!snapshot_entries(&ns).await.contains_key("vk-n"));
}

#[tokio::test]
async fn a_create_failure_rate_of_one_fails_every_pod_with_provider_failed() {
    let ns = TestNamespace::new("sim-fail").await;
    let sim = start(&ns, SimConfig { create_failure_rate: 1.0, ..SimConfig::default() }).await;
    create(&ns, vm_pod("doomed", sim.node_name(), &[], &[])).await;

    let pod = wait_for(&ns, "doomed", "Failed", |p| phase(p) == Some("Failed")).await;
    assert_eq!(reason(&pod), Some(contract::REASON_PROVIDER_FAILED));
    assert_eq!(annotation(&pod, seed::KEYS.vm_id), None);
    // A failed pod can still be deleted: the simulator finalises it.
    delete(&ns, "doomed").await;
    wait_gone(&ns, "doomed").await;
}

#[tokio::test]
async fn a_pod_with_garbage_annotations_gets_a_warning_event_and_still_runs() {
    let ns = TestNamespace::new("sim-garbage").await;
    let sim = start(&ns, SimConfig::default()).await;
    let garbage = [(seed::KEYS.hibernate, "maybe"), (seed::KEYS.snapshot_policy, "sometimes")];
    create(&ns, vm_pod("odd", sim.node_name(), &garbage, &[])).await;

    let pod = wait_running(&ns, "odd").await;
    assert!(!is_hibernated(&pod));
    let note = wait_event(&ns, "odd", "InvalidAnnotation").await;
    assert!(note.contains(contract::PREFIX), "the event names the annotation: {note:?}");
}

#[tokio::test]
async fn a_cocoonstack_node_carries_its_pool_taint_version_and_class() {
    let ns = TestNamespace::new("sim-node-v02").await;
    let config = SimConfig {
        node_name: format!("{}-vk", ns.name),
        dialect: Dialect::Current,
        cpu_class: Some("zen4".into()),
        ..SimConfig::default()
    };
    let sim = start(&ns, config).await;
    let node = Api::<Node>::all(ns.client.clone()).get(sim.node_name()).await.expect("node exists");
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("cocoonstack.io/pool").map(String::as_str), Some("default"));
    assert_eq!(labels.get("cocoonstack.io/snapshot-cpu-class").map(String::as_str), Some("zen4"));
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    assert!(
        taints.iter().any(|t| t.key == contract::TAINT_VIRTUAL_KUBELET
            && t.value.as_deref() == Some("cocoon")
            && t.effect == "NoSchedule"),
        "provider taint missing: {taints:?}"
    );
    let seen = cocoon_core::plan::NodeSeen::of(&node);
    assert_eq!(seen.info.dialect, Dialect::Current);
    assert_eq!(seen.info.cpu_class.as_deref(), Some("zen4"));
}

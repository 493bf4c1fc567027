//! The provider dialects end to end: the operator (with a local OCI registry as `--registry`)
//! and the simulator speaking vk-cocoon v0.2 or current on a node of its own. The operator
//! reads each node's dialect from the node; nothing in these tests tells it.

mod common;
mod e2e;

use cocoon_operator::api::{CocoonSet, CocoonSetPhase, HibernationAction, HibernationPhase};
use cocoon_operator::contract::Dialect;
use cocoon_operator::registry::{Registry, RegistryConfig};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};

use common::eventually;
use e2e::{DEADLINE, Env, wait_hib, wait_set};

fn registry() -> Registry {
    let address = e2e::operator_with_registry().registry.clone().expect("a registry");
    Registry::new(&RegistryConfig { address, auth_file: None }).expect("registry client")
}

async fn suspend(env: &Env, name: &str, suspend: bool) {
    let patch = serde_json::json!({"spec": {"suspend": suspend}});
    env.ns
        .api::<CocoonSet>()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch suspend");
}

/// Waits until `<vm>:hibernate` is in the registry (`present`) or not.
async fn wait_tag(registry: &Registry, vm: &str, tag: &str, present: bool) {
    eventually(DEADLINE, || async {
        match registry.exists(vm, tag).await {
            Ok(found) if found == present => Ok(()),
            Ok(found) => Err(format!("{vm}:{tag} present = {found}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{vm}:{tag} never became present = {present}: {e}"));
}

fn ann(pod: &Pod, key: &str) -> Option<String> {
    pod.annotations().get(key).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_on_a_v02_node_speaks_its_keys_and_suspends_its_main_too() {
    let env = Env::with_dialect("dl-v02", Dialect::V02).await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("demo", env.set_spec(1)).await;
    let status = wait_set(&sets, "demo", CocoonSetPhase::Running).await;
    let main = env.ns.api::<Pod>().get("demo-0").await.unwrap();
    let vm = format!("vk-{}-demo-0", env.ns.name);
    assert_eq!(ann(&main, "vm.cocoonstack.io/name").as_deref(), Some(vm.as_str()));
    assert!(!main.annotations().keys().any(|k| k.starts_with("cocoon.cis/vm")), "no seed key");
    let spec = main.spec.clone().unwrap();
    assert_eq!(spec.containers[0].name, "agent");
    assert_eq!(status.agents[1].forked_from.as_deref(), Some(vm.as_str()));

    suspend(&env, "demo", true).await;
    let status = wait_set(&sets, "demo", CocoonSetPhase::Suspended).await;
    assert!(status.agents.iter().all(|a| a.phase == cocoon_operator::api::VmPhase::Hibernated));
    assert_eq!(status.agents[0].snapshot_ref, Some(format!("{vm}:hibernate")));
    suspend(&env, "demo", false).await;
    wait_set(&sets, "demo", CocoonSetPhase::Running).await;
    // The woken VMs' snapshots leave the registry: the operator owns them.
    wait_tag(&registry(), &vm, "hibernate", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_set_is_stamped_completes_on_its_lifecycle_and_collects_its_snapshots() {
    let env = Env::with_dialect("dl-cur", Dialect::Current).await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("demo", env.set_spec(1)).await;
    wait_set(&sets, "demo", CocoonSetPhase::Running).await;
    let pods = env.ns.api::<Pod>();
    let main = pods.get("demo-0").await.unwrap();
    assert!(ann(&main, "cocoonset.cocoonstack.io/generation").is_some());
    assert_eq!(ann(&main, "vm.cocoonstack.io/lifecycle-state").as_deref(), Some("ready"));

    suspend(&env, "demo", true).await;
    wait_set(&sets, "demo", CocoonSetPhase::Suspended).await;
    let main = pods.get("demo-0").await.unwrap();
    let stamp = ann(&main, "cocoonset.cocoonstack.io/generation").unwrap();
    assert_eq!(ann(&main, "vm.cocoonstack.io/lifecycle-state").as_deref(), Some("hibernated"));
    assert_eq!(
        ann(&main, "vm.cocoonstack.io/lifecycle-observed-generation").as_deref(),
        Some(stamp.as_str()),
        "completion is the answer to the request's own stamp"
    );
    let registry = registry();
    let vm = |slot: u32| format!("vk-{}-demo-{slot}", env.ns.name);
    for slot in 0..=1 {
        assert!(registry.exists(&vm(slot), "hibernate").await.unwrap());
    }
    suspend(&env, "demo", false).await;
    wait_set(&sets, "demo", CocoonSetPhase::Running).await;
    for slot in 0..=1 {
        wait_tag(&registry, &vm(slot), "hibernate", false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_snapshot_of_a_predecessor_never_restores_into_a_new_set() {
    let env = Env::with_dialect("dl-stale", Dialect::Current).await;
    // A set of the same name was here before and left its VMs' snapshots behind.
    let registry = registry();
    let vm = |slot: u32| format!("vk-{}-demo-{slot}", env.ns.name);
    for slot in 0..=1 {
        registry.push_snapshot(&vm(slot), "hibernate", "elsewhere").await.unwrap();
    }
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("demo", env.set_spec(1)).await;
    // Without the guard, the provider would restore the main from the old snapshot and refuse
    // the sub-agent (a restore cannot fork): the set would never run.
    let status = wait_set(&sets, "demo", CocoonSetPhase::Running).await;
    let main = env.ns.api::<Pod>().get("demo-0").await.unwrap();
    assert_eq!(ann(&main, "vm.cocoonstack.io/restore-from-hibernate"), None);
    assert_eq!(status.agents[1].source.as_deref(), Some(format!("fork:{}", vm(0)).as_str()));
    for slot in 0..=1 {
        assert!(!registry.exists(&vm(slot), "hibernate").await.unwrap(), "collected first");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_current_set_restores_each_vm_from_its_snapshot_and_teardown_keeps_them() {
    let env = Env::with_dialect("dl-rel", Dialect::Current).await;
    let sets = env.ns.api::<CocoonSet>();
    let mut spec = env.set_spec(1);
    spec.hibernate_policy = cocoon_operator::api::HibernatePolicy::Release;
    env.create_set("demo", spec).await;
    wait_set(&sets, "demo", CocoonSetPhase::Running).await;
    suspend(&env, "demo", true).await;
    let status = wait_set(&sets, "demo", CocoonSetPhase::Suspended).await;
    let pods = env.ns.api::<Pod>();
    eventually(DEADLINE, || async {
        let left = pods.list(&Default::default()).await.map_err(|e| e.to_string())?.items.len();
        if left == 0 { Ok(()) } else { Err(format!("{left} pods left")) }
    })
    .await
    .expect("every pod released");
    // The status follows the pods' going in its next batch: wait for it, do not race it.
    eventually(DEADLINE, || async {
        let set = sets.get("demo").await.map_err(|e| e.to_string())?;
        let status = set.status.unwrap_or_default();
        let released =
            status.conditions.iter().any(|c| c.type_ == "Released" && c.status == "True");
        if released && status.phase == Some(CocoonSetPhase::Suspended) {
            Ok(())
        } else {
            Err(format!("{:?} {:?}", status.phase, status.conditions))
        }
    })
    .await
    .expect("the set says its seats are released");
    drop(status);
    suspend(&env, "demo", false).await;
    let resumed = eventually(DEADLINE, || async {
        let main = pods.get("demo-0").await.map_err(|e| e.to_string())?;
        Ok::<_, String>(main)
    })
    .await
    .unwrap();
    assert_eq!(
        ann(&resumed, "vm.cocoonstack.io/restore-from-hibernate").as_deref(),
        Some("true"),
        "the VM comes back from its own snapshot"
    );
    let status = wait_set(&sets, "demo", CocoonSetPhase::Running).await;
    assert!(status.agents[0].source.as_deref().unwrap_or_default().starts_with("restore:"));

    // Suspended again and deleted: the snapshots leave `:hibernate` (nothing restores them by
    // name into another set) and stay as `:latest` (the policy keeps a snapshot on delete).
    suspend(&env, "demo", true).await;
    wait_set(&sets, "demo", CocoonSetPhase::Suspended).await;
    sets.delete("demo", &DeleteParams::default()).await.expect("delete the set");
    let registry = registry();
    let vm = format!("vk-{}-demo-0", env.ns.name);
    wait_tag(&registry, &vm, "hibernate", false).await;
    assert!(registry.exists(&vm, "latest").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_refusal_reaches_the_set_status_and_the_set_recovers_when_it_retries() {
    // The first forks fail in the provider (no image fallback in v0.2): the sub-agent is
    // refused, its words reach the set, and the provider's retry succeeds. Six failures keep
    // the refusal up for about three seconds of the provider's backoff (100 ms doubling): a
    // refusal gone before the set's next status write is rightly never written.
    let env = Env::without_operator("dl-refuse", |c| {
        c.dialect = Dialect::V02;
        c.fork_failures = 6;
        c.registry = e2e::operator_with_registry().registry.clone();
    })
    .await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("demo", env.set_spec(1)).await;
    eventually(DEADLINE, || async {
        let set = sets.get("demo").await.map_err(|e| e.to_string())?;
        let message = set.status.and_then(|s| s.message).unwrap_or_default();
        if message.contains("simulated failure") { Ok(()) } else { Err(message) }
    })
    .await
    .expect("the provider's words in the status");
    eventually(DEADLINE, || async {
        let reasons = common::event_reasons(&env.ns.name, Some("demo"), true).await;
        if reasons.contains("NeedsAttention") { Ok(()) } else { Err(reasons) }
    })
    .await
    .expect("a Warning Event on the set");
    wait_set(&sets, "demo", CocoonSetPhase::Running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernation_of_a_current_pod_completes_on_its_stamp_and_collects_on_wake() {
    let env = Env::with_dialect("dl-hib", Dialect::Current).await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("demo", env.set_spec(0)).await;
    wait_set(&sets, "demo", CocoonSetPhase::Running).await;
    let hibs = env.ns.api::<cocoon_operator::api::Hibernation>();
    env.create_hibernation("nap", "demo-0", HibernationAction::Hibernate).await;
    let status = wait_hib(&hibs, "nap", HibernationPhase::Hibernated).await;
    let vm = format!("vk-{}-demo-0", env.ns.name);
    assert_eq!(status.snapshot_ref, Some(format!("{vm}:hibernate")));
    let patch = serde_json::json!({"spec": {"action": "wake"}});
    hibs.patch("nap", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_hib(&hibs, "nap", HibernationPhase::Active).await;
    wait_tag(&registry(), &vm, "hibernate", false).await;
}

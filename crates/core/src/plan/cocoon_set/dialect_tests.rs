//! The CocoonSet in each dialect of vk-cocoon: the pods it builds, the requests it writes,
//! the signals it completes on, what each provider can do, and the provider's own words.

use std::collections::BTreeMap;

use super::pods::{AgentKind, Provider, agent_pod};
use super::{DeleteReason, PodAction, SetPlan};
use crate::api::{CocoonSetPhase, HibernatePolicy, VmPhase};
use crate::contract::{self, Dialect, LifecycleState};
use crate::plan::PodView;
use crate::plan::fixtures::*;
use crate::plan::observe::{Lifecycle, PodPhase};

fn provider(dialect: Dialect) -> Provider {
    Provider { dialect, cpu_class: None, node: Some(contract::DEFAULT_NODE_NAME.into()) }
}

fn world(dialect: Dialect, spec: crate::api::CocoonSetSpec, pods: Vec<PodView>) -> World {
    let mut w = World::new(spec, pods);
    w.provider = provider(dialect);
    w
}

/// An agent of the fixture set as a cocoonstack provider shows it serving.
fn agent_in(dialect: Dialect, slot: u32) -> PodView {
    let mut p = agent(slot);
    p.dialect = Some(dialect);
    if dialect == Dialect::Current {
        p.stamp = Some(1);
        p.rare.lifecycle =
            Some(Lifecycle { state: LifecycleState::Ready, observed: Some(1), message: None });
    }
    p
}

/// A v0.2 pod hibernated: Pending, no container, no VM id (the provider removed it).
fn v02_hibernated(mut p: PodView) -> PodView {
    p.phase = PodPhase::Pending;
    p.ready = false;
    p.ready_changed_at = None;
    p.vm_id = None;
    p.hibernate_requested = true;
    p.hibernated = true;
    p
}

/// A current pod whose provider published `state` for stamp `observed`; the pod's own stamp
/// is `stamp`.
fn current_state(mut p: PodView, state: LifecycleState, observed: i64, stamp: i64) -> PodView {
    p.stamp = Some(stamp);
    p.rare.lifecycle = Some(Lifecycle { state, observed: Some(observed), message: None });
    if state == LifecycleState::Hibernated {
        p.phase = PodPhase::Pending;
        p.ready = false;
        p.vm_id = None;
        p.hibernated = true;
    }
    p
}

fn toggles(plan: &SetPlan) -> Vec<(String, BTreeMap<String, Option<String>>)> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            PodAction::SetHibernate { pod_name, annotations, .. } => {
                Some((pod_name.clone(), annotations.clone()))
            }
            _ => None,
        })
        .collect()
}

fn annotations(plan: &SetPlan, name: &str) -> BTreeMap<String, String> {
    plan.actions
        .iter()
        .find_map(|a| match a {
            PodAction::CreateMain { pod }
            | PodAction::CreateSubAgent { pod, .. }
            | PodAction::CreateToolbox { pod, .. }
                if pod.metadata.name.as_deref() == Some(name) =>
            {
                pod.metadata.annotations.clone()
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no create of {name} in {:?}", plan.actions))
}

#[test]
fn each_dialect_builds_its_pods_in_its_own_keys_container_and_restart_policy() {
    let s = spec(1);
    let v02 = agent_pod(&identity(), &s, 0, &AgentKind::Main, &provider(Dialect::V02), false);
    let ann = v02.metadata.annotations.unwrap();
    assert_eq!(ann["vm.cocoonstack.io/name"], "vk-prod-demo-0");
    assert_eq!(ann["cocoonset.cocoonstack.io/mode"], "clone");
    assert_eq!(ann["cocoonset.cocoonstack.io/managed"], "true");
    assert_eq!(ann["cocoonset.cocoonstack.io/image"], "ubuntu-dev-base");
    assert!(!ann.keys().any(|k| k.starts_with("cocoon.cis/")), "no seed key: {ann:?}");
    assert!(!ann.contains_key("cocoonset.cocoonstack.io/generation"), "v0.2 has no stamp");
    let spec = v02.spec.unwrap();
    assert_eq!(spec.containers[0].name, "agent");
    assert_eq!(spec.restart_policy, None, "a refusal must not turn the pod Failed for good");
    assert_eq!(spec.node_selector, None);

    let current = Provider {
        dialect: Dialect::Current,
        cpu_class: Some("zen4".into()),
        node: Some(contract::DEFAULT_NODE_NAME.into()),
    };
    let kind = AgentKind::SubAgent { fork_from: "vk-prod-demo-0".into() };
    let pod = agent_pod(&identity(), &s, 1, &kind, &current, false);
    let ann = pod.metadata.annotations.unwrap();
    assert_eq!(ann["cocoonset.cocoonstack.io/generation"], "1");
    assert_eq!(ann["vm.cocoonstack.io/fork-from"], "vk-prod-demo-0");
    assert!(!ann.contains_key("vm.cocoonstack.io/restore-from-hibernate"));
    let selector = pod.spec.unwrap().node_selector.unwrap();
    assert_eq!(selector[contract::dialect::NODE_LABEL_CPU_CLASS], "zen4");

    let seed = agent_pod(&identity(), &s, 0, &AgentKind::Main, &pool_provider(), false);
    assert_eq!(seed.spec.as_ref().unwrap().containers[0].name, "vm");
    assert_eq!(seed.spec.unwrap().restart_policy.as_deref(), Some("Never"));
}

#[test]
fn a_cocoonstack_suspend_hibernates_the_main_too_and_completes_on_the_v02_shape() {
    let pods = vec![agent_in(Dialect::V02, 0), agent_in(Dialect::V02, 1)];
    let mut s = spec(1);
    s.suspend = true;
    let plan = world(Dialect::V02, s.clone(), pods).plan();
    let asked = toggles(&plan);
    assert_eq!(asked.len(), 2, "main and sub-agent: {asked:?}");
    for (_, patch) in &asked {
        assert_eq!(patch["vm.cocoonstack.io/hibernate"].as_deref(), Some("true"));
        assert_eq!(patch.len(), 1, "v0.2 has no stamp: {patch:?}");
    }
    // Both hibernated in the v0.2 shape: Suspended, with no entry and no Ready time.
    let done =
        vec![v02_hibernated(agent_in(Dialect::V02, 0)), v02_hibernated(agent_in(Dialect::V02, 1))];
    let mut w = world(Dialect::V02, s, done);
    // This actor asked both; a v0.2 pod has no Ready transition to date its answer by.
    for name in ["demo-0", "demo-1"] {
        w.suspend_asked.insert(name.into(), at(100));
    }
    let plan = w.plan();
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Suspended));
    assert_eq!(plan.status.agents[0].phase, VmPhase::Hibernated);
    assert_eq!(plan.status.agents[0].snapshot_ref, None, "no record in the plain planner");
}

#[test]
fn a_current_request_carries_a_newer_stamp_and_an_older_answer_never_completes_it() {
    let pods = vec![agent_in(Dialect::Current, 0)];
    let mut s = spec(0);
    s.suspend = true;
    let plan = world(Dialect::Current, s.clone(), pods).plan();
    let (_, patch) = &toggles(&plan)[0];
    assert_eq!(patch["vm.cocoonstack.io/hibernate"].as_deref(), Some("true"));
    assert_eq!(patch["cocoonset.cocoonstack.io/generation"].as_deref(), Some("2"));
    // The request landed (stamp 2); the provider still shows `hibernated` of stamp 1.
    let mut stale = current_state(agent_in(Dialect::Current, 0), LifecycleState::Hibernated, 1, 2);
    stale.hibernate_requested = true;
    let plan = world(Dialect::Current, s.clone(), vec![stale.clone()]).plan();
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Suspending));
    assert_eq!(plan.status.agents[0].phase, VmPhase::Hibernating);
    let fresh = current_state(stale, LifecycleState::Hibernated, 2, 2);
    let plan = world(Dialect::Current, s, vec![fresh]).plan();
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Suspended));
}

#[test]
fn a_current_pod_serves_only_once_its_provider_says_ready_for_the_latest_stamp() {
    // Ready=True comes before the `ready` state (PROVIDERS.md §6.10).
    let mut p = current_state(agent_in(Dialect::Current, 0), LifecycleState::Creating, 1, 1);
    p.ready = true;
    assert!(!p.is_serving());
    let p = current_state(p, LifecycleState::Ready, 1, 2);
    assert!(!p.is_serving(), "the answer predates the latest request");
    let p = current_state(p, LifecycleState::Ready, 2, 2);
    assert!(p.is_serving());
    let plan = world(Dialect::Current, spec(0), vec![p]).plan();
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Running));
}

#[test]
fn the_providers_own_words_reach_the_status_and_an_event_and_the_pod_is_not_recreated() {
    // What vk-cocoon v0.2.9 answers a pod without its name key.
    let mut refused = pending(agent_in(Dialect::V02, 0));
    refused.vm_id = None;
    refused.rare.reason = Some(contract::REASON_PROVIDER_FAILED.into());
    refused.rare.message = Some("pod prod/demo-0 missing vm.cocoonstack.io/name annotation".into());
    let mut w = world(Dialect::V02, spec(0), vec![refused]);
    let plan = w.plan();
    assert!(plan.actions.is_empty(), "not terminal: the provider retries: {:?}", plan.actions);
    let message = plan.status.message.clone().unwrap_or_default();
    assert!(message.contains("missing vm.cocoonstack.io/name annotation"), "{message}");
    assert_eq!(plan.status.agents[0].phase, VmPhase::ProviderFailed);
    let event = plan.events.iter().find(|e| e.message.contains("missing vm.cocoonstack.io"));
    assert!(event.is_some_and(|e| e.warning), "{:?}", plan.events);
    // Said once: the same words in the stored status make no new Event.
    w.status = plan.status;
    assert!(!w.plan().events.iter().any(|e| e.message.contains("missing vm.cocoonstack.io")));
    // A failed lifecycle state for the latest stamp, with its message.
    let mut failed = current_state(agent_in(Dialect::Current, 0), LifecycleState::Failed, 3, 3);
    failed.rare.lifecycle.as_mut().unwrap().message = Some("HibernatePushFailed: 503".into());
    let plan = world(Dialect::Current, spec(0), vec![failed.clone()]).plan();
    assert!(plan.status.message.unwrap_or_default().contains("HibernatePushFailed: 503"));
    // An old failure answered by a newer request is history.
    let plan =
        world(Dialect::Current, spec(0), vec![current_state(failed, LifecycleState::Failed, 3, 4)])
            .plan();
    assert!(!plan.status.message.unwrap_or_default().contains("HibernatePushFailed"));
}

#[test]
fn a_set_with_pods_of_two_dialects_is_refused_and_creates_nothing() {
    let mut seed_pod = agent(0);
    seed_pod.dialect = Some(Dialect::Seed);
    let mut w = world(Dialect::V02, spec(1), vec![seed_pod]);
    w.mixed = Some("refused: node cocoon-pool speaks the v0.2 dialect".into());
    let plan = w.plan();
    assert!(plan.actions.iter().all(|a| !a.is_create()), "{:?}", plan.actions);
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Failed));
    assert!(plan.status.message.unwrap().contains("v0.2 dialect"));
}

#[test]
fn a_current_released_pod_keeps_its_local_snapshot_and_comes_back_marked_to_restore() {
    let mut s = spec(1);
    s.suspend = true;
    s.hibernate_policy = HibernatePolicy::Release;
    let main = current_state(agent_in(Dialect::Current, 0), LifecycleState::Hibernated, 2, 2);
    let mut main = main;
    main.hibernate_requested = true;
    let mut w = world(Dialect::Current, s.clone(), vec![main]);
    let tag = "vk-prod-demo-0:hibernate".to_string();
    w.snapshots.insert("vk-prod-demo-0".into(), tag.clone());
    // Not before the set's status records the snapshot (its memory across restarts).
    let first = w.plan();
    assert!(
        !first.actions.iter().any(|a| matches!(a, PodAction::Delete { .. })),
        "{:?}",
        first.actions
    );
    assert_eq!(first.status.agents[0].snapshot_ref.as_deref(), Some(tag.as_str()));
    w.status = first.status;
    let plan = w.plan();
    let keep = plan.actions.iter().position(|a| {
        matches!(a, PodAction::PrepareDelete { annotations, .. }
            if annotations.get("vm.cocoonstack.io/keep-snapshot-on-delete")
                == Some(&Some("true".into())))
    });
    let delete = plan
        .actions
        .iter()
        .position(|a| matches!(a, PodAction::Delete { reason: DeleteReason::Released, .. }));
    assert!(keep.is_some() && keep < delete, "keep flag right before the delete");

    s.suspend = false;
    let mut w = world(Dialect::Current, s, vec![]);
    w.snapshots.insert("vk-prod-demo-0".into(), tag);
    let plan = w.plan();
    let ann = annotations(&plan, "demo-0");
    assert_eq!(ann["vm.cocoonstack.io/restore-from-hibernate"], "true");
}

#[test]
fn a_v02_restore_clones_the_vms_own_snapshot_and_a_sub_agent_restores_without_forking() {
    let kind = AgentKind::SubAgent { fork_from: "vk-prod-demo-0".into() };
    let pod = agent_pod(&identity(), &spec(1), 1, &kind, &provider(Dialect::V02), true);
    let ann = pod.metadata.annotations.unwrap();
    assert_eq!(ann["cocoonset.cocoonstack.io/image"], "vk-prod-demo-1:hibernate");
    assert!(!ann.contains_key("vm.cocoonstack.io/fork-from"));
    // A seed provider restores from its entry by itself: nothing to mark.
    let seed = agent_pod(&identity(), &spec(1), 1, &kind, &pool_provider(), true);
    let ann = seed.metadata.annotations.unwrap();
    assert_eq!(ann[contract::dialect::seed::KEYS.image], "ubuntu-dev-base");
    assert_eq!(ann[contract::dialect::seed::KEYS.fork_from], "vk-prod-demo-0");
}

#[test]
fn a_current_set_creates_nothing_without_a_registry_and_says_why() {
    let mut w = world(Dialect::Current, spec(0), vec![]);
    w.registry = false;
    let plan = w.plan();
    assert!(plan.actions.iter().all(|a| !a.is_create()), "{:?}", plan.actions);
    assert!(plan.status.message.unwrap_or_default().contains("needs --registry"));
    // With one, a stale `<vm>:hibernate` goes first, then the pod.
    let plan = world(Dialect::Current, spec(0), vec![]).plan();
    assert!(
        matches!(
            plan.actions.as_slice(),
            [PodAction::CollectSnapshot { vm_name, keep: false, .. }, PodAction::CreateMain { .. }]
                if vm_name == "vk-prod-demo-0"
        ),
        "{:?}",
        plan.actions
    );
    // v0.2 derives no restore from a tag: nothing to guard.
    let plan = world(Dialect::V02, spec(0), vec![]).plan();
    assert!(matches!(plan.actions.as_slice(), [PodAction::CreateMain { .. }]));
}

#[test]
fn a_new_set_never_restores_a_snapshot_it_did_not_record() {
    // A predecessor of the same name may have left `<vm>:hibernate` in the registry: a set
    // restores only what its own status recorded.
    let plan = world(Dialect::Current, spec(0), vec![]).plan();
    let ann = annotations(&plan, "demo-0");
    assert!(!ann.contains_key("vm.cocoonstack.io/restore-from-hibernate"), "{ann:?}");
}

#[test]
fn only_the_seed_provider_holds_back_first_hibernations_and_refuses_a_main() {
    let mut s = spec(1);
    s.suspend = true;
    let mut w = world(Dialect::V02, s, vec![agent_in(Dialect::V02, 0), agent_in(Dialect::V02, 1)]);
    w.snapshot_record = false; // no ConfigMap: irrelevant outside seed
    assert_eq!(toggles(&w.plan()).len(), 2);
    assert!(Dialect::V02.hibernates_main() && !Dialect::Seed.hibernates_main());
}

/// The sub-agents a plan creates, by slot.
fn forks(plan: &SetPlan) -> Vec<u32> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            PodAction::CreateSubAgent { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect()
}

#[test]
fn a_v02_set_forks_one_sub_agent_first_and_the_rest_once_the_fork_snapshot_exists() {
    // vk-cocoon v0.2.9 checks for `fork-<main>` and saves it without a lock: two sub-agents
    // created at once both save it and one fails. The first fork makes it; the rest reuse it.
    let main = agent_in(Dialect::V02, 0);
    let plan = world(Dialect::V02, spec(3), vec![main.clone()]).plan();
    assert_eq!(forks(&plan), vec![1], "one fork first");

    // Its create is in flight: nothing more.
    let mut w = world(Dialect::V02, spec(3), vec![main.clone()]);
    w.expectations.expect_create("demo-1", at(0));
    assert_eq!(forks(&w.plan()), Vec::<u32>::new());

    // Created, its VM not there yet: still one at a time.
    let mut first = agent_in(Dialect::V02, 1);
    first.vm_id = None;
    first.phase = PodPhase::Pending;
    first.ready = false;
    let plan = world(Dialect::V02, spec(3), vec![main.clone(), first.clone()]).plan();
    assert_eq!(forks(&plan), Vec::<u32>::new(), "{:?}", plan.actions);

    // Refused (its fork failed): it does not hold the others back for ever.
    let mut refused = first.clone();
    refused.rare.reason = Some(contract::REASON_PROVIDER_FAILED.into());
    refused.rare.message = Some("snapshot fork source vm vk-prod-demo-0: already exists".into());
    let plan = world(Dialect::V02, spec(3), vec![main.clone(), refused]).plan();
    assert_eq!(forks(&plan), vec![2], "one fork at a time still");

    // Its VM exists, so does the snapshot: the rest at once.
    let plan = world(Dialect::V02, spec(3), vec![main.clone(), agent_in(Dialect::V02, 1)]).plan();
    assert_eq!(forks(&plan), vec![2, 3]);

    // Other dialects fork each sub-agent from a snapshot of its own: all at once.
    for dialect in [Dialect::Seed, Dialect::Current] {
        let mut w = world(dialect, spec(3), vec![agent_in(dialect, 0)]);
        w.registry = true;
        assert_eq!(forks(&w.plan()), vec![1, 2, 3], "{dialect:?}");
    }
}

//! Table-driven tests of the CocoonSet rules (SPEC §3.3).

use super::{DeleteReason, PodAction};
use crate::api::VmPhase;
use crate::api::{CocoonSetPhase, ConnType, ToolboxMode, ToolboxOs, ToolboxStatus};
use crate::contract;
use crate::contract::dialect::seed;
use crate::plan::PodView;
use crate::plan::fixtures::*;

fn names(actions: &[PodAction]) -> Vec<String> {
    actions.iter().map(|a| a.pod_name().to_string()).collect()
}

fn creates(actions: &[PodAction]) -> Vec<String> {
    actions.iter().filter(|a| a.is_create()).map(|a| a.pod_name().to_string()).collect()
}

#[test]
fn the_main_is_created_first_and_alone() {
    let plan = World::new(spec(3), vec![]).plan();
    assert_eq!(names(&plan.actions), vec!["demo-0"]);
    assert!(matches!(plan.actions[0], PodAction::CreateMain { .. }));
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Pending));
}

#[test]
fn sub_agents_wait_until_main_is_running_and_ready() {
    for main in
        [pending(agent(0)), starting(agent(0)), hibernated(agent(0), 0), terminating(agent(0))]
    {
        let plan = World::new(spec(2), vec![main.clone()]).plan();
        assert!(
            !plan.actions.iter().any(|a| matches!(a, PodAction::CreateSubAgent { .. })),
            "no sub-agent while the main is {main:?}"
        );
    }
}

#[test]
fn sub_agents_wait_until_the_main_vm_name_is_known() {
    let mut main = agent(0);
    main.vm_name = None;
    let plan = World::new(spec(1), vec![main]).plan();
    assert!(creates(&plan.actions).is_empty());
}

#[test]
fn sub_agents_fork_from_the_main_vm_once_it_serves() {
    let plan = World::new(spec(2), vec![agent(0)]).plan();
    let vm = contract::agent_vm_name("prod", "demo", 0);
    let forks: Vec<(u32, String)> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            PodAction::CreateSubAgent { slot, fork_from, pod } => {
                let ann = pod.metadata.annotations.as_ref().unwrap();
                assert_eq!(ann.get(seed::KEYS.fork_from), Some(fork_from));
                Some((*slot, fork_from.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(forks, vec![(1, vm.clone()), (2, vm)]);
}

#[test]
fn scale_up_creates_only_the_missing_slots() {
    let plan = World::new(spec(3), vec![agent(0), agent(2)]).plan();
    assert_eq!(creates(&plan.actions), vec!["demo-1", "demo-3"]);
}

#[test]
fn scale_down_deletes_slots_above_replicas_highest_first() {
    let pods = vec![agent(0), agent(1), agent(2), agent(3), agent(4)];
    let plan = World::new(spec(1), pods).plan();
    let deletes: Vec<(String, DeleteReason)> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            PodAction::Delete { pod_name, reason, .. } => Some((pod_name.clone(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        deletes,
        vec![
            ("demo-4".into(), DeleteReason::ScaleDown),
            ("demo-3".into(), DeleteReason::ScaleDown),
            ("demo-2".into(), DeleteReason::ScaleDown)
        ]
    );
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Scaling));
}

#[test]
fn slot_names_are_stable_identities() {
    let plan = World::new(spec(2), vec![agent(0), agent(2)]).plan();
    assert_eq!(creates(&plan.actions), vec!["demo-1"], "slot 1 is recreated under its own name");
}

#[test]
fn toolboxes_are_created_when_listed_and_deleted_when_removed() {
    let mut s = spec(0);
    s.toolboxes = vec![toolbox("linux-box", ToolboxOs::Linux, ToolboxMode::Run)];
    let plan = World::new(s, vec![agent(0), toolbox_pod("old", ToolboxMode::Run)]).plan();
    assert_eq!(
        plan.actions.iter().map(|a| (a.pod_name().to_string(), a.is_create())).collect::<Vec<_>>(),
        vec![("demo-old".to_string(), false), ("demo-linux-box".to_string(), true)]
    );
    assert!(matches!(
        plan.actions[0],
        PodAction::Delete { reason: DeleteReason::ToolboxRemoved, .. }
    ));
}

#[test]
fn a_terminating_pod_counts_as_absent_but_its_replacement_waits_until_it_is_gone() {
    let plan = World::new(spec(1), vec![agent(0), terminating(agent(1))]).plan();
    assert!(plan.actions.is_empty(), "neither a second delete nor a create: {:?}", plan.actions);
    assert_eq!(plan.status.agents[1].phase, VmPhase::Terminating);
    assert_eq!(plan.status.ready_agents, 1);
}

#[test]
fn a_create_in_flight_is_not_repeated_from_a_stale_view() {
    let mut w = World::new(spec(1), vec![agent(0)]);
    w.expectations.expect_create("demo-1", w.now);
    let plan = w.plan();
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.agents[1].phase, VmPhase::Pending);
}

#[test]
fn a_delete_in_flight_is_not_repeated_from_a_stale_view() {
    let mut w = World::new(spec(0), vec![agent(0), agent(1)]);
    w.expectations.expect_delete("demo-1", w.now);
    assert!(w.plan().actions.is_empty());
}

#[test]
fn a_terminal_pod_is_deleted_then_recreated_only_after_its_backoff() {
    let plan = World::new(spec(1), vec![agent(0), failed(agent(1))]).plan();
    assert_eq!(
        plan.actions,
        vec![PodAction::Delete {
            pod_name: "demo-1".into(),
            uid: None,
            reason: DeleteReason::Terminal,
            was: VmPhase::Failed
        }]
    );
    let mut w = World::new(spec(1), vec![agent(0)]);
    w.not_before.insert("demo-1".into(), at(130));
    let plan = w.plan();
    assert!(creates(&plan.actions).is_empty());
    assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(30)));
    w.now = at(130);
    assert_eq!(creates(&w.plan().actions), vec!["demo-1"]);
}

#[test]
fn a_recreated_main_leaves_running_sub_agents_alone() {
    let plan = World::new(spec(2), vec![agent(1), agent(2)]).plan();
    assert_eq!(names(&plan.actions), vec!["demo-0"]);
}

#[test]
fn suspend_hibernates_every_non_static_pod_and_creates_nothing() {
    let mut s = spec(2);
    s.suspend = true;
    s.toolboxes = vec![
        toolbox("win", ToolboxOs::Windows, ToolboxMode::Static),
        toolbox("lin", ToolboxOs::Linux, ToolboxMode::Run),
    ];
    let pods = vec![
        agent(0),
        agent(1),
        toolbox_pod("win", ToolboxMode::Static),
        toolbox_pod("lin", ToolboxMode::Run),
    ];
    let plan = World::new(s, pods).plan();
    let toggles: Vec<(String, bool)> = plan
        .actions
        .iter()
        .map(|a| match a {
            PodAction::SetHibernate { pod_name, hibernate, .. } => (pod_name.clone(), *hibernate),
            other => panic!("only hibernate toggles while suspended, got {other:?}"),
        })
        .collect();
    assert_eq!(
        toggles,
        vec![("demo-0".into(), true), ("demo-1".into(), true), ("demo-lin".into(), true)]
    );
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Suspending));
}

#[test]
fn suspended_only_when_every_pod_reports_hibernated() {
    let mut s = spec(1);
    s.suspend = true;
    let mut half = agent(1);
    half.hibernate_requested = true; // asked, VM still running
    let plan = World::new(s.clone(), vec![hibernated(agent(0), 5), half]).plan();
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Suspending));
    let plan = World::new(s, vec![hibernated(agent(0), 5), hibernated(agent(1), 5)]).plan();
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Suspended));
    assert_eq!(plan.status.ready_agents, 0);
    let suspended = plan.status.conditions.iter().find(|c| c.type_ == "Suspended").unwrap();
    assert_eq!(suspended.status, "True");
}

#[test]
fn resume_wakes_only_the_pods_the_set_hibernated() {
    let mut held = hibernated(agent(1), 5);
    held.rare.hibernated_by = Some("keep-1".into());
    let mut held_in_flight = agent(2);
    held_in_flight.hibernate_requested = true;
    held_in_flight.rare.hibernated_by = Some("keep-2".into());
    let plan = World::new(spec(2), vec![hibernated(agent(0), 5), held, held_in_flight]).plan();
    assert_eq!(
        plan.actions,
        vec![PodAction::SetHibernate {
            pod_name: "demo-0".into(),
            hibernate: false,
            annotations: std::collections::BTreeMap::from([(
                seed::KEYS.hibernate.to_string(),
                None
            )]),
        }]
    );
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Scaling), "resuming is Scaling");
}

#[test]
fn a_resumed_set_is_scaling_until_every_pod_serves_then_running() {
    let plan = World::new(spec(1), vec![agent(0), starting(agent(1))]).plan();
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Scaling));
    let plan = World::new(spec(1), vec![agent(0), agent(1)]).plan();
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Running));
    assert_eq!(plan.status.ready_agents, 2);
    assert_eq!(plan.status.desired_agents, 2);
}

#[test]
fn a_pod_held_by_a_hibernation_does_not_block_running_and_is_not_counted_ready() {
    let mut held = hibernated(agent(1), 5);
    held.rare.hibernated_by = Some("keep".into());
    let plan = World::new(spec(1), vec![agent(0), held]).plan();
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Running));
    assert_eq!(plan.status.ready_agents, 1);
    assert_eq!(plan.status.agents[1].phase, VmPhase::Hibernated);
}

#[test]
fn spec_changes_never_recreate_running_vms() {
    let mut s = spec(1);
    s.agent.image = "a-new-image".into();
    s.agent.storage = Some("500G".into());
    let plan = World::new(s, vec![agent(0), agent(1)]).plan();
    assert!(plan.actions.is_empty());
}

#[test]
fn status_is_stable_when_nothing_changed() {
    let mut w = World::new(spec(1), vec![agent(0), agent(1)]);
    let first = w.plan().status;
    w.status = first.clone();
    w.now = at(5_000);
    assert_eq!(w.plan().status, first, "a later pass must produce the identical status");
    assert!(w.plan().events.is_empty());
}

#[test]
fn condition_transition_time_moves_only_when_its_status_changes() {
    let mut w = World::new(spec(1), vec![agent(0), starting(agent(1))]);
    let scaling = w.plan().status;
    w.status = scaling.clone();
    w.pods = vec![agent(0), agent(1)];
    w.now = at(200);
    let running = w.plan().status;
    let ready = |s: &crate::api::CocoonSetStatus| {
        s.conditions.iter().find(|c| c.type_ == "Ready").cloned().unwrap()
    };
    assert_ne!(ready(&scaling).last_transition_time, ready(&running).last_transition_time);
    let suspended = |s: &crate::api::CocoonSetStatus| {
        s.conditions.iter().find(|c| c.type_ == "Suspended").cloned().unwrap()
    };
    assert_eq!(suspended(&scaling).last_transition_time, suspended(&running).last_transition_time);
}

#[test]
fn observed_generation_is_reported() {
    assert_eq!(World::new(spec(0), vec![agent(0)]).plan().status.observed_generation, Some(1));
}

#[test]
fn teardown_deletes_sub_agents_and_toolboxes_before_the_main() {
    let mut s = spec(1);
    s.toolboxes = vec![toolbox("lin", ToolboxOs::Linux, ToolboxMode::Run)];
    let mut w = World::new(s, vec![agent(0), agent(1), toolbox_pod("lin", ToolboxMode::Run)]);
    w.deleting = true;
    let plan = w.plan();
    assert_eq!(names(&plan.actions), vec!["demo-1", "demo-lin"]);
    assert!(!plan.teardown_complete);
    w.pods = vec![agent(0), terminating(agent(1))];
    assert!(w.plan().actions.is_empty(), "the main waits until the others are gone");
    w.pods = vec![agent(0)];
    assert_eq!(names(&w.plan().actions), vec!["demo-0"]);
    w.pods = vec![];
    let plan = w.plan();
    assert!(plan.actions.is_empty());
    assert!(plan.teardown_complete);
}

#[test]
fn a_static_toolbox_without_an_address_is_reported_not_rejected() {
    let mut s = spec(0);
    s.toolboxes = vec![toolbox("windows", ToolboxOs::Windows, ToolboxMode::Static)];
    let plan = World::new(s, vec![agent(0)]).plan();
    assert_eq!(creates(&plan.actions), vec!["demo-windows"]);
    let message = plan.status.message.clone().unwrap_or_default();
    assert!(message.contains("toolbox windows is static but has no staticIP"), "{message}");
    assert!(plan.events.iter().any(|e| e.warning && e.message.contains("no staticIP")));
}

#[test]
fn static_toolbox_annotations_prefer_values_reported_in_status() {
    let mut s = spec(0);
    let mut tb = toolbox("windows", ToolboxOs::Windows, ToolboxMode::Static);
    tb.static_ip = Some("10.0.0.9".into());
    tb.vnc_port = Some(5900);
    s.toolboxes = vec![tb];
    let mut w = World::new(s, vec![agent(0)]);
    w.status.toolboxes = vec![ToolboxStatus {
        name: "windows".into(),
        pod_name: "demo-windows".into(),
        vm_name: None,
        vm_id: Some("vm-77".into()),
        ip: Some("10.0.0.42".into()),
        phase: VmPhase::Missing,
        conn_type: ConnType::Vnc,
        vnc_port: Some(5901),
        node: None,
    }];
    let plan = w.plan();
    let PodAction::CreateToolbox { pod, .. } = &plan.actions[0] else {
        panic!("{:?}", plan.actions)
    };
    let ann = pod.metadata.annotations.clone().unwrap();
    assert_eq!(ann.get(seed::KEYS.ip).map(String::as_str), Some("10.0.0.42"));
    assert_eq!(ann.get(seed::KEYS.vm_id).map(String::as_str), Some("vm-77"));
    assert_eq!(ann.get(seed::KEYS.vnc_port).map(String::as_str), Some("5901"));
    assert!(!ann.contains_key(seed::KEYS.managed), "static toolboxes are not managed");
}

#[test]
fn toolbox_connection_type_follows_vnc_port_then_os() {
    use super::status::conn_type;
    assert_eq!(conn_type(ToolboxOs::Windows, Some(5900)), ConnType::Vnc);
    assert_eq!(conn_type(ToolboxOs::Android, None), ConnType::Adb);
    assert_eq!(conn_type(ToolboxOs::Windows, None), ConnType::Rdp);
    assert_eq!(conn_type(ToolboxOs::Linux, None), ConnType::Ssh);
}

#[test]
fn a_name_held_by_a_foreign_pod_is_reported_and_waited_on() {
    let mut w = World::new(spec(1), vec![agent(0)]);
    w.conflicts.insert("demo-1".into());
    w.not_before.insert("demo-1".into(), at(110));
    let plan = w.plan();
    assert!(creates(&plan.actions).is_empty());
    assert!(plan.status.message.unwrap_or_default().contains("demo-1 exists but is not owned"));
}

#[test]
fn routine_phases_are_not_announced_and_suspended_is_announced_once() {
    // Pending, Scaling and Running: progress the status and its conditions tell.
    let mut w = World::new(spec(0), vec![starting(agent(0))]);
    let first = w.plan();
    assert_eq!(first.status.phase, Some(CocoonSetPhase::Pending));
    assert!(first.events.is_empty(), "{:?}", first.events);
    w.status = first.status;
    w.pods = vec![agent(0)];
    let running = w.plan();
    assert_eq!(running.status.phase, Some(CocoonSetPhase::Running));
    assert!(running.events.is_empty(), "{:?}", running.events);
    // Reaching Suspended is what a user waits for: one Event, not repeated.
    let mut s = spec(0);
    s.suspend = true;
    let mut w = World::new(s, vec![hibernated(agent(0), 5)]);
    w.status = running.status;
    let suspended = w.plan();
    assert_eq!(suspended.status.phase, Some(CocoonSetPhase::Suspended));
    let reasons: Vec<&str> = suspended.events.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, vec!["PhaseChanged"]);
    w.status = suspended.status;
    assert!(w.plan().events.is_empty());
}

#[test]
fn ready_agents_counts_only_running_ready_unhibernated_agents() {
    let pods: Vec<PodView> = vec![agent(0), starting(agent(1)), hibernated(agent(2), 1), agent(3)];
    let plan = World::new(spec(3), pods).plan();
    assert_eq!(plan.status.ready_agents, 2);
    assert_eq!(plan.status.agents.len(), 4);
}

#[test]
fn teardown_progress_raises_no_warning_events() {
    let mut w = World::new(spec(1), vec![agent(0), agent(1)]);
    w.deleting = true;
    let plan = w.plan();
    assert!(plan.status.message.unwrap_or_default().contains("deleting: 2 pod(s) left"));
    assert!(!plan.events.iter().any(|e| e.warning), "{:?}", plan.events);
}

#[test]
fn teardown_waits_for_creates_still_in_flight() {
    let mut w = World::new(spec(1), vec![agent(0)]);
    w.deleting = true;
    w.expectations.expect_create("demo-1", w.now);
    let plan = w.plan();
    assert!(
        plan.actions.is_empty(),
        "the main waits for the sub-agent in flight: {:?}",
        plan.actions
    );
    w.pods = vec![];
    assert!(!w.plan().teardown_complete, "the pod in flight would outlive the finalizer");
}

#[test]
fn the_scale_status_counts_sub_agents_that_exist_and_names_their_selector() {
    let w = World::new(spec(3), vec![agent(0), agent(1), terminating(agent(2))]);
    let status = w.plan().status;
    assert_eq!(status.replicas, 1, "the main and a terminating pod are not counted");
    assert_eq!(
        status.selector.as_deref(),
        Some("cocoon.cis/cocoonset=demo,cocoon.cis/role=sub-agent")
    );
}

fn from(mut pod: PodView, source: &str, created: i64) -> PodView {
    pod.snapshot_from = Some(source.into());
    pod.created_at = Some(at(created));
    pod
}

fn condition<'a>(
    plan: &'a super::SetPlan,
    kind: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    plan.status.conditions.iter().find(|c| c.type_ == kind).expect("condition")
}

#[test]
fn status_reports_what_each_vm_really_came_from() {
    let main_vm = contract::agent_vm_name("prod", "demo", 0);
    let pods = vec![
        // The bare names vk-cocoon writes: the image, `<vm>-fork`, `<vm>-suspend`.
        from(agent(0), "ubuntu-dev-base", 0),
        from(agent(1), "vk-prod-demo-1-fork", 1),
        from(agent(2), "vk-prod-demo-2-suspend", 1),
        from(agent(3), "ubuntu-dev-base", 1),
    ];
    let plan = World::new(spec(3), pods.clone()).plan();
    let agents = &plan.status.agents;
    assert_eq!(agents[0].forked_from, None, "the main is never forked");
    assert_eq!(agents[1].forked_from.as_deref(), Some(main_vm.as_str()));
    assert_eq!(agents[1].source, Some(format!("fork:{main_vm}")));
    assert_eq!(agents[2].forked_from, None, "a restored VM was not forked");
    assert_eq!(agents[2].source.as_deref(), Some("restore:vk-prod-demo-2-suspend"));
    assert_eq!(agents[3].forked_from, None, "asked to fork, booted from the image: not forked");
    assert_eq!(agents[3].source.as_deref(), Some("image:ubuntu-dev-base"));
    let fell = condition(&plan, "ForkFellBack");
    assert_eq!((fell.status.as_str(), fell.reason.as_str()), ("True", "BootedFromImage"));
    assert!(
        fell.message.contains("demo-3") && !fell.message.contains("demo-2"),
        "{}",
        fell.message
    );
    let events: Vec<&str> = plan.events.iter().map(|e| e.reason).collect();
    assert!(events.contains(&"ForkFellBack"), "{events:?}");
    // Told once: the same fallback in the next pass is no new Event.
    let mut again = World::new(spec(3), pods);
    again.status = plan.status.clone();
    assert!(!again.plan().events.iter().any(|e| e.reason == "ForkFellBack"));
}

#[test]
fn no_fallback_means_the_condition_is_false() {
    let fork = contract::fork_snapshot(&contract::agent_vm_name("prod", "demo", 1));
    let plan = World::new(spec(1), vec![agent(0), from(agent(1), &fork, 1)]).plan();
    let fell = condition(&plan, "ForkFellBack");
    assert_eq!((fell.status.as_str(), fell.reason.as_str()), ("False", "Forked"));
    assert!(!plan.events.iter().any(|e| e.reason == "ForkFellBack"));
}

#[test]
fn recreate_deletes_a_fallen_back_sub_agent_only_once_the_main_serves_again() {
    let mut recreate = spec(2);
    recreate.agent.on_fork_fallback = crate::api::ForkFallbackPolicy::Recreate;
    let mut main = agent(0);
    main.ready_changed_at = Some(at(50)); // the main turned Ready at 50
    let before = from(agent(1), "ubuntu-dev-base", 10); // booted while the main was away
    let after = from(agent(2), "ubuntu-dev-base", 60); // fell back while the main served
    let plan =
        World::new(recreate.clone(), vec![main.clone(), before.clone(), after.clone()]).plan();
    let deletes: Vec<(String, DeleteReason)> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            PodAction::Delete { pod_name, reason, .. } => Some((pod_name.clone(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(deletes, vec![("demo-1".to_string(), DeleteReason::ForkFellBack)]);
    let discard = plan.actions.iter().position(
        |a| matches!(a, PodAction::PrepareDelete { pod_name, .. } if pod_name == "demo-1"),
    );
    let delete = plan.actions.iter().position(|a| matches!(a, PodAction::Delete { .. }));
    assert!(discard.is_some() && discard < delete, "no snapshot to restore: {:?}", plan.actions);

    // keep (the default) never deletes; nor does recreate while the main does not serve,
    // while the set is suspended, or for a pod a Hibernation holds.
    let kept = World::new(spec(2), vec![main.clone(), before.clone()]).plan();
    assert!(!kept.actions.iter().any(|a| matches!(a, PodAction::Delete { .. })));
    let away = World::new(recreate.clone(), vec![starting(main.clone()), before.clone()]).plan();
    assert!(!away.actions.iter().any(|a| matches!(a, PodAction::Delete { .. })));
    let mut suspended = recreate.clone();
    suspended.suspend = true;
    let resting = World::new(suspended, vec![main.clone(), before.clone()]).plan();
    assert!(!resting.actions.iter().any(|a| matches!(a, PodAction::Delete { .. })));
    let mut held = before.clone();
    held.rare.hibernated_by = Some("keep".into());
    let holding = World::new(recreate, vec![main, held]).plan();
    assert!(!holding.actions.iter().any(|a| matches!(a, PodAction::Delete { .. })));
}

#[test]
fn recreate_waits_for_another_main_vm_than_the_one_a_sub_agent_fell_back_under_whatever_the_clock()
{
    let mut recreate = spec(1);
    recreate.agent.on_fork_fallback = crate::api::ForkFallbackPolicy::Recreate;
    // The main turned Ready in the same second the sub-agent was created: the clock cannot
    // tell whether the main served throughout; the VM id the actor saw can.
    let mut main = agent(0);
    main.ready_changed_at = Some(at(10));
    let mut fell = from(agent(1), "ubuntu-dev-base", 10);
    fell.uid = Some("sub-uid".into());
    let mut w = World::new(recreate, vec![main.clone(), fell]);
    w.fell_back_under.insert("sub-uid".into(), "vm-0".into());
    let deletes = |w: &World| {
        w.plan().actions.iter().filter(|a| matches!(a, PodAction::Delete { .. })).count()
    };
    assert_eq!(deletes(&w), 0, "the main serves the VM it served when the fork fell back");
    w.pods[0].vm_id = Some("vm-0-recreated".into());
    assert_eq!(deletes(&w), 1, "another main VM serves: fork again");
}

fn release(replicas: i32, suspend: bool) -> crate::api::CocoonSetSpec {
    let mut s = spec(replicas);
    s.suspend = suspend;
    s.hibernate_policy = crate::api::HibernatePolicy::Release;
    s
}

fn entry(w: &mut World, slot: u32) {
    let vm = contract::agent_vm_name("prod", "demo", slot);
    w.snapshots.insert(vm.clone(), format!("{vm}-suspend"));
}

fn deleted(plan: &super::SetPlan) -> Vec<(String, DeleteReason)> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            PodAction::Delete { pod_name, reason, .. } => Some((pod_name.clone(), *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn release_deletes_a_pod_only_once_it_is_hibernated_and_its_snapshot_entry_exists() {
    let mut held = hibernated(agent(3), 0);
    held.rare.hibernated_by = Some("keep".into());
    let mut runner = hibernated(toolbox_pod("shell", ToolboxMode::Run), 0);
    runner.hibernate_requested = true;
    let mut still_running = agent(2);
    still_running.hibernate_requested = true;
    let mut w = World::new(
        release(3, true),
        vec![hibernated(agent(0), 0), hibernated(agent(1), 0), still_running, held, runner],
    );
    w.spec.toolboxes.push(toolbox("shell", ToolboxOs::Linux, ToolboxMode::Run));
    for slot in [0, 2, 3] {
        entry(&mut w, slot);
    }
    w.snapshots.insert(contract::toolbox_vm_name("prod", "demo", "shell"), "x".into());
    let plan = w.plan();
    // demo-1 has no entry yet, demo-2 still runs, demo-3 is held by a Hibernation, and a
    // run-mode toolbox would not restore: only demo-0 goes.
    assert_eq!(deleted(&plan), vec![("demo-0".to_string(), DeleteReason::Released)]);
    assert!(plan.events.iter().all(|e| e.reason != "DeletedPod"), "routine: no Event per pod");

    // retain (the default) keeps every pod.
    w.spec.hibernate_policy = crate::api::HibernatePolicy::Retain;
    assert!(deleted(&w.plan()).is_empty());
}

#[test]
fn a_released_set_keeps_every_identity_and_snapshot_and_says_released() {
    let mut w = World::new(release(2, true), vec![]);
    for slot in 0..=2 {
        entry(&mut w, slot);
    }
    let plan = w.plan();
    assert!(plan.actions.is_empty(), "nothing created while suspended: {:?}", plan.actions);
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Suspended));
    for (slot, agent) in plan.status.agents.iter().enumerate() {
        assert_eq!(agent.phase, VmPhase::Released);
        let vm = contract::agent_vm_name("prod", "demo", slot as u32);
        assert_eq!(agent.vm_name.as_deref(), Some(vm.as_str()));
        assert_eq!(agent.snapshot_ref, Some(format!("{vm}-suspend")));
    }
    let released = condition(&plan, "Released");
    assert_eq!((released.status.as_str(), released.reason.as_str()), ("True", "SeatsReleased"));
    // Half way: the condition counts.
    let mut half = World::new(release(1, true), vec![hibernated(agent(1), 0)]);
    entry(&mut half, 0);
    let half = half.plan();
    assert_eq!(condition(&half, "Released").reason, "Releasing");
    // No condition at all with retain.
    let retain = World::new(spec(1), vec![agent(0), agent(1)]).plan();
    assert!(!retain.status.conditions.iter().any(|c| c.type_ == "Released"));
}

#[test]
fn resuming_a_released_set_recreates_the_main_first_and_names_who_restores_and_who_boots_fresh() {
    let mut suspended = World::new(release(2, true), vec![]);
    for slot in 0..=2 {
        entry(&mut suspended, slot);
    }
    let before = suspended.plan().status;
    let mut w = World::new(release(2, false), vec![]);
    w.status = before;
    entry(&mut w, 0);
    entry(&mut w, 1); // demo-2's entry is gone meanwhile
    let plan = w.plan();
    assert_eq!(creates(&plan.actions), vec!["demo-0"], "the main first, as always");
    let event = plan.events.iter().find(|e| e.reason == "ResumedFresh").expect("a Warning");
    assert!(event.message.contains("demo-0, demo-1 restore"), "{}", event.message);
    assert!(event.message.contains("demo-2 have no snapshot any more"), "{}", event.message);
}

fn warm(replicas: i32, warm: i32) -> crate::api::CocoonSetSpec {
    let mut s = spec(replicas);
    s.agent.warm = warm;
    s
}

fn toggles(plan: &super::SetPlan) -> Vec<(String, bool)> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            PodAction::SetHibernate { pod_name, hibernate, .. } => {
                Some((pod_name.clone(), *hibernate))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn warm_slots_are_forked_in_the_background_then_hibernated_and_never_counted_as_serving() {
    let plan = World::new(warm(1, 2), vec![agent(0), agent(1)]).plan();
    assert_eq!(creates(&plan.actions), vec!["demo-2", "demo-3"], "forked like sub-agents");
    assert_eq!(plan.status.phase, Some(CocoonSetPhase::Running), "the pool does not hold Running");
    assert_eq!((plan.status.ready_agents, plan.status.desired_agents), (2, 2));
    let slots = |list: &[crate::api::AgentStatus]| list.iter().map(|a| a.slot).collect::<Vec<_>>();
    assert_eq!(slots(&plan.status.agents), vec![0, 1]);
    assert_eq!(slots(&plan.status.warm_agents), vec![2, 3]);

    // Once forked and serving, a warm slot is hibernated.
    let forked =
        World::new(warm(1, 2), vec![agent(0), agent(1), agent(2), starting(agent(3))]).plan();
    assert_eq!(toggles(&forked), vec![("demo-2".to_string(), true)], "demo-3 still boots");
    assert_eq!(forked.status.replicas, 1, "the scale subresource counts serving sub-agents");
    assert_eq!(forked.status.ready_agents, 2);
}

#[test]
fn scaling_up_wakes_the_lowest_warm_slots_instead_of_forking_and_refills_the_pool() {
    let pods = vec![agent(0), agent(1), hibernated(agent(2), 0), hibernated(agent(3), 0)];
    let plan = World::new(warm(2, 2), pods).plan();
    assert_eq!(toggles(&plan), vec![("demo-2".to_string(), false)], "woken, not forked");
    assert_eq!(creates(&plan.actions), vec!["demo-4"], "the pool refills above");
    let at = |name: &str| plan.actions.iter().position(|a| a.pod_name() == name);
    assert!(at("demo-2") < at("demo-4"), "the woken slot is not sent behind the refill's fork");
    assert!(!plan.actions.iter().any(|a| matches!(a, PodAction::Delete { .. })));
    // Scaling down puts the slot back into the pool (hibernated), deleting only above it.
    let down =
        World::new(warm(0, 2), vec![agent(0), agent(1), agent(2), hibernated(agent(3), 0)]).plan();
    assert_eq!(toggles(&down), vec![("demo-1".to_string(), true), ("demo-2".to_string(), true)]);
    assert_eq!(deleted(&down), vec![("demo-3".to_string(), DeleteReason::ScaleDown)]);
}

#[test]
fn with_release_a_warm_slot_waits_in_its_snapshot_and_is_recreated_on_scale_up() {
    let mut spec = warm(1, 1);
    spec.hibernate_policy = crate::api::HibernatePolicy::Release;
    let mut w = World::new(spec.clone(), vec![agent(0), agent(1), hibernated(agent(2), 0)]);
    entry(&mut w, 2);
    assert_eq!(deleted(&w.plan()), vec![("demo-2".to_string(), DeleteReason::Released)]);
    // Released: not recreated while warm, shown as Released.
    w.pods.pop();
    let plan = w.plan();
    assert!(creates(&plan.actions).is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.status.warm_agents[0].phase, VmPhase::Released);
    // Scaled up: the slot serves again, so its pod is created (and restores from its entry);
    // the new warm slot above it is forked.
    w.spec.agent.replicas = 2;
    assert_eq!(creates(&w.plan().actions), vec!["demo-2", "demo-3"]);
}

#[test]
fn without_a_snapshot_configmap_one_pod_is_asked_to_hibernate_at_a_time_a_main_last() {
    // vk-cocoon v0.1.x creates the ConfigMap on the first hibernation in a namespace, racily:
    // of two first hibernations at once, one loses its entry.
    let mut s = spec(2);
    s.suspend = true;
    let mut w = World::new(s, vec![agent(0), agent(1), agent(2)]);
    w.snapshot_record = false;
    let toggled = |w: &World| -> Vec<String> {
        w.plan()
            .actions
            .iter()
            .filter(|a| matches!(a, PodAction::SetHibernate { hibernate: true, .. }))
            .map(|a| a.pod_name().to_string())
            .collect()
    };
    assert_eq!(toggled(&w), vec!["demo-1"], "one pod, not the main");
    // Asked and not hibernated yet: nobody else.
    w.pods[1].hibernate_requested = true;
    assert!(toggled(&w).is_empty());
    // It reports hibernated (its entry made the ConfigMap): the rest go together.
    w.pods[1] = hibernated(w.pods[1].clone(), 101);
    w.snapshot_record = true;
    assert_eq!(toggled(&w), vec!["demo-0", "demo-2"]);
    // A main asked first (a set of one) is never waited on: the provider never hibernates it.
    let mut alone = spec(0);
    alone.suspend = true;
    let mut w = World::new(alone, vec![agent(0)]);
    w.snapshot_record = false;
    assert_eq!(toggled(&w), vec!["demo-0"]);
}

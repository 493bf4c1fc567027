//! Property tests: invariants of the CocoonSet planner over random worlds, and convergence when
//! the planned actions are applied the way vk-cocoon would.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::PodAction;
use crate::api::{ToolboxMode, ToolboxOs};
use crate::contract;
use crate::plan::fixtures::*;
use crate::plan::observe::{PodRole, PodView};

#[derive(Clone, Debug)]
enum Shape {
    Serving,
    Pending,
    Starting,
    Hibernated,
    Terminating,
    Failed,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        4 => Just(Shape::Serving),
        1 => Just(Shape::Pending),
        1 => Just(Shape::Starting),
        1 => Just(Shape::Hibernated),
        1 => Just(Shape::Terminating),
        1 => Just(Shape::Failed),
    ]
}

fn shaped(p: PodView, s: &Shape) -> PodView {
    match s {
        Shape::Serving => p,
        Shape::Pending => pending(p),
        Shape::Starting => starting(p),
        Shape::Hibernated => hibernated(p, 1),
        Shape::Terminating => terminating(p),
        Shape::Failed => failed(p),
    }
}

const TOOLBOXES: [&str; 3] = ["lin", "win", "droid"];

#[derive(Clone, Debug)]
struct Input {
    replicas: i32,
    suspend: bool,
    listed: Vec<bool>,
    agents: Vec<Option<Shape>>,
    toolboxes: Vec<Option<Shape>>,
    creates_in_flight: Vec<bool>,
}

fn input() -> impl Strategy<Value = Input> {
    (
        0..5i32,
        any::<bool>(),
        proptest::collection::vec(any::<bool>(), 3),
        proptest::collection::vec(proptest::option::of(shape()), 7),
        proptest::collection::vec(proptest::option::of(shape()), 3),
        proptest::collection::vec(any::<bool>(), 7),
    )
        .prop_map(|(replicas, suspend, listed, agents, toolboxes, creates_in_flight)| Input {
            replicas,
            suspend,
            listed,
            agents,
            toolboxes,
            creates_in_flight,
        })
}

fn world(i: &Input) -> World {
    let mut s = spec(i.replicas);
    s.suspend = i.suspend;
    s.toolboxes = TOOLBOXES
        .iter()
        .zip(&i.listed)
        .filter(|(_, l)| **l)
        .map(|(n, _)| toolbox(n, ToolboxOs::Linux, ToolboxMode::Run))
        .collect();
    let mut pods = Vec::new();
    for (slot, shape) in i.agents.iter().enumerate() {
        if let Some(shape) = shape {
            pods.push(shaped(agent(slot as u32), shape));
        }
    }
    for (name, shape) in TOOLBOXES.iter().zip(&i.toolboxes) {
        if let Some(shape) = shape {
            pods.push(shaped(toolbox_pod(name, ToolboxMode::Run), shape));
        }
    }
    let mut w = World::new(s, pods);
    for (slot, inflight) in i.creates_in_flight.iter().enumerate() {
        let name = contract::agent_pod_name("demo", slot as u32);
        if *inflight && !w.pods.iter().any(|p| p.name == name) {
            w.expectations.expect_create(&name, w.now);
        }
    }
    w
}

/// Applies actions the way vk-cocoon and the API server would, instantly.
fn apply(w: &mut World, actions: &[PodAction]) {
    for action in actions {
        match action {
            PodAction::CreateMain { .. } => w.pods.push(agent(0)),
            PodAction::CreateSubAgent { slot, .. } => w.pods.push(agent(*slot)),
            PodAction::CreateToolbox { toolbox, .. } => {
                w.pods.push(toolbox_pod(toolbox, ToolboxMode::Run))
            }
            PodAction::Delete { pod_name, .. } => w.pods.retain(|p| p.name != *pod_name),
            // What vk-cocoon does on delete is not modelled here.
            PodAction::PrepareDelete { .. }
            | PodAction::CollectSnapshot { .. }
            | PodAction::ProbeSnapshot { .. } => {}
            PodAction::RepairLabels { pod_name, labels, .. } => {
                let pod = w.pods.iter_mut().find(|p| p.name == *pod_name).unwrap();
                for (k, v) in labels {
                    match v {
                        Some(v) => pod.labels.insert(k.clone(), v.as_str().into()),
                        None => pod.labels.remove(k),
                    };
                }
            }
            PodAction::SetHibernate { pod_name, hibernate, .. } => {
                let pod = w.pods.iter_mut().find(|p| p.name == *pod_name).unwrap();
                *pod = if *hibernate { hibernated(pod.clone(), 2) } else { serving(pod.clone()) };
                pod.hibernate_requested = *hibernate;
            }
        }
    }
    // Terminating pods finish; in-flight creates land; pending pods boot.
    w.pods.retain(|p| !p.terminating);
    let landed: Vec<u32> = (0..7)
        .filter(|s| w.expectations.create_pending(&contract::agent_pod_name("demo", *s)))
        .collect();
    for slot in landed {
        w.expectations.forget_create(&contract::agent_pod_name("demo", slot));
        w.pods.push(agent(slot));
    }
    for p in w.pods.iter_mut() {
        if !p.hibernate_requested && !p.is_terminal() && !p.is_serving() {
            *p = serving(p.clone());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_two_pods_for_one_slot(i in input()) {
        let w = world(&i);
        let plan = w.plan();
        let mut created = BTreeSet::new();
        for a in plan.actions.iter().filter(|a| a.is_create()) {
            prop_assert!(created.insert(a.pod_name().to_string()), "created twice: {}", a.pod_name());
            prop_assert!(!w.pods.iter().any(|p| p.name == a.pod_name()), "created over an existing pod {}", a.pod_name());
            prop_assert!(!w.expectations.create_pending(a.pod_name()), "created while a create is in flight");
        }
    }

    #[test]
    fn never_a_sub_agent_before_the_main_is_running_and_ready(i in input()) {
        let w = world(&i);
        let main_serves = w.pods.iter().any(|p| p.name == "demo-0" && p.is_serving());
        let plan = w.plan();
        if !main_serves {
            let forks = plan.actions.iter().filter(|a| matches!(a, PodAction::CreateSubAgent { .. })).count();
            prop_assert_eq!(forks, 0);
        }
    }

    #[test]
    fn never_a_create_while_suspended(i in input()) {
        let mut i = i;
        i.suspend = true;
        let plan = world(&i).plan();
        prop_assert!(!plan.actions.iter().any(PodAction::is_create));
    }

    #[test]
    fn scale_down_goes_highest_slot_first(i in input()) {
        let w = world(&i);
        let slots: Vec<u32> = w.plan().actions.iter().filter_map(|a| match a {
            PodAction::Delete {
                pod_name,
                reason: super::DeleteReason::ScaleDown,
                ..
            } => {
                w.pods.iter().find(|p| p.name == *pod_name).and_then(|p| p.slot)
            }
            _ => None,
        }).collect();
        let mut sorted = slots.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        prop_assert_eq!(slots, sorted);
    }

    #[test]
    fn status_counts_are_consistent_with_the_pods(i in input()) {
        let w = world(&i);
        let status = w.plan().status;
        let serving_desired = w.pods.iter()
            .filter(|p| p.role != Some(PodRole::Toolbox))
            .filter(|p| p.slot.is_some_and(|s| s <= i.replicas as u32) && p.is_serving())
            .count();
        prop_assert_eq!(status.ready_agents as usize, serving_desired);
        prop_assert_eq!(status.desired_agents, i.replicas + 1);
        prop_assert!(status.agents.len() > i.replicas as usize);
        prop_assert!(status.ready_agents <= status.desired_agents);
        prop_assert_eq!(status.toolboxes.len(), i.listed.iter().filter(|l| **l).count());
    }

    #[test]
    fn applying_the_plan_converges_to_no_further_actions(i in input()) {
        let mut w = world(&i);
        let mut last = Vec::new();
        for _ in 0..8 {
            let plan = w.plan();
            // Nothing to do is converged only once nothing is in flight either: a terminating
            // pod is waited for (its name is held), not done.
            if plan.actions.is_empty()
                && w.expectations.is_empty()
                && !w.pods.iter().any(|p| p.terminating)
            {
                break;
            }
            last = plan.actions.clone();
            apply(&mut w, &plan.actions);
            w.status = plan.status;
        }
        let plan = w.plan();
        prop_assert!(plan.actions.is_empty(), "still acting after 8 rounds: {:?} (before: {:?})", plan.actions, last);
        let names: BTreeMap<&str, usize> = w.pods.iter().fold(BTreeMap::new(), |mut m, p| { *m.entry(p.name.as_str()).or_default() += 1; m });
        prop_assert!(names.values().all(|n| *n == 1));
        let expected_agents = if i.suspend { w.pods.iter().filter(|p| p.role != Some(PodRole::Toolbox)).count() } else { i.replicas as usize + 1 };
        let agents = w.pods.iter().filter(|p| p.role != Some(PodRole::Toolbox)).count();
        prop_assert_eq!(agents, expected_agents);
    }
}

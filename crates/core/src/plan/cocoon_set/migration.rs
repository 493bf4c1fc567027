//! Moving a set's VMs to another node. `spec.nodeName` names a node other than the one the
//! set's pods are bound to (a user changed it, or `kubectl cocoon migrate`): the VMs there are
//! hibernated into the registry and their pods released (the set's seat-release path), then
//! created on the new node, where they restore. Each step is recorded in `status.migration`,
//! so an operator restart at any point carries on from the record and what the pods show.
//!
//! Refused, with a message, where the VMs could not come back on the other node: a seed
//! provider keeps its snapshots on its host; the two nodes must speak one family of keys; and
//! without the registry the operator cannot tell that a snapshot is there.

use crate::api::{CocoonSetSpec, CocoonSetStatus, MigrationPhase, MigrationStatus};
use crate::contract::Dialect;
use crate::plan::nodes::Nodes;
use crate::plan::observe::{PodRole, PodView};

/// What this pass does about a migration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migration {
    /// The record to keep in status (`None`: no migration, or it just ended).
    pub record: Option<MigrationStatus>,
    /// Where the set's pods stay for now (the old node, while it hibernates or when refused).
    pub stay_on: Option<String>,
    /// Why the move is refused.
    pub refused: Option<String>,
    /// Hibernate and release every agent now (the first step).
    pub release: bool,
    /// Pods on the old node that go without a snapshot (toolboxes, once the agents left).
    pub leave: Vec<String>,
    /// Why the move cannot go on by itself: agents a Hibernation holds on the old node (the
    /// user's hibernation, which the set neither wakes nor releases).
    pub waiting: Option<String>,
}

/// Plans the migration of this pass from the spec, the recorded one and the pods.
pub fn plan_migration(
    spec: &CocoonSetSpec,
    previous: &CocoonSetStatus,
    pods: &[PodView],
    nodes: &Nodes,
    registry: bool,
) -> Migration {
    let Some(to) = spec.node_name.as_deref() else {
        return Migration::default();
    };
    let live = || pods.iter().filter(|p| !p.terminating);
    let on = |node: String| live().filter(move |p| p.node.as_deref() == Some(node.as_str()));
    let from = match &previous.migration {
        Some(record) => record.from.clone(),
        None => match live().find_map(|p| p.node.as_deref().filter(|n| *n != to)) {
            Some(stray) => stray.to_string(),
            None => return Migration::default(),
        },
    };
    if from == to {
        // Asked back to where it came from: the pods still there stay, the released ones come
        // back there and restore.
        return Migration::default();
    }
    if let Some(why) = refusal(nodes, &from, to, registry) {
        let refused = format!(
            "refused: spec.nodeName is {to} but the set's VMs are on node {from}, and {why}; the \
             pods stay on {from} (set spec.nodeName back to {from})"
        );
        return Migration { stay_on: Some(from), refused: Some(refused), ..Default::default() };
    }
    let phase = previous.migration.as_ref().map_or(MigrationPhase::Hibernating, |r| r.phase);
    let agents_left = on(from.clone()).any(|p| p.role != Some(PodRole::Toolbox));
    let phase = match phase {
        MigrationPhase::Hibernating if agents_left => MigrationPhase::Hibernating,
        _ => MigrationPhase::Restoring,
    };
    let record = MigrationStatus { from: from.clone(), to: to.to_string(), phase };
    match phase {
        MigrationPhase::Hibernating => {
            let held: Vec<String> = on(from.clone())
                .filter(|p| p.role != Some(PodRole::Toolbox))
                .filter_map(|p| {
                    Some(format!("{} (Hibernation {})", p.name, p.rare.hibernated_by.as_ref()?))
                })
                .collect();
            let waiting = (!held.is_empty()).then(|| {
                format!(
                    "the move to node {to} waits for {}: a Hibernation holds them on node \
                     {from}; wake them or delete those Hibernations",
                    held.join(", ")
                )
            });
            Migration {
                record: Some(record),
                stay_on: Some(from),
                release: true,
                waiting,
                ..Default::default()
            }
        }
        MigrationPhase::Restoring => {
            let leave: Vec<String> = on(from.clone()).map(|p| p.name.to_string()).collect();
            let replicas = u32::try_from(spec.agent.replicas).unwrap_or(0);
            let serves_there = |slot: u32| {
                live().any(|p| {
                    p.slot == Some(slot) && p.node.as_deref() == Some(to) && p.is_serving()
                })
            };
            let arrived = leave.is_empty() && (spec.suspend || (0..=replicas).all(serves_there));
            if arrived {
                // Done: the record goes (the status change is the Event).
                Migration::default()
            } else {
                Migration { record: Some(record), leave, ..Default::default() }
            }
        }
    }
}

/// Why the VMs on `from` cannot come back on `to`, if they cannot.
fn refusal(nodes: &Nodes, from: &str, to: &str, registry: bool) -> Option<String> {
    let (source, target) = (nodes.dialect(from), nodes.dialect(to));
    if source == Dialect::Seed {
        return Some(format!(
            "a seed vk-cocoon (node {from}) keeps its snapshots on its host: they cannot be \
             restored on another node"
        ));
    }
    if nodes.get(to).is_none() {
        return Some(format!("node {to} is not in the cluster"));
    }
    if !source.same_keys(target) {
        return Some(format!("node {to} speaks the {target} dialect, node {from} the {source}"));
    }
    // A current provider's memory snapshot resumes only on a node of the CPU class it was
    // taken on (PROVIDERS.md §1); a node without the label says nothing either way.
    if let (Some(here), Some(there)) = (nodes.cpu_class(from), nodes.cpu_class(to))
        && here != there
    {
        return Some(format!(
            "node {to} is of snapshot CPU class {there}, node {from} of {here}: a memory \
             snapshot resumes only on a node of the class it was taken on"
        ));
    }
    if !registry {
        return Some(
            "the operator has no --registry: it cannot tell that each VM's snapshot is there"
                .to_string(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::NodeInfo;
    use crate::plan::fixtures::{agent, spec, toolbox_pod};

    fn fleet(dialect: Dialect) -> Nodes {
        let mut nodes = Nodes::new(Dialect::Seed, None);
        for name in ["n1", "n2"] {
            nodes.set(name, NodeInfo { dialect, ..NodeInfo::default() });
        }
        nodes
    }

    fn on(mut pod: PodView, node: &str) -> PodView {
        pod.node = Some(node.into());
        pod
    }

    fn to(node: &str) -> CocoonSetSpec {
        let mut spec = spec(1);
        spec.node_name = Some(node.into());
        spec
    }

    fn recorded(phase: MigrationPhase) -> CocoonSetStatus {
        let record = MigrationStatus { from: "n1".into(), to: "n2".into(), phase };
        CocoonSetStatus { migration: Some(record), ..CocoonSetStatus::default() }
    }

    #[test]
    fn a_set_whose_pods_are_where_its_spec_says_does_not_move() {
        let pods = [on(agent(0), "n2"), on(agent(1), "n2")];
        let none = CocoonSetStatus::default();
        let m = plan_migration(&to("n2"), &none, &pods, &fleet(Dialect::Current), true);
        assert_eq!(m, Migration::default());
        let mut scheduled = to("n2");
        scheduled.node_name = None;
        let m = plan_migration(&scheduled, &none, &pods, &fleet(Dialect::Current), true);
        assert_eq!(m, Migration::default(), "no nodeName: the set is where it was placed");
    }

    #[test]
    fn a_new_node_name_hibernates_and_releases_the_agents_where_they_are_first() {
        let pods = [
            on(agent(0), "n1"),
            on(agent(1), "n1"),
            on(toolbox_pod("tb", crate::api::ToolboxMode::Run), "n1"),
        ];
        let none = CocoonSetStatus::default();
        let m = plan_migration(&to("n2"), &none, &pods, &fleet(Dialect::Current), true);
        assert_eq!(m.record, recorded(MigrationPhase::Hibernating).migration);
        assert_eq!(m.stay_on.as_deref(), Some("n1"));
        assert!(m.release && m.leave.is_empty() && m.refused.is_none());
    }

    #[test]
    fn once_the_agents_left_the_rest_goes_and_the_set_restores_on_the_new_node() {
        let tb = on(toolbox_pod("tb", crate::api::ToolboxMode::Run), "n1");
        let hibernating = recorded(MigrationPhase::Hibernating);
        let nodes = fleet(Dialect::Current);
        let m = plan_migration(&to("n2"), &hibernating, std::slice::from_ref(&tb), &nodes, true);
        assert_eq!(m.record.as_ref().map(|r| r.phase), Some(MigrationPhase::Restoring));
        assert_eq!(m.stay_on, None, "pods go to spec.nodeName now");
        assert!(!m.release);
        assert_eq!(m.leave, vec!["demo-tb".to_string()]);
        // An operator restart reads the record: the same step.
        let restoring = recorded(MigrationPhase::Restoring);
        let again = plan_migration(&to("n2"), &restoring, std::slice::from_ref(&tb), &nodes, true);
        assert_eq!(again, m);
        // Every agent serves on n2 and nothing is left on n1: done.
        let arrived = [on(agent(0), "n2"), on(agent(1), "n2")];
        let done = plan_migration(&to("n2"), &restoring, &arrived, &nodes, true);
        assert_eq!(done, Migration::default(), "the record goes");
        // Asked back to n1 halfway: no migration; the pods come back where they were.
        let back = plan_migration(&to("n1"), &restoring, &[], &nodes, true);
        assert_eq!(back, Migration::default());
        // The target leaves the cluster halfway: the move is refused and the released VMs come
        // back on the node they left, from the snapshots they were released with.
        let mut shrunk = nodes.clone();
        shrunk.remove("n2");
        let gone = plan_migration(&to("n2"), &restoring, &[], &shrunk, true);
        assert_eq!((gone.record, gone.stay_on.as_deref()), (None, Some("n1")));
        assert!(gone.refused.expect("refused").contains("node n2 is not in the cluster"));
        // Not before every agent serves there.
        let half = [on(agent(0), "n2")];
        assert!(plan_migration(&to("n2"), &restoring, &half, &nodes, true).record.is_some());
    }

    #[test]
    fn an_agent_a_hibernation_holds_keeps_the_move_waiting_and_says_so() {
        let mut held = on(agent(1), "n1");
        held.rare.hibernated_by = Some("pause-1".into());
        let pods = [on(agent(0), "n1"), held];
        let none = CocoonSetStatus::default();
        let m = plan_migration(&to("n2"), &none, &pods, &fleet(Dialect::Current), true);
        assert!(m.release, "the rest is released as usual");
        let why = m.waiting.expect("a reason to wait");
        assert!(why.contains("demo-1 (Hibernation pause-1)"), "{why}");
        assert!(why.contains("wake them or delete those Hibernations"), "{why}");
        let free = [on(agent(0), "n1"), on(agent(1), "n1")];
        let m = plan_migration(&to("n2"), &none, &free, &fleet(Dialect::Current), true);
        assert_eq!(m.waiting, None);
    }

    #[test]
    fn a_move_the_vms_could_not_survive_is_refused_and_the_set_stays() {
        let pods = [on(agent(0), "n1")];
        let none = CocoonSetStatus::default();
        let seed = plan_migration(&to("n2"), &none, &pods, &fleet(Dialect::Seed), true);
        assert_eq!(seed.stay_on.as_deref(), Some("n1"));
        assert_eq!(seed.record, None);
        assert!(!seed.release);
        let why = seed.refused.expect("refused");
        assert!(why.contains("keeps its snapshots on its host"), "{why}");
        let no_registry = plan_migration(&to("n2"), &none, &pods, &fleet(Dialect::Current), false);
        assert!(no_registry.refused.expect("refused").contains("--registry"));
        let mut mixed = fleet(Dialect::Current);
        mixed.set("n2", NodeInfo::default());
        let m = plan_migration(&to("n2"), &none, &pods, &mixed, true);
        assert!(m.refused.expect("refused").contains("speaks the seed dialect"));
        let mut classes = fleet(Dialect::Current);
        for (name, class) in [("n1", "zen4"), ("n2", "icelake")] {
            let info = NodeInfo {
                dialect: Dialect::Current,
                cpu_class: Some(class.into()),
                ..NodeInfo::default()
            };
            classes.set(name, info);
        }
        let m = plan_migration(&to("n2"), &none, &pods, &classes, true);
        let why = m.refused.expect("another CPU class is refused");
        assert!(why.contains("node n2 is of snapshot CPU class icelake, node n1 of zen4"), "{why}");
        assert_eq!((m.stay_on.as_deref(), m.release), (Some("n1"), false));
        let gone = plan_migration(&to("n9"), &none, &pods, &fleet(Dialect::Current), true);
        assert!(gone.refused.expect("refused").contains("n9 is not in the cluster"));
    }
}

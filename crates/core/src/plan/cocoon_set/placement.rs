//! Where a set's VMs go, and what is known of that node.
//!
//! A set lives on one node. With `spec.nodeName` every pod is bound there. Without it, the
//! main is created for the Kubernetes scheduler (selecting the provider's pool of the set's
//! dialect, narrowed by the spec); once it is bound, its node is the set's (recorded in
//! `status.node`), and every other pod is bound to it: a sub-agent or warm slot is a fork of
//! the main, made by the provider that runs the main, and a seed provider keeps its snapshots
//! on that host. A pod created again later goes back to the recorded node; moving a set is a
//! migration, not a side effect of a restart.
//!
//! The set reports its node's trouble: NotReady (its provider's heartbeat is not heard; the
//! pods tolerate it forever, since evicting a VM pod destroys the VM), or gone from the
//! cluster. A gone node's VMs are lost; the set creates nothing there, and recreates them
//! elsewhere only under `onNodeLoss: recreate`.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::{CocoonSetSpec, NodeLossPolicy};
use crate::plan::clock;
use crate::plan::nodes::Nodes;
use crate::plan::observe::PodView;

/// Where the set's pods go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The node every pod is bound to (`spec.nodeName`, the main's, or the recorded one).
    /// `None`: the main is created for the scheduler; the set's other pods wait for it.
    pub node: Option<String>,
    /// What is wrong with the set's node, if anything.
    pub trouble: Option<NodeTrouble>,
}

/// What is wrong with a set's node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeTrouble {
    /// The node's Ready condition does not hold: its provider's heartbeat is not heard. The
    /// VMs there may still run; their pods stay.
    NotReady(String),
    /// The node is not in the cluster: deleted (the set was placed there) or never registered.
    Gone {
        /// The node.
        node: String,
        /// The set asks for its VMs to be placed again (`onNodeLoss: recreate`): the pods
        /// still bound there are deleted at once and the set is placed anew.
        replace: bool,
    },
}

impl NodeTrouble {
    /// The node in trouble.
    pub fn node(&self) -> &str {
        match self {
            Self::NotReady(node) | Self::Gone { node, .. } => node,
        }
    }

    /// Whether the set may create pods: never on a node gone from the cluster (the garbage
    /// collector would remove each as it came, and a lost VM must not be booted anew
    /// unasked). `spec.nodeName` names a node the user chose, perhaps before it registered:
    /// pods are created for it as always.
    pub fn blocks_creates(&self, spec: &CocoonSetSpec) -> bool {
        matches!(self, Self::Gone { replace: false, .. }) && spec.node_name.is_none()
    }
}

/// Where the set's pods go: `spec.nodeName`; else the node the main pod is bound to; else the
/// node recorded in status (`recorded`) unless it is gone and the spec asks to place the set
/// again; else nowhere yet (the main is created for the scheduler).
pub fn place(
    spec: &CocoonSetSpec,
    recorded: Option<&str>,
    main: Option<&PodView>,
    nodes: &Nodes,
) -> Placement {
    let main_node = main.filter(|m| !m.terminating).and_then(|m| m.node.as_deref());
    let chosen = spec.node_name.as_deref().or(main_node).or(recorded);
    let Some(node) = chosen else {
        return Placement { node: None, trouble: None };
    };
    let trouble = match nodes.get(node) {
        Some(info) if info.ready => None,
        Some(_) => Some(NodeTrouble::NotReady(node.to_string())),
        None => Some(NodeTrouble::Gone {
            node: node.to_string(),
            replace: spec.node_name.is_none() && spec.on_node_loss == NodeLossPolicy::Recreate,
        }),
    };
    let node = match &trouble {
        Some(NodeTrouble::Gone { replace: true, .. }) => None,
        _ => Some(node.to_string()),
    };
    Placement { node, trouble }
}

/// How long a pod left to the scheduler may wait for its first look before the set says that
/// no scheduler seems to be looking.
pub const SCHEDULER_SILENT_AFTER: Duration = Duration::from_secs(30);

/// Pods left to the scheduler that no scheduler has looked at (no `PodScheduled` condition,
/// either way) for [`SCHEDULER_SILENT_AFTER`]: what to tell the user about each, and when to
/// look again for those that may still be looked at. A cluster without kube-scheduler (or a
/// pod asking for a `schedulerName` nobody serves) leaves the main Pending with no word.
pub fn scheduler_silence<'a>(
    pods: impl IntoIterator<Item = &'a PodView>,
    now: Timestamp,
) -> (Vec<String>, Option<Duration>) {
    let mut said = Vec::new();
    let mut look_again: Option<Duration> = None;
    let waiting =
        pods.into_iter().filter(|p| !p.terminating && p.node.is_none() && !p.scheduler_looked);
    for pod in waiting {
        let Some(created) = pod.created_at else { continue };
        let deadline = clock::after(created, SCHEDULER_SILENT_AFTER);
        if deadline <= now {
            said.push(format!(
                "pod {} waits for a scheduler: none has looked at it in {} s (is kube-scheduler \
                 running? spec.nodeName places the set on a node by hand)",
                pod.name,
                clock::since(created, now).as_secs()
            ));
        } else {
            let left = clock::until(now, deadline);
            look_again = Some(look_again.map_or(left, |l| l.min(left)));
        }
    }
    (said, look_again)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Dialect;
    use crate::plan::NodeInfo;
    use crate::plan::fixtures::spec;

    fn nodes(list: &[(&str, bool)]) -> Nodes {
        let mut nodes = Nodes::new(Dialect::Seed, None);
        for (name, ready) in list {
            nodes.set(name, NodeInfo { ready: *ready, ..NodeInfo::default() });
        }
        nodes
    }

    fn main_on(node: Option<&str>) -> PodView {
        let mut pod = PodView::new("demo-0");
        pod.node = node.map(Into::into);
        pod
    }

    #[test]
    fn spec_node_name_binds_the_set_as_before() {
        let mut spec = spec(1);
        spec.node_name = Some("n1".into());
        let placed = place(&spec, None, None, &nodes(&[("n1", true)]));
        assert_eq!(placed, Placement { node: Some("n1".into()), trouble: None });
    }

    #[test]
    fn without_node_name_the_main_waits_for_the_scheduler_then_the_set_follows_it() {
        let mut spec = spec(1);
        spec.node_name = None;
        let fleet = nodes(&[("n1", true), ("n2", true)]);
        assert_eq!(place(&spec, None, None, &fleet).node, None, "no main yet");
        let pending = main_on(None);
        assert_eq!(place(&spec, None, Some(&pending), &fleet).node, None, "not bound yet");
        let bound = main_on(Some("n2"));
        assert_eq!(place(&spec, None, Some(&bound), &fleet).node.as_deref(), Some("n2"));
        // The main went (deleted by a user): its replacement goes back where the set lives.
        assert_eq!(place(&spec, Some("n2"), None, &fleet).node.as_deref(), Some("n2"));
    }

    #[test]
    fn a_node_not_ready_is_reported_and_keeps_the_set() {
        let mut spec = spec(1);
        spec.node_name = None;
        let placed = place(&spec, Some("n1"), None, &nodes(&[("n1", false)]));
        assert_eq!(placed.node.as_deref(), Some("n1"));
        assert_eq!(placed.trouble, Some(NodeTrouble::NotReady("n1".into())));
        assert!(!placed.trouble.unwrap().blocks_creates(&spec));
    }

    #[test]
    fn a_gone_node_is_reported_and_only_recreate_places_the_set_again() {
        let mut spec = spec(1);
        spec.node_name = None;
        let fleet = nodes(&[("n2", true)]);
        let bound = main_on(Some("n1"));
        let placed = place(&spec, Some("n1"), Some(&bound), &fleet);
        assert_eq!(placed.node.as_deref(), Some("n1"));
        let trouble = placed.trouble.expect("gone");
        assert_eq!(trouble, NodeTrouble::Gone { node: "n1".into(), replace: false });
        assert!(trouble.blocks_creates(&spec), "report: nothing is booted anew unasked");

        spec.on_node_loss = NodeLossPolicy::Recreate;
        let placed = place(&spec, Some("n1"), Some(&bound), &fleet);
        assert_eq!(placed.node, None, "placed again by the scheduler");
        assert!(!placed.trouble.expect("still said").blocks_creates(&spec));
    }

    #[test]
    fn a_spec_node_not_in_the_cluster_is_said_but_pods_are_created_for_it() {
        let mut spec = spec(1);
        spec.node_name = Some("later".into());
        spec.on_node_loss = NodeLossPolicy::Recreate;
        let placed = place(&spec, None, None, &nodes(&[]));
        assert_eq!(placed.node.as_deref(), Some("later"));
        let trouble = placed.trouble.expect("said");
        assert_eq!(trouble, NodeTrouble::Gone { node: "later".into(), replace: false });
        assert!(!trouble.blocks_creates(&spec));
    }

    #[test]
    fn a_main_no_scheduler_looks_at_is_said_after_a_while_and_looked_at_again_until_then() {
        let created: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut pending = main_on(None);
        pending.created_at = Some(created);
        let at = |secs: i64| created + k8s_openapi::jiff::SignedDuration::from_secs(secs);
        let (said, again) = scheduler_silence([&pending], at(10));
        assert!(said.is_empty());
        assert_eq!(again, Some(Duration::from_secs(20)), "looks again at the deadline");
        let (said, again) = scheduler_silence([&pending], at(31));
        assert_eq!(again, None, "no more timers once said");
        assert!(said[0].contains("pod demo-0 waits for a scheduler"), "{said:?}");
        assert!(said[0].contains("in 31 s"), "{said:?}");
        // A scheduler that looked (even to refuse) has its own words; a bound pod needs none.
        let mut looked = pending.clone();
        looked.scheduler_looked = true;
        let mut bound = pending.clone();
        bound.node = Some("n1".into());
        let mut going = pending.clone();
        going.terminating = true;
        assert_eq!(scheduler_silence([&looked, &bound, &going], at(300)), (Vec::new(), None));
    }
}

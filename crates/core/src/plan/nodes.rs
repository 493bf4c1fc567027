//! What the operator knows of the provider's nodes: the dialect each speaks and its snapshot
//! CPU class, and the dialect assumed for a node it has not seen (or every node, when forced).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use crate::contract::Dialect;
use crate::contract::dialect::{DialectSource, NODE_LABEL_CPU_CLASS};
use crate::plan::observe::PodView;

/// A provider node as a watch shows it: its name, what planning reads of it, and how its
/// dialect was told (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSeen {
    /// The node's name.
    pub name: String,
    /// Its dialect and CPU class.
    pub info: NodeInfo,
    /// How the dialect was told.
    pub how: DialectSource,
}

impl NodeSeen {
    /// Reads a node object: its labels and `status.nodeInfo.kubeletVersion`.
    pub fn of(node: &Node) -> Self {
        let empty = BTreeMap::new();
        let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
        let version = node
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.kubelet_version.as_str())
            .unwrap_or_default();
        let told = Dialect::of_node(labels, version);
        // Ready unless its Ready condition says otherwise (False, or Unknown once the node
        // lifecycle controller stops hearing its heartbeat). A node that never reported is
        // not known to be down.
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_none_or(|c| c.status == "True");
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            info: NodeInfo {
                dialect: told.dialect,
                cpu_class: labels.get(NODE_LABEL_CPU_CLASS).filter(|c| !c.is_empty()).cloned(),
                ready,
            },
            how: told.how,
        }
    }
}

/// One node, as far as planning cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The dialect its provider speaks.
    pub dialect: Dialect,
    /// Its snapshot CPU class (current), if it has one.
    pub cpu_class: Option<String>,
    /// Whether its Ready condition holds (its provider's heartbeat is heard).
    pub ready: bool,
}

impl Default for NodeInfo {
    fn default() -> Self {
        Self { dialect: Dialect::default(), cpu_class: None, ready: true }
    }
}

/// The provider's nodes the operator has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nodes {
    known: BTreeMap<String, NodeInfo>,
    /// The dialect of a node not seen (the flag's, or seed).
    default: Dialect,
    /// Every node speaks this one (the operator was told so).
    forced: Option<Dialect>,
}

impl Nodes {
    /// No node seen yet; `default` for nodes not seen, `forced` for every node.
    pub fn new(default: Dialect, forced: Option<Dialect>) -> Self {
        Self { known: BTreeMap::new(), default, forced }
    }

    /// Records node `name`; whether anything planning reads changed.
    pub fn set(&mut self, name: &str, info: NodeInfo) -> bool {
        if self.known.get(name) == Some(&info) {
            return false;
        }
        self.known.insert(name.to_string(), info);
        true
    }

    /// Forgets node `name` (deleted); whether it was known.
    pub fn remove(&mut self, name: &str) -> bool {
        self.known.remove(name).is_some()
    }

    /// The dialect of node `name`.
    pub fn dialect(&self, name: &str) -> Dialect {
        self.forced.or_else(|| self.known.get(name).map(|n| n.dialect)).unwrap_or(self.default)
    }

    /// Node `name`, if it is in the cluster (the operator lists the provider's nodes before
    /// any set is planned: a node not here was deleted, or never registered).
    pub fn get(&self, name: &str) -> Option<&NodeInfo> {
        self.known.get(name)
    }

    /// The dialect a set speaks before the scheduler places it: the forced one; else that of
    /// the provider's nodes when they all speak one family of keys (the newest of them:
    /// current and v0.2 nodes share their keys); else the default. The set's main selects
    /// nodes of that family ([`Dialect::pool_affinity`]), so it lands where it is understood.
    pub fn pool_dialect(&self) -> Dialect {
        if let Some(forced) = self.forced {
            return forced;
        }
        let mut dialects = self.known.values().map(|n| n.dialect);
        let Some(first) = dialects.next() else { return self.default };
        dialects.try_fold(first, |a, b| a.same_keys(b).then_some(a.max(b))).unwrap_or(self.default)
    }

    /// The snapshot CPU class of node `name`.
    pub fn cpu_class(&self, name: &str) -> Option<&str> {
        self.known.get(name).and_then(|n| n.cpu_class.as_deref())
    }

    /// Why `pods` cannot be driven as one set on node `node` of dialect `dialect`: pods that
    /// are on a node of another dialect, or carry another dialect's keys. `None` when every pod
    /// speaks the same keys as the node.
    pub fn mixed(&self, node: &str, dialect: Dialect, pods: &[PodView]) -> Option<String> {
        let strangers: Vec<String> = pods
            .iter()
            .filter(|p| !p.terminating)
            .filter_map(|p| {
                let on = p.node.as_deref().unwrap_or(node);
                let theirs = match p.dialect {
                    Some(d) if !d.same_keys(dialect) => d,
                    _ => self.dialect(on),
                };
                (!theirs.same_keys(dialect)).then(|| format!("{} (node {on}, {theirs})", p.name))
            })
            .collect();
        (!strangers.is_empty()).then(|| {
            format!(
                "refused: node {node} speaks the {dialect} dialect of vk-cocoon but pods {} do \
                 not; a set's pods must all be on nodes of one dialect (delete those pods, or \
                 point spec.nodeName at a node of theirs)",
                strangers.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_object_is_read_for_its_dialect_and_class() {
        use k8s_openapi::api::core::v1::{NodeStatus, NodeSystemInfo};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let node = Node {
            metadata: ObjectMeta {
                name: Some("vk-1".into()),
                labels: Some(BTreeMap::from([
                    ("cocoonstack.io/pool".to_string(), "default".to_string()),
                    (NODE_LABEL_CPU_CLASS.to_string(), "zen4".to_string()),
                ])),
                ..Default::default()
            },
            status: Some(NodeStatus {
                node_info: Some(NodeSystemInfo {
                    kubelet_version: "v0.3.7".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let seen = NodeSeen::of(&node);
        assert_eq!(seen.name, "vk-1");
        assert_eq!(seen.info.dialect, Dialect::Current);
        assert_eq!(seen.info.cpu_class.as_deref(), Some("zen4"));
        assert_eq!(NodeSeen::of(&Node::default()).info.dialect, Dialect::Seed);
        assert!(seen.info.ready, "a node that never reported is not known to be down");
        let mut down = node.clone();
        down.status.as_mut().unwrap().conditions =
            Some(vec![k8s_openapi::api::core::v1::NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                ..Default::default()
            }]);
        assert!(!NodeSeen::of(&down).info.ready);
    }

    #[test]
    fn an_unplaced_set_speaks_the_family_its_pool_speaks() {
        let info = |dialect| NodeInfo { dialect, ..NodeInfo::default() };
        let mut nodes = Nodes::new(Dialect::Seed, None);
        assert_eq!(nodes.pool_dialect(), Dialect::Seed, "no node: the default");
        nodes.set("a", info(Dialect::V02));
        nodes.set("b", info(Dialect::Current));
        assert_eq!(nodes.pool_dialect(), Dialect::Current, "one family: its newest");
        nodes.set("c", info(Dialect::Seed));
        assert_eq!(nodes.pool_dialect(), Dialect::Seed, "two families: the default");
        let forced = Nodes::new(Dialect::Seed, Some(Dialect::V02));
        assert_eq!(forced.pool_dialect(), Dialect::V02);
    }

    #[test]
    fn a_node_not_seen_has_the_default_dialect_and_a_forced_one_wins() {
        let mut nodes = Nodes::new(Dialect::Seed, None);
        assert_eq!(nodes.dialect("n1"), Dialect::Seed);
        assert!(nodes.set("n1", NodeInfo { dialect: Dialect::V02, cpu_class: None, ready: true }));
        assert!(!nodes.set("n1", NodeInfo { dialect: Dialect::V02, cpu_class: None, ready: true }));
        assert_eq!(nodes.dialect("n1"), Dialect::V02);
        let class =
            NodeInfo { dialect: Dialect::Current, cpu_class: Some("zen4".into()), ready: true };
        assert!(nodes.set("n2", class));
        assert_eq!(nodes.cpu_class("n2"), Some("zen4"));
        assert!(nodes.remove("n1"));
        assert_eq!(nodes.dialect("n1"), Dialect::Seed);
        let forced = Nodes::new(Dialect::Seed, Some(Dialect::Current));
        assert_eq!(forced.dialect("anything"), Dialect::Current);
    }

    #[test]
    fn pods_of_another_dialect_make_a_set_mixed() {
        let mut nodes = Nodes::new(Dialect::Seed, None);
        nodes.set("old", NodeInfo { dialect: Dialect::Seed, cpu_class: None, ready: true });
        nodes.set("new", NodeInfo { dialect: Dialect::Current, cpu_class: None, ready: true });
        nodes.set("v02", NodeInfo { dialect: Dialect::V02, cpu_class: None, ready: true });
        let mut pod = PodView::new("demo-0");
        pod.node = Some("old".into());
        pod.dialect = Some(Dialect::Seed);
        let message = nodes.mixed("new", Dialect::Current, std::slice::from_ref(&pod));
        let message = message.expect("a seed pod under a current node");
        assert!(message.contains("demo-0 (node old, seed)"), "{message}");
        assert!(message.contains("node new speaks the current dialect"), "{message}");
        assert_eq!(nodes.mixed("old", Dialect::Seed, std::slice::from_ref(&pod)), None);
        // v0.2 and current share their keys: a set may span them (an upgrade in place).
        pod.node = Some("v02".into());
        pod.dialect = Some(Dialect::V02);
        assert_eq!(nodes.mixed("new", Dialect::Current, std::slice::from_ref(&pod)), None);
        // A pod on the set's node that carries the other family's keys is mixed too.
        pod.node = Some("new".into());
        pod.dialect = Some(Dialect::Seed);
        assert!(nodes.mixed("new", Dialect::Current, std::slice::from_ref(&pod)).is_some());
        pod.terminating = true;
        assert_eq!(nodes.mixed("new", Dialect::Current, &[pod]), None, "going anyway");
    }
}

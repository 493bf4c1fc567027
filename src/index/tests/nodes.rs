//! Provider nodes: each one's dialect goes into the cell the actors read; a change wakes every
//! actor, a heartbeat that changes nothing wakes none, and a re-list forgets deleted nodes.

use std::sync::Arc;

use kube::runtime::watcher::Event;

use super::*;
use crate::contract::Dialect;
use crate::contract::dialect::DialectSource;
use crate::plan::{NodeInfo, NodeSeen, Nodes};

fn node(name: &str, dialect: Dialect) -> NodeSeen {
    NodeSeen {
        name: name.into(),
        info: NodeInfo { dialect, cpu_class: None, ready: true },
        how: DialectSource::Version,
    }
}

fn node_event(e: Event<NodeSeen>) -> Input {
    Input::Watch(Box::new(WatchEvent::Node(e)))
}

fn wakes(out: &[Delivery]) -> bool {
    out.iter().any(|d| matches!(d, Delivery::WakeAll))
}

#[test]
fn a_nodes_dialect_reaches_the_actors_and_only_a_change_wakes_them() {
    let cell = Arc::new(NodeCell::new(Nodes::new(Dialect::Seed, None)));
    let mut index = Index::with_nodes(cell.clone());
    assert_eq!(cell.current().dialect("vk-1"), Dialect::Seed, "not seen: the default");
    let out = index.apply(node_event(Event::Apply(node("vk-1", Dialect::V02))));
    assert!(wakes(&out));
    assert_eq!(cell.current().dialect("vk-1"), Dialect::V02);
    // A status heartbeat: same dialect, nothing to plan again.
    let out = index.apply(node_event(Event::Apply(node("vk-1", Dialect::V02))));
    assert!(out.is_empty(), "{out:?}");
    // Upgraded in place.
    let out = index.apply(node_event(Event::Apply(node("vk-1", Dialect::Current))));
    assert!(wakes(&out));
    assert_eq!(cell.current().dialect("vk-1"), Dialect::Current);
}

#[test]
fn a_relist_forgets_a_node_deleted_while_the_watch_was_down() {
    let cell = Arc::new(NodeCell::new(Nodes::new(Dialect::Seed, None)));
    let mut index = Index::with_nodes(cell.clone());
    index.apply(node_event(Event::Apply(node("gone", Dialect::V02))));
    index.apply(node_event(Event::Init));
    index.apply(node_event(Event::InitApply(node("kept", Dialect::V02))));
    let out = index.apply(node_event(Event::InitDone));
    assert!(wakes(&out));
    assert_eq!(cell.current().dialect("gone"), Dialect::Seed);
    assert_eq!(cell.current().dialect("kept"), Dialect::V02);
}

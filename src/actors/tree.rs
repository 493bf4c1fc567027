//! The live actor tree for `/debug/actors`: supervisor → CocoonSet and Hibernation actors, as
//! JSON or as an indented text tree a person reads in a terminal.

use std::fmt::Write;

use serde::Serialize;

use std::sync::Mutex;

use super::inbox::Inbox;
use super::registry::Registry;
use super::stats::ActorStats;
use super::{ActorKey, ActorKind};

/// One actor in the tree.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorNode {
    pub key: String,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// ractor's view of the actor (Running, Stopping, ...), or `Resting` for an actor at rest
    /// (no ractor actor; its part parked in the registry).
    pub actor_status: String,
    /// At rest: revived by the next update, node change or resync.
    pub resting: bool,
    pub mailbox_depth: usize,
    pub restarts: u32,
    #[serde(flatten)]
    pub stats: ActorStats,
}

/// `actorStatus` of an actor at rest.
const RESTING: &str = "Resting";

/// The whole tree.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorTree {
    pub supervisor: &'static str,
    pub synced: bool,
    pub cocoon_sets: Vec<ActorNode>,
    pub hibernations: Vec<ActorNode>,
}

/// Takes a consistent-enough snapshot of the routing table.
pub fn snapshot(registry: &Registry, synced: bool) -> ActorTree {
    let node = |key: &ActorKey, actor_status: String, inbox: &Inbox, stats: &Mutex<ActorStats>| {
        let stats = stats.lock().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone());
        ActorNode {
            key: key.to_string(),
            kind: key.kind.as_str(),
            namespace: key.namespace.to_string(),
            name: key.name.to_string(),
            resting: actor_status == RESTING,
            actor_status,
            mailbox_depth: inbox.depth(),
            restarts: 0,
            stats,
        }
    };
    let running = registry.iter().map(|e| {
        let h = e.value();
        let status = format!("{:?}", h.actor.get_status());
        (
            e.key().clone(),
            ActorNode { restarts: h.restarts, ..node(e.key(), status, &h.inbox, &h.stats) },
        )
    });
    let resting = registry.iter_resting().map(|e| {
        let r = e.value();
        let n = node(e.key(), RESTING.into(), &r.inbox, &r.stats);
        (e.key().clone(), ActorNode { restarts: r.restarts, ..n })
    });
    let mut nodes: Vec<(ActorKey, ActorNode)> = running.chain(resting).collect();
    // A key revived a moment ago may show twice in one snapshot: the running one stays.
    nodes.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.resting.cmp(&b.1.resting)));
    nodes.dedup_by(|later, earlier| later.0 == earlier.0);
    let (sets, hibs): (Vec<_>, Vec<_>) =
        nodes.into_iter().partition(|(k, _)| k.kind == ActorKind::CocoonSet);
    ActorTree {
        supervisor: "running",
        synced,
        cocoon_sets: sets.into_iter().map(|(_, n)| n).collect(),
        hibernations: hibs.into_iter().map(|(_, n)| n).collect(),
    }
}

fn line(out: &mut String, branch: &str, node: &ActorNode) {
    let s = &node.stats;
    let _ = writeln!(
        out,
        "{branch}{} [{}] phase={} gen={} pods={} mailbox={} restarts={} reconciles={} last={}{}{}",
        node.key,
        s.status.as_str(),
        s.phase.unwrap_or("-"),
        s.observed_generation.map(|g| g.to_string()).unwrap_or_else(|| "-".into()),
        s.pod_count,
        node.mailbox_depth,
        node.restarts,
        s.reconciles,
        s.last_reconcile.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
        s.last_error.as_ref().map(|e| format!(" error={e}")).unwrap_or_default(),
        if node.resting { " (at rest)" } else { "" },
    );
}

/// Renders the tree as indented text.
pub fn render_text(tree: &ActorTree) -> String {
    let mut out = format!("supervisor [{}] synced={}\n", tree.supervisor, tree.synced);
    let groups = [("CocoonSets", &tree.cocoon_sets), ("Hibernations", &tree.hibernations)];
    for (gi, (title, nodes)) in groups.iter().enumerate() {
        let last_group = gi == groups.len() - 1;
        let _ =
            writeln!(out, "{}{title} ({})", if last_group { "└── " } else { "├── " }, nodes.len());
        let indent = if last_group { "    " } else { "│   " };
        for (i, node) in nodes.iter().enumerate() {
            let branch = if i == nodes.len() - 1 { "└── " } else { "├── " };
            line(&mut out, &format!("{indent}{branch}"), node);
        }
    }
    out
}

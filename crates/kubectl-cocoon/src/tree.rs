//! The `kubectl cocoon status` view, as a pure function of the objects listed: each set with its
//! agents (slot, role, phase, VM, IP, where it was forked from) and toolboxes (connection type),
//! then the namespace's Hibernations with their pod and phase. Colour only when asked (a TTY).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use cocoon_core::api::{CocoonSet, ConnType, Hibernation};
use cocoon_core::plan::Lineage;

/// ANSI colours by what a phase means: serving, resting, moving, broken.
fn paint(text: &str, phase: &str, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let code = match phase {
        "Running" | "Active" => "32",
        "Hibernated" | "Suspended" | "Released" => "36",
        "Failed" | "ProviderFailed" | "Error" => "31",
        "" | "-" => return text.to_string(),
        _ => "33",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn bold(text: &str, color: bool) -> String {
    if color { format!("\x1b[1m{text}\x1b[0m") } else { text.to_string() }
}

fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_string()
}

/// Rows of cells, padded to the widest cell of each column; the phase column (index
/// `phase_col`) is coloured after padding so escapes do not break alignment.
fn table(prefixes: &[String], rows: &[Vec<String>], phase_col: usize, color: bool) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (prefix, row) in prefixes.iter().zip(rows) {
        let mut line = prefix.clone();
        for (c, cell) in row.iter().enumerate() {
            let padded = if c + 1 == row.len() {
                cell.clone()
            } else {
                format!("{cell:<width$}  ", width = widths[c])
            };
            if c == phase_col {
                line.push_str(&paint(&padded, cell, color));
            } else {
                line.push_str(&padded);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Where an agent's VM came from, as its status says.
fn lineage(agent: &cocoon_core::api::AgentStatus) -> String {
    let source = agent.source.as_deref().unwrap_or_default();
    if let Some(vm) = &agent.forked_from {
        return format!("fork of {vm}");
    }
    match Lineage::from_source(source) {
        Some(Lineage::Restore { snapshot }) => format!("restored from {snapshot}"),
        Some(Lineage::Image { image }) if agent.slot > 0 => {
            format!("image {image} (fork fell back)")
        }
        Some(Lineage::Image { image }) => format!("image {image}"),
        Some(Lineage::Fork { from }) => format!("fork of {from}"),
        None if source.is_empty() => "-".to_string(),
        None => source.to_string(),
    }
}

fn render_set(set: &CocoonSet, holders: &BTreeMap<String, String>, color: bool) -> String {
    let name = set.metadata.name.clone().unwrap_or_default();
    let status = set.status.clone().unwrap_or_default();
    let phase = status.phase.map(|p| p.as_str()).unwrap_or("Pending");
    let mut out = String::new();
    let stale = status.observed_generation.is_some()
        && status.observed_generation != set.metadata.generation;
    let _ = writeln!(
        out,
        "{}  {}  agents {}/{}  toolboxes {}/{}{}{}{}",
        bold(&format!("cocoonset/{name}"), color),
        paint(phase, phase, color),
        status.ready_agents,
        status.desired_agents,
        status.ready_toolboxes,
        set.spec.toolboxes.len(),
        match (&status.migration, &status.node) {
            (Some(m), _) => format!("  node {} -> {} ({:?})", m.from, m.to, m.phase),
            (None, Some(node)) => format!("  node {node}"),
            (None, None) => String::new(),
        },
        if set.spec.suspend { "  suspend: true" } else { "" },
        if stale { "  (status not yet updated for the latest spec)" } else { "" },
    );
    if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
        let _ = writeln!(out, "│   {message}");
    }
    let mut rows = Vec::new();
    let warm = status.warm_agents.iter().map(|a| (a, true));
    for (agent, is_warm) in status.agents.iter().map(|a| (a, false)).chain(warm) {
        let origin = lineage(agent);
        let mut last = origin;
        if let Some(holder) = holders.get(&agent.pod_name) {
            last.push_str(&format!("  (held by hibernation/{holder})"));
        }
        rows.push(vec![
            agent.pod_name.clone(),
            format!("slot {}", agent.slot),
            if is_warm { "warm".to_string() } else { agent.role.clone() },
            agent.phase.to_string(),
            or_dash(agent.vm_name.as_deref()),
            or_dash(agent.ip.as_deref()),
            last,
        ]);
    }
    let has_toolboxes = !status.toolboxes.is_empty();
    let mut prefixes: Vec<String> = (0..rows.len())
        .map(|i| if i + 1 == rows.len() && !has_toolboxes { "└── " } else { "├── " }.into())
        .collect();
    if rows.is_empty() && !has_toolboxes {
        let _ = writeln!(out, "└── (no agents reported yet)");
    }
    out.push_str(&table(&prefixes, &rows, 3, color));
    if has_toolboxes {
        let _ = writeln!(out, "└── toolboxes");
        rows.clear();
        prefixes.clear();
        for (i, toolbox) in status.toolboxes.iter().enumerate() {
            let os = set
                .spec
                .toolboxes
                .iter()
                .find(|t| t.name == toolbox.name)
                .map(|t| t.os.as_str().to_string())
                .unwrap_or_else(|| "-".into());
            let conn = match toolbox.conn_type {
                ConnType::Vnc => "vnc",
                ConnType::Adb => "adb",
                ConnType::Rdp => "rdp",
                ConnType::Ssh => "ssh",
            };
            let conn = match toolbox.vnc_port {
                Some(port) => format!("{conn} :{port}"),
                None => conn.to_string(),
            };
            rows.push(vec![
                toolbox.pod_name.clone(),
                os,
                toolbox.phase.to_string(),
                or_dash(toolbox.vm_name.as_deref()),
                or_dash(toolbox.ip.as_deref()),
                conn,
            ]);
            let last = i + 1 == status.toolboxes.len();
            prefixes.push(if last { "    └── " } else { "    ├── " }.into());
        }
        out.push_str(&table(&prefixes, &rows, 2, color));
    }
    out
}

fn render_hibernations(hibernations: &[Hibernation], color: bool) -> String {
    let mut rows = Vec::new();
    for hib in hibernations {
        let status = hib.status.clone().unwrap_or_default();
        let phase = status.phase.map(|p| p.as_str()).unwrap_or("Pending").to_string();
        let detail = match (&status.message, &status.snapshot_ref) {
            (Some(m), _) if !m.is_empty() => m.clone(),
            (_, Some(s)) => format!("snapshot {s}"),
            _ => String::new(),
        };
        rows.push(vec![
            format!("hibernation/{}", hib.metadata.name.clone().unwrap_or_default()),
            format!("pod {}", hib.spec.pod_name),
            hib.spec.action.as_str().to_string(),
            phase,
            detail,
        ]);
    }
    let prefixes = vec![String::new(); rows.len()];
    table(&prefixes, &rows, 3, color)
}

/// The whole view: per namespace, its sets as trees and then its Hibernations.
pub fn render(sets: &[CocoonSet], hibernations: &[Hibernation], color: bool) -> String {
    let mut namespaces: BTreeMap<String, (Vec<&CocoonSet>, Vec<Hibernation>)> = BTreeMap::new();
    for set in sets {
        namespaces
            .entry(set.metadata.namespace.clone().unwrap_or_default())
            .or_default()
            .0
            .push(set);
    }
    for hib in hibernations {
        let ns = hib.metadata.namespace.clone().unwrap_or_default();
        namespaces.entry(ns).or_default().1.push(hib.clone());
    }
    let many = namespaces.len() > 1;
    let mut out = String::new();
    for (ns, (mut sets, mut hibs)) in namespaces {
        if many {
            let _ = writeln!(out, "{}", bold(&format!("namespace {ns}"), color));
        }
        sets.sort_by_key(|s| s.metadata.name.clone());
        hibs.sort_by_key(|h| h.metadata.name.clone());
        let holders: BTreeMap<String, String> = hibs
            .iter()
            .filter(|h| h.metadata.deletion_timestamp.is_none())
            .map(|h| (h.spec.pod_name.clone(), h.metadata.name.clone().unwrap_or_default()))
            .collect();
        for set in sets {
            out.push_str(&render_set(set, &holders, color));
            out.push('\n');
        }
        if !hibs.is_empty() {
            out.push_str(&render_hibernations(&hibs, color));
            out.push('\n');
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_core::api::{
        AgentStatus, CocoonSetPhase, CocoonSetSpec, CocoonSetStatus, HibernationAction,
        HibernationPhase, HibernationSpec, HibernationStatus, ToolboxStatus, VmPhase,
    };

    fn agent(slot: i32, phase: VmPhase, forked: Option<&str>) -> AgentStatus {
        AgentStatus {
            slot,
            role: if slot == 0 { "main" } else { "sub-agent" }.into(),
            pod_name: format!("demo-{slot}"),
            vm_name: Some(format!("vk-ns-demo-{slot}")),
            ip: Some(format!("10.88.0.{}", slot + 2)),
            phase,
            forked_from: forked.map(Into::into),
            source: Some(match forked {
                Some(vm) => format!("fork:{vm}"),
                None => "image:ubuntu-dev-base".into(),
            }),
            ..AgentStatus::default()
        }
    }

    fn demo() -> CocoonSet {
        let spec: CocoonSetSpec = serde_json::from_value(serde_json::json!({
            "nodeName": "n", "agent": {"image": "ubuntu-dev-base", "replicas": 1},
            "toolboxes": [{"name": "win", "os": "windows", "image": "w", "mode": "run"}]
        }))
        .unwrap();
        let mut set = CocoonSet::new("demo", spec);
        set.metadata.namespace = Some("ns".into());
        set.metadata.generation = Some(1);
        set.status = Some(CocoonSetStatus {
            phase: Some(CocoonSetPhase::Running),
            ready_agents: 2,
            desired_agents: 2,
            ready_toolboxes: 1,
            observed_generation: Some(1),
            node: Some("n".into()),
            agents: vec![
                agent(0, VmPhase::Running, None),
                agent(1, VmPhase::Hibernated, Some("vk-ns-demo-0")),
            ],
            toolboxes: vec![ToolboxStatus {
                name: "win".into(),
                pod_name: "demo-win".into(),
                vm_name: None,
                vm_id: None,
                ip: None,
                phase: VmPhase::Running,
                conn_type: ConnType::Rdp,
                vnc_port: None,
                node: None,
            }],
            ..CocoonSetStatus::default()
        });
        set
    }

    fn hibernation(name: &str, pod: &str, phase: HibernationPhase) -> Hibernation {
        let mut hib = Hibernation::new(
            name,
            HibernationSpec { pod_name: pod.into(), action: HibernationAction::Hibernate },
        );
        hib.metadata.namespace = Some("ns".into());
        hib.status = Some(HibernationStatus {
            phase: Some(phase),
            snapshot_ref: Some("vk-ns-demo-1".into()),
            ..HibernationStatus::default()
        });
        hib
    }

    #[test]
    fn a_set_renders_as_a_tree_of_agents_then_toolboxes_with_lineage_and_holders() {
        let out = render(
            &[demo()],
            &[hibernation("keep", "demo-1", HibernationPhase::Hibernated)],
            false,
        );
        let expected = "\
cocoonset/demo  Running  agents 2/2  toolboxes 1/1  node n
├── demo-0  slot 0  main       Running     vk-ns-demo-0  10.88.0.2  image ubuntu-dev-base
├── demo-1  slot 1  sub-agent  Hibernated  vk-ns-demo-1  10.88.0.3  fork of vk-ns-demo-0  (held by hibernation/keep)
└── toolboxes
    └── demo-win  windows  Running  -  -  rdp

hibernation/keep  pod demo-1  hibernate  Hibernated  snapshot vk-ns-demo-1
";
        assert_eq!(out, expected);
    }

    #[test]
    fn colour_wraps_phases_only_and_keeps_the_columns_aligned() {
        let plain = render(&[demo()], &[], false);
        let coloured = render(&[demo()], &[], true);
        assert!(coloured.contains("\x1b[32mRunning"), "{coloured}");
        assert!(coloured.contains("\x1b[36mHibernated"), "{coloured}");
        let strip = |s: &str| {
            let mut out = String::new();
            let mut chars = s.chars();
            while let Some(c) = chars.next() {
                if c == '\x1b' {
                    for c in chars.by_ref() {
                        if c == 'm' {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            out
        };
        assert_eq!(strip(&coloured), plain);
    }

    #[test]
    fn several_namespaces_get_headers_and_a_message_and_stale_status_are_shown() {
        let mut other = demo();
        other.metadata.namespace = Some("other".into());
        other.metadata.generation = Some(2);
        other.status.as_mut().unwrap().message = Some("toolbox win has no staticIP".into());
        let out = render(&[demo(), other], &[], false);
        assert!(out.starts_with("namespace ns\n"), "{out}");
        assert!(out.contains("namespace other\n"), "{out}");
        assert!(out.contains("│   toolbox win has no staticIP"), "{out}");
        assert!(out.contains("(status not yet updated for the latest spec)"), "{out}");
    }

    #[test]
    fn lineage_names_a_restore_and_flags_a_fork_that_fell_back() {
        let mut restored = agent(1, VmPhase::Running, None);
        restored.source = Some("restore:vk-ns-demo-1-suspend".into());
        assert_eq!(lineage(&restored), "restored from vk-ns-demo-1-suspend");
        let fell_back = agent(2, VmPhase::Running, None);
        assert_eq!(lineage(&fell_back), "image ubuntu-dev-base (fork fell back)");
        assert_eq!(lineage(&agent(0, VmPhase::Running, None)), "image ubuntu-dev-base");
        let mut unknown = agent(3, VmPhase::Pending, None);
        unknown.source = None;
        assert_eq!(lineage(&unknown), "-");
    }

    #[test]
    fn a_new_set_without_status_says_so() {
        let mut set = demo();
        set.status = None;
        set.spec.toolboxes.clear();
        let out = render(&[set], &[], false);
        assert_eq!(
            out,
            "cocoonset/demo  Pending  agents 0/0  toolboxes 0/0\n└── (no agents reported yet)\n"
        );
    }
}

//! The differential check: a workflow's checkpoints on the real provider and on the simulator,
//! normalised (ids, addresses, times and the namespace's own name taken out), must be equal.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

/// What a workflow saw at one point: the statuses of its objects, normalised.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Checkpoint {
    pub label: String,
    /// `kind/name` → normalised status.
    pub objects: Vec<(String, Value)>,
}

/// Fields that differ from run to run by nature: ids, addresses, times, and the node (each run
/// has its own: the real provider's, a simulator's).
const VOLATILE: [&str; 6] =
    ["vmID", "ip", "lastTransitionTime", "activeSince", "suspendedSince", "node"];

/// A status with its volatile fields removed and `namespace` replaced by `<ns>` in every
/// string (VM names and messages carry it).
pub fn normalize(status: &Value, namespace: &str) -> Value {
    match status {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !VOLATILE.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), normalize(v, namespace)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| normalize(v, namespace)).collect())
        }
        Value::String(s) if !namespace.is_empty() => Value::String(s.replace(namespace, "<ns>")),
        other => other.clone(),
    }
}

/// The differences between two runs' checkpoints and Event reasons, one line each; empty when
/// they agree.
pub fn differences(
    real: &[Checkpoint],
    sim: &[Checkpoint],
    real_events: &BTreeSet<String>,
    sim_events: &BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    if real.len() != sim.len() {
        out.push(format!("checkpoints: real {} vs simulator {}", real.len(), sim.len()));
    }
    for (r, s) in real.iter().zip(sim) {
        if r.label != s.label {
            out.push(format!("checkpoint {} vs {}", r.label, s.label));
            continue;
        }
        for ((name, a), (_, b)) in r.objects.iter().zip(&s.objects) {
            diff_value(&format!("{}: {name}", r.label), a, b, &mut out);
        }
    }
    for missing in real_events.difference(sim_events) {
        out.push(format!("event {missing}: real only"));
    }
    for extra in sim_events.difference(real_events) {
        out.push(format!("event {extra}: simulator only"));
    }
    out
}

fn diff_value(path: &str, real: &Value, sim: &Value, out: &mut Vec<String>) {
    match (real, sim) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null));
                diff_value(&format!("{path}.{k}"), x, y, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_value(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: real {a} vs simulator {b}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ids_addresses_times_nodes_and_the_namespace_do_not_count_and_anything_else_does() {
        let real = json!({"phase": "Running", "node": "cocoon-pool", "agents": [{"vmID": "a1",
            "ip": "10.88.100.2", "vmName": "vk-r-conv-demo-0", "source": "image:ubuntu",
            "node": "cocoon-pool"}],
            "conditions": [{"type": "Ready", "lastTransitionTime": "t1", "message": "1/1"}]});
        let sim = json!({"phase": "Running", "node": "sim-0", "agents": [{"vmID": "sim-9",
            "ip": "10.88.0.4", "vmName": "vk-s-conv-demo-0", "source": "image:ubuntu",
            "node": "sim-0"}],
            "conditions": [{"type": "Ready", "lastTransitionTime": "t2", "message": "1/1"}]});
        let cp = |label: &str, v: Value, ns: &str| Checkpoint {
            label: label.into(),
            objects: vec![("CocoonSet/demo".into(), normalize(&v, ns))],
        };
        let none = BTreeSet::new();
        let same = differences(
            &[cp("x", real.clone(), "r-conv")],
            &[cp("x", sim, "s-conv")],
            &none,
            &none,
        );
        assert!(same.is_empty(), "{same:?}");
        let mut other = real.clone();
        other["agents"][0]["source"] = json!("fork:vk-r-conv-demo-0");
        let diff =
            differences(&[cp("x", real, "r-conv")], &[cp("x", other, "r-conv")], &none, &none);
        assert_eq!(diff.len(), 1, "{diff:?}");
        assert!(diff[0].contains("agents[0].source"), "{diff:?}");
        let events: BTreeSet<String> = ["CocoonSet/demo Warning NeedsAttention".to_string()].into();
        let diff = differences(&[], &[], &events, &none);
        assert_eq!(diff, vec!["event CocoonSet/demo Warning NeedsAttention: real only"]);
    }
}

//! docs/grafana-dashboard.json is ready to import: it parses, and every query names only metrics
//! and labels the operator exposes (so a renamed metric cannot leave an empty panel behind).

use std::collections::{BTreeMap, BTreeSet};

use cocoon_operator::metrics::{Kind, KindCategory, KindResult, Metrics, Transition, VerbResult};

/// Sample names the operator exposes, each with its label names, from one rendered scrape with
/// a sample in every family.
fn exposed() -> BTreeMap<String, BTreeSet<String>> {
    let m = Metrics::new();
    let kind = Kind { kind: "CocoonSet" };
    m.reconciles.get_or_create(&KindResult { kind: "CocoonSet", result: "ok" }).inc();
    m.reconcile_duration.get_or_create(&kind).observe(0.01);
    m.errors.get_or_create(&KindCategory { kind: "CocoonSet", category: "conflict" }).inc();
    m.actors.get_or_create(&kind).set(1);
    m.actor_restarts.get_or_create(&kind).inc();
    m.mailbox_depth.get_or_create(&kind).set(0);
    m.api_requests.get_or_create(&VerbResult { verb: "patch", result: "ok" }).inc();
    m.transition_duration.get_or_create(&Transition { transition: "hibernate" }).observe(1.0);
    m.pod_name_watches.set(0);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in m.render().lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_string()).or_default();
        if let Some(rest) = line[name_end..].strip_prefix('{') {
            let body = &rest[..rest.find('}').unwrap()];
            for pair in body.split(',').filter(|p| !p.is_empty()) {
                labels.insert(pair.split('=').next().unwrap().to_string());
            }
        }
    }
    out
}

fn identifiers(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// Label names in `by (...)` clauses and `{...}` matchers.
fn labels_used(expr: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        let body = &rest[at + 4..];
        let end = body.find(')').unwrap();
        used.extend(body[..end].split(',').map(|l| l.trim().to_string()));
        rest = &body[end..];
    }
    let mut rest = expr;
    while let Some(at) = rest.find('{') {
        let body = &rest[at + 1..];
        let end = body.find('}').unwrap();
        if !body[..end].starts_with('{') {
            for matcher in body[..end].split(',').filter(|m| !m.trim().is_empty()) {
                let name: String = matcher
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                used.insert(name);
            }
        }
        rest = &body[end..];
    }
    used
}

#[test]
fn every_panel_queries_metrics_and_labels_that_exist() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana-dashboard.json"
    ))
    .expect("read the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "cocoon-operator");
    let exposed = exposed();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "a dashboard worth importing");
    let mut covered = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        let targets = panel["targets"].as_array().expect("every panel has targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            let metrics: Vec<String> = identifiers(expr)
                .into_iter()
                .filter(|w| w.starts_with("cocoon_operator_"))
                .collect();
            assert!(!metrics.is_empty(), "{title}: {expr} reads no cocoon_operator_ metric");
            let mut allowed: BTreeSet<String> = ["le", "job", "instance"].map(String::from).into();
            for metric in &metrics {
                let labels = exposed.get(metric).unwrap_or_else(|| {
                    panic!("{title}: {metric} is not exposed; exposed: {:?}", exposed.keys())
                });
                allowed.extend(labels.iter().cloned());
                covered.insert(metric.trim_end_matches("_bucket").to_string());
            }
            for label in labels_used(expr) {
                assert!(allowed.contains(&label), "{title}: label {label} is not on {metrics:?}");
            }
        }
    }
    // Every metric family has a panel.
    for name in exposed.keys() {
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .fold(name.as_str(), |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
        assert!(covered.iter().any(|c| c.starts_with(family)), "no panel shows {family}");
    }
}

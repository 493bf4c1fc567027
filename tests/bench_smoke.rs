//! `make bench` keeps working: a tiny run of every scenario, with the operator as a process
//! counted at the API server, and a second column from `--external-operator` (our own binary
//! run as an external command, with its CRDs from files). Figures are not judged here, only
//! that each is measured.

use std::path::PathBuf;
use std::time::Duration;

use cocoon_dev::bench::{BenchArgs, run};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_is_measured_for_ours_and_an_external_operator() {
    let operator = PathBuf::from(env!("CARGO_BIN_EXE_cocoon-operator"));
    let out = tempfile::tempdir().expect("a temp dir");
    let args = BenchArgs {
        operator: operator.clone(),
        external_operator: Some(format!(
            "{} run --metrics-addr 127.0.0.1:0 --probe-addr 127.0.0.1:0",
            operator.display()
        )),
        external_crds: vec![repo("deploy/crd.yaml"), repo("deploy/cocoonset-crd.yaml")],
        quick: true,
        sets: vec![3],
        replicas: 1,
        idle: Some(Duration::from_secs(2)),
        out: out.path().to_path_buf(),
        sim_create_delay: Duration::ZERO,
        sim_wake_delay: Duration::ZERO,
        scenarios: Vec::new(),
        keep_logs: false,
    };
    let report = run(args).await.expect("the bench runs");
    let runs = report["runs"].as_array().expect("runs");
    let columns: Vec<&str> = runs.iter().filter_map(|r| r["operator"].as_str()).collect();
    assert_eq!(columns, vec!["cocoon-operator", "external"]);
    for r in runs {
        let names: Vec<&str> = r["scenarios"]
            .as_array()
            .expect("scenarios")
            .iter()
            .filter_map(|s| s["scenario"].as_str())
            .collect();
        assert_eq!(
            names,
            vec![
                "converge",
                "scale-up",
                "scale-down",
                "warm-fill",
                "scale-up-warm",
                "warm-drain",
                "suspend",
                "resume",
                "suspend-release",
                "resume-release",
                "hibernate",
                "wake",
                "idle",
                "delete"
            ]
        );
        // Seats: retain keeps every pod of a suspended set, release only the run-mode toolbox.
        let held = |name: &str| {
            r["scenarios"].as_array().unwrap().iter().find(|s| s["scenario"] == name).unwrap()
                ["pods_held"]
                .as_u64()
        };
        let sets = r["sets"].as_u64().unwrap();
        assert!(held("suspend").unwrap() > sets, "retain keeps agent pods");
        assert_eq!(held("suspend-release"), Some(sets), "release keeps only the toolboxes");
        let fill = r["scenarios"].as_array().unwrap().iter().find(|s| s["scenario"] == "warm-fill");
        assert_eq!(fill.unwrap()["filled"], true, "the warm pool fills");
        // Each set timed from its own patch to settled, in the scenarios that patch sets.
        for name in ["scale-up", "scale-down", "scale-up-warm", "suspend", "resume"] {
            let s = r["scenarios"].as_array().unwrap().iter().find(|s| s["scenario"] == name);
            let settle = &s.unwrap()["settle_seconds"];
            assert_eq!(settle["count"].as_u64(), Some(sets), "{name}: {settle}");
            assert!(settle["p99"].as_f64().unwrap_or(-1.0) >= 0.0, "{name}: {settle}");
        }
        let converge = &r["scenarios"][0];
        // Counted at the server, by the operator's own identity: its pods at least.
        assert!(converge["operator"]["writes"].as_u64().unwrap_or(0) >= 9, "{converge}");
        assert!(converge["wall_seconds"].as_f64().unwrap_or(0.0) > 0.0);
        assert!(converge["operator"]["peak_rss_kib"].as_u64().unwrap_or(0) > 0);
        // Its API connections and watches, at least the five watches.
        assert!(converge["operator"]["sockets_open"].as_u64().unwrap_or(0) >= 5, "{converge}");
        assert!(converge["simulator"]["writes"].as_u64().unwrap_or(0) > 0, "apart from ours");
    }
    let baseline = &report["baseline"][0];
    assert_eq!(baseline["writes"].as_u64(), Some(3 * (3 + 2)), "pods + finalizer + status");
    let targets = report["targets"].as_array().expect("targets");
    assert!(!targets.is_empty());
    // The simulator forks as fast as it wakes here: the warm comparison is not judged.
    let warm = targets.iter().find(|t| t["target"].as_str().is_some_and(|t| t.contains("warm")));
    assert!(warm.is_some_and(|t| t["met"].is_null() && t["note"].is_string()), "{warm:?}");
    let svg = std::fs::read_to_string(out.path().join("report.svg")).expect("the chart");
    assert!(svg.starts_with("<svg") && svg.contains("cocoon-operator") && svg.contains("external"));
    assert!(out.path().join("report.json").is_file());
}

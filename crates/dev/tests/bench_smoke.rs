//! `make bench` keeps working: a tiny run of every scenario, with the operator as a process
//! counted at the API server, and a second column from `--external-operator` (our own binary
//! run as an external command, with its CRDs and roles from its manifests). Every scenario is
//! judged by the pods; figures are not judged here, only that each is measured.

use std::path::PathBuf;
use std::time::Duration;

use cocoon_dev::bench::{BenchArgs, run};

fn repo(path: &str) -> PathBuf {
    cocoon_dev::testing::repo_path(path)
}

/// A bench of 3 sets of 1 sub-agent, quick, into `out`: only ours, in `dialect`.
fn small(out: &std::path::Path, dialect: cocoon_operator::contract::Dialect) -> BenchArgs {
    BenchArgs {
        operator: cocoon_dev::testing::workspace_binary("cocoon-operator"),
        external_operator: None,
        external_crds: Vec::new(),
        external_rbac: Vec::new(),
        external_api: cocoon_dev::bench::api::Flavour::CocoonCis,
        scenario_limit: Duration::from_secs(120),
        quick: true,
        sets: vec![3],
        replicas: 1,
        idle: Some(Duration::from_secs(2)),
        out: out.to_path_buf(),
        sim_create_delay: Duration::ZERO,
        sim_wake_delay: Duration::ZERO,
        scenarios: Vec::new(),
        keep_logs: false,
        dialect,
        fleet: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_is_measured_for_ours_and_an_external_operator() {
    let out = tempfile::tempdir().expect("a temp dir");
    let ours = small(out.path(), cocoon_operator::contract::Dialect::Seed);
    let args = BenchArgs {
        external_operator: Some(format!(
            "{} run --metrics-addr 127.0.0.1:0 --probe-addr 127.0.0.1:0",
            ours.operator.display()
        )),
        external_crds: vec![repo("deploy/crd.yaml"), repo("deploy/cocoonset-crd.yaml")],
        external_rbac: vec![repo("deploy/deploy.yaml")],
        ..ours
    };
    let report = run(args).await.expect("the bench runs");
    let columns: Vec<&str> = report.runs.iter().map(|r| r.operator.as_str()).collect();
    assert_eq!(columns, vec!["cocoon-operator", "external"]);
    for r in &report.runs {
        let names: Vec<&str> = r.scenarios.iter().map(|s| s.scenario.as_str()).collect();
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
                "delete",
                "placement",
                "migration"
            ]
        );
        let scenario = |name: &str| r.scenario(name).unwrap_or_else(|| panic!("{name} ran"));
        for s in r.scenarios.iter().filter(|s| s.scenario != "migration") {
            assert_eq!(s.not_reached, None, "{}: the pods showed it", s.scenario);
        }
        // A seed provider's VMs cannot move: the scenario says so instead of failing.
        let why = scenario("migration").not_reached.clone().unwrap_or_default();
        assert!(why.contains("seed dialect"), "{why}");
        // Seats: retain keeps every pod of a suspended set, release only the run-mode toolbox.
        assert!(scenario("suspend").pods_held.unwrap() > r.sets, "retain keeps agent pods");
        assert_eq!(
            scenario("suspend-release").pods_held,
            Some(r.sets),
            "release keeps only the toolboxes"
        );
        assert_eq!(scenario("warm-fill").filled, Some(true), "the warm pool fills");
        // Placement: every set placed by the scheduler on the two-node fleet, each whole on
        // its main's node, every main bound by the scheduler.
        let placed = scenario("placement").placement.clone().expect("placement figures");
        assert_eq!(placed.nodes, 2);
        assert_eq!(placed.sets_per_node.values().sum::<usize>(), r.sets, "{placed:?}");
        assert_eq!(placed.split_sets, 0, "{placed:?}");
        assert_eq!(placed.binding_seconds.count, r.sets, "{placed:?}");
        // Each set timed from its own patch to settled, in the scenarios that patch sets.
        for name in ["scale-up", "scale-down", "scale-up-warm", "suspend", "resume"] {
            let settle = scenario(name).settle_seconds.expect("settle times");
            assert_eq!(settle.count, r.sets, "{name}: {settle:?}");
            assert!(settle.p99.unwrap_or(-1.0) >= 0.0, "{name}: {settle:?}");
        }
        let converge = scenario("converge");
        // Counted at the server, by the operator's own identity: its pods at least.
        assert!(converge.operator.writes >= 9, "{converge:?}");
        assert!(converge.wall_seconds > 0.0);
        assert!(converge.operator.peak_rss_kib.unwrap_or(0) > 0);
        // Its API connections and watches, at least the five watches.
        assert!(converge.operator.sockets_open.unwrap_or(0) >= 5, "{converge:?}");
        assert!(converge.simulator.writes > 0, "apart from ours");
    }
    let baseline = &report.baseline[0];
    assert_eq!(baseline.writes, 3 * (3 + 2), "pods + finalizer + status");
    assert!(!report.targets.is_empty());
    // The simulator forks as fast as it wakes here: the warm comparison is not judged.
    let warm = report.targets.iter().find(|t| t.target.contains("warm"));
    assert!(warm.is_some_and(|t| t.met.is_none() && t.note.is_some()), "{warm:?}");
    let svg = std::fs::read_to_string(out.path().join("report.svg")).expect("the chart");
    let external = &report.columns[1];
    assert!(external.rbac.contains("deploy/deploy.yaml"), "its own roles: {external:?}");
    assert!(svg.starts_with("<svg") && svg.contains("cocoon-operator") && svg.contains("external"));
    assert!(out.path().join("report.json").is_file());
}

/// The migration scenario where VMs can move (current dialect, the run's registry): every
/// set placed by the scheduler moves to the next node and serves there, each timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_scenario_moves_every_set_in_the_current_dialect() {
    let out = tempfile::tempdir().expect("a temp dir");
    let args = BenchArgs {
        scenarios: vec!["migration".to_string()],
        ..small(out.path(), cocoon_operator::contract::Dialect::Current)
    };
    let report = run(args).await.expect("the bench runs");
    let r = &report.runs[0];
    let names: Vec<&str> = r.scenarios.iter().map(|s| s.scenario.as_str()).collect();
    assert_eq!(names, vec!["converge", "placement", "migration"]);
    let migration = r.scenario("migration").expect("migration ran");
    assert_eq!(migration.not_reached, None, "every set serves on its new node: {migration:?}");
    let settle = migration.settle_seconds.expect("settle times");
    assert_eq!(settle.count, r.sets, "each set timed: {settle:?}");
    // Each move is the operator's work: at least a delete and a create per pod.
    let pods = (r.sets * 3) as u64;
    assert!(migration.operator.writes >= 2 * pods, "{:?}", migration.operator);
}

/// Converge on a fleet (as at 10,000 sets): the sets name no node, the scheduler places each
/// main and the set follows it; the raw-client baseline binds each set to a node in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converge_on_a_fleet_is_placed_by_the_scheduler_and_has_its_baseline() {
    let out = tempfile::tempdir().expect("a temp dir");
    let args = BenchArgs {
        scenarios: vec!["idle".to_string()],
        fleet: Some(2),
        ..small(out.path(), cocoon_operator::contract::Dialect::Seed)
    };
    let report = run(args).await.expect("the bench runs");
    let r = &report.runs[0];
    let converge = r.scenario("converge").expect("converge ran");
    assert_eq!(converge.not_reached, None, "every set Running: {converge:?}");
    let placed = converge.placement.clone().expect("converge on a fleet has placement figures");
    assert_eq!(placed.nodes, 2);
    assert_eq!(placed.sets_per_node.values().sum::<usize>(), r.sets, "{placed:?}");
    assert_eq!(placed.split_sets, 0, "each set lives on its main's node: {placed:?}");
    assert!(placed.binding_seconds.count >= r.sets, "each main bound by the scheduler: {placed:?}");
    let baseline = report.baseline.first().cloned().expect("a baseline");
    assert_eq!(baseline.error, None, "{baseline:?}");
    assert_eq!(baseline.pods, r.sets * 3);
}

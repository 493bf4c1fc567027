//! A short seeded chaos run inside `make test` (`make chaos` runs the long one): the operator
//! binary is SIGKILLed at random points under a random workload and provider faults, with a
//! kube-apiserver restart half-way; afterwards every object converged, no pod was deleted that
//! should not have been, none is orphaned, and with two replicas a leader killed mid-suspend is
//! replaced by the standby, which finishes the suspend.

use std::time::Duration;

use cocoon_dev::chaos::{ChaosArgs, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_survives_sigkills_at_random_points_and_everything_converges() {
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let args = ChaosArgs {
        seed: 42,
        kills: 12,
        operator: cocoon_dev::testing::workspace_binary("cocoon-operator"),
        create_failure_rate: 0.3,
        settle: Duration::from_secs(150),
        dialect: cocoon_core::contract::Dialect::Seed,
        registry: None,
        operator_log: Some(log.path().to_path_buf()),
    };
    let report = run(args).await.expect("the chaos run completes");
    println!("{report}");
    if !report.violations.is_empty() {
        print_tail(log.path(), 150);
    }
    assert_eq!(report.kills, 12);
    assert!(report.objects_checked > 0, "something was checked");
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(report.apiserver_restarts, 1, "the API server restarted half-way");
    assert!(report.leader_takeover.is_some(), "the standby took over: {report}");
}

/// The same in the current dialect: lifecycle states, generation stamps, a real OCI registry
/// (the operator collects snapshots there and guards every create), refused creates retried by
/// the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_current_dialect_too_the_operator_survives_sigkills_and_everything_converges() {
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let args = ChaosArgs {
        seed: 7,
        kills: 8,
        operator: cocoon_dev::testing::workspace_binary("cocoon-operator"),
        create_failure_rate: 0.3,
        settle: Duration::from_secs(150),
        dialect: cocoon_core::contract::Dialect::Current,
        registry: None,
        operator_log: Some(log.path().to_path_buf()),
    };
    let report = run(args).await.expect("the chaos run completes");
    println!("{report}");
    if !report.violations.is_empty() {
        print_tail(log.path(), 150);
    }
    assert_eq!(report.kills, 8);
    assert!(report.objects_checked > 0, "something was checked");
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.leader_takeover.is_some(), "the standby took over: {report}");
}

/// The end of the operators' log, printed when a run broke an invariant: what it was doing when
/// the run gave up.
fn print_tail(path: &std::path::Path, lines: usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    println!("--- the last {lines} lines of the operators' log ---");
    for line in &all[all.len().saturating_sub(lines)..] {
        println!("{line}");
    }
}

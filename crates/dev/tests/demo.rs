//! `make demo` stays working: `cocoon-dev dev --once` brings up everything, applies the
//! examples and exits 0 once they converged.

use std::process::Command;

#[test]
fn dev_once_runs_the_whole_demo_and_exits_after_it_converged() {
    let work = tempfile::tempdir().expect("tempdir");
    let kubeconfig = work.path().join("kubeconfig");
    let output = Command::new(env!("CARGO_BIN_EXE_cocoon-dev"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(["dev", "--once", "--metrics-addr", "127.0.0.1:0", "--probe-addr", "127.0.0.1:0"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .output()
        .expect("run cocoon-dev dev");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dev --once failed ({}):\n{stdout}\n{stderr}", output.status);
    for expected in [
        "kubeconfig:",
        "logs: ",
        "CocoonSet default/demo",
        "Hibernation default/hibernate-demo-2",
        "cocoonset.cocoon.cis/demo",
        "$ kubectl cocoon status -A",
        "├── demo-1  slot 1  sub-agent",
        "kubectl cocoon status -n default",
        "kubectl scale cocoonset demo -n default --replicas=",
        "kubectl cocoon hibernate demo-1 -n default --wait",
        "supervisor [running]",
        "demo converged in",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing from the demo output:\n{stdout}");
    }
    // Logs go to the file it names, not between the progress lines.
    assert!(!stderr.contains(" INFO "), "logs on the terminal:\n{stderr}");
    assert!(work.path().join("dev.log").is_file(), "the log file is beside the kubeconfig");
    // The progress table (not a terminal here: the header, then one row per change).
    let row = |cells: &[&str]| stdout.lines().any(|l| cells.iter().all(|c| l.contains(c)));
    assert!(row(&["NAMESPACE", "OBJECT", "PHASE", "READY"]), "{stdout}");
    assert!(row(&["default", "cocoonset/demo", "Running", "3/3 agents"]), "{stdout}");
    assert!(
        row(&["default", "hibernation/hibernate-demo-2", "Hibernated", "pod demo-2"]),
        "{stdout}"
    );
}

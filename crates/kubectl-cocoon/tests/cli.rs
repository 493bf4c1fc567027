//! The plugin binary as a person meets it before any cluster answers: its version, and a clear
//! one-line error (exit 1) when it has no cluster to talk to. The verbs against a real API
//! server are tested end to end in the workspace's `tests/e2e_plugin.rs`.

use std::process::Command;

fn plugin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubectl-cocoon"))
}

#[test]
fn the_version_names_the_commit_it_was_built_from() {
    let out = plugin().arg("--version").output().expect("the plugin runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("kubectl-cocoon "), "{text}");
    assert!(text.contains("(commit "), "{text}");
}

#[test]
fn a_kubeconfig_that_does_not_exist_is_one_clear_error_line() {
    let dir = std::env::temp_dir().join("kubectl-cocoon-cli-test-missing");
    let out = plugin()
        .args(["status", "--kubeconfig"])
        .arg(dir.join("kubeconfig"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("the plugin runs");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.starts_with("error: cannot read kubeconfig "), "{text}");
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");
}

//! `kubectl cocoon` end to end: the plugin binary run by the real kubectl (plugin discovery on
//! PATH) against the local control plane, with the operator and the simulator serving.

mod common;
mod e2e;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use cocoon_operator::api::{
    CocoonSet, CocoonSetPhase, Hibernation, HibernationAction, ToolboxSpec,
};
use kube::api::PostParams;

use common::{
    cluster, eventually, kubectl, server_kubeconfig, token_kubeconfig, two_context_kubeconfig,
};
use e2e::{DEADLINE, Env, wait_set};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn plugin_dir() -> PathBuf {
    common::workspace_binary("kubectl-cocoon").parent().unwrap().to_path_buf()
}

/// `kubectl cocoon <args>`: kubectl finds the plugin on PATH and hands it the arguments.
async fn kubectl_cocoon(kubeconfig: &Path, args: &[&str]) -> Run {
    let path = format!("{}:{}", plugin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let output = tokio::process::Command::new(&cluster().kubectl)
        .arg("cocoon")
        .args(args)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .env("PATH", path)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run kubectl cocoon");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn ok(args: &[&str]) -> String {
    let run = kubectl_cocoon(&cluster().kubeconfig, args).await;
    assert_eq!(run.code, Some(0), "kubectl cocoon {args:?} failed:\n{}{}", run.stderr, run.stdout);
    run.stdout
}

async fn fails(kubeconfig: &Path, args: &[&str]) -> String {
    let run = kubectl_cocoon(kubeconfig, args).await;
    assert_eq!(
        run.code,
        Some(1),
        "kubectl cocoon {args:?} should fail:\n{}{}",
        run.stderr,
        run.stdout
    );
    assert!(run.stdout.is_empty(), "errors go to stderr only: {}", run.stdout);
    run.stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_discovers_the_plugin_and_it_prints_its_version_with_the_commit() {
    let path = format!("{}:{}", plugin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let list = tokio::process::Command::new(&cluster().kubectl)
        .args(["plugin", "list"])
        .env("PATH", path)
        .output()
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains("kubectl-cocoon"), "kubectl plugin list: {listed}");
    let version = ok(&["--version"]).await;
    assert!(
        version.starts_with(&format!("kubectl-cocoon {}", cocoon_operator::VERSION)),
        "{version}"
    );
    assert!(!cocoon_operator::VERSION.contains("(commit )"), "a commit is stamped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_set_as_a_tree_with_lineage_toolboxes_and_hibernations() {
    let env = Env::new("plugin-status").await;
    let mut spec = env.set_spec(2);
    let toolbox: ToolboxSpec =
        serde_json::from_value(serde_json::json!({"name": "shell", "image": "ubuntu-dev-base"}))
            .unwrap();
    spec.toolboxes.push(toolbox);
    env.create_set("demo", spec).await;
    let sets = env.ns.api::<CocoonSet>();
    wait_set(&sets, "demo", CocoonSetPhase::Running).await;
    env.create_pod("solo").await;
    env.create_hibernation("solo", "solo", HibernationAction::Hibernate).await;
    let ns = env.ns.name.clone();
    // Status batches progress: wait until the tree shows every VM and the Hibernation done.
    let out = eventually(DEADLINE, || async {
        let out = ok(&["status", "-n", &ns]).await;
        let done = out.contains("toolboxes 1/1") && out.contains("Hibernated");
        if done { Ok(out) } else { Err(out) }
    })
    .await
    .expect("the tree shows the converged set");
    let main_vm = format!("vk-{ns}-demo-0");
    let header = format!("cocoonset/demo  Running  agents 3/3  toolboxes 1/1  node {}\n", env.node);
    assert!(out.starts_with(&header), "{out}");
    for line in [
        "├── demo-0  slot 0  main".to_string(),
        "├── demo-1  slot 1  sub-agent  Running".to_string(),
        "├── demo-2  slot 2  sub-agent  Running".to_string(),
        "└── toolboxes".to_string(),
        "    └── demo-shell  linux  Running".to_string(),
        "hibernation/solo  pod solo  hibernate  Hibernated".to_string(),
    ] {
        assert!(out.contains(&line), "missing {line:?} in:\n{out}");
    }
    assert!(out.contains(&format!("fork of {main_vm}")), "{out}");
    assert!(out.contains("ssh"), "{out}");
    assert!(!out.contains('\x1b'), "no colour when stdout is not a terminal: {out}");
    let only = ok(&["status", "demo", "-n", &ns]).await;
    assert!(!only.contains("hibernation/solo"), "a set's view leaves other pods out: {only}");
    let coloured = ok(&["status", "-n", &ns, "--color", "always"]).await;
    assert!(coloured.contains("\x1b[32mRunning"), "{coloured}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernate_and_wake_create_then_flip_one_hibernation_and_wait_for_the_round() {
    let env = Env::new("plugin-hib").await;
    env.create_pod("vm").await;
    let ns = env.ns.name.clone();
    let out = ok(&["hibernate", "vm", "-n", &ns, "--wait", "--timeout", "80s"]).await;
    assert!(out.starts_with("hibernation/vm created: hibernate of pod vm\n"), "{out}");
    assert!(out.trim_end().ends_with("hibernation/vm: Hibernated"), "{out}");
    let out = ok(&["wake", "vm", "-n", &ns, "--wait", "--timeout", "80s"]).await;
    assert!(out.starts_with("hibernation/vm: wake of pod vm requested\n"), "{out}");
    assert!(out.trim_end().ends_with("hibernation/vm: Active"), "{out}");
    let hibs = env.ns.api::<Hibernation>().list(&Default::default()).await.unwrap().items;
    assert_eq!(hibs.len(), 1, "the same Hibernation is flipped, not a second one made");
    assert_eq!(hibs[0].spec.action, HibernationAction::Wake);
    let again = ok(&["wake", "vm", "-n", &ns]).await;
    assert!(again.contains("already requested"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_suspend_and_resume_drive_a_set_and_wait_shows_progress() {
    let env = Env::new("plugin-set").await;
    env.create_set("grp", env.set_spec(1)).await;
    let sets = env.ns.api::<CocoonSet>();
    wait_set(&sets, "grp", CocoonSetPhase::Running).await;
    let ns = env.ns.name.clone();
    assert_eq!(
        ok(&["scale", "grp", "2", "-n", &ns]).await,
        "cocoonset/grp scaled to 2 sub-agents\n"
    );
    let status = wait_set(&sets, "grp", CocoonSetPhase::Running).await;
    assert_eq!(status.desired_agents, 3);
    let out = ok(&["suspend", "grp", "-n", &ns, "--wait", "--timeout", "80s"]).await;
    assert!(out.starts_with("cocoonset/grp suspend requested\n"), "{out}");
    assert!(out.trim_end().ends_with("cocoonset/grp: Suspended  agents 0/3"), "{out}");
    let out = ok(&["resume", "grp", "-n", &ns, "--wait", "--timeout", "80s"]).await;
    assert!(out.trim_end().ends_with("cocoonset/grp: Running  agents 3/3"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_and_its_namespace_are_taken_from_the_kubeconfig_like_kubectl() {
    let env = Env::new("plugin-context").await;
    env.create_set("ctx", env.set_spec(0)).await;
    wait_set(&env.ns.api::<CocoonSet>(), "ctx", CocoonSetPhase::Running).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = two_context_kubeconfig(&env.ns.name, dir.path());
    let down = fails(&kubeconfig, &["status"]).await;
    assert!(down.contains("cannot reach the API server at https://127.0.0.1:1/"), "{down}");
    let run = kubectl_cocoon(&kubeconfig, &["status", "--context", "up"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.starts_with("cocoonset/ctx  Running"),
        "the context's namespace: {}",
        run.stdout
    );
    let run = kubectl_cocoon(&kubeconfig, &["status", "--context", "up", "-n", "default"]).await;
    assert_eq!(run.stdout, "No CocoonSets or Hibernations in namespace default.\n", "-n wins");
    let unknown = fails(&kubeconfig, &["status", "--context", "nope"]).await;
    assert!(unknown.contains("nope"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_missing_object_the_missing_permission_and_the_unreachable_server() {
    let env = Env::new("plugin-errors").await;
    let ns = env.ns.name.clone();
    let admin = cluster().kubeconfig.clone();

    let missing = fails(&admin, &["suspend", "nosuch", "-n", &ns]).await;
    assert_eq!(missing, format!("error: cocoonset \"nosuch\" not found in namespace \"{ns}\"\n"));
    let missing = fails(&admin, &["scale", "nosuch", "1", "-n", &ns]).await;
    assert!(missing.contains("cocoonset \"nosuch\" not found"), "{missing}");
    let missing = fails(&admin, &["hibernate", "nopod", "-n", &ns]).await;
    assert_eq!(missing, format!("error: pod \"nopod\" not found in namespace \"{ns}\"\n"));
    let missing = fails(&admin, &["status", "nosuch", "-n", &ns]).await;
    assert!(missing.contains("cocoonset \"nosuch\" not found"), "{missing}");

    // A ServiceAccount with no RBAC at all.
    let sa = k8s_openapi::api::core::v1::ServiceAccount {
        metadata: kube::api::ObjectMeta { name: Some("nobody".into()), ..Default::default() },
        ..Default::default()
    };
    env.ns.api().create(&PostParams::default(), &sa).await.expect("create ServiceAccount");
    let token = kubectl(&["create", "token", "nobody", "-n", &ns, "--duration=1h"])
        .await
        .expect_success("a token")
        .stdout;
    let dir = tempfile::tempdir().unwrap();
    let nobody = token_kubeconfig(token.trim(), dir.path());
    let forbidden = fails(&nobody, &["status", "-n", &ns]).await;
    assert!(forbidden.starts_with("error: forbidden: "), "{forbidden}");
    assert!(forbidden.contains("cannot list resource \"cocoonsets\""), "{forbidden}");
    let forbidden = fails(&nobody, &["suspend", "x", "-n", &ns]).await;
    assert!(forbidden.contains("cannot patch resource \"cocoonsets\""), "{forbidden}");

    // Nothing listens on port 1 of loopback.
    let down = server_kubeconfig("https://127.0.0.1:1", dir.path());
    let unreachable = fails(&down, &["status", "-n", &ns]).await;
    assert!(
        unreachable.starts_with("error: cannot reach the API server at https://127.0.0.1:1/"),
        "{unreachable}"
    );
    assert!(unreachable.to_lowercase().contains("connection refused"), "{unreachable}");
    let no_file = fails(Path::new("/nonexistent/kubeconfig"), &["status"]).await;
    assert!(no_file.contains("cannot read kubeconfig /nonexistent/kubeconfig"), "{no_file}");
}

//! Integration-test harness of the workspace's test binaries: one real control plane per test
//! binary, a fresh namespace per test, polling with deadlines instead of sleeps, the real
//! `kubectl`, and the workspace's own binaries.
//!
//! The cluster is started on first use on a dedicated thread with its own tokio runtime (every
//! `#[tokio::test]` has a runtime that ends with the test; the cluster must outlive them all). It
//! is never dropped: when the test binary exits, the kernel closes the lifeline pipes of the
//! components and they die (see `cocoon_dev::devcluster`), and a janitor removes the work
//! directory.

use std::fmt::Display;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::devcluster::{self, DevCluster, DevClusterOptions};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::io::AsyncWriteExt;

/// Deadline for one-off set-up steps (namespace, CRDs).
pub const SETUP_DEADLINE: Duration = Duration::from_secs(60);

/// What tests need to reach the shared cluster; the cluster itself lives on its own thread.
#[derive(Debug)]
pub struct SharedCluster {
    pub kubeconfig: PathBuf,
    pub base_url: String,
    pub audit_log: Option<PathBuf>,
    pub work_dir: PathBuf,
    /// kubectl's discovery cache: private to this cluster (its port is random anyway).
    kubectl_cache: PathBuf,
    /// The kubectl built with the control plane (matches the API server's version).
    pub kubectl: PathBuf,
}

static CLUSTER: OnceLock<Result<SharedCluster, String>> = OnceLock::new();

/// The control plane of this test binary, started on first use (with an audit log).
pub fn cluster() -> &'static SharedCluster {
    match CLUSTER.get_or_init(start_shared_cluster) {
        Ok(cluster) => cluster,
        Err(e) => panic!("{e}"),
    }
}

fn start_shared_cluster() -> Result<SharedCluster, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("devcluster".to_string())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = tx.send(Err(format!("build the dev-cluster runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let kubectl = match devcluster::Binaries::locate(None).await {
                    Ok(binaries) => binaries.kubectl,
                    Err(e) => {
                        let _ = tx.send(Err(format!("locate the control-plane binaries: {e}")));
                        return;
                    }
                };
                let options = DevClusterOptions { audit_log: true, ..DevClusterOptions::default() };
                match DevCluster::start(options).await {
                    Ok(cluster) => {
                        eprintln!(
                            "dev cluster ready in {:.1}s at {} (work dir {})",
                            cluster.ready_in().as_secs_f64(),
                            cluster.base_url(),
                            cluster.work_dir().display()
                        );
                        let shared = SharedCluster {
                            kubeconfig: cluster.kubeconfig_path().to_path_buf(),
                            base_url: cluster.base_url().to_string(),
                            audit_log: cluster.audit_log_path().map(Path::to_path_buf),
                            work_dir: cluster.work_dir().to_path_buf(),
                            kubectl_cache: cluster.work_dir().join("kubectl-cache"),
                            kubectl,
                        };
                        let _ = tx.send(Ok(shared));
                        // Keep the cluster (and this runtime, which reaps its processes) alive
                        // until the test binary exits.
                        std::future::pending::<()>().await;
                        drop(cluster);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("start the dev cluster: {e}")));
                    }
                }
            });
        })
        .map_err(|e| format!("spawn the dev-cluster thread: {e}"))?;
    rx.recv().map_err(|_| "the dev-cluster thread ended without an answer".to_string())?
}

impl SharedCluster {
    /// A new admin client bound to the calling test's runtime.
    pub async fn client(&self) -> kube::Client {
        devcluster::client_from_kubeconfig(&self.kubeconfig)
            .await
            .expect("build a client from the dev-cluster kubeconfig")
    }
}

/// A fresh, uniquely named namespace for one test, deleted (without waiting) when dropped.
pub struct TestNamespace {
    pub name: String,
    pub client: kube::Client,
}

impl TestNamespace {
    /// Creates `<prefix>-<n>` and waits until its `default` ServiceAccount exists, so pods can
    /// be created in it right away.
    pub async fn new(prefix: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mut base: String = prefix
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .take(40)
            .collect();
        base = base.trim_matches('-').to_string();
        let name =
            format!("{base}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));

        let client = cluster().client().await;
        let namespace = Namespace {
            metadata: ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &name);
        eventually(SETUP_DEADLINE, || async { accounts.get("default").await })
            .await
            .unwrap_or_else(|e| panic!("ServiceAccount {name}/default: {e}"));
        Self { name, client }
    }

    /// A namespaced API for `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let cluster = cluster();
        let _ = std::process::Command::new(&cluster.kubectl)
            .arg(format!("--kubeconfig={}", cluster.kubeconfig.display()))
            .args(["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `eventually` gave up: the condition did not hold before the deadline.
#[derive(Debug)]
pub struct TimedOut {
    pub waited: Duration,
    pub attempts: u32,
    pub last: String,
}

impl Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "condition not met within {:?} ({} attempts); last observation: {}",
            self.waited, self.attempts, self.last
        )
    }
}

/// Polls `check` until it returns `Ok`, with a growing pause (50 ms to 500 ms) between
/// attempts, and fails with the last error once `deadline` has passed.
pub async fn eventually<T, E, F, Fut>(deadline: Duration, mut check: F) -> Result<T, TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    let began = Instant::now();
    let mut pause = Duration::from_millis(50);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = match check().await {
            Ok(value) => return Ok(value),
            Err(e) => e.to_string(),
        };
        if began.elapsed() >= deadline {
            return Err(TimedOut { waited: began.elapsed(), attempts, last });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(Duration::from_millis(500));
    }
}

/// What a `kubectl` run printed.
#[derive(Debug)]
pub struct KubectlOutput {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with the command line and stderr unless kubectl succeeded.
    pub fn expect_success(self, what: &str) -> Self {
        assert!(
            self.success(),
            "{what}: `kubectl {}` failed ({}):\n{}{}",
            self.args.join(" "),
            self.status,
            self.stderr,
            self.stdout
        );
        self
    }
}

/// Runs the real `kubectl` against the shared cluster.
pub async fn kubectl(args: &[&str]) -> KubectlOutput {
    run_kubectl(args, None).await
}

/// Runs the real `kubectl` against the shared cluster with `input` on stdin (`-f -`).
pub async fn kubectl_with_stdin(args: &[&str], input: &str) -> KubectlOutput {
    run_kubectl(args, Some(input)).await
}

async fn run_kubectl(args: &[&str], input: Option<&str>) -> KubectlOutput {
    let cluster = cluster();
    let mut command = tokio::process::Command::new(&cluster.kubectl);
    command
        .arg(format!("--kubeconfig={}", cluster.kubeconfig.display()))
        .arg(format!("--cache-dir={}", cluster.kubectl_cache.display()))
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("run kubectl (is it on PATH?)");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).await.expect("write kubectl stdin");
    }
    let output = child.wait_with_output().await.expect("wait for kubectl");
    KubectlOutput {
        args: args.iter().map(|a| a.to_string()).collect(),
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The admin kubeconfig with its user's credentials replaced by a bearer token (a
/// ServiceAccount token: what an in-cluster identity has), written into `dir`.
pub fn token_kubeconfig(token: &str, dir: &Path) -> PathBuf {
    edited_kubeconfig(dir, "token.kubeconfig", |config| {
        let users = config["users"].as_sequence_mut().expect("users");
        users[0]["user"] = serde_yaml::from_str(&format!("{{token: {token}}}")).unwrap();
    })
}

/// The admin kubeconfig pointing at `server` instead (e.g. an address nothing listens on).
pub fn server_kubeconfig(server: &str, dir: &Path) -> PathBuf {
    edited_kubeconfig(dir, "server.kubeconfig", |config| {
        let clusters = config["clusters"].as_sequence_mut().expect("clusters");
        clusters[0]["cluster"]["server"] = serde_yaml::Value::String(server.into());
    })
}

/// The admin kubeconfig with two contexts: `up` (the cluster, default namespace `namespace`) and
/// `down` (nothing listens there), the current one.
pub fn two_context_kubeconfig(namespace: &str, dir: &Path) -> PathBuf {
    edited_kubeconfig(dir, "contexts.kubeconfig", |config| {
        let mut down_cluster = config["clusters"][0].clone();
        down_cluster["name"] = "down".into();
        down_cluster["cluster"]["server"] = "https://127.0.0.1:1".into();
        config["clusters"].as_sequence_mut().unwrap().push(down_cluster);
        let user = config["contexts"][0]["context"]["user"].clone();
        let cluster = config["contexts"][0]["context"]["cluster"].clone();
        let context = |name: &str, cluster: serde_yaml::Value, ns: Option<&str>| {
            let mut c = serde_yaml::Mapping::new();
            c.insert("cluster".into(), cluster);
            c.insert("user".into(), user.clone());
            if let Some(ns) = ns {
                c.insert("namespace".into(), ns.into());
            }
            let mut named = serde_yaml::Mapping::new();
            named.insert("name".into(), name.into());
            named.insert("context".into(), c.into());
            serde_yaml::Value::from(named)
        };
        config["contexts"] = serde_yaml::Value::Sequence(vec![
            context("up", cluster, Some(namespace)),
            context("down", "down".into(), None),
        ]);
        config["current-context"] = "down".into();
    })
}

fn edited_kubeconfig(dir: &Path, file: &str, edit: impl FnOnce(&mut serde_yaml::Value)) -> PathBuf {
    let admin = std::fs::read_to_string(&cluster().kubeconfig).expect("read kubeconfig");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&admin).expect("parse kubeconfig");
    edit(&mut config);
    let path = dir.join(file);
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).expect("write kubeconfig");
    path
}

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(relative)
}

/// The generated CRD manifests, in the order they are applied.
pub fn crd_files() -> [PathBuf; 2] {
    [repo_path("deploy/crd.yaml"), repo_path("deploy/cocoonset-crd.yaml")]
}

/// Applies both CRDs with kubectl (once per test binary) and waits until they are Established.
pub async fn install_crds() {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            let [hibernation, cocoon_set] = crd_files();
            let (hibernation, cocoon_set) = (hibernation.display(), cocoon_set.display());
            let (hibernation, cocoon_set) = (hibernation.to_string(), cocoon_set.to_string());
            kubectl(&["apply", "-f", &hibernation, "-f", &cocoon_set])
                .await
                .expect_success("apply the CRDs");
            kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/hibernations.cocoon.cis",
                "crd/cocoonsets.cocoon.cis",
            ])
            .await
            .expect_success("wait for the CRDs to be Established");
        })
        .await;
}

/// The reasons of the Events in `namespace`, optionally only those about `object` and only
/// Warnings, space-separated as `kubectl get events` prints them.
pub async fn event_reasons(namespace: &str, object: Option<&str>, warnings_only: bool) -> String {
    let mut selectors = Vec::new();
    if let Some(object) = object {
        selectors.push(format!("involvedObject.name={object}"));
    }
    if warnings_only {
        selectors.push("type=Warning".to_string());
    }
    let selector = selectors.join(",");
    let mut args = vec!["get", "events", "-n", namespace, "-o", "jsonpath={.items[*].reason}"];
    if !selector.is_empty() {
        args.extend(["--field-selector", selector.as_str()]);
    }
    kubectl(&args).await.expect_success("list events").stdout
}

/// A binary of this workspace, built into the same target directory as the running test
/// (`target/<profile>/<name>`). `make test` (`cargo test --workspace --all-targets`) builds every
/// workspace binary first; a test run on its own must build the binary it names.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the running test binary");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("a target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` (make test does) before this test",
        path.display()
    );
    path
}

/// The seed's own CocoonSet example, verbatim: a main, one sub-agent and a static Windows
/// toolbox without `staticIP` (accepted, and reported in status).
pub const SEED_COCOONSET: &str = r#"apiVersion: cocoon.cis/v1alpha1
kind: CocoonSet
metadata:
  name: demo
spec:
  agent:
    image: ubuntu-dev-base
    replicas: 1
    resources:
      cpu: "2"
      memory: "4Gi"
  toolboxes:
    - name: windows
      os: windows
      image: windows-server-2022
      mode: static
"#;

/// [`SEED_COCOONSET`] in `namespace`, bound to `node`; the rest verbatim.
pub fn seed_cocoonset_on(namespace: &str, node: &str) -> String {
    SEED_COCOONSET
        .replacen("  name: demo\n", &format!("  name: demo\n  namespace: {namespace}\n"), 1)
        .replacen("spec:\n", &format!("spec:\n  nodeName: {node}\n"), 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_seed_example_bound_to_a_node_keeps_the_rest_verbatim() {
        use cocoon_operator::api::CocoonSet;
        let seed: CocoonSet = serde_yaml::from_str(super::SEED_COCOONSET).unwrap();
        let bound: CocoonSet =
            serde_yaml::from_str(&super::seed_cocoonset_on("prod", "node-a")).unwrap();
        assert_eq!(bound.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(bound.spec.node_name.as_deref(), Some("node-a"));
        assert_eq!(
            (bound.spec.agent, bound.spec.toolboxes),
            (seed.spec.agent, seed.spec.toolboxes)
        );
    }
}

//! The local control plane starts, serves, reports failures clearly and never leaves a
//! process or a directory behind — also when its owner dies without dropping it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cocoon_dev::devcluster::{DevCluster, DevClusterOptions, Error};
use cocoon_dev::testing::{TestNamespace, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};

/// Set in the child process of `components_die_with_the_process_that_started_them`.
const ORPHAN_ENV: &str = "COCOON_TEST_ORPHAN_CLUSTER";

/// Processes whose command line mentions `dir` (every component, wrapper and janitor does).
fn processes_mentioning(dir: &Path) -> String {
    let output = Command::new("pgrep")
        .args(["-a", "-f", &dir.display().to_string()])
        .output()
        .expect("run pgrep");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

async fn nothing_left_of(dir: &Path) -> Result<(), String> {
    let left = processes_mentioning(dir);
    if !left.is_empty() {
        return Err(format!("processes still running:\n{left}"));
    }
    if dir.exists() {
        return Err(format!("{} still exists", dir.display()));
    }
    Ok(())
}

#[tokio::test]
async fn a_started_cluster_serves_requests_and_leaves_nothing_behind_when_dropped() {
    let out = tempfile::tempdir().expect("tempdir");
    let kubeconfig_out = out.path().join("dev/kubeconfig");
    let options = DevClusterOptions {
        audit_log: true,
        kubeconfig_out: Some(kubeconfig_out.clone()),
        ..DevClusterOptions::default()
    };
    let cluster = DevCluster::start(options).await.expect("start the dev cluster");
    eprintln!("ready in {:.1}s", cluster.ready_in().as_secs_f64());
    let work_dir = cluster.work_dir().to_path_buf();

    let client = cluster.client().await.expect("client");
    let namespaces = Api::<Namespace>::all(client).list(&ListParams::default()).await;
    let names: Vec<_> = namespaces
        .expect("list namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"default".to_string()), "namespaces: {names:?}");
    assert!(kubeconfig_out.is_file(), "the kubeconfig copy is written");
    let audit = std::fs::read_to_string(cluster.audit_log_path().expect("audit log requested"))
        .expect("read the audit log");
    assert!(audit.contains(r#""resource":"namespaces""#), "the namespace list is audited");
    assert!(!processes_mentioning(&work_dir).is_empty(), "components run while the cluster lives");

    drop(cluster);
    nothing_left_of(&work_dir).await.expect("nothing left right after drop");
    assert!(!kubeconfig_out.exists(), "the kubeconfig copy is removed on drop");
}

#[tokio::test]
async fn components_die_with_the_process_that_started_them() {
    let exe = std::env::current_exe().expect("current test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "helper_process_that_starts_a_cluster_and_waits_to_be_killed"])
        .args(["--nocapture", "--test-threads=1"])
        .env(ORPHAN_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the helper process");
    let stdout = child.stdout.take().expect("helper stdout");
    // libtest prints `test <name> ... ` before the test runs, so the marker is mid-line.
    let report = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).find_map(|line| {
            line.split_once("WORKDIR=").map(|(_, dir)| std::path::PathBuf::from(dir.trim()))
        })
    });
    let work_dir = match tokio::time::timeout(Duration::from_secs(120), report).await {
        Ok(Ok(Some(dir))) => dir,
        outcome => {
            let _ = child.kill();
            panic!("the helper did not report its work dir: {outcome:?}");
        }
    };
    assert!(!processes_mentioning(&work_dir).is_empty(), "the helper's cluster runs");

    child.kill().expect("SIGKILL the helper");
    child.wait().expect("reap the helper");
    eventually(Duration::from_secs(30), || nothing_left_of(&work_dir))
        .await
        .expect("components and work dir are gone after their owner died");
}

/// Runs only as the child of `components_die_with_the_process_that_started_them`.
#[tokio::test]
async fn helper_process_that_starts_a_cluster_and_waits_to_be_killed() {
    if std::env::var_os(ORPHAN_ENV).is_none() {
        return;
    }
    let cluster = DevCluster::start(DevClusterOptions::default()).await.expect("start");
    println!("WORKDIR={}", cluster.work_dir().display());
    std::future::pending::<()>().await;
    drop(cluster);
}

#[tokio::test]
async fn a_component_that_exits_during_start_up_fails_start_with_its_log() {
    let bin = tempfile::tempdir().expect("tempdir");
    let script = |name: &str, body: &str| {
        let path = bin.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write fake binary");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    script("etcd", "echo 'etcd: cannot bind: simulated failure' >&2; exit 3");
    // `tail -f $0` blocks and keeps the fake directory in its command line for pgrep.
    script("kube-apiserver", "exec tail -f \"$0\"");
    script("kube-controller-manager", "exit 0");
    let options = DevClusterOptions {
        binaries_dir: Some(bin.path().to_path_buf()),
        ..DevClusterOptions::default()
    };

    let error = DevCluster::start(options).await.expect_err("start must fail");
    assert!(matches!(error, Error::Exited { component: "etcd", .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("simulated failure"), "the log tail is quoted: {message}");
    assert!(processes_mentioning(bin.path()).is_empty(), "the fake apiserver is stopped");
}

#[tokio::test]
async fn a_missing_binary_directory_is_a_clear_error() {
    let options = DevClusterOptions {
        binaries_dir: Some("/nonexistent/control-plane".into()),
        ..DevClusterOptions::default()
    };
    let error = DevCluster::start(options).await.expect_err("start must fail");
    assert!(error.to_string().contains("/nonexistent/control-plane/etcd"), "{error}");
}

#[tokio::test]
async fn pods_can_be_created_in_a_fresh_test_namespace() {
    let ns = TestNamespace::new("devcluster-pod").await;
    let pod = Pod {
        metadata: ObjectMeta { name: Some("probe".to_string()), ..ObjectMeta::default() },
        // Unscheduled: without a kubelet, only an unbound pod can be deleted with the namespace.
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "vm".to_string(),
                image: Some("busybox".to_string()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    let created = ns.api::<Pod>().create(&PostParams::default(), &pod).await.expect("create a pod");
    let spec = created.spec.expect("pod spec");
    // The ServiceAccount admission plugin is on, as in a real cluster.
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
}

#[tokio::test]
async fn dependents_are_garbage_collected_and_deleted_namespaces_disappear() {
    let ns = TestNamespace::new("devcluster-gc").await;
    let config_maps = ns.api::<ConfigMap>();
    let named = |name: &str, owners: Option<Vec<OwnerReference>>| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            owner_references: owners,
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let owner =
        config_maps.create(&PostParams::default(), &named("owner", None)).await.expect("owner");
    let reference = OwnerReference {
        api_version: "v1".to_string(),
        kind: "ConfigMap".to_string(),
        name: "owner".to_string(),
        uid: owner.metadata.uid.expect("owner uid"),
        ..OwnerReference::default()
    };
    config_maps
        .create(&PostParams::default(), &named("dependent", Some(vec![reference])))
        .await
        .expect("dependent");
    config_maps.delete("owner", &DeleteParams::default()).await.expect("delete owner");
    eventually(Duration::from_secs(60), || async {
        match config_maps.get_opt("dependent").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("dependent still exists".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .expect("the garbage collector deletes the dependent");

    let namespaces = Api::<Namespace>::all(ns.client.clone());
    namespaces.delete(&ns.name, &DeleteParams::default()).await.expect("delete namespace");
    eventually(Duration::from_secs(60), || async {
        match namespaces.get_opt(&ns.name).await {
            Ok(None) => Ok(()),
            Ok(Some(n)) => Err(format!("namespace phase {:?}", n.status.and_then(|s| s.phase))),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .expect("the namespace controller finishes the deletion");
}

/// With `scheduler`, the real kube-scheduler binds a pod that names no node: to the node its
/// selector and tolerations fit, never to a tainted node it does not tolerate or one whose
/// labels do not match.
#[tokio::test]
async fn the_scheduler_binds_a_pod_that_names_no_node_to_the_node_that_fits_it() {
    use k8s_openapi::api::core::v1::{
        Node, NodeCondition, NodeSpec, NodeStatus, Taint, Toleration,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::{Patch, PatchParams};
    use std::collections::BTreeMap;

    let options = DevClusterOptions { scheduler: true, ..DevClusterOptions::default() };
    let cluster = DevCluster::start(options).await.expect("start the dev cluster");
    let client = cluster.client().await.expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    let taint = Taint {
        key: "virtual-kubelet.io/provider".into(),
        value: Some("cocoon".into()),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    // (name, pool label, taint): only `pool-b` carries the pool the pod selects.
    for (name, pool) in [("pool-a", "other"), ("pool-b", "default"), ("plain", "")] {
        let mut labels = BTreeMap::from([("kubernetes.io/hostname".to_string(), name.to_string())]);
        if !pool.is_empty() {
            labels.insert("cocoonstack.io/pool".into(), pool.into());
        }
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: (!pool.is_empty()).then(|| vec![taint.clone()]),
                ..NodeSpec::default()
            }),
            ..Node::default()
        };
        nodes.create(&PostParams::default(), &node).await.expect("create node");
        let capacity = BTreeMap::from([
            ("cpu".to_string(), Quantity("64".into())),
            ("memory".to_string(), Quantity("256Gi".into())),
            ("pods".to_string(), Quantity("100".into())),
        ]);
        let status = NodeStatus {
            capacity: Some(capacity.clone()),
            allocatable: Some(capacity),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..NodeCondition::default()
            }]),
            ..NodeStatus::default()
        };
        let patch = serde_json::json!({"status": status});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("node status");
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = Pod {
        metadata: ObjectMeta { name: Some("placed".into()), ..ObjectMeta::default() },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "agent".into(),
                image: Some("ubuntu".into()),
                ..Container::default()
            }],
            node_selector: Some(BTreeMap::from([(
                "cocoonstack.io/pool".to_string(),
                "default".to_string(),
            )])),
            tolerations: Some(vec![Toleration {
                key: Some("virtual-kubelet.io/provider".into()),
                operator: Some("Exists".into()),
                ..Toleration::default()
            }]),
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
    let bound = eventually(Duration::from_secs(60), || async {
        let pod = pods.get("placed").await.map_err(|e| e.to_string())?;
        pod.spec.and_then(|s| s.node_name).ok_or_else(|| "not bound yet".to_string())
    })
    .await
    .expect("the scheduler binds the pod");
    assert_eq!(bound, "pool-b");
}

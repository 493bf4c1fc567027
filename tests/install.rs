//! Installing like platform teams do: `kubectl apply -f deploy/`, `kubectl apply -k deploy/`
//! (and an overlay for another namespace and image), and the Helm chart. Rendered with the
//! project's kubectl (kustomize built in) and helm built from its Go module, then applied to the
//! local control plane in namespaces that enforce Pod Security `restricted`, with no warnings.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

use common::{KubectlOutput, cluster, kubectl, kubectl_with_stdin, repo_path};

fn docs(text: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn file_docs(relative: &str) -> Vec<serde_yaml::Value> {
    docs(&std::fs::read_to_string(repo_path(relative)).expect("read manifest"))
}

/// (kind, namespace, name) of every object.
fn identities(objects: &[serde_yaml::Value]) -> BTreeSet<(String, String, String)> {
    objects
        .iter()
        .map(|o| {
            let s = |v: &serde_yaml::Value| v.as_str().unwrap_or_default().to_string();
            (s(&o["kind"]), s(&o["metadata"]["namespace"]), s(&o["metadata"]["name"]))
        })
        .collect()
}

fn find<'a>(objects: &'a [serde_yaml::Value], kind: &str, name: &str) -> &'a serde_yaml::Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// A namespace that enforces, warns and audits Pod Security `restricted` (applied, so that a
/// later `kubectl apply` of the same Namespace has its last-applied annotation).
async fn restricted_namespace(name: &str) {
    let manifest = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n{}",
        ["enforce", "warn", "audit"]
            .iter()
            .map(|mode| format!("    pod-security.kubernetes.io/{mode}: restricted\n"))
            .collect::<String>()
    );
    kubectl_with_stdin(&["apply", "-f", "-"], &manifest)
        .await
        .expect_success("a restricted namespace");
}

fn assert_no_warnings(out: &KubectlOutput, what: &str) {
    assert!(
        !out.stderr.to_lowercase().contains("warning"),
        "{what} printed warnings:\n{}",
        out.stderr
    );
}

fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("COCOON_HELM") {
        return path.into();
    }
    let out = std::process::Command::new("bash")
        .arg(repo_path("tests/tools/build.sh"))
        .arg("helm")
        .output()
        .expect("run tests/tools/build.sh helm");
    assert!(out.status.success(), "build helm: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().into()
}

fn run_helm(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(helm())
        .args(args)
        .env("KUBECONFIG", &cluster().kubeconfig)
        .env("HELM_CACHE_HOME", cluster().work_dir.join("helm/cache"))
        .env("HELM_CONFIG_HOME", cluster().work_dir.join("helm/config"))
        .env("HELM_DATA_HOME", cluster().work_dir.join("helm/data"))
        .output()
        .expect("run helm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The version `helm template` assumes (offline it cannot ask): the local control plane's.
const KUBE_VERSION: &str = "--kube-version=v1.36.3";

fn helm_ok(args: &[&str]) -> String {
    let (ok, stdout, stderr) = run_helm(args);
    assert!(ok, "helm {args:?} failed:\n{stderr}{stdout}");
    stdout
}

/// Every argument after `run` must be a flag the operator's command line accepts.
fn assert_operator_accepts(deployment: &serde_yaml::Value) {
    let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let argv = std::iter::once("cocoon-operator".to_string()).chain(args.clone());
    if let Err(e) = cocoon_operator::cli::Cli::try_parse_from(argv) {
        panic!("the operator rejects {args:?}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_f_and_apply_k_of_deploy_install_the_same_objects_in_a_restricted_namespace() {
    let plain: Vec<_> = ["deploy/crd.yaml", "deploy/cocoonset-crd.yaml", "deploy/deploy.yaml"]
        .iter()
        .flat_map(|f| file_docs(f))
        .collect();
    let rendered = kubectl(&["kustomize", &repo_path("deploy").display().to_string()])
        .await
        .expect_success("kubectl kustomize deploy/");
    assert_eq!(identities(&docs(&rendered.stdout)), identities(&plain));
    let namespace = find(&plain, "Namespace", "cocoon-system");
    assert_eq!(namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted");

    // The seed's quick start still works with the Kustomization file beside the manifests.
    let out = kubectl(&["apply", "-f", &repo_path("deploy").display().to_string()]).await;
    let out = out.expect_success("kubectl apply -f deploy/");
    assert_no_warnings(&out, "kubectl apply -f deploy/");
    assert!(out.stdout.contains("deployment.apps/cocoon-operator created"), "{}", out.stdout);
    let out = kubectl(&["apply", "-k", &repo_path("deploy").display().to_string()]).await;
    let out = out.expect_success("kubectl apply -k deploy/");
    assert_no_warnings(&out, "kubectl apply -k deploy/");
    assert!(out.stdout.contains("deployment.apps/cocoon-operator unchanged"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomize_overlay_moves_everything_to_its_namespace_and_image() {
    let overlay = repo_path("docs/kustomize/overlay").display().to_string();
    let rendered = kubectl(&["kustomize", &overlay]).await.expect_success("kubectl kustomize");
    let objects = docs(&rendered.stdout);
    for object in &objects {
        let kind = object["kind"].as_str().unwrap();
        let namespaced = !matches!(
            kind,
            "Namespace" | "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition"
        );
        if namespaced {
            assert_eq!(object["metadata"]["namespace"], "agents-system", "{kind}");
        }
    }
    assert!(
        !identities(&objects)
            .iter()
            .any(|(_, ns, name)| ns == "cocoon-system" || name == "cocoon-system")
    );
    let binding = find(&objects, "ClusterRoleBinding", "cocoon-operator");
    assert_eq!(binding["subjects"][0]["namespace"], "agents-system");
    let deployment = find(&objects, "Deployment", "cocoon-operator");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/platform/cocoon-operator:0.1.0"
    );
    restricted_namespace("agents-system").await;
    let out = kubectl(&["apply", "--dry-run=server", "-k", &overlay]).await;
    let out = out.expect_success("kubectl apply --dry-run=server -k overlay");
    assert_no_warnings(&out, "the overlay");
    assert!(
        out.stdout.contains("deployment.apps/cocoon-operator created (server dry run)"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helm_chart_renders_deploy_yaml_and_installs_into_a_restricted_namespace() {
    let chart = repo_path("charts/cocoon-operator").display().to_string();
    helm_ok(&["lint", "--strict", &chart]);
    let rendered =
        helm_ok(&["template", KUBE_VERSION, "cocoon-operator", &chart, "-n", "cocoon-system"]);
    let objects = docs(&rendered);
    let seed = file_docs("deploy/deploy.yaml");
    let without_namespace: Vec<_> =
        seed.iter().filter(|o| o["kind"] != "Namespace").cloned().collect();
    assert_eq!(
        identities(&objects),
        identities(&without_namespace),
        "the same objects as deploy.yaml"
    );
    for (kind, name) in
        [("ClusterRole", "cocoon-operator"), ("Role", "cocoon-operator-leader-election")]
    {
        assert_eq!(
            find(&objects, kind, name)["rules"],
            find(&seed, kind, name)["rules"],
            "{kind} rules"
        );
    }
    let (ours, theirs) = (
        find(&objects, "Deployment", "cocoon-operator"),
        find(&seed, "Deployment", "cocoon-operator"),
    );
    let pod = |d: &serde_yaml::Value| d["spec"]["template"]["spec"].clone();
    let (ours_pod, seed_pod) = (pod(ours), pod(theirs));
    assert_eq!(ours_pod["securityContext"], seed_pod["securityContext"]);
    assert_eq!(ours["spec"]["replicas"], theirs["spec"]["replicas"]);
    for field in [
        "image",
        "args",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "securityContext",
    ] {
        assert_eq!(
            ours_pod["containers"][0][field], seed_pod["containers"][0][field],
            "container {field}"
        );
    }
    let env_names = |p: &serde_yaml::Value| -> BTreeSet<String> {
        p["containers"][0]["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(env_names(&ours_pod).is_superset(&env_names(&seed_pod)));

    // Values a platform team sets.
    let custom = helm_ok(&[
        "template",
        KUBE_VERSION,
        "agents",
        &chart,
        "-n",
        "agents",
        "--set",
        "image.repository=registry.example.com/cocoon-operator",
        "--set",
        "image.tag=9.9.9",
        "--set",
        "replicaCount=1",
        "--set",
        "leaderElection.enabled=false",
        "--set",
        "flags.hibernate-timeout=10m",
        "--set",
        "flags.status-batch=2s",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "resources.limits.memory=512Mi",
    ]);
    let custom = docs(&custom);
    let deployment = find(&custom, "Deployment", "agents-cocoon-operator");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.com/cocoon-operator:9.9.9");
    assert_eq!(container["resources"]["limits"]["memory"], "512Mi");
    let args: Vec<&str> =
        container["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args, ["run", "--hibernate-timeout=10m", "--status-batch=2s"]);
    assert_operator_accepts(deployment);
    assert_operator_accepts(ours);
    assert!(
        !custom.iter().any(|o| o["kind"] == "Role"),
        "no leader-election Role without leader election"
    );
    let monitor = find(&custom, "ServiceMonitor", "agents-cocoon-operator");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let service = find(&custom, "Service", "agents-cocoon-operator-metrics");
    // A ServiceMonitor selects Services by their labels.
    for (key, value) in monitor["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&service["metadata"]["labels"][key.as_str().unwrap()], value, "label {key:?}");
    }
    let (ok, _, stderr) = run_helm(&[
        "template",
        KUBE_VERSION,
        "x",
        &chart,
        "--set",
        "metrics.service.enabled=false",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ]);
    assert!(
        !ok && stderr.contains("metrics.serviceMonitor.enabled needs metrics.service.enabled"),
        "{stderr}"
    );

    // Server-side: the rendered objects (with the CRDs) in a restricted namespace, no warnings;
    // then a real `helm install` and uninstall.
    restricted_namespace("cocoon-helm").await;
    let with_crds = helm_ok(&[
        "template",
        KUBE_VERSION,
        "cocoon-operator",
        &chart,
        "-n",
        "cocoon-helm",
        "--include-crds",
    ]);
    let out = kubectl_with_stdin(
        &["apply", "--dry-run=server", "-n", "cocoon-helm", "-f", "-"],
        &with_crds,
    )
    .await;
    let out = out.expect_success("apply the chart with --dry-run=server");
    assert_no_warnings(&out, "the chart");
    // Another release name: the cluster-scoped objects of `kubectl apply -f deploy/` (another
    // test of this binary) are named cocoon-operator and belong to no release.
    let installed = helm_ok(&["install", "helm-test", &chart, "-n", "cocoon-helm"]);
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    kubectl(&["get", "crd", "cocoonsets.cocoon.cis", "hibernations.cocoon.cis"])
        .await
        .expect_success("the chart installs the CRDs");
    kubectl(&[
        "get",
        "-n",
        "cocoon-helm",
        "deployment/helm-test-cocoon-operator",
        "serviceaccount/helm-test-cocoon-operator",
    ])
    .await
    .expect_success("the chart installs the operator");
    helm_ok(&["uninstall", "helm-test", "-n", "cocoon-helm"]);
}

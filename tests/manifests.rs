//! The committed manifests: generated CRDs match the code, and every document in `deploy/`
//! parses into its typed Kubernetes object.

use std::path::Path;

use cocoon_operator::api::{CocoonSet, Hibernation, crd_documents};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;

fn deploy() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

#[test]
fn committed_crds_match_what_the_code_generates() {
    let chart_crds = deploy().join("../charts/cocoon-operator/crds");
    for (file, generated) in crd_documents() {
        for (dir, shown) in
            [(deploy(), "deploy"), (chart_crds.clone(), "charts/cocoon-operator/crds")]
        {
            let committed = std::fs::read_to_string(dir.join(file)).expect("read committed CRD");
            assert!(
                committed == generated,
                "{shown}/{file} differs from the generated CRD: run `make crd`"
            );
        }
    }
}

fn documents(path: &Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).expect("read manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn parse_typed(doc: serde_yaml::Value) -> String {
    let kind = doc["kind"].as_str().expect("every document has a kind").to_string();
    let ok = match kind.as_str() {
        "Namespace" => serde_yaml::from_value::<Namespace>(doc).map(|_| ()),
        "ServiceAccount" => serde_yaml::from_value::<ServiceAccount>(doc).map(|_| ()),
        "ClusterRole" => serde_yaml::from_value::<ClusterRole>(doc).map(|_| ()),
        "ClusterRoleBinding" => serde_yaml::from_value::<ClusterRoleBinding>(doc).map(|_| ()),
        "Role" => serde_yaml::from_value::<Role>(doc).map(|_| ()),
        "RoleBinding" => serde_yaml::from_value::<RoleBinding>(doc).map(|_| ()),
        "Deployment" => serde_yaml::from_value::<Deployment>(doc).map(|_| ()),
        "Service" => serde_yaml::from_value::<Service>(doc).map(|_| ()),
        "CustomResourceDefinition" => {
            serde_yaml::from_value::<CustomResourceDefinition>(doc).map(|_| ())
        }
        "CocoonSet" => serde_yaml::from_value::<CocoonSet>(doc).map(|_| ()),
        "Hibernation" => serde_yaml::from_value::<Hibernation>(doc).map(|_| ()),
        other => panic!("no typed check for kind {other}: add one"),
    };
    ok.unwrap_or_else(|e| panic!("{kind} does not parse: {e}"));
    kind
}

#[test]
fn every_document_in_deploy_parses_into_its_kubernetes_type() {
    let mut kinds = Vec::new();
    for dir in [deploy(), deploy().join("examples")] {
        for entry in std::fs::read_dir(&dir).expect("read deploy dir") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                for doc in documents(&path) {
                    kinds.push(parse_typed(doc));
                }
            }
        }
    }
    for expected in [
        "Deployment",
        "ClusterRole",
        "Role",
        "Service",
        "ServiceAccount",
        "CocoonSet",
        "Hibernation",
    ] {
        assert!(kinds.iter().any(|k| k == expected), "deploy/ lacks a {expected}");
    }
}

#[test]
fn the_deployment_is_locked_down_and_probed_on_the_documented_ports() {
    let doc = documents(&deploy().join("deploy.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let deployment: Deployment = serde_yaml::from_value(doc).expect("typed Deployment");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let c = &pod.containers[0];
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    let resources = c.resources.clone().unwrap();
    assert!(resources.requests.is_some() && resources.limits.is_some());
    let ports: Vec<i32> = c.ports.clone().unwrap().iter().map(|p| p.container_port).collect();
    assert_eq!(ports, vec![8080, 8081]);
    let readiness = c.readiness_probe.clone().unwrap().http_get.unwrap();
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    let liveness = c.liveness_probe.clone().unwrap().http_get.unwrap();
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));
    let env = c.env.clone().unwrap();
    assert!(
        env.iter().any(|e| e.name == "COCOON_LEADER_ELECT" && e.value.as_deref() == Some("true"))
    );
}

#[test]
fn the_seed_examples_deserialize_into_the_api_types() {
    let hib: Hibernation = serde_yaml::from_str(
        "apiVersion: cocoon.cis/v1alpha1\nkind: Hibernation\nmetadata: {name: hibernate-bot-1, namespace: prod}\nspec: {podName: sre-agent-xxx, action: hibernate}\n",
    )
    .expect("seed Hibernation");
    assert_eq!(hib.spec.pod_name, "sre-agent-xxx");
    let cs: CocoonSet =
        serde_yaml::from_str(cocoon_dev::testing::SEED_COCOONSET).expect("seed CocoonSet");
    assert_eq!(cs.spec.toolboxes[0].static_ip, None);
    assert_eq!(cs.spec.node_name, None, "no nodeName: the scheduler places the set");
}

//! The generated CRDs, as a user meets them through the real kubectl and API server: they
//! install, the server applies schema defaults, `kubectl get` is informative, bad objects are
//! rejected with a message naming the field, and the seed's examples are accepted verbatim.

mod common;

use common::{TestNamespace, crd_files, install_crds, kubectl, kubectl_with_stdin};
use serde_json::Value;

#[path = "crd_acceptance/invalid_objects.rs"]
mod invalid_objects;

/// `kubectl get -o json` of one object, as raw JSON (no client-side serde defaults).
async fn get_json(ns: &TestNamespace, resource: &str, name: &str) -> Value {
    let out = kubectl(&["get", resource, name, "-n", &ns.name, "-o", "json"])
        .await
        .expect_success("get the object as JSON");
    serde_json::from_str(&out.stdout).expect("kubectl printed JSON")
}

/// The header line of a `kubectl get`, split into column names.
fn header(stdout: &str) -> Vec<String> {
    stdout.lines().next().unwrap_or_default().split_whitespace().map(str::to_string).collect()
}

#[tokio::test]
async fn the_crds_apply_cleanly_and_become_established() {
    install_crds().await;
    let [hibernation, cocoon_set] = crd_files();
    let (hibernation, cocoon_set) =
        (hibernation.display().to_string(), cocoon_set.display().to_string());
    // Applying again is what a user upgrading does; it must stay clean.
    kubectl(&["apply", "-f", &hibernation, "-f", &cocoon_set])
        .await
        .expect_success("re-apply the CRDs");
    for crd in ["hibernations.cocoon.cis", "cocoonsets.cocoon.cis"] {
        let out = kubectl(&[
            "get",
            "crd",
            crd,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
        ])
        .await
        .expect_success("read the Established condition");
        assert_eq!(out.stdout.trim(), "True", "{crd} is Established");
    }
}

#[tokio::test]
async fn the_server_applies_schema_defaults() {
    install_crds().await;
    let ns = TestNamespace::new("crd-defaults").await;
    let manifest = r#"
apiVersion: cocoon.cis/v1alpha1
kind: Hibernation
metadata: {name: minimal}
spec: {podName: some-pod}
---
apiVersion: cocoon.cis/v1alpha1
kind: CocoonSet
metadata: {name: minimal}
spec:
  agent: {image: ubuntu-dev-base}
  toolboxes:
    - {name: tools, image: debian}
"#;
    kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], manifest)
        .await
        .expect_success("create minimal objects");

    let hibernation = get_json(&ns, "hibernation", "minimal").await;
    assert_eq!(hibernation["spec"]["action"], "hibernate");

    let set = get_json(&ns, "cocoonset", "minimal").await;
    let spec = &set["spec"];
    assert_eq!(spec["agent"]["replicas"], 0, "replicas: {spec}");
    assert_eq!(spec["suspend"], false, "suspend: {spec}");
    assert_eq!(spec["snapshotPolicy"], "always", "snapshotPolicy: {spec}");
    assert!(spec.get("nodeName").is_none(), "no default node: the scheduler places a set: {spec}");
    assert_eq!(spec["toolboxes"][0]["os"], "linux", "toolbox os: {spec}");
    assert_eq!(spec["toolboxes"][0]["mode"], "run", "toolbox mode: {spec}");
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns_and_short_names_work() {
    install_crds().await;
    let ns = TestNamespace::new("crd-columns").await;
    let manifest = r#"
apiVersion: cocoon.cis/v1alpha1
kind: Hibernation
metadata: {name: bot}
spec: {podName: bot-pod, action: wake}
---
apiVersion: cocoon.cis/v1alpha1
kind: CocoonSet
metadata: {name: team}
spec: {agent: {image: ubuntu-dev-base, replicas: 2}}
"#;
    kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], manifest)
        .await
        .expect_success("create objects");

    for resource in ["hib", "hibernation", "hibernations"] {
        let out = kubectl(&["get", resource, "-n", &ns.name]).await.expect_success("get hib");
        assert_eq!(header(&out.stdout), ["NAME", "POD", "ACTION", "PHASE", "AGE"], "{resource}");
        let row = out.stdout.lines().nth(1).unwrap_or_default().to_string();
        assert!(row.starts_with("bot") && row.contains("bot-pod") && row.contains("wake"), "{row}");
    }
    let wide = kubectl(&["get", "hib", "-n", &ns.name, "-o", "wide"]).await.expect_success("wide");
    assert!(header(&wide.stdout).contains(&"VM".to_string()), "{}", wide.stdout);

    // `cs` is declared, but kubectl resolves a bare `cs` to the built-in componentstatuses
    // (core resources win a short-name tie, and ComponentStatus is still served in v1.36);
    // the group-qualified `cs.cocoon.cis` reaches CocoonSets.
    let short_names = kubectl(&[
        "get",
        "crd",
        "cocoonsets.cocoon.cis",
        "-o",
        "jsonpath={.spec.names.shortNames}",
    ])
    .await
    .expect_success("read the CocoonSet short names");
    assert_eq!(short_names.stdout.trim(), r#"["cs"]"#);
    for resource in ["cs.cocoon.cis", "cocoonset", "cocoonsets"] {
        let out = kubectl(&["get", resource, "-n", &ns.name]).await.expect_success("get cs");
        assert_eq!(header(&out.stdout), ["NAME", "PHASE", "READY", "DESIRED", "AGE"], "{resource}");
        assert!(
            out.stdout.lines().nth(1).unwrap_or_default().starts_with("team"),
            "{}",
            out.stdout
        );
    }
    // Both kinds in one command, as users watch them.
    let both = kubectl(&["get", "cocoonsets,hib", "-n", &ns.name]).await.expect_success("get both");
    assert!(both.stdout.contains("cocoonset.cocoon.cis/team"), "{}", both.stdout);
    assert!(both.stdout.contains("hibernation.cocoon.cis/bot"), "{}", both.stdout);
    // The `cocoon` category lists both kinds without naming them.
    let category = kubectl(&["get", "cocoon", "-n", &ns.name]).await.expect_success("get cocoon");
    assert!(category.stdout.contains("cocoonset.cocoon.cis/team"), "{}", category.stdout);
    assert!(category.stdout.contains("hibernation.cocoon.cis/bot"), "{}", category.stdout);
}

#[tokio::test]
async fn invalid_objects_are_rejected_with_a_message_naming_the_field() {
    install_crds().await;
    let ns = TestNamespace::new("crd-invalid").await;
    let cases = invalid_objects::corpus();
    assert!(cases.len() >= 50, "the corpus covers at least 50 mistakes");

    let mut failures = Vec::new();
    for case in &cases {
        let out = kubectl_with_stdin(&["create", "-n", &ns.name, "-f", "-"], &case.manifest).await;
        if out.success() {
            failures.push(format!(
                "{}: accepted, expected a rejection naming {:?}",
                case.what, case.expect
            ));
            continue;
        }
        let missing: Vec<_> = case.expect.iter().filter(|s| !out.stderr.contains(*s)).collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{}: message lacks {missing:?}: {}",
                case.what,
                out.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    let left = kubectl(&["get", "cocoonsets,hibernations", "-n", &ns.name, "-o", "name"])
        .await
        .expect_success("list");
    assert_eq!(left.stdout.trim(), "", "no invalid object was stored");
}

#[tokio::test]
async fn the_seed_examples_are_accepted_verbatim() {
    install_crds().await;
    let ns = TestNamespace::new("crd-seed").await;
    let hibernation = format!(
        "apiVersion: cocoon.cis/v1alpha1
kind: Hibernation
metadata: {{name: hibernate-bot-1, namespace: {}}}
spec: {{podName: sre-agent-xxx, action: hibernate}}
",
        ns.name
    );
    kubectl_with_stdin(&["apply", "-f", "-"], &hibernation)
        .await
        .expect_success("apply the seed Hibernation");

    kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], common::SEED_COCOONSET)
        .await
        .expect_success("apply the seed CocoonSet");

    let set = get_json(&ns, "cocoonset", "demo").await;
    assert_eq!(set["spec"]["agent"]["resources"]["memory"], "4Gi");
    assert_eq!(set["spec"]["toolboxes"][0]["mode"], "static");
    let hib = get_json(&ns, "hib", "hibernate-bot-1").await;
    assert_eq!(hib["spec"]["podName"], "sre-agent-xxx");

    // Retargeting is refused: another pod needs another Hibernation.
    let retarget = kubectl(&[
        "patch",
        "hibernation",
        "hibernate-bot-1",
        "-n",
        &ns.name,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"podName":"other-pod"}}"#,
    ])
    .await;
    assert!(!retarget.success(), "podName is immutable");
    assert!(
        retarget
            .stderr
            .contains("podName is immutable: to target another pod, create another Hibernation"),
        "{}",
        retarget.stderr
    );
    // The action is not.
    kubectl(&[
        "patch",
        "hibernation",
        "hibernate-bot-1",
        "-n",
        &ns.name,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"action":"wake"}}"#,
    ])
    .await
    .expect_success("flip the action");
}

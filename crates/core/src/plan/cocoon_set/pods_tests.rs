//! The pods the operator creates carry everything SPEC §3.2 lists.

use super::pods::{AgentKind, Provider, TERMINATION_GRACE_SECONDS, agent_pod, toolbox_pod};
use crate::api::{EnvFromRef, NameRef, SnapshotPolicy, ToolboxMode, ToolboxOs, VmResources};
use crate::contract;
use crate::contract::dialect::seed;
use crate::plan::fixtures::{identity, pool_provider, spec, toolbox};

#[test]
fn an_agent_pod_is_complete() {
    let mut s = spec(1);
    s.agent.resources = Some(VmResources { cpu: Some("2".into()), memory: Some("4Gi".into()) });
    s.agent.storage = Some("100G".into());
    s.agent.service_account_name = Some("agents".into());
    s.agent.env_from = vec![
        EnvFromRef { config_map_ref: Some(NameRef { name: "cfg".into() }), secret_ref: None },
        EnvFromRef { config_map_ref: None, secret_ref: Some(NameRef { name: "sec".into() }) },
    ];
    s.snapshot_policy = SnapshotPolicy::MainOnly;
    let pod = agent_pod(
        &identity(),
        &s,
        1,
        &AgentKind::SubAgent { fork_from: "vk-prod-demo-0".into() },
        &pool_provider(),
        false,
    );
    let meta = &pod.metadata;
    assert_eq!(meta.name.as_deref(), Some("demo-1"));
    let labels = meta.labels.clone().unwrap();
    assert_eq!(labels[contract::LABEL_COCOONSET], "demo");
    assert_eq!(labels[contract::LABEL_ROLE], "sub-agent");
    assert_eq!(labels[contract::LABEL_SLOT], "1");
    assert_eq!(labels[contract::LABEL_APP], "demo");
    let ann = meta.annotations.clone().unwrap();
    assert_eq!(ann[seed::KEYS.vm_name], "vk-prod-demo-1");
    assert_eq!(ann[seed::KEYS.mode], "clone");
    assert_eq!(ann[seed::KEYS.image], "ubuntu-dev-base");
    assert_eq!(ann[seed::KEYS.managed], "true");
    assert_eq!(ann[seed::KEYS.os], "linux");
    assert_eq!(ann[seed::KEYS.snapshot_policy], "main-only");
    assert_eq!(ann[seed::KEYS.storage], "100G");
    assert_eq!(ann[seed::KEYS.fork_from], "vk-prod-demo-0");
    let owner = &meta.owner_references.clone().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("CocoonSet", "uid-demo"));
    assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
    let pod_spec = pod.spec.unwrap();
    assert_eq!(pod_spec.node_name.as_deref(), Some("cocoon-pool"));
    assert_eq!(pod_spec.service_account_name.as_deref(), Some("agents"));
    assert!(pod_spec.termination_grace_period_seconds.unwrap() > 0, "grace 0 orphans VMs");
    assert_eq!(pod_spec.termination_grace_period_seconds, Some(TERMINATION_GRACE_SECONDS));
    let c = &pod_spec.containers[0];
    assert_eq!(c.name, "vm");
    assert_eq!(c.image.as_deref(), Some("ubuntu-dev-base"));
    let limits = c.resources.clone().unwrap().limits.unwrap();
    assert_eq!(limits["cpu"].0, "2");
    assert_eq!(limits["memory"].0, "4Gi");
    let env = c.env_from.clone().unwrap();
    assert_eq!(env[0].config_map_ref.as_ref().unwrap().name, "cfg");
    assert_eq!(env[1].secret_ref.as_ref().unwrap().name, "sec");
}

#[test]
fn vm_pods_tolerate_node_flaps_forever() {
    let pod = agent_pod(&identity(), &spec(0), 0, &AgentKind::Main, &pool_provider(), false);
    let tolerations = pod.spec.unwrap().tolerations.unwrap();
    let find =
        |key: &str| tolerations.iter().find(|t| t.key.as_deref() == Some(key)).cloned().unwrap();
    let vk = find(contract::TAINT_VIRTUAL_KUBELET);
    assert_eq!(
        (vk.operator.as_deref(), vk.effect.as_deref()),
        (Some("Exists"), Some("NoSchedule"))
    );
    for key in [contract::TAINT_NOT_READY, contract::TAINT_UNREACHABLE] {
        let t = find(key);
        assert_eq!(
            (t.operator.as_deref(), t.effect.as_deref()),
            (Some("Exists"), Some("NoExecute"))
        );
        assert_eq!(t.toleration_seconds, None, "{key} must never evict a VM");
    }
}

#[test]
fn the_main_has_no_fork_from() {
    let pod = agent_pod(&identity(), &spec(0), 0, &AgentKind::Main, &pool_provider(), false);
    let ann = pod.metadata.annotations.unwrap();
    assert!(!ann.contains_key(seed::KEYS.fork_from));
    assert_eq!(pod.metadata.labels.unwrap()[contract::LABEL_ROLE], "main");
}

#[test]
fn a_toolbox_pod_is_scoped_to_its_set_and_carries_its_mode_and_os() {
    let mut s = spec(0);
    let tb = toolbox("droid", ToolboxOs::Android, ToolboxMode::Clone);
    s.toolboxes = vec![tb.clone()];
    let pod = toolbox_pod(&identity(), &s, &tb, None, &pool_provider());
    assert_eq!(pod.metadata.name.as_deref(), Some("demo-droid"));
    let ann = pod.metadata.annotations.clone().unwrap();
    assert_eq!(ann[seed::KEYS.vm_name], "vk-prod-demo-droid");
    assert_eq!(ann[seed::KEYS.mode], "clone");
    assert_eq!(ann[seed::KEYS.os], "android");
    assert_eq!(ann[seed::KEYS.managed], "true");
    let labels = pod.metadata.labels.unwrap();
    assert_eq!(labels[contract::LABEL_ROLE], "toolbox");
    assert!(!labels.contains_key(contract::LABEL_SLOT));
}

#[test]
fn a_static_toolbox_ignores_static_fields_unless_static() {
    let mut tb = toolbox("box", ToolboxOs::Linux, ToolboxMode::Run);
    tb.static_ip = Some("10.1.1.1".into());
    tb.vnc_port = Some(5900);
    let pod = toolbox_pod(&identity(), &spec(0), &tb, None, &pool_provider());
    let ann = pod.metadata.annotations.unwrap();
    assert!(!ann.contains_key(seed::KEYS.ip));
    assert!(!ann.contains_key(seed::KEYS.vnc_port));
}

#[test]
fn a_main_without_a_node_is_left_to_the_scheduler_within_its_dialects_pool() {
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Toleration,
    };
    let mut s = spec(0);
    s.node_name = None;
    s.node_selector = [("zone".to_string(), "a".to_string())].into();
    s.tolerations = vec![Toleration {
        key: Some("dedicated".into()),
        operator: Some("Exists".into()),
        ..Default::default()
    }];
    let term = |key: &str| NodeSelectorTerm {
        match_expressions: Some(vec![NodeSelectorRequirement {
            key: key.into(),
            operator: "Exists".into(),
            values: None,
        }]),
        match_fields: None,
    };
    s.affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![term("gpu"), term("big")],
            }),
            preferred_during_scheduling_ignored_during_execution: None,
        }),
        ..Default::default()
    });
    let unplaced = Provider::default();
    assert_eq!(unplaced.node, None);
    let pod = agent_pod(&identity(), &s, 0, &AgentKind::Main, &unplaced, false);
    let pod_spec = pod.spec.unwrap();
    assert_eq!(pod_spec.node_name, None, "the scheduler binds it");
    assert_eq!(pod_spec.node_selector.unwrap()["zone"], "a");
    let keys: Vec<Option<String>> =
        pod_spec.tolerations.unwrap().into_iter().map(|t| t.key).collect();
    assert!(keys.contains(&Some("dedicated".into())), "{keys:?}");
    assert!(keys.contains(&Some(contract::TAINT_UNREACHABLE.into())), "{keys:?}");
    let terms = pod_spec
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    assert_eq!(terms.len(), 2, "the user's terms, each narrowed to the pool");
    for term in terms {
        let exprs = term.match_expressions.unwrap();
        let has = |key: &str, op: &str| exprs.iter().any(|e| e.key == key && e.operator == op);
        assert!(has("type", "In") && has("cocoonstack.io/pool", "DoesNotExist"), "{exprs:?}");
        assert!(has("gpu", "Exists") || has("big", "Exists"));
    }
    // A cocoonstack set selects its pool; without a user's affinity, in a term of its own.
    s.affinity = None;
    let current = Provider { dialect: contract::Dialect::Current, ..Default::default() };
    let pod = agent_pod(&identity(), &s, 0, &AgentKind::Main, &current, false);
    let affinity = pod.spec.unwrap().affinity.unwrap();
    let terms = affinity
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    let exprs = terms[0].match_expressions.clone().unwrap();
    assert_eq!(
        (exprs[0].key.as_str(), exprs[0].operator.as_str()),
        ("cocoonstack.io/pool", "Exists")
    );
    // Bound to a node: nothing for the scheduler, the spec's selector does not apply.
    let pod = agent_pod(&identity(), &s, 0, &AgentKind::Main, &pool_provider(), false);
    let pod_spec = pod.spec.unwrap();
    assert_eq!(pod_spec.node_name.as_deref(), Some("cocoon-pool"));
    assert!(pod_spec.affinity.is_none() && pod_spec.node_selector.is_none());
}

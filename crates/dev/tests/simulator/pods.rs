//! Pods, waits and observations for the simulator tests, in the terms a user would check.

use cocoon_core::contract::dialect::seed;
use std::collections::BTreeMap;
use std::time::Duration;

use cocoon_dev::sim::{SimConfig, SimHandle, Simulator};
use cocoon_operator::contract;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use cocoon_dev::testing::{TestNamespace, eventually};

/// How long any simulated transition may take in these tests (delays are zero).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Image of every test VM.
pub const IMAGE: &str = "registry.example/agent:1";

/// A node of its own for each test, named after its namespace, so parallel tests never share one.
pub fn node_of(ns: &TestNamespace) -> String {
    format!("sim-{}", ns.name)
}

/// Starts a simulator serving this test's node.
pub async fn start(ns: &TestNamespace, config: SimConfig) -> SimHandle {
    let config = SimConfig { node_name: node_of(ns), ..config };
    Simulator::start(ns.client.clone(), config).await.expect("start the simulator")
}

/// A VM pod as the operator would create it: one container `vm`, a long grace period (only
/// the simulator's delete hook can finish the deletion; there is no kubelet).
pub fn vm_pod(
    name: &str,
    node: &str,
    annotations: &[(&str, &str)],
    labels: &[(&str, &str)],
) -> Pod {
    let map = |kv: &[(&str, &str)]| {
        Some(kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            annotations: map(annotations),
            labels: map(labels),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_string()),
            termination_grace_period_seconds: Some(300),
            containers: vec![Container {
                name: seed::CONTAINER.to_string(),
                image: Some(IMAGE.to_string()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// Creates a pod in the test namespace.
pub async fn create(ns: &TestNamespace, pod: Pod) -> Pod {
    let name = pod.metadata.name.clone().unwrap_or_default();
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create pod {name}: {e}"))
}

/// Waits until `check` holds for the pod, failing with what the pod looked like last.
pub async fn wait_for(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    check: impl Fn(&Pod) -> bool,
) -> Pod {
    let api = ns.api::<Pod>();
    eventually(DEADLINE, || async {
        let pod = api.get(name).await.map_err(|e| e.to_string())?;
        if check(&pod) { Ok(pod) } else { Err(describe(&pod)) }
    })
    .await
    .unwrap_or_else(|e| panic!("pod {name} never became {what}: {e}"))
}

/// Waits until the pod is Running and Ready with a VM id.
pub async fn wait_running(ns: &TestNamespace, name: &str) -> Pod {
    wait_for(ns, name, "Running and Ready", is_running_ready).await
}

/// Waits until the pod reports its VM hibernated.
pub async fn wait_hibernated(ns: &TestNamespace, name: &str) -> Pod {
    wait_for(ns, name, "hibernated", is_hibernated).await
}

/// Waits until the pod object is gone.
pub async fn wait_gone(ns: &TestNamespace, name: &str) {
    let api = ns.api::<Pod>();
    eventually(DEADLINE, || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(pod)) => Err(format!("still there: {}", describe(&pod))),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("pod {name} was never removed: {e}"));
}

pub fn is_running_ready(pod: &Pod) -> bool {
    phase(pod) == Some("Running")
        && condition(pod, "Ready") == Some("True")
        && annotation(pod, seed::KEYS.vm_id).is_some()
}

pub fn is_hibernated(pod: &Pod) -> bool {
    vm_waiting_reason(pod).as_deref() == Some(contract::REASON_HIBERNATED)
}

pub fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

pub fn reason(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.reason.as_deref()
}

pub fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.pod_ip.as_deref()
}

/// Status (`True`/`False`) of a pod condition.
pub fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a str> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == kind).map(|c| c.status.as_str())
}

pub fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Waiting reason of the `vm` container.
pub fn vm_waiting_reason(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let vm = statuses.iter().find(|c| c.name == seed::CONTAINER)?;
    vm.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

/// Whether the `vm` container is running and ready.
pub fn vm_running(pod: &Pod) -> bool {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses
        .and_then(|s| s.iter().find(|c| c.name == seed::CONTAINER))
        .is_some_and(|c| c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

/// The namespace's snapshot entries (empty when the ConfigMap does not exist).
pub async fn snapshot_entries(ns: &TestNamespace) -> BTreeMap<String, String> {
    let api: Api<ConfigMap> = ns.api();
    match api.get_opt(contract::SNAPSHOT_CONFIGMAP).await {
        Ok(Some(cm)) => cm.data.unwrap_or_default(),
        Ok(None) => BTreeMap::new(),
        Err(e) => panic!("read {}: {e}", contract::SNAPSHOT_CONFIGMAP),
    }
}

/// Waits until the snapshot entry of `vm` is present (`true`) or absent (`false`).
pub async fn wait_entry(ns: &TestNamespace, vm: &str, present: bool) {
    eventually(DEADLINE, || async {
        let entries = snapshot_entries(ns).await;
        if entries.contains_key(vm) == present {
            Ok(())
        } else {
            Err(format!("entries: {entries:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("snapshot entry {vm} never became present={present}: {e}"));
}

/// Waits for an Event with `reason` about the pod, and returns its note.
pub async fn wait_event(ns: &TestNamespace, pod: &str, reason: &str) -> String {
    use k8s_openapi::api::events::v1::Event;
    let api: Api<Event> = ns.api();
    eventually(DEADLINE, || async {
        let events = api.list(&Default::default()).await.map_err(|e| e.to_string())?;
        events
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod)
            })
            .map(|e| e.note.unwrap_or_default())
            .ok_or_else(|| format!("no {reason} event for {pod} yet"))
    })
    .await
    .unwrap_or_else(|e| panic!("event {reason} on {pod}: {e}"))
}

/// A one-line picture of a pod for failure messages.
pub fn describe(pod: &Pod) -> String {
    format!(
        "phase={:?} reason={:?} ready={:?} vm-waiting={:?} podIP={:?} deleting={} annotations={:?}",
        phase(pod),
        reason(pod),
        condition(pod, "Ready"),
        vm_waiting_reason(pod),
        pod_ip(pod),
        pod.metadata.deletion_timestamp.is_some(),
        pod.metadata.annotations.as_ref().map(|a| {
            a.iter().filter(|(k, _)| k.starts_with(contract::PREFIX)).collect::<BTreeMap<_, _>>()
        }),
    )
}

/// Sets (`Some`) or removes (`None`) an annotation, as `kubectl annotate` would.
pub async fn annotate(ns: &TestNamespace, pod: &str, key: &str, value: Option<&str>) {
    use kube::api::{Patch, PatchParams};
    let patch = serde_json::json!({ "metadata": { "annotations": { key: value } } });
    ns.api::<Pod>()
        .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("annotate pod {pod} {key}={value:?}: {e}"));
}

/// Deletes a pod with its own (non-zero) grace period, as a user or controller would.
pub async fn delete(ns: &TestNamespace, pod: &str) {
    ns.api::<Pod>()
        .delete(pod, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("delete pod {pod}: {e}"));
}

//! The pod shapes of vk-cocoon v0.2 and current (PROVIDERS.md §3.2, §3.3), as merge patches
//! (pure; time is an argument): a running VM's pod is Running with one container `agent` and
//! conditions Ready and Initialized, no hostIP; a pod without a VM (hibernated) is Pending with
//! its start time only; a refused pod shows the framework's `ProviderFailed`. Current also
//! publishes its lifecycle state with the generation stamp it observed.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::vm::VmRecord;
use crate::contract::{self, Dialect, LifecycleState};

/// The container name vk-cocoon v0.2 and current report for every pod.
const CONTAINER: &str = "agent";

/// The VM's id and (when `with_ip`) address in the dialect's keys.
pub fn runtime_annotations(vm: &VmRecord, dialect: Dialect, with_ip: bool) -> Value {
    let keys = dialect.keys();
    let mut annotations = Map::new();
    annotations.insert(keys.vm_id.into(), json!(vm.id));
    if let (true, Some(ip)) = (with_ip, vm.ip) {
        annotations.insert(keys.ip.into(), json!(ip.to_string()));
    }
    json!({ "metadata": { "annotations": annotations } })
}

/// The VM's id and address removed (the VM is gone: hibernated).
pub fn cleared_runtime(dialect: Dialect) -> Value {
    let keys = dialect.keys();
    json!({ "metadata": { "annotations": { keys.vm_id: null, keys.ip: null } } })
}

/// The lifecycle state (current) with the stamp it answers, in one merge patch; an empty
/// message is removed.
pub fn lifecycle(state: LifecycleState, stamp: i64, message: Option<&str>) -> Value {
    let keys = Dialect::Current.keys();
    let mut annotations = Map::new();
    for (key, value) in [
        (keys.lifecycle_state, json!(state.as_str())),
        (keys.lifecycle_generation, json!(stamp.to_string())),
        (keys.lifecycle_message, message.map_or(Value::Null, |m| json!(m))),
    ] {
        if let Some(key) = key {
            annotations.insert(key.into(), value);
        }
    }
    json!({ "metadata": { "annotations": annotations } })
}

/// Status of a pod whose VM runs (and, `ready`, answers its probe).
pub fn running_status(pod: &Pod, vm: &VmRecord, ready: bool, now: Timestamp) -> Value {
    let since = time(now);
    let ready_status = if ready { "True" } else { "False" };
    let ip = vm.ip.map(|ip| ip.to_string());
    json!({ "status": {
        "phase": "Running",
        "reason": null,
        "message": null,
        "podIP": ip,
        "podIPs": ip.as_ref().map(|ip| vec![json!({ "ip": ip })]),
        "startTime": start_time(pod, now),
        "conditions": [
            { "type": "Ready", "status": ready_status, "lastTransitionTime": since },
            { "type": "Initialized", "status": "True", "lastTransitionTime": since },
        ],
        "containerStatuses": [{
            "name": CONTAINER,
            "image": "",
            "imageID": "",
            "ready": ready,
            "restartCount": 0,
            "state": { "running": { "startedAt": since } },
        }],
    }})
}

/// Status of a pod without a VM (hibernated): Pending, its start time, nothing else.
pub fn vm_less_status(pod: &Pod, now: Timestamp) -> Value {
    json!({ "status": {
        "phase": "Pending",
        "reason": null,
        "message": null,
        "podIP": null,
        "podIPs": null,
        "conditions": null,
        "containerStatuses": null,
        "startTime": start_time(pod, now),
    }})
}

/// What virtual-kubelet writes when the provider's create or update fails: Pending (Failed
/// for a pod that never restarts), reason `ProviderFailed`, the error as message; the rest of
/// the status as it was.
pub fn provider_failed_status(pod: &Pod, message: &str) -> Value {
    let never = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never");
    json!({ "status": {
        "phase": if never { "Failed" } else { "Pending" },
        "reason": contract::REASON_PROVIDER_FAILED,
        "message": message,
    }})
}

fn start_time(pod: &Pod, now: Timestamp) -> String {
    let existing = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    time(existing.unwrap_or(now))
}

fn time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use k8s_openapi::api::core::v1::PodSpec;

    use super::*;
    use crate::sim::vm::VmState;
    use cocoon_core::plan::PodView;

    fn vm() -> VmRecord {
        VmRecord {
            pod_key: "ns/p".into(),
            namespace: "ns".into(),
            id: "sim-1".into(),
            name: "vk-ns-set-0".into(),
            ip: Some(Ipv4Addr::new(10, 88, 0, 9)),
            state: VmState::Running,
            is_static: false,
            snapshot_from: None,
            failure: None,
            woken: false,
            reported: false,
        }
    }

    /// A pod with the operator's v0.2 keys and `patches` merged in, viewed by the operator.
    fn view(patches: &[Value]) -> PodView {
        let mut pod = json!({
            "metadata": { "name": "p", "namespace": "ns", "annotations": {
                "vm.cocoonstack.io/name": "vk-ns-set-0",
                "vm.cocoonstack.io/hibernate": "true",
            }},
            "spec": { "containers": [{ "name": "agent", "image": "x" }] },
        });
        for patch in patches {
            json_patch_merge(&mut pod, patch);
        }
        PodView::from_pod(&serde_json::from_value(pod).unwrap())
    }

    fn json_patch_merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        json_patch_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    #[test]
    fn the_operator_reads_these_shapes_as_the_provider_means_them() {
        let now = Timestamp::from_second(100).unwrap();
        let pod = Pod { spec: Some(PodSpec::default()), ..Pod::default() };
        let running = view(&[
            runtime_annotations(&vm(), Dialect::V02, true),
            running_status(&pod, &vm(), true, now),
        ]);
        assert!(running.phase == cocoon_core::plan::observe::PodPhase::Running && running.ready);
        assert_eq!(running.ip.as_deref(), Some("10.88.0.9"));
        let hibernated = view(&[
            runtime_annotations(&vm(), Dialect::V02, true),
            running_status(&pod, &vm(), true, now),
            cleared_runtime(Dialect::V02),
            vm_less_status(&pod, now),
        ]);
        assert!(hibernated.reports_hibernated(), "{hibernated:?}");
        assert_eq!(hibernated.vm_id, None);
        let refused = view(&[provider_failed_status(&pod, "no")]);
        assert!(!refused.hibernated, "a refusal is no hibernation");
        assert_eq!(refused.provider_failure().as_deref(), Some("no"));
    }

    #[test]
    fn a_lifecycle_state_carries_its_stamp_and_drops_an_empty_message() {
        let patch = lifecycle(LifecycleState::Hibernated, 4, None);
        let a = &patch["metadata"]["annotations"];
        assert_eq!(a["vm.cocoonstack.io/lifecycle-state"], "hibernated");
        assert_eq!(a["vm.cocoonstack.io/lifecycle-observed-generation"], "4");
        assert!(a["vm.cocoonstack.io/lifecycle-state-message"].is_null());
    }
}

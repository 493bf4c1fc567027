//! Builds the annotation and status patches vk-cocoon writes on a pod (pure; time is an argument).

use cocoon_core::contract::dialect::seed;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::vm::{HOST_IP, VmRecord};
use crate::contract;

/// Merge patch of the annotations that describe a VM. The operator's `vm-name` is kept; ours is
/// written only when the pod has none.
pub fn annotations_patch(pod: &Pod, vm: &VmRecord) -> Value {
    let mut annotations = serde_json::Map::new();
    annotations.insert(seed::KEYS.vm_id.into(), json!(vm.id));
    if let Some(ip) = vm.ip {
        annotations.insert(seed::KEYS.ip.into(), json!(ip.to_string()));
    }
    let has_name = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(seed::KEYS.vm_name))
        .is_some_and(|n| !n.trim().is_empty());
    if !has_name {
        annotations.insert(seed::KEYS.vm_name.into(), json!(vm.name));
    }
    if let Some(from) = &vm.snapshot_from {
        annotations.insert(seed::SNAPSHOT_FROM.into(), json!(from));
    }
    json!({ "metadata": { "annotations": annotations } })
}

/// What differs between the statuses vk-cocoon writes: the pod phase and reason, each
/// container's state, whether it serves, and its address.
struct Shape<'a> {
    phase: &'a str,
    reason: Option<&'a str>,
    message: Option<&'a str>,
    /// Every container's state (`running`, `waiting` or `terminated`).
    state: Value,
    /// Running and Ready: the containers are ready and started, the conditions True.
    serving: bool,
    /// The reason of a False ContainersReady and Ready.
    not_ready: Option<&'a str>,
    /// `Some` writes `containerID` (a VM that exists).
    container_id: Option<String>,
    /// `Some(None)` clears podIP; `None` leaves it out of the patch.
    ip: Option<Option<String>>,
}

fn status(pod: &Pod, shape: Shape<'_>, now: Timestamp) -> Value {
    let containers: Vec<Value> = container_names(pod)
        .map(|(name, image)| {
            let mut c = json!({
                "name": name,
                "image": image,
                "imageID": "",
                "ready": shape.serving,
                "started": shape.serving,
                "restartCount": 0,
                "state": shape.state,
            });
            if let (Some(id), Some(fields)) = (&shape.container_id, c.as_object_mut()) {
                fields.insert("containerID".into(), json!(id));
            }
            c
        })
        .collect();
    let conditions = conditions(
        pod,
        now,
        &[
            ("PodScheduled", true, None),
            ("Initialized", true, None),
            ("ContainersReady", shape.serving, shape.not_ready),
            ("Ready", shape.serving, shape.not_ready),
        ],
    );
    let mut status = json!({
        "phase": shape.phase,
        "reason": shape.reason,
        "message": shape.message,
        "conditions": conditions,
        "containerStatuses": containers,
        "hostIP": HOST_IP.to_string(),
        "hostIPs": [{ "ip": HOST_IP.to_string() }],
        "startTime": start_time(pod, now),
    });
    if let (Some(ip), Some(fields)) = (shape.ip, status.as_object_mut()) {
        fields.insert("podIP".into(), json!(ip));
        fields.insert("podIPs".into(), json!(ip.map(|ip| vec![json!({ "ip": ip })])));
    }
    json!({ "status": status })
}

/// Status of a pod whose VM runs: Running, every condition True, containers running, podIP.
pub fn running_status(pod: &Pod, vm: &VmRecord, now: Timestamp) -> Value {
    let shape = Shape {
        phase: "Running",
        reason: None,
        message: None,
        state: json!({ "running": { "startedAt": time(now) } }),
        serving: true,
        not_ready: None,
        container_id: Some(format!("cocoon://{}", vm.id)),
        ip: Some(vm.ip.map(|ip| ip.to_string())),
    };
    status(pod, shape, now)
}

/// Status of a hibernated pod: still Running (the pod object lives on), not Ready, container
/// Waiting with reason Hibernated, and no podIP.
pub fn hibernated_status(pod: &Pod, vm: &VmRecord, now: Timestamp) -> Value {
    let message =
        format!("VM {} snapshotted to {}[{}]", vm.name, contract::SNAPSHOT_CONFIGMAP, vm.name);
    let shape = Shape {
        phase: "Running",
        reason: None,
        message: None,
        state: json!({ "waiting": { "reason": contract::REASON_HIBERNATED, "message": message } }),
        serving: false,
        not_ready: Some(contract::REASON_HIBERNATED),
        container_id: None,
        ip: Some(None),
    };
    status(pod, shape, now)
}

/// Status of a pod vk-cocoon could not give a VM. `terminal` = phase Failed (a failed create);
/// otherwise the pod stays Pending (a static pod without an address, which may yet get one).
pub fn provider_failed_status(pod: &Pod, message: &str, terminal: bool, now: Timestamp) -> Value {
    let reason = contract::REASON_PROVIDER_FAILED;
    let state = if terminal {
        json!({ "terminated": {
            "exitCode": 1,
            "reason": reason,
            "message": message,
            "finishedAt": time(now),
        }})
    } else {
        json!({ "waiting": { "reason": reason, "message": message } })
    };
    let shape = Shape {
        phase: if terminal { "Failed" } else { "Pending" },
        reason: Some(reason),
        message: Some(message),
        state,
        serving: false,
        not_ready: Some(reason),
        container_id: None,
        ip: None,
    };
    status(pod, shape, now)
}

/// Conditions of the given types; `lastTransitionTime` moves only when a condition's status does.
fn conditions(pod: &Pod, now: Timestamp, wanted: &[(&str, bool, Option<&str>)]) -> Vec<Value> {
    let existing = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    wanted
        .iter()
        .map(|(kind, status, reason)| {
            let status = if *status { "True" } else { "False" };
            let since = existing
                .iter()
                .find(|c| c.type_ == *kind && c.status == status)
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
                .unwrap_or(now);
            let mut condition = json!({
                "type": kind,
                "status": status,
                "lastProbeTime": null,
                "lastTransitionTime": time(since),
            });
            if let (Some(reason), Some(fields)) = (reason, condition.as_object_mut()) {
                fields.insert("reason".into(), json!(reason));
            }
            condition
        })
        .collect()
}

/// Names and images of the pod's containers: each one is "the VM" as far as status goes.
fn container_names(pod: &Pod) -> impl Iterator<Item = (&str, &str)> {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or_default()))
}

/// `startTime` is set once, when the node first accepts the pod.
fn start_time(pod: &Pod, now: Timestamp) -> String {
    let existing = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    time(existing.unwrap_or(now))
}

/// RFC 3339 with whole seconds, as metav1.Time is serialised.
fn time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::vm::VmState;
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::net::Ipv4Addr;

    fn pod(conditions: Vec<PodCondition>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "vm".into(),
                    image: Some("img".into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus { conditions: Some(conditions), ..PodStatus::default() }),
            ..Pod::default()
        }
    }

    fn vm() -> VmRecord {
        VmRecord {
            pod_key: "ns/pod".into(),
            namespace: "ns".into(),
            id: "sim-1".into(),
            name: "vk-ns-pod".into(),
            ip: Some(Ipv4Addr::new(10, 88, 0, 7)),
            state: VmState::Running,
            is_static: false,
            snapshot_from: Some("img".into()),
            failure: None,
            woken: false,
            reported: false,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_running_pod_is_ready_with_its_ip() {
        let status = running_status(&pod(vec![]), &vm(), at(100));
        assert_eq!(status["status"]["phase"], "Running");
        assert_eq!(status["status"]["podIP"], "10.88.0.7");
        assert_eq!(status["status"]["podIPs"][0]["ip"], "10.88.0.7");
        assert_eq!(status["status"]["containerStatuses"][0]["name"], "vm");
        assert_eq!(status["status"]["containerStatuses"][0]["ready"], true);
        let conditions = status["status"]["conditions"].as_array().cloned().unwrap_or_default();
        assert_eq!(conditions.len(), 4);
        assert!(conditions.iter().all(|c| c["status"] == "True"));
    }

    #[test]
    fn transition_times_move_only_when_a_condition_flips() {
        let ready_since_10 = PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(at(10))),
            ..PodCondition::default()
        };
        let running = running_status(&pod(vec![ready_since_10.clone()]), &vm(), at(100));
        let ready = |s: &Value| {
            s["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
                .unwrap_or_default()
        };
        assert_eq!(ready(&running)["lastTransitionTime"], "1970-01-01T00:00:10Z");
        let hibernated = hibernated_status(&pod(vec![ready_since_10]), &vm(), at(100));
        assert_eq!(ready(&hibernated)["status"], "False");
        assert_eq!(ready(&hibernated)["lastTransitionTime"], "1970-01-01T00:01:40Z");
    }

    #[test]
    fn a_hibernated_pod_stays_running_without_an_ip() {
        let status = hibernated_status(&pod(vec![]), &vm(), at(100));
        assert_eq!(status["status"]["phase"], "Running");
        assert_eq!(status["status"]["podIP"], Value::Null);
        assert_eq!(
            status["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            contract::REASON_HIBERNATED
        );
    }

    #[test]
    fn provider_failures_are_failed_or_pending() {
        let failed = provider_failed_status(&pod(vec![]), "boom", true, at(1));
        assert_eq!(failed["status"]["phase"], "Failed");
        assert_eq!(failed["status"]["reason"], contract::REASON_PROVIDER_FAILED);
        let pending = provider_failed_status(&pod(vec![]), "no ip", false, at(1));
        assert_eq!(pending["status"]["phase"], "Pending");
        assert_eq!(pending["status"]["message"], "no ip");
    }

    #[test]
    fn the_operators_vm_name_is_kept() {
        let mut named = pod(vec![]);
        named.metadata.annotations =
            Some([(seed::KEYS.vm_name.to_string(), "vk-op".to_string())].into());
        let patch = annotations_patch(&named, &vm());
        assert!(patch["metadata"]["annotations"].get(seed::KEYS.vm_name).is_none());
        let patch = annotations_patch(&pod(vec![]), &vm());
        assert_eq!(patch["metadata"]["annotations"][seed::KEYS.vm_name], "vk-ns-pod");
        assert_eq!(patch["metadata"]["annotations"][seed::SNAPSHOT_FROM], "img");
    }
}

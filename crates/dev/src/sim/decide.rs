//! Decides the next step for one pod from what it asks for and the state of its VM (pure).

use super::intent::PodIntent;
use super::vm::{VmRecord, VmState};
use crate::contract::LifecycleState;

/// The next thing the simulated provider does for a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Steady state: nothing to do until the pod changes.
    Idle,
    /// No VM yet: boot, clone or adopt one (after the create delay).
    Create,
    /// The provider cannot create this pod's VM (a static pod without a usable address, a
    /// cocoonstack pod without a VM name): report reason ProviderFailed with its words.
    Refuse { message: String },
    /// The VM changed but the pod does not show it yet (an earlier write failed): write it again.
    Report,
    /// Current: the pod does not show the VM's lifecycle state for its stamp (a write failed,
    /// or the operator bumped the stamp): publish it again, as vk-cocoon's re-flush loop and
    /// its re-publish on a bare generation bump do (PROVIDERS.md §3.3).
    Publish(LifecycleState),
    /// `hibernate=true` on a running VM: snapshot and stop it (after the hibernate delay).
    Hibernate,
    /// `hibernate=true`, but the fault "never completes hibernate" holds this pod.
    HoldHibernate,
    /// `hibernate` removed from a hibernated VM: restore it (after the wake delay).
    Wake,
    /// The pod is terminating: snapshot if the policy says so, forget the VM, remove the pod.
    Delete { snapshot: bool },
}

/// Chooses the next step. `hibernate_held` is the fault "never completes hibernate" for this pod.
pub fn decide(intent: &PodIntent, vm: Option<&VmRecord>, hibernate_held: bool) -> Step {
    if intent.deleting {
        let has_state = vm.is_some_and(|vm| vm.state != VmState::Failed);
        return Step::Delete { snapshot: has_state && intent.snapshots_on_delete() };
    }
    let Some(vm) = vm else {
        if intent.terminal {
            return Step::Idle;
        }
        let refusal =
            intent.refusal.as_ref().or(intent.static_problem.as_ref().filter(|_| intent.is_static));
        if let Some(message) = refusal {
            // Rewriting an identical status would only echo back through our own watch.
            return if intent.provider_failed_reported {
                Step::Idle
            } else {
                Step::Refuse { message: message.clone() }
            };
        }
        return Step::Create;
    };
    if !vm.reported {
        return Step::Report;
    }
    if let Some(state) = republish(intent, vm) {
        return Step::Publish(state);
    }
    match (vm.state, intent.hibernate) {
        (VmState::Running, true) if hibernate_held => Step::HoldHibernate,
        (VmState::Running, true) => Step::Hibernate,
        (VmState::Hibernated, false) => Step::Wake,
        _ => Step::Idle,
    }
}

/// The lifecycle state the pod should show for its VM and does not (current only). A `failed`
/// for the pod's stamp sticks until the operator asks again (a new stamp).
fn republish(intent: &PodIntent, vm: &VmRecord) -> Option<LifecycleState> {
    let published = intent.published.as_ref()?;
    let due = match (vm.state, intent.hibernate) {
        (VmState::Running, false) => LifecycleState::Ready,
        (VmState::Hibernated, true) => LifecycleState::Hibernated,
        _ => return None,
    };
    let current = published.generation == intent.stamp;
    let sticks = current && published.state == Some(LifecycleState::Failed);
    let shown = current && published.state == Some(due);
    (!sticks && !shown && published.generation <= intent.stamp).then_some(due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SnapshotPolicy;
    use std::collections::BTreeMap;

    fn intent() -> PodIntent {
        PodIntent {
            key: "ns/pod".into(),
            namespace: "ns".into(),
            name: "pod".into(),
            labels: BTreeMap::new(),
            deleting: false,
            hibernate: false,
            is_static: false,
            is_clone: false,
            static_ip: None,
            static_problem: Some("no ip".into()),
            vm_id: None,
            vm_name: None,
            fork_from: None,
            image: "img".into(),
            snapshot_policy: SnapshotPolicy::Always,
            is_main: false,
            terminal: false,
            provider_failed_reported: false,
            problems: vec![],
            refusal: None,
            stamp: 0,
            restore_marked: false,
            keep_snapshot: false,
            cpu_class: None,
            published: None,
        }
    }

    fn vm(state: VmState) -> VmRecord {
        VmRecord {
            pod_key: "ns/pod".into(),
            namespace: "ns".into(),
            id: "id".into(),
            name: "vm".into(),
            ip: None,
            state,
            is_static: false,
            snapshot_from: None,
            failure: None,
            woken: false,
            reported: true,
        }
    }

    fn published(state: Option<LifecycleState>, generation: i64) -> PodIntent {
        let published = Some(crate::sim::intent::Published { state, generation });
        PodIntent { stamp: 3, published, ..intent() }
    }

    #[test]
    fn a_lifecycle_state_that_did_not_reach_the_pod_is_published_again() {
        let running = vm(VmState::Running);
        // The `ready` write failed: the pod still says `creating`.
        let creating = published(Some(LifecycleState::Creating), 3);
        assert_eq!(decide(&creating, Some(&running), false), Step::Publish(LifecycleState::Ready));
        // A bare generation bump re-publishes.
        let bumped = published(Some(LifecycleState::Ready), 2);
        assert_eq!(decide(&bumped, Some(&running), false), Step::Publish(LifecycleState::Ready));
        let hibernating =
            PodIntent { hibernate: true, ..published(Some(LifecycleState::Hibernating), 3) };
        assert_eq!(
            decide(&hibernating, Some(&vm(VmState::Hibernated)), false),
            Step::Publish(LifecycleState::Hibernated)
        );
    }

    #[test]
    fn a_shown_state_a_sticking_failure_and_other_dialects_publish_nothing() {
        let running = vm(VmState::Running);
        let shown = published(Some(LifecycleState::Ready), 3);
        assert_eq!(decide(&shown, Some(&running), false), Step::Idle);
        let failed = published(Some(LifecycleState::Failed), 3);
        assert_eq!(decide(&failed, Some(&running), false), Step::Idle, "failed sticks");
        let newer = published(Some(LifecycleState::Creating), 4);
        assert_eq!(decide(&newer, Some(&running), false), Step::Idle, "no lower generation");
        assert_eq!(decide(&intent(), Some(&running), false), Step::Idle, "seed: no lifecycle");
    }

    #[test]
    fn a_new_pod_gets_a_vm() {
        assert_eq!(decide(&intent(), None, false), Step::Create);
    }

    #[test]
    fn a_running_vm_with_nothing_asked_is_left_alone() {
        assert_eq!(decide(&intent(), Some(&vm(VmState::Running)), false), Step::Idle);
    }

    #[test]
    fn hibernate_asks_running_vms_only() {
        let asked = PodIntent { hibernate: true, ..intent() };
        assert_eq!(decide(&asked, Some(&vm(VmState::Running)), false), Step::Hibernate);
        assert_eq!(decide(&asked, Some(&vm(VmState::Hibernated)), false), Step::Idle);
        assert_eq!(decide(&asked, Some(&vm(VmState::Failed)), false), Step::Idle);
        assert_eq!(decide(&asked, Some(&vm(VmState::Running)), true), Step::HoldHibernate);
    }

    #[test]
    fn removing_the_annotation_wakes_a_hibernated_vm() {
        assert_eq!(decide(&intent(), Some(&vm(VmState::Hibernated)), false), Step::Wake);
    }

    #[test]
    fn an_unreported_transition_is_written_again_before_anything_else() {
        let unreported = VmRecord { reported: false, ..vm(VmState::Running) };
        let asked = PodIntent { hibernate: true, ..intent() };
        assert_eq!(decide(&asked, Some(&unreported), false), Step::Report);
    }

    #[test]
    fn deletion_snapshots_per_policy_and_only_real_vms() {
        let deleting = PodIntent { deleting: true, ..intent() };
        assert_eq!(
            decide(&deleting, Some(&vm(VmState::Running)), false),
            Step::Delete { snapshot: true }
        );
        assert_eq!(
            decide(&deleting, Some(&vm(VmState::Failed)), false),
            Step::Delete { snapshot: false }
        );
        assert_eq!(decide(&deleting, None, false), Step::Delete { snapshot: false });
        let never = PodIntent { snapshot_policy: SnapshotPolicy::Never, ..deleting.clone() };
        assert_eq!(
            decide(&never, Some(&vm(VmState::Hibernated)), false),
            Step::Delete { snapshot: false }
        );
        let sub = PodIntent { snapshot_policy: SnapshotPolicy::MainOnly, ..deleting.clone() };
        assert_eq!(
            decide(&sub, Some(&vm(VmState::Running)), false),
            Step::Delete { snapshot: false }
        );
        let main = PodIntent { is_main: true, ..sub };
        assert_eq!(
            decide(&main, Some(&vm(VmState::Running)), false),
            Step::Delete { snapshot: true }
        );
    }

    #[test]
    fn static_pods_without_an_address_are_rejected_once() {
        let static_pod = PodIntent { is_static: true, ..intent() };
        assert_eq!(decide(&static_pod, None, false), Step::Refuse { message: "no ip".into() });
        let reported = PodIntent { provider_failed_reported: true, ..static_pod };
        assert_eq!(decide(&reported, None, false), Step::Idle);
        let with_ip = PodIntent { is_static: true, static_problem: None, ..intent() };
        assert_eq!(decide(&with_ip, None, false), Step::Create);
        let unnamed = PodIntent { refusal: Some("missing name".into()), ..intent() };
        assert_eq!(decide(&unnamed, None, false), Step::Refuse { message: "missing name".into() });
    }

    #[test]
    fn finished_pods_get_no_vm() {
        let finished = PodIntent { terminal: true, ..intent() };
        assert_eq!(decide(&finished, None, false), Step::Idle);
    }
}

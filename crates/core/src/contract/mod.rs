//! The contract shared with vk-cocoon and users: every label and annotation key, and every
//! naming rule. Nothing else in the code spells these strings. The provider's keys depend on
//! its dialect ([`dialect`]); the operator's own keys are the same in every dialect.

pub mod dialect;

pub use dialect::{Dialect, Keys, LifecycleState};

/// Prefix of every key this operator and vk-cocoon agree on.
pub const PREFIX: &str = "cocoon.cis/";

// Labels on every pod of a CocoonSet.
/// The owning set's name.
pub const LABEL_COCOONSET: &str = "cocoon.cis/cocoonset";
/// `main`, `sub-agent` or `toolbox`.
pub const LABEL_ROLE: &str = "cocoon.cis/role";
/// Slot number of an agent (0 is the main).
pub const LABEL_SLOT: &str = "cocoon.cis/slot";
/// `app=<set>`, for users' own selectors.
pub const LABEL_APP: &str = "app";
/// On every pod a Hibernation names (value `true`), so that one label watch sees all of them
/// whatever their number; removed by the last Hibernation naming the pod when it is deleted.
pub const LABEL_HIBERNATION_TARGET: &str = "cocoon.cis/hibernation-target";
/// The value of [`LABEL_HIBERNATION_TARGET`].
pub const HIBERNATION_TARGET_VALUE: &str = "true";

/// `cocoon.cis/role` of the main agent (slot 0).
pub const ROLE_MAIN: &str = "main";
/// `cocoon.cis/role` of a sub-agent (slots 1..=replicas).
pub const ROLE_SUB_AGENT: &str = "sub-agent";
/// `cocoon.cis/role` of a toolbox.
pub const ROLE_TOOLBOX: &str = "toolbox";

// The provider's keys are the dialect's: `Dialect::keys` ([`dialect`]).

// The operator's own annotations (every dialect).
/// Name of the Hibernation that holds the pod hibernated; a CocoonSet resume leaves it alone.
pub const ANN_HIBERNATED_BY: &str = "cocoon.cis/hibernated-by";
/// The pod-deletion-cost a pod had before a Hibernation raised it (restored on wake).
pub const ANN_PREVIOUS_DELETION_COST: &str = "cocoon.cis/previous-deletion-cost";
/// Kubernetes' own key: ReplicaSets delete pods with a lower cost first.
pub const ANN_POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Annotation on a CocoonSet: when it was last used (RFC 3339), for idle auto-suspend.
pub const ANN_LAST_ACTIVITY: &str = "cocoon.cis/last-activity";

/// ConfigMap (per namespace) in which vk-cocoon (seed) records snapshots of hibernated VMs.
pub const SNAPSHOT_CONFIGMAP: &str = "cocoon-vm-snapshots";
/// Container waiting reason of a hibernated VM (seed).
pub const REASON_HIBERNATED: &str = "Hibernated";
/// Pod status reason of a VM vk-cocoon could not provide.
pub const REASON_PROVIDER_FAILED: &str = "ProviderFailed";

/// Finalizer that orders the teardown of a CocoonSet's pods.
pub const FINALIZER_TEARDOWN: &str = "cocoon.cis/teardown";
/// Finalizer that removes a Hibernation's marker from its pod before the Hibernation goes.
pub const FINALIZER_HIBERNATION: &str = "cocoon.cis/hibernation";

/// Default virtual node of vk-cocoon.
pub const DEFAULT_NODE_NAME: &str = "cocoon-pool";
/// Toleration key of virtual-kubelet nodes.
pub const TAINT_VIRTUAL_KUBELET: &str = "virtual-kubelet.io/provider";
/// Taint of a NotReady node; tolerated without `tolerationSeconds` so a flap never evicts a VM.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint of an unreachable node; tolerated like [`TAINT_NOT_READY`].
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Container image of a static toolbox listed without one: vk-cocoon adopts an existing VM and
/// never pulls it, but the API server requires a non-empty image.
pub const STATIC_VM_IMAGE: &str = "cocoon.cis/static-vm";

/// Field manager of every write this operator makes.
pub const FIELD_MANAGER: &str = "cocoon-operator";

// vk-cocoon's virtual node.
/// Node label naming the kind of kubelet: `type=virtual-kubelet`.
pub const NODE_LABEL_TYPE: &str = "type";
/// Value of the [`NODE_LABEL_TYPE`] label on vk-cocoon's node.
pub const NODE_TYPE_VIRTUAL_KUBELET: &str = "virtual-kubelet";
/// Node role label: `kubernetes.io/role=agent`.
pub const NODE_LABEL_ROLE: &str = "kubernetes.io/role";
/// Value of the [`NODE_LABEL_ROLE`] label on vk-cocoon's node.
pub const NODE_ROLE_AGENT: &str = "agent";
/// Well-known hostname label; vk-cocoon sets it to the node name.
pub const NODE_LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// Value of the `virtual-kubelet.io/provider` NoSchedule taint on vk-cocoon's node.
pub const TAINT_VIRTUAL_KUBELET_VALUE: &str = "cocoon";
/// Value of `cocoon.cis/hibernate` that asks for a hibernation (any other value, or none, wakes).
pub const HIBERNATE_TRUE: &str = "true";
/// Value of `cocoon.cis/managed` on the pods the operator creates (not on static toolboxes).
pub const MANAGED_TRUE: &str = "true";

/// The `cocoon.cis/hibernate` annotation value that asks for `hibernate` (`None` removes it).
pub fn hibernate_value(hibernate: bool) -> Option<String> {
    hibernate.then(|| HIBERNATE_TRUE.to_string())
}

/// Whether an annotation value asks for hibernation.
pub fn asks_hibernate(value: Option<&str>) -> bool {
    value == Some(HIBERNATE_TRUE)
}

/// The finalizer the API server puts on an object deleted with `propagationPolicy: Orphan`
/// (`kubectl delete --cascade=orphan`); the garbage collector removes it once it has orphaned
/// the dependents.
pub const FINALIZER_ORPHAN: &str = "orphan";

/// The labels the operator writes on every pod of a set, and puts back when they are changed.
pub const OWNED_LABELS: [&str; 4] = [LABEL_COCOONSET, LABEL_ROLE, LABEL_SLOT, LABEL_APP];
/// The labels a pod's view keeps: the set's own, and the Hibernation target label.
pub const OBSERVED_LABELS: [&str; 5] =
    [LABEL_COCOONSET, LABEL_ROLE, LABEL_SLOT, LABEL_APP, LABEL_HIBERNATION_TARGET];

/// Label selector of a set's sub-agent pods (the scale subresource's `selector`).
pub fn sub_agent_selector(set: &str) -> String {
    format!("{LABEL_COCOONSET}={set},{LABEL_ROLE}={ROLE_SUB_AGENT}")
}

/// Pod name of an agent slot: `<set>-<slot>`.
pub fn agent_pod_name(set: &str, slot: u32) -> String {
    format!("{set}-{slot}")
}

/// VM name of an agent slot: `vk-<namespace>-<set>-<slot>`.
pub fn agent_vm_name(namespace: &str, set: &str, slot: u32) -> String {
    format!("vk-{namespace}-{set}-{slot}")
}

/// Pod name of a toolbox: `<set>-<toolbox>`.
pub fn toolbox_pod_name(set: &str, toolbox: &str) -> String {
    format!("{set}-{toolbox}")
}

/// VM name of a toolbox, scoped to its set: `vk-<namespace>-<set>-<toolbox>`.
pub fn toolbox_vm_name(namespace: &str, set: &str, toolbox: &str) -> String {
    format!("vk-{namespace}-{set}-{toolbox}")
}

/// VM name of a pod that names none (a Hibernation's target, typically a workload's pod):
/// `vk-<namespace>-<pod>`, as vk-cocoon derives it.
pub fn pod_vm_name(namespace: &str, pod: &str) -> String {
    format!("vk-{namespace}-{pod}")
}

/// The slot vk-cocoon (seed) reads from a VM name: its trailing `-N`. Slot 0 is a main agent,
/// which that provider never hibernates; a VM of slot N > 0 that names no fork source is forked
/// from the slot-0 VM of its name ([`main_vm_of`]).
pub fn seed_vm_slot(vm_name: &str) -> Option<u32> {
    let (_, slot) = vm_name.rsplit_once('-')?;
    (!slot.is_empty() && slot.bytes().all(|b| b.is_ascii_digit())).then(|| slot.parse().ok())?
}

/// The slot-0 VM of a VM name's group: `vk-prod-deploy-2` → `vk-prod-deploy-0`.
pub fn main_vm_of(vm_name: &str) -> Option<String> {
    vm_name.rsplit_once('-').map(|(base, _)| format!("{base}-0"))
}

/// VM name vk-cocoon (seed) gives a Deployment's pod that names none: `vk-<ns>-<deployment>-<slot>`,
/// slot the lowest free one.
pub fn deployment_vm_name(namespace: &str, deployment: &str, slot: u32) -> String {
    format!("vk-{namespace}-{deployment}-{slot}")
}

/// Whom a VM name of `namespace` may belong to, read backwards through the naming rules above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmNameOwners<'a> {
    /// Set names `<set>` for which the VM name reads `vk-<ns>-<set>-<slot|toolbox>`: every
    /// prefix of the rest that ends before a `-` (set names may hold `-` themselves).
    pub sets: Vec<&'a str>,
    /// The pod `<pod>` for which it reads `vk-<ns>-<pod>` ([`pod_vm_name`]).
    pub pod: &'a str,
}

/// The possible owners of VM `vm` in `namespace`; `None` when the name follows no rule of ours.
pub fn vm_name_owners<'a>(namespace: &str, vm: &'a str) -> Option<VmNameOwners<'a>> {
    let rest = vm.strip_prefix("vk-")?.strip_prefix(namespace)?.strip_prefix('-')?;
    if rest.is_empty() {
        return None;
    }
    let sets = rest.match_indices('-').map(|(i, _)| &rest[..i]).filter(|s| !s.is_empty()).collect();
    Some(VmNameOwners { sets, pod: rest })
}

/// Snapshot entry value vk-cocoon writes for a hibernated VM (and the name of its snapshot).
pub fn snapshot_value(vm_name: &str) -> String {
    format!("{vm_name}-suspend")
}

/// Name of the snapshot vk-cocoon takes of a running VM to fork VM `vm_name` from it.
pub fn fork_snapshot(vm_name: &str) -> String {
    format!("{vm_name}-fork")
}

/// The name vk-cocoon records of an image reference (`snapshot-from` of a fresh boot, and
/// the snapshot an entry names): `http(s)://host/NAME` is `NAME`; anything else is itself.
pub fn image_ref_name(image: &str) -> &str {
    match image.strip_prefix("http://").or_else(|| image.strip_prefix("https://")) {
        Some(rest) => rest.rsplit('/').next().unwrap_or(rest),
        None => image,
    }
}

/// Whether a toolbox name is acceptable: a DNS label that is not purely numeric (a numeric name
/// would collide with an agent slot's pod name). Mirrors the CRD's CEL rule.
pub fn is_valid_toolbox_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let label = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-');
    label && !bytes.iter().all(u8::is_ascii_digit)
}

/// Parses the slot label of an agent pod.
pub fn parse_slot(value: &str) -> Option<u32> {
    if value.is_empty() || (value.len() > 1 && value.starts_with('0')) {
        return None;
    }
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_follow_slot_identity() {
        assert_eq!(agent_pod_name("demo", 0), "demo-0");
        assert_eq!(agent_pod_name("demo", 12), "demo-12");
        assert_eq!(agent_vm_name("prod", "demo", 3), "vk-prod-demo-3");
    }

    #[test]
    fn toolbox_vm_names_are_scoped_to_the_set() {
        assert_eq!(toolbox_pod_name("demo", "windows"), "demo-windows");
        assert_eq!(toolbox_vm_name("prod", "demo", "windows"), "vk-prod-demo-windows");
        assert_ne!(
            toolbox_vm_name("prod", "a", "windows"),
            toolbox_vm_name("prod", "b", "windows"),
            "two sets' toolboxes of one name must never share a VM"
        );
    }

    #[test]
    fn numeric_toolbox_names_are_rejected_because_they_collide_with_slots() {
        for bad in ["0", "1", "42", "", "-a", "a-", "Upper", "under_score", &"x".repeat(64)] {
            assert!(!is_valid_toolbox_name(bad), "{bad:?} must be rejected");
        }
        for good in ["windows", "a", "1a", "a1", "win-11"] {
            assert!(is_valid_toolbox_name(good), "{good:?} must be accepted");
        }
    }

    #[test]
    fn slot_labels_parse_only_canonical_numbers() {
        assert_eq!(parse_slot("0"), Some(0));
        assert_eq!(parse_slot("17"), Some(17));
        assert_eq!(parse_slot("01"), None);
        assert_eq!(parse_slot("-1"), None);
        assert_eq!(parse_slot("x"), None);
    }

    #[test]
    fn vm_names_read_backwards_name_every_set_and_the_pod_they_may_belong_to() {
        let owners = vm_name_owners("prod", "vk-prod-my-set-3").expect("one of ours");
        assert_eq!(owners.sets, vec!["my", "my-set"]);
        assert_eq!(owners.pod, "my-set-3");
        for (set, slot) in [("demo", 0), ("a-b", 12)] {
            let vm = agent_vm_name("prod", set, slot);
            assert!(vm_name_owners("prod", &vm).unwrap().sets.contains(&set), "{vm}");
        }
        let vm = toolbox_vm_name("prod", "demo", "win-11");
        assert!(vm_name_owners("prod", &vm).unwrap().sets.contains(&"demo"));
        let vm = pod_vm_name("prod", "sre-agent-xxx");
        assert_eq!(vm_name_owners("prod", &vm).unwrap().pod, "sre-agent-xxx");
        assert_eq!(vm_name_owners("prod", "vk-staging-demo-0"), None, "another namespace");
        assert_eq!(vm_name_owners("prod", "my-own-vm"), None);
        assert_eq!(vm_name_owners("prod", "vk-prod-"), None);
    }

    #[test]
    fn the_seed_provider_reads_a_slot_from_a_vm_names_trailing_number() {
        assert_eq!(seed_vm_slot("vk-prod-demo-0"), Some(0));
        assert_eq!(seed_vm_slot("vk-prod-agents-12"), Some(12));
        assert_eq!(seed_vm_slot("vk-prod-demo-windows"), None);
        assert_eq!(seed_vm_slot("vk-prod-demo-"), None);
        assert_eq!(main_vm_of("vk-prod-agents-2").as_deref(), Some("vk-prod-agents-0"));
        assert_eq!(deployment_vm_name("prod", "agents", 1), "vk-prod-agents-1");
    }

    #[test]
    fn snapshot_entries_are_named_after_the_vm() {
        assert_eq!(snapshot_value("vk-prod-demo-0"), "vk-prod-demo-0-suspend");
        assert_eq!(fork_snapshot("vk-prod-demo-1"), "vk-prod-demo-1-fork");
        assert_eq!(image_ref_name("https://epoch.example/v2/ubuntu-dev-base"), "ubuntu-dev-base");
        assert_eq!(image_ref_name("ubuntu-dev-base"), "ubuntu-dev-base");
    }
}

//! The dialects of vk-cocoon: the keys each speaks, the signals by which it says a VM was
//! created, hibernated, woken or failed, and what it can do. One value per dialect; every
//! decision that depends on the provider asks the dialect of the pod's node.
//!
//! - **seed** (vk-cocoon v0.1.x): `cocoon.cis/*` keys, snapshots recorded in the namespace's
//!   `cocoon-vm-snapshots` ConfigMap, a hibernated pod stays Running with its container waiting
//!   `Hibernated`. Never hibernates a main (slot 0); a failed fork boots the image.
//! - **v0.2** (v0.2.0 … v0.2.9): `vm.cocoonstack.io/*` and `cocoonset.cocoonstack.io/*` keys,
//!   snapshots pushed to an epoch registry as `<vm>:hibernate`, a hibernated pod is Pending with
//!   no containers and its VM id removed. A failed fork fails the create.
//! - **current** (builds on cocoon-common ≥ v0.3.0): the v0.2 keys plus a lifecycle state the
//!   provider publishes with the generation stamp it observed, restore-from-hibernate,
//!   keep-snapshot-on-delete and a snapshot CPU class; snapshots in an OCI registry.
//!
//! Which dialect a node speaks is read from the node ([`Dialect::of_node`]); which keys a pod
//! carries, from the pod ([`Dialect::of_annotations`]).

use std::collections::BTreeMap;
use std::fmt;

/// A dialect of vk-cocoon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dialect {
    /// vk-cocoon v0.1.x: the dialect of the seed document.
    #[default]
    Seed,
    /// vk-cocoon v0.2.x.
    V02,
    /// vk-cocoon built on cocoon-common ≥ v0.3.0.
    Current,
}

/// Every key of one dialect. `None`: the dialect has no such key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys {
    /// Name of the pod's VM (required by v0.2 and current).
    pub vm_name: &'static str,
    /// How the provider makes the VM (`clone`, `run`, `static`, …).
    pub mode: &'static str,
    /// The image or snapshot to boot or clone.
    pub image: &'static str,
    /// `true`: the provider owns the VM's life (snapshots, removal).
    pub managed: &'static str,
    /// Guest OS.
    pub os: &'static str,
    /// Disk size.
    pub storage: &'static str,
    /// What the provider snapshots when the pod is deleted.
    pub snapshot_policy: &'static str,
    /// The VM to fork from.
    pub fork_from: &'static str,
    /// `true` asks for hibernation; removing it asks for a wake.
    pub hibernate: &'static str,
    /// ID of the VM (written by the provider; given for a static VM).
    pub vm_id: &'static str,
    /// Address of the VM (written by the provider; given for a static VM).
    pub ip: &'static str,
    /// VNC port of a static VM.
    pub vnc_port: &'static str,
    /// What the provider cloned the VM from, as a bare name (seed).
    pub snapshot_from: Option<&'static str>,
    /// The operator's generation stamp, echoed by the provider with its lifecycle state.
    pub generation: Option<&'static str>,
    /// The provider's lifecycle state (`creating`, `ready`, `hibernating`, `hibernated`,
    /// `failed`).
    pub lifecycle_state: Option<&'static str>,
    /// The generation stamp the provider had seen when it wrote the state.
    pub lifecycle_generation: Option<&'static str>,
    /// The provider's message with the state (why it failed).
    pub lifecycle_message: Option<&'static str>,
    /// `true` on a new pod: restore the VM from its `:hibernate` snapshot, not the image.
    pub restore_from_hibernate: Option<&'static str>,
    /// `true` right before a delete: the provider keeps the VM's node-local snapshot.
    pub keep_snapshot_on_delete: Option<&'static str>,
}

const SEED_KEYS: Keys = Keys {
    vm_name: "cocoon.cis/vm-name",
    mode: "cocoon.cis/mode",
    image: "cocoon.cis/image",
    managed: "cocoon.cis/managed",
    os: "cocoon.cis/os",
    storage: "cocoon.cis/storage",
    snapshot_policy: "cocoon.cis/snapshot-policy",
    fork_from: "cocoon.cis/fork-from",
    hibernate: "cocoon.cis/hibernate",
    vm_id: "cocoon.cis/vm-id",
    ip: "cocoon.cis/ip",
    vnc_port: "cocoon.cis/vnc-port",
    snapshot_from: Some("cocoon.cis/snapshot-from"),
    generation: None,
    lifecycle_state: None,
    lifecycle_generation: None,
    lifecycle_message: None,
    restore_from_hibernate: None,
    keep_snapshot_on_delete: None,
};

const V02_KEYS: Keys = Keys {
    vm_name: "vm.cocoonstack.io/name",
    mode: "cocoonset.cocoonstack.io/mode",
    image: "cocoonset.cocoonstack.io/image",
    managed: "cocoonset.cocoonstack.io/managed",
    os: "cocoonset.cocoonstack.io/os",
    storage: "cocoonset.cocoonstack.io/storage",
    snapshot_policy: "cocoonset.cocoonstack.io/snapshot-policy",
    fork_from: "vm.cocoonstack.io/fork-from",
    hibernate: "vm.cocoonstack.io/hibernate",
    vm_id: "vm.cocoonstack.io/id",
    ip: "vm.cocoonstack.io/ip",
    vnc_port: "vm.cocoonstack.io/vnc-port",
    snapshot_from: None,
    generation: None,
    lifecycle_state: None,
    lifecycle_generation: None,
    lifecycle_message: None,
    restore_from_hibernate: None,
    keep_snapshot_on_delete: None,
};

const CURRENT_KEYS: Keys = Keys {
    generation: Some("cocoonset.cocoonstack.io/generation"),
    lifecycle_state: Some("vm.cocoonstack.io/lifecycle-state"),
    lifecycle_generation: Some("vm.cocoonstack.io/lifecycle-observed-generation"),
    lifecycle_message: Some("vm.cocoonstack.io/lifecycle-state-message"),
    restore_from_hibernate: Some("vm.cocoonstack.io/restore-from-hibernate"),
    keep_snapshot_on_delete: Some("vm.cocoonstack.io/keep-snapshot-on-delete"),
    ..V02_KEYS
};

impl Keys {
    /// The annotations that ask for hibernation (`true`) or a wake (`false`), with the
    /// generation stamp `stamp` where the dialect echoes one: the provider's answer carries
    /// it, so a state left from an earlier request is never read as this one's.
    pub fn toggle(&self, hibernate: bool, stamp: i64) -> BTreeMap<String, Option<String>> {
        let mut patch = BTreeMap::from([(
            self.hibernate.to_string(),
            hibernate.then(|| super::HIBERNATE_TRUE.to_string()),
        )]);
        if let Some(key) = self.generation {
            patch.insert(key.to_string(), Some(stamp.to_string()));
        }
        patch
    }
}

/// The seed dialect's keys and shapes, for code that speaks only seed (tests, tools).
pub mod seed {
    use super::{Dialect, Keys};
    /// The keys.
    pub const KEYS: &Keys = Dialect::Seed.keys();
    /// `snapshot-from`, which only seed writes.
    pub const SNAPSHOT_FROM: &str = match KEYS.snapshot_from {
        Some(k) => k,
        None => "",
    };
    /// The container of its pods.
    pub const CONTAINER: &str = Dialect::Seed.container();
}

/// Prefixes of the cocoonstack keys (v0.2 and current).
const COCOONSTACK_PREFIXES: [&str; 2] = ["vm.cocoonstack.io/", "cocoonset.cocoonstack.io/"];

/// Node label a cluster admin sets to say which dialect a node speaks (`seed`, `v0.2`,
/// `current`), when the node cannot tell (an untagged build reports version `dev`).
pub const NODE_LABEL_DIALECT: &str = "cocoon.cis/dialect";
/// Node label of a cocoonstack provider's pool (v0.2 and current).
pub const NODE_LABEL_POOL: &str = "cocoonstack.io/pool";
/// Node label (and pod nodeSelector) of the snapshot CPU class (current): memory snapshots
/// resume only on nodes of the same class.
pub const NODE_LABEL_CPU_CLASS: &str = "cocoonstack.io/snapshot-cpu-class";
/// Registry tag of a hibernation snapshot (v0.2, current): `<vm>:hibernate`.
pub const TAG_HIBERNATE: &str = "hibernate";
/// Registry tag of a delete-time snapshot (v0.2, current): `<vm>:latest`.
pub const TAG_LATEST: &str = "latest";

/// Where a dialect keeps the snapshots it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStore {
    /// Node-local snapshots, recorded in the namespace's `cocoon-vm-snapshots` ConfigMap.
    ConfigMap,
    /// An epoch registry (the provider's `EPOCH_URL`), as `<vm>:hibernate` and `<vm>:latest`.
    Epoch,
    /// An OCI registry (the provider's `OCI_REGISTRY`), as `<vm>:hibernate` and `<vm>:latest`.
    Oci,
}

/// What the provider does when a fork cannot be made (its source is gone or the save failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForkFailure {
    /// Boots the image instead, silently (seed): the operator reads it from `snapshot-from`.
    BootsImage,
    /// Fails the create (v0.2, current): the pod shows the provider's error.
    FailsCreate,
}

/// The state a current provider publishes on a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LifecycleState {
    /// Creating or waking the VM.
    Creating,
    /// The VM serves.
    Ready,
    /// Saving and pushing the VM's snapshot.
    Hibernating,
    /// The VM is gone; its snapshot is in the registry.
    Hibernated,
    /// The last operation failed (the message says why).
    Failed,
}

impl LifecycleState {
    /// Reads the annotation value.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "creating" => Self::Creating,
            "ready" => Self::Ready,
            "hibernating" => Self::Hibernating,
            "hibernated" => Self::Hibernated,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// The annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Ready => "ready",
            Self::Hibernating => "hibernating",
            Self::Hibernated => "hibernated",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Dialect {
    /// Every dialect, oldest first.
    pub const ALL: [Self; 3] = [Self::Seed, Self::V02, Self::Current];

    /// The dialect's name: `seed`, `v0.2`, `current`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Seed => "seed",
            Self::V02 => "v0.2",
            Self::Current => "current",
        }
    }

    /// Reads a dialect's name (also `v0.1` for seed and `v0.3` for current).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "seed" | "v0.1" => Some(Self::Seed),
            "v0.2" | "v02" => Some(Self::V02),
            "current" | "v0.3" => Some(Self::Current),
            _ => None,
        }
    }

    /// The dialect's keys.
    pub const fn keys(self) -> &'static Keys {
        match self {
            Self::Seed => &SEED_KEYS,
            Self::V02 => &V02_KEYS,
            Self::Current => &CURRENT_KEYS,
        }
    }

    /// Whether two dialects use the same keys for the same things (v0.2 and current do:
    /// current only adds keys), so that a pod of one can be read and driven as the other.
    pub fn same_keys(self, other: Self) -> bool {
        (self == Self::Seed) == (other == Self::Seed)
    }

    /// The provider's pool, as node label requirements `(key, operator, values)` that the
    /// scheduler matches (PROVIDERS.md §1): a seed node carries only virtual-kubelet's labels
    /// (`type=virtual-kubelet`) and no pool; a cocoonstack node carries its pool label. A pod
    /// that selects its dialect's pool never lands on a node that cannot read its keys.
    pub fn pool_requirements(self) -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
        match self {
            Self::Seed => vec![
                (
                    crate::contract::NODE_LABEL_TYPE,
                    "In",
                    vec![crate::contract::NODE_TYPE_VIRTUAL_KUBELET],
                ),
                (NODE_LABEL_POOL, "DoesNotExist", Vec::new()),
            ],
            Self::V02 | Self::Current => vec![(NODE_LABEL_POOL, "Exists", Vec::new())],
        }
    }

    /// Name of the one container of the pods the operator builds: `vm` (seed), `agent`
    /// (cocoonstack: vk-cocoon reports its container under that name).
    pub const fn container(self) -> &'static str {
        match self {
            Self::Seed => "vm",
            Self::V02 | Self::Current => "agent",
        }
    }

    /// `restartPolicy` of the pods the operator builds. Seed pods are `Never`: a VM that
    /// stopped is a Succeeded pod, not one to restart. Cocoonstack pods keep the default
    /// (`Always`): with `Never`, virtual-kubelet turns a refused create or a failed hibernate
    /// into a terminal `Failed` pod that is never retried (the VM may still run).
    pub fn restart_policy(self) -> Option<&'static str> {
        match self {
            Self::Seed => Some("Never"),
            Self::V02 | Self::Current => None,
        }
    }

    /// Whether the provider hibernates a main agent (seed refuses slot 0, every 30 s).
    pub fn hibernates_main(self) -> bool {
        self != Self::Seed
    }

    /// What the provider does when a fork cannot be made.
    pub fn fork_failure(self) -> ForkFailure {
        match self {
            Self::Seed => ForkFailure::BootsImage,
            Self::V02 | Self::Current => ForkFailure::FailsCreate,
        }
    }

    /// Where the provider keeps snapshots.
    pub fn store(self) -> SnapshotStore {
        match self {
            Self::Seed => SnapshotStore::ConfigMap,
            Self::V02 => SnapshotStore::Epoch,
            Self::Current => SnapshotStore::Oci,
        }
    }

    /// Whether the provider publishes a lifecycle state with the generation it observed.
    pub fn publishes_lifecycle(self) -> bool {
        self == Self::Current
    }

    /// The dialect whose keys a pod's annotations are in: cocoonstack keys are v0.2, or
    /// current once a current-only key is there (the provider writes `lifecycle-state` first
    /// thing when it creates the VM); `cocoon.cis/` provider keys are seed. `None`: the pod
    /// carries no provider key (a workload's pod before anyone named its VM).
    pub fn of_annotations(annotations: &BTreeMap<String, String>) -> Option<Self> {
        let current = CURRENT_KEYS;
        let current_only = [
            current.generation,
            current.lifecycle_state,
            current.lifecycle_generation,
            current.restore_from_hibernate,
            current.keep_snapshot_on_delete,
        ];
        if current_only.iter().flatten().any(|k| annotations.contains_key(*k)) {
            return Some(Self::Current);
        }
        if annotations.keys().any(|k| COCOONSTACK_PREFIXES.iter().any(|p| k.starts_with(p))) {
            return Some(Self::V02);
        }
        let seed = SEED_KEYS;
        let seed_keys = [seed.vm_name, seed.hibernate, seed.mode, seed.vm_id, seed.fork_from];
        seed_keys.iter().any(|k| annotations.contains_key(*k)).then_some(Self::Seed)
    }

    /// The dialect a vk-cocoon node speaks, from its labels and `status.nodeInfo.kubeletVersion`
    /// (PROVIDERS.md §1): an admin's [`NODE_LABEL_DIALECT`] wins; a CPU class label is only
    /// published by current builds; a tagged build reports its version (`v0.1.*` seed, `v0.2.*`
    /// v0.2, anything newer current); a seed node reports no version and carries no
    /// cocoonstack label; a cocoonstack node whose version is no tag (`dev`) is taken as v0.2,
    /// the dialect both later ones understand the keys of (label it to say otherwise).
    pub fn of_node(labels: &BTreeMap<String, String>, kubelet_version: &str) -> NodeDialect {
        if let Some(value) = labels.get(NODE_LABEL_DIALECT) {
            return match Self::parse(value) {
                Some(d) => NodeDialect { dialect: d, how: DialectSource::Label },
                None => NodeDialect { dialect: Self::Seed, how: DialectSource::BadLabel },
            };
        }
        if labels.contains_key(NODE_LABEL_CPU_CLASS) {
            return NodeDialect { dialect: Self::Current, how: DialectSource::CpuClass };
        }
        if let Some((major, minor)) = parse_version(kubelet_version) {
            let dialect = match (major, minor) {
                (0, 0 | 1) => Self::Seed,
                (0, 2) => Self::V02,
                _ => Self::Current,
            };
            return NodeDialect { dialect, how: DialectSource::Version };
        }
        let cocoonstack = labels.contains_key(NODE_LABEL_POOL)
            || labels.keys().any(|k| k == "node-role.kubernetes.io/cocoon-vm");
        if cocoonstack {
            NodeDialect { dialect: Self::V02, how: DialectSource::Untagged }
        } else {
            NodeDialect { dialect: Self::Seed, how: DialectSource::Unmarked }
        }
    }
}

/// A node's dialect and how it was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeDialect {
    /// The dialect.
    pub dialect: Dialect,
    /// How it was told.
    pub how: DialectSource,
}

/// How a node's dialect was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialectSource {
    /// The node's [`NODE_LABEL_DIALECT`] label.
    Label,
    /// The label is there but names no dialect (read as seed; said in the log).
    BadLabel,
    /// The node has a snapshot CPU class (current builds only).
    CpuClass,
    /// The version the node reports.
    Version,
    /// A cocoonstack node reporting no tagged version (`dev`).
    Untagged,
    /// No version, no cocoonstack label: a seed node.
    Unmarked,
}

/// `vMAJOR.MINOR…` (the `v` optional) → (major, minor).
fn parse_version(version: &str) -> Option<(u64, u64)> {
    let v = version.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let mut parts = v.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A registry reference of a VM's snapshot, registry-relative: `<vm>:<tag>`.
pub fn snapshot_tag(vm_name: &str, tag: &str) -> String {
    format!("{vm_name}:{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn each_dialect_spells_its_keys_and_current_only_adds_to_v02() {
        assert_eq!(Dialect::Seed.keys().vm_name, "cocoon.cis/vm-name");
        assert_eq!(Dialect::V02.keys().vm_name, "vm.cocoonstack.io/name");
        assert_eq!(Dialect::V02.keys().mode, "cocoonset.cocoonstack.io/mode");
        assert_eq!(Dialect::V02.keys().vm_id, "vm.cocoonstack.io/id");
        assert_eq!(Dialect::V02.keys().lifecycle_state, None);
        let (v02, current) = (Dialect::V02.keys(), Dialect::Current.keys());
        for (a, b) in [
            (v02.vm_name, current.vm_name),
            (v02.hibernate, current.hibernate),
            (v02.fork_from, current.fork_from),
            (v02.snapshot_policy, current.snapshot_policy),
        ] {
            assert_eq!(a, b);
        }
        assert_eq!(current.lifecycle_state, Some("vm.cocoonstack.io/lifecycle-state"));
        assert_eq!(current.generation, Some("cocoonset.cocoonstack.io/generation"));
        assert!(Dialect::V02.same_keys(Dialect::Current));
        assert!(!Dialect::Seed.same_keys(Dialect::V02));
    }

    #[test]
    fn what_each_provider_can_do() {
        assert!(!Dialect::Seed.hibernates_main(), "seed refuses slot 0");
        assert!(Dialect::V02.hibernates_main() && Dialect::Current.hibernates_main());
        assert_eq!(Dialect::Seed.fork_failure(), ForkFailure::BootsImage);
        assert_eq!(Dialect::V02.fork_failure(), ForkFailure::FailsCreate);
        assert_eq!(Dialect::Seed.store(), SnapshotStore::ConfigMap);
        assert_eq!(Dialect::Current.store(), SnapshotStore::Oci);
        assert_eq!(Dialect::Seed.container(), "vm");
        assert_eq!(Dialect::Current.container(), "agent");
        assert_eq!(Dialect::Seed.restart_policy(), Some("Never"));
        assert_eq!(Dialect::V02.restart_policy(), None, "a refusal must not be terminal");
    }

    #[test]
    fn a_pod_says_its_dialect_by_the_keys_it_carries() {
        let of = |pairs: &[(&str, &str)]| Dialect::of_annotations(&labels(pairs));
        assert_eq!(of(&[]), None);
        assert_eq!(of(&[("team", "sre")]), None);
        assert_eq!(of(&[("cocoon.cis/vm-name", "vk-a-b-0")]), Some(Dialect::Seed));
        assert_eq!(of(&[("cocoon.cis/hibernate", "true")]), Some(Dialect::Seed));
        assert_eq!(of(&[("vm.cocoonstack.io/name", "vk-a-b-0")]), Some(Dialect::V02));
        assert_eq!(
            of(&[("vm.cocoonstack.io/name", "x"), ("vm.cocoonstack.io/lifecycle-state", "ready")]),
            Some(Dialect::Current)
        );
        assert_eq!(of(&[("cocoonset.cocoonstack.io/generation", "3")]), Some(Dialect::Current));
    }

    #[test]
    fn a_node_says_its_dialect_by_labels_and_version() {
        let seed = labels(&[("type", "virtual-kubelet"), ("kubernetes.io/role", "agent")]);
        assert_eq!(Dialect::of_node(&seed, "").dialect, Dialect::Seed);
        assert_eq!(Dialect::of_node(&seed, "").how, DialectSource::Unmarked);
        assert_eq!(Dialect::of_node(&seed, "v0.1.1").dialect, Dialect::Seed);
        let v02 = labels(&[("cocoonstack.io/pool", "default")]);
        assert_eq!(Dialect::of_node(&v02, "v0.2.9").dialect, Dialect::V02);
        assert_eq!(Dialect::of_node(&v02, "dev").dialect, Dialect::V02);
        assert_eq!(Dialect::of_node(&v02, "dev").how, DialectSource::Untagged);
        assert_eq!(Dialect::of_node(&v02, "v0.3.7").dialect, Dialect::Current);
        assert_eq!(Dialect::of_node(&v02, "v1.0.0-rc1").dialect, Dialect::Current);
        let class = labels(&[("cocoonstack.io/pool", "a"), (NODE_LABEL_CPU_CLASS, "zen4")]);
        assert_eq!(Dialect::of_node(&class, "dev").dialect, Dialect::Current);
        let forced = labels(&[("cocoonstack.io/pool", "a"), (NODE_LABEL_DIALECT, "current")]);
        assert_eq!(Dialect::of_node(&forced, "v0.2.9").dialect, Dialect::Current);
        let bad = labels(&[(NODE_LABEL_DIALECT, "v9")]);
        assert_eq!(Dialect::of_node(&bad, "").how, DialectSource::BadLabel);
    }

    #[test]
    fn dialect_names_read_back() {
        for d in Dialect::ALL {
            assert_eq!(Dialect::parse(d.as_str()), Some(d));
        }
        assert_eq!(Dialect::parse("v0.1"), Some(Dialect::Seed));
        assert_eq!(Dialect::parse("nope"), None);
        for s in LifecycleState::ALL_FOR_TESTS {
            assert_eq!(LifecycleState::parse(s.as_str()), Some(s));
        }
        assert_eq!(snapshot_tag("vk-a-b-0", TAG_HIBERNATE), "vk-a-b-0:hibernate");
    }

    impl LifecycleState {
        const ALL_FOR_TESTS: [Self; 5] =
            [Self::Creating, Self::Ready, Self::Hibernating, Self::Hibernated, Self::Failed];
    }
}

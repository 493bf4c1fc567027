//! The VM table: which simulated VM backs which pod, and which ids and addresses are taken.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::contract;

/// Network of VM addresses (10.80.0.0/12, handed out from 10.88.0.2 on, so a node's first
/// 65,533 VMs get the addresses of 10.88.0.0/16 as they always did); only strings in
/// annotations and status, no traffic. A 10,000-set bench puts 100,000 VMs on one node.
const NETWORK: u32 = u32::from_be_bytes([10, 80, 0, 0]);
const NETWORK_SIZE: u32 = 1 << 20;
/// What a VM that gets no address is told.
pub const NO_ADDRESS: &str = "no free address left in 10.80.0.0/12";
/// Where the round-robin starts: 10.88.0.2.
const FIRST_HOST: u32 = u32::from_be_bytes([0, 8, 0, 2]);
/// The node's own address in that network; never given to a VM.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);

/// Lifecycle of one simulated VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmState {
    /// Booted from its image, cloned from another VM or adopted (static); it has an address.
    Running,
    /// Snapshotted into the namespace's snapshot ConfigMap and stopped; it has no address.
    Hibernated,
    /// The simulated provider failed to create it; kept so the failure is not retried.
    Failed,
}

/// One VM and what the pod has been told about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmRecord {
    /// `namespace/name` of the pod, for logs.
    pub pod_key: String,
    /// Namespace of the pod; the snapshot ConfigMap lives there.
    pub namespace: String,
    /// `cocoon.cis/vm-id`; a new one after every wake.
    pub id: String,
    /// `cocoon.cis/vm-name`; stable for the life of the pod.
    pub name: String,
    /// `cocoon.cis/ip` while running.
    pub ip: Option<Ipv4Addr>,
    pub state: VmState,
    /// A static VM is adopted with the address and id the pod names, and keeps them across wakes.
    pub is_static: bool,
    /// `cocoon.cis/snapshot-from`: `fork:<vm>` or `image:<image>`.
    pub snapshot_from: Option<String>,
    /// Why the VM failed, for the pod status.
    pub failure: Option<String>,
    /// Woken at least once (v0.2 writes no address annotation after a wake).
    pub woken: bool,
    /// Whether the pod already shows `state` (annotations and status written). A failed write
    /// leaves it false, so the retry rewrites the same values instead of redoing the transition.
    pub reported: bool,
}

/// All VMs of the simulated node, keyed by pod UID (a pod recreated under the same name is a new
/// VM, and a late cleanup of the old one must not touch it).
#[derive(Debug)]
pub struct VmTable {
    vms: HashMap<String, VmRecord>,
    rng: SplitMix64,
    next_host: u32,
    /// Forks made so far (the fault "the first N forks fail" counts them).
    forks: u32,
    /// Hibernations followed by a deletion so far, per pod key (quirk 14).
    vanished: HashMap<String, u32>,
}

impl VmTable {
    /// An empty table; `seed` drives VM ids and fault rolls.
    pub fn new(seed: u64) -> Self {
        Self {
            vms: HashMap::new(),
            rng: SplitMix64(seed),
            next_host: FIRST_HOST,
            forks: 0,
            vanished: HashMap::new(),
        }
    }

    pub fn get(&self, uid: &str) -> Option<&VmRecord> {
        self.vms.get(uid)
    }

    pub fn get_mut(&mut self, uid: &str) -> Option<&mut VmRecord> {
        self.vms.get_mut(uid)
    }

    pub fn insert(&mut self, uid: String, record: VmRecord) {
        self.vms.insert(uid, record);
    }

    /// Forgets a VM (its pod is gone); its id and address become free.
    pub fn remove(&mut self, uid: &str) -> Option<VmRecord> {
        self.vms.remove(uid)
    }

    /// Number of VMs, for logs.
    pub fn count(&self) -> usize {
        self.vms.len()
    }

    /// The VM name vk-cocoon gives a new pod of Deployment `deployment`: the lowest slot no VM of
    /// that Deployment holds (a hibernated VM's slot counts as free, as vk-cocoon counts it).
    pub fn free_slot_name(&self, namespace: &str, deployment: &str) -> String {
        let taken: Vec<u32> = self
            .vms
            .values()
            .filter(|vm| vm.namespace == namespace && vm.state != VmState::Hibernated)
            .filter_map(|vm| {
                let prefix = contract::deployment_vm_name(namespace, deployment, 0);
                let base = prefix.strip_suffix('0')?;
                vm.name.strip_prefix(base)?.parse().ok()
            })
            .collect();
        let slot = (0..).find(|s| !taken.contains(s)).unwrap_or(0);
        contract::deployment_vm_name(namespace, deployment, slot)
    }

    /// The running VM with this name, if any: a fork source.
    pub fn running_vm_named(&self, name: &str) -> Option<&VmRecord> {
        self.vms.values().find(|vm| vm.name == name && vm.state == VmState::Running)
    }

    /// A VM id no VM in the table has.
    pub fn new_vm_id(&mut self) -> String {
        loop {
            let id = format!("sim-{:016x}", self.rng.next_u64());
            if !self.vms.values().any(|vm| vm.id == id) {
                return id;
            }
        }
    }

    /// The next free address of the network (round-robin, so a woken VM gets a new address), or
    /// `None` when every address is taken.
    pub fn allocate_ip(&mut self) -> Option<Ipv4Addr> {
        let taken_by_vm =
            |vms: &HashMap<String, VmRecord>, ip| vms.values().any(|vm| vm.ip == Some(ip));
        let candidate = |host: u32| Ipv4Addr::from(NETWORK + host);
        let next = |host: u32| if host + 1 >= NETWORK_SIZE - 1 { 2 } else { host + 1 };
        // Usually the next address is free: one look at the table.
        let host = self.next_host;
        self.next_host = next(host);
        if candidate(host) != HOST_IP && !taken_by_vm(&self.vms, candidate(host)) {
            return Some(candidate(host));
        }
        // Otherwise the taken addresses are collected once, not looked up per candidate.
        let taken: std::collections::HashSet<Ipv4Addr> =
            self.vms.values().filter_map(|vm| vm.ip).collect();
        for _ in 0..NETWORK_SIZE {
            let host = self.next_host;
            self.next_host = next(host);
            let ip = candidate(host);
            if ip != HOST_IP && !taken.contains(&ip) {
                return Some(ip);
            }
        }
        None
    }

    /// Whether an event of probability `rate` happens now.
    /// Counts a fork attempt; true if it is among the first `failures`, which fail.
    pub fn fork_fails(&mut self, failures: u32) -> bool {
        self.forks = self.forks.saturating_add(1);
        self.forks <= failures
    }

    /// Whether this hibernation of the pod is one the provider follows by deleting the pod:
    /// the first `times` of them are.
    pub fn vanishes(&mut self, pod_key: &str, times: u32) -> bool {
        if times == 0 {
            return false;
        }
        let count = self.vanished.entry(pod_key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        *count <= times
    }

    pub fn roll(&mut self, rate: f64) -> bool {
        // 53 random bits give a uniform float in [0, 1); rate 1.0 therefore always fires and
        // rate 0.0 never does.
        let sample = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        sample < rate
    }
}

/// SplitMix64: tiny, fast and good enough for ids and fault rolls (not for secrets).
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A seed that differs between runs, so ids from before a restart are not reissued.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    RandomState::new().hash_one(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str, ip: Option<Ipv4Addr>) -> VmRecord {
        VmRecord {
            pod_key: format!("ns/{name}"),
            namespace: "ns".into(),
            id: format!("id-{name}"),
            name: name.into(),
            ip,
            state: VmState::Running,
            is_static: false,
            snapshot_from: None,
            failure: None,
            woken: false,
            reported: true,
        }
    }

    #[test]
    fn addresses_are_unique_and_never_the_host() {
        let mut table = VmTable::new(1);
        let mut seen = std::collections::HashSet::new();
        for i in 0..300 {
            let ip = table.allocate_ip().expect("free address");
            assert_ne!(ip, HOST_IP);
            assert_eq!(ip.octets()[..2], [10, 88]);
            assert!(seen.insert(ip), "address {ip} handed out twice");
            table.insert(format!("uid-{i}"), running(&format!("vm-{i}"), Some(ip)));
        }
    }

    #[test]
    fn addresses_in_use_after_a_restart_are_skipped() {
        let mut table = VmTable::new(1);
        table.insert("a".into(), running("a", Some(Ipv4Addr::new(10, 88, 0, 2))));
        assert_eq!(table.allocate_ip(), Some(Ipv4Addr::new(10, 88, 0, 3)));
    }

    #[test]
    fn a_node_of_more_than_a_slash_16_of_vms_gets_addresses_beyond_it_and_skips_taken_ones() {
        let mut table = VmTable::new(1);
        table.next_host = FIRST_HOST + (1 << 16) - 3; // 10.88.255.255
        table.insert("a".into(), running("a", Some(Ipv4Addr::new(10, 89, 0, 0))));
        assert_eq!(table.allocate_ip(), Some(Ipv4Addr::new(10, 88, 255, 255)));
        assert_eq!(table.allocate_ip(), Some(Ipv4Addr::new(10, 89, 0, 1)), "10.89.0.0 is taken");
        table.next_host = NETWORK_SIZE - 2; // the network's last address: wraps to its start
        assert_eq!(table.allocate_ip(), Some(Ipv4Addr::new(10, 95, 255, 254)));
        assert_eq!(table.allocate_ip(), Some(Ipv4Addr::new(10, 80, 0, 2)));
    }

    #[test]
    fn a_freed_address_is_not_reused_immediately() {
        let mut table = VmTable::new(1);
        let first = table.allocate_ip();
        let second = table.allocate_ip();
        assert_ne!(first, second, "a woken VM must get a new address");
    }

    #[test]
    fn vm_ids_are_unique() {
        let mut table = VmTable::new(7);
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| table.new_vm_id()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn only_running_vms_are_fork_sources() {
        let mut table = VmTable::new(1);
        table.insert("a".into(), running("main", None));
        assert!(table.running_vm_named("main").is_some());
        if let Some(vm) = table.get_mut("a") {
            vm.state = VmState::Hibernated;
        }
        assert!(table.running_vm_named("main").is_none());
        assert!(table.running_vm_named("other").is_none());
    }

    #[test]
    fn a_pod_vanishes_after_as_many_hibernations_as_asked_then_never() {
        let mut table = VmTable::new(1);
        assert!(!table.vanishes("ns/a", 0));
        assert!(table.vanishes("ns/a", 2));
        assert!(table.vanishes("ns/a", 2));
        assert!(!table.vanishes("ns/a", 2));
        assert!(table.vanishes("ns/b", 1), "counted per pod");
    }

    #[test]
    fn failure_rolls_honour_the_extremes() {
        let mut table = VmTable::new(42);
        assert!((0..1000).all(|_| table.roll(1.0)));
        assert!((0..1000).all(|_| !table.roll(0.0)));
        let hits = (0..10_000).filter(|_| table.roll(0.5)).count();
        assert!((4000..6000).contains(&hits), "rate 0.5 gave {hits} of 10000");
    }
}

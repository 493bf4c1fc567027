//! The seeded random workload (create, scale, suspend, resume, hibernate, wake, delete) and
//! what it asked for, which the checks hold the operator to.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use super::BoxError;
use crate::api::{CocoonSet, CocoonSetSpec, Hibernation, HibernationAction, HibernationSpec};

/// A small seeded generator (xorshift64*): reproducible without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The desired state the driver asked for, per set.
#[derive(Clone, Debug)]
pub struct Desired {
    pub replicas: i32,
    pub suspend: bool,
    /// The lowest `replicas` since each slot's pod was last created: a slot above it may be
    /// deleted by a scale-down, one at or below it never.
    pub low_water: i32,
    /// `hibernatePolicy: release`: a suspended set deletes its hibernated pods.
    pub release: bool,
}

/// Watches every pod of the namespace and records each deletion with what the pod was then.
#[derive(Default)]
pub struct PodLog {
    /// Names whose pod went Failed/Succeeded at some point (the provider's faults).
    pub terminal: BTreeSet<String>,
    /// Pods whose deletion started: (name, uid).
    pub deleted: Vec<(String, String)>,
    /// Creation count per name.
    pub created: BTreeMap<String, u32>,
}

pub fn watch_pods(api: Api<Pod>, log: Arc<Mutex<PodLog>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: BTreeMap<String, (String, bool)> = BTreeMap::new();
        let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
        while let Some(event) = stream.next().await {
            let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else {
                continue;
            };
            let name = pod.name_any();
            let uid = pod.uid().unwrap_or_default();
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(phase.as_str(), "Failed" | "Succeeded") {
                log.terminal.insert(name.clone());
            }
            let deleting = pod.metadata.deletion_timestamp.is_some();
            let entry = seen.entry(name.clone()).or_insert_with(|| (String::new(), false));
            if entry.0 != uid {
                *entry = (uid.clone(), false);
                *log.created.entry(name.clone()).or_insert(0) += 1;
            }
            if deleting && !entry.1 {
                entry.1 = true;
                log.deleted.push((name, uid));
            }
        }
    })
}

pub fn slot_of(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// The workload's API handles and what it has asked for so far.
pub struct Workload {
    pub sets: Api<CocoonSet>,
    pub hibs: Api<Hibernation>,
    /// The virtual node of every set.
    pub node: String,
    /// What the driver asked of each live set.
    pub desired: BTreeMap<String, Desired>,
    /// Sets the driver deleted.
    pub deleted_sets: BTreeSet<String>,
    /// Hibernations by name: their pod and the action last asked.
    pub hib_targets: BTreeMap<String, (String, HibernationAction)>,
    next_set: u32,
}

impl Workload {
    pub fn new(sets: Api<CocoonSet>, hibs: Api<Hibernation>, node: String) -> Self {
        Self {
            sets,
            hibs,
            node,
            desired: BTreeMap::new(),
            deleted_sets: BTreeSet::new(),
            hib_targets: BTreeMap::new(),
            next_set: 0,
        }
    }

    /// One random operation (some draws do nothing: nothing to act on).
    pub async fn step(&mut self, rng: &mut Rng) -> Result<(), BoxError> {
        let live: Vec<String> = self.desired.keys().cloned().collect();
        match rng.below(10) {
            0..=1 if self.desired.len() < 6 => {
                let name = format!("c{}", self.next_set);
                self.next_set += 1;
                let replicas = i32::try_from(rng.below(4)).unwrap_or(0);
                let mut spec: CocoonSetSpec = serde_json::from_value(serde_json::json!({
                    "agent": {"image": "ubuntu-dev-base", "replicas": replicas}
                }))?;
                spec.node_name = Some(self.node.clone());
                // Every other set releases its seats when suspended.
                let release = self.next_set.is_multiple_of(2);
                if release {
                    spec.hibernate_policy = crate::api::HibernatePolicy::Release;
                }
                self.sets.create(&PostParams::default(), &CocoonSet::new(&name, spec)).await?;
                self.desired.insert(
                    name,
                    Desired { replicas, suspend: false, low_water: replicas, release },
                );
            }
            2..=4 if !live.is_empty() => {
                let name = &live[usize::try_from(rng.below(live.len() as u64)).unwrap_or(0)];
                let replicas = i32::try_from(rng.below(4)).unwrap_or(0);
                let patch = serde_json::json!({"spec": {"agent": {"replicas": replicas}}});
                self.sets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                if let Some(d) = self.desired.get_mut(name) {
                    d.replicas = replicas;
                    d.low_water = d.low_water.min(replicas);
                }
            }
            5..=6 if !live.is_empty() => {
                let name = &live[usize::try_from(rng.below(live.len() as u64)).unwrap_or(0)];
                let Some(d) = self.desired.get_mut(name) else { return Ok(()) };
                d.suspend = !d.suspend;
                let patch = serde_json::json!({"spec": {"suspend": d.suspend}});
                self.sets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
            7 if !live.is_empty() => {
                // Hibernate or wake a sub-agent through a Hibernation of its own.
                let name = &live[usize::try_from(rng.below(live.len() as u64)).unwrap_or(0)];
                let pod = format!("{name}-1");
                let hib = format!("hib-{pod}");
                let action = if rng.below(2) == 0 {
                    HibernationAction::Hibernate
                } else {
                    HibernationAction::Wake
                };
                if self.hib_targets.contains_key(&hib) {
                    let patch = serde_json::json!({"spec": {"action": action}});
                    self.hibs.patch(&hib, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                } else {
                    let spec = HibernationSpec { pod_name: pod.clone(), action };
                    self.hibs.create(&PostParams::default(), &Hibernation::new(&hib, spec)).await?;
                }
                self.hib_targets.insert(hib, (pod, action));
            }
            8 if live.len() > 2 => {
                let name = live[usize::try_from(rng.below(live.len() as u64)).unwrap_or(0)].clone();
                // Its Hibernations go with it (they would wait for their pod forever).
                let owned: Vec<String> = self
                    .hib_targets
                    .iter()
                    .filter(|(_, (pod, _))| slot_of(&name, pod).is_some())
                    .map(|(h, _)| h.clone())
                    .collect();
                for hib in owned {
                    self.hibs.delete(&hib, &DeleteParams::default()).await?;
                    self.hib_targets.remove(&hib);
                }
                self.sets.delete(&name, &DeleteParams::default()).await?;
                self.desired.remove(&name);
                self.deleted_sets.insert(name);
            }
            _ => {}
        }
        Ok(())
    }

    /// The pods whose deletion the workload never asked for: a slot never scaled away whose
    /// pod never failed (a release set deletes its hibernated pods by design).
    pub fn unasked_deletions(&self, log: &PodLog) -> Vec<String> {
        let mut out = Vec::new();
        for (pod, _) in &log.deleted {
            let Some((set, d)) = self.desired.iter().find(|(set, _)| slot_of(set, pod).is_some())
            else {
                continue; // a deleted set's pods, or a toolbox
            };
            let slot = slot_of(set, pod).unwrap_or(0);
            if slot <= d.low_water && !log.terminal.contains(pod) && !d.release {
                out.push(format!(
                    "{pod} was deleted though its slot was never scaled away and it never failed"
                ));
            }
        }
        out
    }
}

//! What a workflow does and waits for, against whichever provider serves its node: create and
//! edit sets and Hibernations as a user would, wait for a status with a deadline (polling the
//! API: a conformance run is a test, not an operator), and take checkpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::compare::{Checkpoint, normalize};
use super::provider::Hypervisor;
use crate::api::{
    CocoonSet, CocoonSetStatus, Hibernation, HibernationAction, HibernationPhase, HibernationSpec,
    HibernationStatus,
};

/// The base image of every set (a snapshot the fake hypervisor is seeded with).
pub const IMAGE: &str = "ubuntu-dev-base";
/// The image of the toolboxes (booted with `vm run`).
pub const TOOLBOX_IMAGE: &str = "chromium-box";
/// Longest wait for one state.
pub const DEADLINE: Duration = Duration::from_secs(150);

/// The provider a workflow runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The real vk-cocoon with the fake hypervisor CLI.
    Real,
    /// The simulator.
    Simulator,
}

/// A workflow's view of its run: its namespace and node, the hypervisor (real runs), and what
/// it saw.
pub struct Ctx<'a> {
    pub client: Client,
    pub ns: String,
    pub node: String,
    pub target: Target,
    /// The dialect the provider speaks.
    pub dialect: cocoon_core::contract::Dialect,
    pub hypervisor: Option<&'a Hypervisor>,
    /// The epoch stand-in v0.2.9 pushes to (real v0.2.9 runs).
    pub epoch: Option<&'a crate::epoch::Epoch>,
    pub checkpoints: Vec<Checkpoint>,
    /// What was verified beyond the statuses (real runs: what the provider did).
    pub verified: Vec<String>,
}

type Fallible<T = ()> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Ctx<'_> {
    pub fn sets(&self) -> Api<CocoonSet> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn hibs(&self) -> Api<Hibernation> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The VM name of an agent slot of set `set` in this namespace.
    pub fn vm(&self, set: &str, slot: u32) -> String {
        crate::contract::agent_vm_name(&self.ns, set, slot)
    }

    /// Creates set `name` on this run's node: the base image, `replicas` sub-agents, and the
    /// spec fields of `extra` merged in.
    pub async fn create_set(&self, name: &str, replicas: i32, extra: Value) -> Fallible {
        let mut spec =
            json!({"nodeName": self.node, "agent": {"image": IMAGE, "replicas": replicas}});
        merge(&mut spec, extra);
        let set = CocoonSet::new(name, serde_json::from_value(spec).map_err(err)?);
        self.sets().create(&PostParams::default(), &set).await.map_err(err)?;
        Ok(())
    }

    pub async fn patch_set(&self, name: &str, spec: Value) -> Fallible {
        let patch = json!({ "spec": spec });
        self.sets()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(err)?;
        Ok(())
    }

    pub async fn create_hib(&self, name: &str, pod: &str, action: HibernationAction) -> Fallible {
        let spec = HibernationSpec { pod_name: pod.into(), action };
        self.hibs()
            .create(&PostParams::default(), &Hibernation::new(name, spec))
            .await
            .map_err(err)?;
        Ok(())
    }

    pub async fn set_action(&self, name: &str, action: HibernationAction) -> Fallible {
        let patch = json!({"spec": {"action": action}});
        self.hibs()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(err)?;
        Ok(())
    }

    pub async fn delete_pod(&self, name: &str) -> Fallible {
        self.pods().delete(name, &DeleteParams::default()).await.map_err(err)?;
        Ok(())
    }

    /// Waits until set `name`'s status, current for its generation, satisfies `done`.
    pub async fn wait_set(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&CocoonSetStatus) -> bool,
    ) -> Fallible<CocoonSetStatus> {
        let api = self.sets();
        poll(what, || async {
            let set = api.get(name).await.map_err(err)?;
            let status = set.status.unwrap_or_default();
            let current = status.observed_generation == set.metadata.generation;
            if current && done(&status) { Ok(Some(status)) } else { Err(describe_set(&status)) }
        })
        .await
    }

    /// Waits until Hibernation `name` reports `phase` for its generation.
    pub async fn wait_hib(
        &self,
        name: &str,
        phase: HibernationPhase,
    ) -> Fallible<HibernationStatus> {
        let api = self.hibs();
        poll(&format!("Hibernation {name} {}", phase.as_str()), || async {
            let hib = api.get(name).await.map_err(err)?;
            let status = hib.status.unwrap_or_default();
            if status.phase == Some(phase) && status.observed_generation == hib.metadata.generation
            {
                Ok(Some(status))
            } else {
                Err(format!("phase {:?}, message {:?}", status.phase, status.message))
            }
        })
        .await
    }

    /// Waits until no pod of the namespace is left.
    pub async fn wait_no_pods(&self) -> Fallible {
        let api = self.pods();
        poll("every pod gone", || async {
            let left: Vec<String> = api
                .list(&ListParams::default())
                .await
                .map_err(err)?
                .items
                .iter()
                .map(|p| p.name_any())
                .collect();
            if left.is_empty() { Ok(Some(())) } else { Err(format!("pods left: {left:?}")) }
        })
        .await
    }

    /// Records the normalised statuses of the named objects (`set` names CocoonSets, `hib`
    /// Hibernations) under `label`.
    pub async fn checkpoint(&mut self, label: &str, sets: &[&str], hibs: &[&str]) -> Fallible {
        let mut objects = Vec::new();
        for name in sets {
            let status = self.sets().get(name).await.map_err(err)?.status.unwrap_or_default();
            let value = serde_json::to_value(&status).map_err(err)?;
            objects.push((format!("CocoonSet/{name}"), normalize(&value, &self.ns)));
        }
        for name in hibs {
            let status = self.hibs().get(name).await.map_err(err)?.status.unwrap_or_default();
            let value = serde_json::to_value(&status).map_err(err)?;
            objects.push((format!("Hibernation/{name}"), normalize(&value, &self.ns)));
        }
        self.checkpoints.push(Checkpoint { label: label.into(), objects });
        Ok(())
    }

    /// The reasons of the Events on this namespace's sets and Hibernations, as `Kind/name type
    /// reason`.
    pub async fn event_reasons(&self) -> Fallible<BTreeSet<String>> {
        Ok(self.events().await?.into_keys().collect())
    }

    /// The Events on this namespace's sets and Hibernations: `Kind/name type reason` and the
    /// words of the last of them.
    pub async fn events(&self) -> Fallible<BTreeMap<String, String>> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let events = api.list(&ListParams::default()).await.map_err(err)?.items;
        Ok(events
            .iter()
            .filter_map(|e| {
                let r = e.regarding.as_ref()?;
                let kind = r.kind.as_deref()?;
                matches!(kind, "CocoonSet" | "Hibernation").then(|| {
                    let key = format!(
                        "{kind}/{} {} {}",
                        r.name.as_deref().unwrap_or_default(),
                        e.type_.as_deref().unwrap_or_default(),
                        e.reason.as_deref().unwrap_or_default()
                    );
                    (key, e.note.clone().unwrap_or_default())
                })
            })
            .collect())
    }

    /// Notes something verified against what the provider did.
    pub fn verified(&mut self, what: impl Into<String>) {
        self.verified.push(what.into());
    }
}

/// One line on a set's status, for a wait that timed out.
fn describe_set(s: &CocoonSetStatus) -> String {
    let agents: Vec<String> = s
        .agents
        .iter()
        .chain(&s.warm_agents)
        .map(|a| format!("{}={} from {}", a.pod_name, a.phase, a.source.as_deref().unwrap_or("-")))
        .collect();
    let holding: Vec<&str> =
        s.conditions.iter().filter(|c| c.status == "True").map(|c| c.type_.as_str()).collect();
    format!(
        "phase {:?}, agents {agents:?}, conditions {holding:?}, message {:?}",
        s.phase, s.message
    )
}

/// Looks until `look` says done (`Ok(Some)`), or the deadline passes (the last thing it said).
pub async fn poll<T, F, Fut>(what: &str, mut look: F) -> Fallible<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Fallible<Option<T>>>,
{
    let started = Instant::now();
    let mut last = String::new();
    loop {
        match look().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if started.elapsed() > DEADLINE {
            return Err(format!("{what}: not reached within {}s ({last})", DEADLINE.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Merges `extra` into `base` (objects key by key).
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

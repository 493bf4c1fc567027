//! Test fixtures: specs, pods in every state, and a one-call planner.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;

use super::cocoon_set::SetIdentity;
use super::observe::{PodPhase, PodRole, PodView, Snapshots};
use super::{Expectations, SetInput, SetPlan, plan_cocoon_set};
use crate::api::{
    AgentSpec, CocoonSetSpec, CocoonSetStatus, SnapshotPolicy, ToolboxMode, ToolboxOs, ToolboxSpec,
};
use crate::contract;

pub const UID: &str = "uid-demo";

pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

/// The operator's view of one provider node, the default one, Ready and speaking `dialect`.
pub fn pool_nodes(dialect: contract::Dialect) -> crate::plan::Nodes {
    let mut nodes = crate::plan::Nodes::new(dialect, None);
    let info = crate::plan::NodeInfo { dialect, ..Default::default() };
    nodes.set(contract::DEFAULT_NODE_NAME, info);
    nodes
}

/// A seed provider whose pods are bound to the default node.
pub fn pool_provider() -> crate::plan::cocoon_set::Provider {
    crate::plan::cocoon_set::Provider {
        node: Some(contract::DEFAULT_NODE_NAME.into()),
        ..Default::default()
    }
}

pub fn identity() -> SetIdentity {
    SetIdentity { namespace: "prod".into(), name: "demo".into(), uid: UID.into() }
}

pub fn spec(replicas: i32) -> CocoonSetSpec {
    CocoonSetSpec {
        agent: AgentSpec { image: "ubuntu-dev-base".into(), replicas, ..Default::default() },
        suspend: false,
        node_name: Some(contract::DEFAULT_NODE_NAME.into()),
        node_selector: Default::default(),
        affinity: None,
        tolerations: Vec::new(),
        on_node_loss: Default::default(),
        snapshot_policy: SnapshotPolicy::Always,
        snapshot_cpu_class: None,
        toolboxes: Vec::new(),
        idle: None,
        hibernate_policy: Default::default(),
    }
}

pub fn toolbox(name: &str, os: ToolboxOs, mode: ToolboxMode) -> ToolboxSpec {
    ToolboxSpec {
        name: name.into(),
        os,
        image: Some(format!("{name}-image")),
        mode,
        static_ip: None,
        static_vm_id: None,
        vnc_port: None,
        resources: None,
        storage: None,
    }
}

/// An agent pod of the fixture set that serves (Running, Ready, VM known).
pub fn agent(slot: u32) -> PodView {
    let mut p = PodView::new(contract::agent_pod_name("demo", slot));
    p.controller_uid = Some(UID.into());
    p.role = Some(if slot == 0 { PodRole::Main } else { PodRole::SubAgent });
    p.slot = Some(slot);
    p.labels = super::cocoon_set::pods::pod_labels("demo", p.role.unwrap(), Some(slot)).into();
    p.mode = Some("clone".into());
    p.vm_name = Some(contract::agent_vm_name("prod", "demo", slot).into());
    p.vm_id = Some(format!("vm-{slot}").into());
    p.ip = Some(format!("10.88.0.{}", slot + 2).into());
    if slot > 0 {
        p.fork_from = Some(contract::agent_vm_name("prod", "demo", 0).into());
    }
    serving(p)
}

pub fn toolbox_pod(name: &str, mode: ToolboxMode) -> PodView {
    let mut p = PodView::new(contract::toolbox_pod_name("demo", name));
    p.controller_uid = Some(UID.into());
    p.role = Some(PodRole::Toolbox);
    p.labels = super::cocoon_set::pods::pod_labels("demo", PodRole::Toolbox, None).into();
    p.mode = Some(mode.as_str().into());
    p.vm_name = Some(contract::toolbox_vm_name("prod", "demo", name).into());
    serving(p)
}

pub fn serving(mut p: PodView) -> PodView {
    p.phase = PodPhase::Running;
    p.ready = true;
    p.hibernated = false;
    p.ready_changed_at = Some(at(0));
    p
}

pub fn pending(mut p: PodView) -> PodView {
    p.phase = PodPhase::Pending;
    p.ready = false;
    p
}

pub fn starting(mut p: PodView) -> PodView {
    p.phase = PodPhase::Running;
    p.ready = false;
    p
}

pub fn hibernated(mut p: PodView, since: i64) -> PodView {
    p.phase = PodPhase::Running;
    p.ready = false;
    p.hibernated = true;
    p.hibernate_requested = true;
    p.ready_changed_at = Some(at(since));
    p
}

pub fn terminating(mut p: PodView) -> PodView {
    p.terminating = true;
    p
}

pub fn failed(mut p: PodView) -> PodView {
    p.phase = PodPhase::Failed;
    p.ready = false;
    p
}

/// Everything a planner call needs, with defaults a test overrides field by field.
pub struct World {
    pub spec: CocoonSetSpec,
    pub pods: Vec<PodView>,
    pub status: CocoonSetStatus,
    pub snapshots: Snapshots,
    pub expectations: Expectations,
    pub not_before: BTreeMap<String, Timestamp>,
    pub conflicts: BTreeSet<String>,
    pub deleting: bool,
    pub suspend_asked: BTreeMap<String, Timestamp>,
    pub fell_back_under: BTreeMap<String, String>,
    /// The namespace's snapshot ConfigMap exists (it does unless a test says otherwise).
    pub snapshot_record: bool,
    /// The provider the set's node runs (seed unless a test says otherwise).
    pub provider: crate::plan::cocoon_set::Provider,
    pub mixed: Option<String>,
    /// The operator reaches the registry (a current set creates only then).
    pub registry: bool,
    pub probing: BTreeSet<String>,
    pub now: Timestamp,
}

impl World {
    pub fn new(spec: CocoonSetSpec, pods: Vec<PodView>) -> Self {
        Self {
            spec,
            pods,
            status: CocoonSetStatus::default(),
            snapshots: Snapshots::new(),
            expectations: Expectations::default(),
            not_before: BTreeMap::new(),
            conflicts: BTreeSet::new(),
            deleting: false,
            suspend_asked: BTreeMap::new(),
            fell_back_under: BTreeMap::new(),
            snapshot_record: true,
            provider: pool_provider(),
            mixed: None,
            registry: true,
            probing: BTreeSet::new(),
            now: at(100),
        }
    }

    pub fn plan(&self) -> SetPlan {
        plan_cocoon_set(&SetInput {
            set: &identity(),
            generation: Some(1),
            spec: &self.spec,
            previous_status: &self.status,
            pods: &self.pods,
            provider: self.provider.clone(),
            dialect: self.provider.dialect,
            mixed: self.mixed.clone(),
            placement: &super::cocoon_set::placement::Placement {
                node: self.provider.node.clone(),
                trouble: None,
            },
            migration: &Default::default(),
            registry: self.registry,
            probing: &self.probing,
            registry_problem: None,
            snapshots: &self.snapshots,
            snapshot_record: self.snapshot_record,
            expectations: &self.expectations,
            not_before: &self.not_before,
            name_conflicts: &self.conflicts,
            deleting: self.deleting,
            orphan: false,
            suspend: super::cocoon_set::SuspendView {
                asked: &self.suspend_asked,
                since: None,
                timeout: std::time::Duration::from_secs(180),
            },
            fell_back_under: &self.fell_back_under,
            replaced: &BTreeMap::new(),
            failure: None,
            now: self.now,
        })
    }
}

/// Hibernation settings of the tests (the operator's defaults are `config::defaults`).
pub fn hibernation_settings() -> super::HibernationSettings {
    super::HibernationSettings {
        hibernate_timeout: std::time::Duration::from_secs(180),
        wake_timeout: std::time::Duration::from_secs(300),
        deletion_cost: 1000,
        retry_after: std::time::Duration::from_secs(30),
    }
}

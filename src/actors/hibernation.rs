//! The Hibernation part of a resource actor: its view (the Hibernation, its target pod, the
//! namespace's snapshot entries, the Hibernations naming the same pod), its bookkeeping, and
//! its pod patches. The pass is `plan::plan_hib_pass`; outcomes go back through
//! `plan::record_hib`.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use super::Context;
use super::inbox::{Pending, PodsView};
use super::resource::{Part, Planned};
use crate::api::{Hibernation, HibernationStatus};
use crate::k8s::outcome;
use crate::metrics::Transition;
use crate::plan::hibernation::Competitor;
use crate::plan::{
    Compact, HibAction, HibMemory, HibStep, HibView, Nodes, Outcome, OwnWrite, PodView, Recorded,
    plan_hib_pass, record_hib,
};

/// The Hibernation actor's view and bookkeeping.
pub struct HibernationPart {
    world: World,
    memory: HibMemory,
}

/// What the Hibernation actor sees, apart from its bookkeeping.
#[derive(Default)]
struct World {
    hibernation: Option<Arc<Hibernation>>,
    /// Pods by name (more than the target only briefly, after `spec.podName` changed).
    view: PodsView,
    competitors: Vec<Competitor>,
    /// The pod name whose watch has listed once.
    listed: Option<String>,
}

impl World {
    /// The core's view, on `pods` (this pass's copy of [`PodsView::pods`]); the dialect is
    /// that of the target pod's node.
    fn view<'a>(
        &'a self,
        pods: &'a [PodView],
        nodes: &Nodes,
        registry: bool,
    ) -> Option<HibView<'a>> {
        let hibernation = self.hibernation.as_deref()?;
        let target = pods.iter().find(|p| p.name == hibernation.spec.pod_name);
        let dialect = nodes.dialect(target.and_then(|p| p.node.as_deref()).unwrap_or_default());
        Some(HibView {
            hibernation,
            pods,
            listed: self.listed.as_deref(),
            snapshots: self.view.snapshots(),
            dialect,
            registry,
            competitors: &self.competitors,
        })
    }
}

impl Part for HibernationPart {
    type Object = Hibernation;
    type PodWrite = HibAction;
    type Status = HibernationStatus;

    fn new() -> Self {
        Self { world: World::default(), memory: HibMemory::default() }
    }

    fn absorb(&mut self, mut pending: Pending) {
        let world = &mut self.world;
        world.view.absorb(&mut pending);
        if let Some(c) = pending.competitors {
            world.competitors = c;
        }
        if let Some(name) = pending.target_listed {
            world.listed = Some(name.into());
        }
        if let Some(hib) = pending.hibernation {
            world.hibernation = hib;
        }
    }

    fn view(&mut self) -> &mut PodsView {
        &mut self.world.view
    }

    fn object(&self) -> Option<&Arc<Hibernation>> {
        self.world.hibernation.as_ref()
    }

    fn plan(&mut self, ctx: &Context, now: Timestamp) -> Planned<HibAction, HibernationStatus> {
        let pods = self.world.view.pods();
        let nodes = ctx.nodes.current();
        let Some(view) = self.world.view(&pods, &nodes, ctx.snapshot_registry.is_some()) else {
            return Planned::idle();
        };
        let planned = plan_hib_pass(&view, &mut self.memory, &ctx.hibernation, now);
        Planned {
            pass: planned.pass,
            phase: planned.status.phase.map(|p| p.as_str()),
            pod_count: usize::from(planned.has_pod),
        }
    }

    async fn write_pod(&self, ctx: &Context, namespace: &str, write: &HibAction) -> Outcome {
        match write {
            HibAction::PatchPod { pod_name, annotations, labels } => outcome(
                ctx.writer.patch_pod_metadata(namespace, pod_name, annotations, labels).await,
            ),
            HibAction::CollectSnapshot { vm_name } => {
                use crate::contract::dialect::TAG_HIBERNATE;
                super::cocoon_set::registry_outcome(ctx, |r| r.delete(vm_name, TAG_HIBERNATE)).await
            }
        }
    }

    fn record(
        &mut self,
        ctx: &Context,
        step: &HibStep,
        outcome: &Outcome,
        now: Timestamp,
    ) -> Recorded {
        let pods = self.world.view.pods();
        let nodes = ctx.nodes.current();
        let Some(view) = self.world.view(&pods, &nodes, ctx.snapshot_registry.is_some()) else {
            return Recorded::go_on();
        };
        record_hib(&mut self.memory, &view, step, outcome, ctx.backoff(), now)
    }

    fn wrote_status(&mut self, own: OwnWrite) {
        self.memory.own_write = Some(own);
    }

    fn completed(&mut self) {
        self.memory.retry.completed();
    }

    fn observe(&mut self, ctx: &Context) {
        for (kind, took) in self.memory.finished_rounds.drain(..) {
            ctx.metrics
                .transition_duration
                .get_or_create(&Transition { transition: kind.as_str() })
                .observe(took.as_secs_f64());
        }
    }

    fn compact(&mut self) {
        self.world.view.compact();
        self.world.competitors.compact();
        self.memory.compact();
    }
}

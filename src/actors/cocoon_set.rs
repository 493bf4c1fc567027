//! The CocoonSet part of a resource actor: its view (the set, the pods routed to it, its
//! namespace's snapshot entries), its bookkeeping, and its pod writes. The pass is
//! `plan::plan_set_pass`; outcomes go back through `plan::record_set`.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use super::Context;
use super::inbox::{Pending, PodsView};
use super::resource::{Part, Planned};
use crate::api::CocoonSet;
use crate::index::CachedSet;
use crate::k8s::outcome;
use crate::metrics::Transition;
use crate::plan::{
    Compact, Outcome, OwnWrite, PodAction, Recorded, SetMemory, SetSettings, SetStep, SetView,
    plan_set_pass, record_set,
};

/// The CocoonSet actor's view and bookkeeping.
pub struct CocoonSetPart {
    set: Option<CachedSet>,
    view: PodsView,
    memory: SetMemory,
    forks_served: Vec<std::time::Duration>,
}

impl CocoonSetPart {
    fn settings(ctx: &Context) -> SetSettings {
        SetSettings {
            backoff: ctx.backoff(),
            suspend_timeout: ctx.hibernation.hibernate_timeout,
            status_batch: ctx.status_batch,
        }
    }
}

impl Part for CocoonSetPart {
    type Object = CocoonSet;
    type PodWrite = PodAction;
    type Status = crate::api::CocoonSetStatus;

    fn new() -> Self {
        Self {
            set: None,
            view: PodsView::default(),
            memory: SetMemory::default(),
            forks_served: Vec::new(),
        }
    }

    fn absorb(&mut self, mut pending: Pending) {
        self.view.absorb(&mut pending);
        if let Some(set) = pending.cocoon_set {
            self.set = set;
        }
    }

    fn view(&mut self) -> &mut PodsView {
        &mut self.view
    }

    fn object(&self) -> Option<&Arc<CocoonSet>> {
        self.set.as_ref().map(CachedSet::object)
    }

    fn plan(&mut self, ctx: &Context, now: Timestamp) -> Planned<PodAction, Self::Status> {
        let Some(cached) = self.set.clone() else { return Planned::idle() };
        let (set, status) = (cached.object(), cached.status());
        let pods = self.view.pods();
        let nodes = ctx.nodes.current();
        let view = SetView {
            set,
            status: status.as_ref(),
            pods: &pods,
            snapshots: self.view.snapshots(),
            snapshot_record: self.view.snapshot_record(),
            nodes: &nodes,
            registry: ctx.snapshot_registry.is_some(),
        };
        let planned = plan_set_pass(&view, &mut self.memory, &Self::settings(ctx), now);
        self.forks_served.extend(planned.forks_served);
        Planned {
            pass: planned.pass,
            phase: planned.status.phase.map(|p| p.as_str()),
            pod_count: planned.pod_count,
        }
    }

    async fn write_pod(&self, ctx: &Context, namespace: &str, write: &PodAction) -> Outcome {
        let result = match write {
            PodAction::CreateMain { pod }
            | PodAction::CreateSubAgent { pod, .. }
            | PodAction::CreateToolbox { pod, .. } => ctx.writer.create_pod(namespace, pod).await,
            PodAction::Delete { pod_name, uid, reason, .. } => {
                ctx.writer
                    .delete_pod(namespace, pod_name, uid.clone(), reason.grace_seconds())
                    .await
            }
            PodAction::RepairLabels { pod_name, labels, .. } => {
                ctx.writer.patch_pod_labels(namespace, pod_name, labels).await
            }
            PodAction::CollectSnapshot { vm_name, keep, .. } => {
                tracing::debug!(%namespace, vm = %vm_name, keep, "retiring a snapshot");
                return registry_outcome(ctx, |r| r.retire(vm_name, *keep)).await;
            }
            PodAction::ProbeSnapshot { vm_name, .. } => {
                use crate::contract::dialect::TAG_HIBERNATE;
                let Some(registry) = ctx.snapshot_registry.as_deref() else {
                    return Outcome::Failed { detail: "no registry configured".into() };
                };
                let found = registry.exists(vm_name, TAG_HIBERNATE).await;
                tracing::info!(%namespace, vm = %vm_name, ?found, "looked for the snapshot of a VM whose pod went while hibernating");
                return match found {
                    Ok(true) => Outcome::Done,
                    Ok(false) => Outcome::NotFound,
                    Err(error) => Outcome::Failed { detail: error.to_string() },
                };
            }
            PodAction::PrepareDelete { pod_name, annotations }
            | PodAction::SetHibernate { pod_name, annotations, .. } => {
                ctx.writer.patch_pod_annotations(namespace, pod_name, annotations).await
            }
        };
        outcome(result)
    }

    fn record(
        &mut self,
        ctx: &Context,
        step: &SetStep,
        outcome: &Outcome,
        now: Timestamp,
    ) -> Recorded {
        let generation = self.set.as_ref().and_then(|s| s.object().metadata.generation);
        record_set(&mut self.memory, generation, step, outcome, &Self::settings(ctx), now)
    }

    fn wrote_status(&mut self, own: OwnWrite) {
        self.memory.own_write = Some(own);
    }

    fn completed(&mut self) {
        self.memory.retry.completed();
    }

    fn observe(&mut self, ctx: &Context) {
        let fork =
            ctx.metrics.transition_duration.get_or_create(&Transition { transition: "fork" });
        for took in self.forks_served.drain(..) {
            fork.observe(took.as_secs_f64());
        }
    }

    fn compact(&mut self) {
        self.view.compact();
        self.memory.compact();
        self.forks_served.compact();
    }
}

/// Runs a registry call; its failure is transient (retried with backoff, said in status).
pub(super) async fn registry_outcome<'a, F, Fut>(ctx: &'a Context, call: F) -> Outcome
where
    F: FnOnce(&'a crate::registry::Registry) -> Fut,
    Fut: std::future::Future<Output = crate::registry::Result<()>>,
{
    let Some(registry) = ctx.snapshot_registry.as_deref() else {
        return Outcome::Failed { detail: "no registry configured (--registry)".into() };
    };
    match call(registry).await {
        Ok(()) => Outcome::Done,
        Err(error) => {
            tracing::warn!(%error, "registry");
            Outcome::Failed { detail: error.to_string() }
        }
    }
}

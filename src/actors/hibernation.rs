//! The Hibernation part of a resource actor: its view (the Hibernation, its target pod, the
//! namespace's snapshot entries, the Hibernations naming the same pod), its bookkeeping, and
//! its pod patches. The pass is `plan::plan_hib_pass`; outcomes go back through
//! `plan::record_hib`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use super::Context;
use super::inbox::Pending;
use super::resource::{Part, Planned};
use crate::api::{Hibernation, HibernationStatus};
use crate::k8s::outcome;
use crate::metrics::Transition;
use crate::plan::hibernation::Competitor;
use crate::plan::{
    HibAction, HibMemory, HibStep, HibView, Outcome, Pass, PodView, Recorded, Snapshots,
    plan_hib_pass, record_hib,
};

/// The Hibernation actor's view and bookkeeping.
pub struct HibernationPart {
    hibernation: Option<Arc<Hibernation>>,
    /// Pods by name (more than the target only briefly, after `spec.podName` changed).
    pods: BTreeMap<String, PodView>,
    snapshots: Arc<Snapshots>,
    competitors: Vec<Competitor>,
    /// The pod name whose watch has listed once.
    listed: Option<String>,
    memory: HibMemory,
}

impl Part for HibernationPart {
    type Object = Hibernation;
    type PodWrite = HibAction;
    type Status = HibernationStatus;

    fn new() -> Self {
        Self {
            hibernation: None,
            pods: BTreeMap::new(),
            snapshots: Arc::default(),
            competitors: Vec::new(),
            listed: None,
            memory: HibMemory::default(),
        }
    }

    fn absorb(&mut self, pending: Pending) {
        for (name, pod) in pending.pods {
            match pod {
                Some(pod) => self.pods.insert(name, PodView::from_pod(&pod)),
                None => self.pods.remove(&name),
            };
        }
        if let Some(s) = pending.snapshots {
            self.snapshots = s;
        }
        if let Some(c) = pending.competitors {
            self.competitors = c;
        }
        if let Some(name) = pending.target_listed {
            self.listed = Some(name);
        }
        if let Some(hib) = pending.hibernation {
            self.hibernation = hib;
        }
    }

    fn object(&self) -> Option<&Arc<Hibernation>> {
        self.hibernation.as_ref()
    }

    fn plan(&mut self, ctx: &Context, now: Timestamp) -> Planned<HibAction, HibernationStatus> {
        let Some(hib) = self.hibernation.clone() else {
            return Planned {
                pass: Pass { steps: Vec::new(), wake_after: None },
                phase: None,
                pod_count: 0,
            };
        };
        let pods: Vec<PodView> = self.pods.values().cloned().collect();
        let view = HibView {
            hibernation: &hib,
            pods: &pods,
            listed: self.listed.as_deref(),
            snapshots: &self.snapshots,
            competitors: &self.competitors,
        };
        let planned = plan_hib_pass(&view, &mut self.memory, &ctx.hibernation, now);
        Planned {
            pass: planned.pass,
            phase: planned.status.phase.map(|p| p.as_str()),
            pod_count: usize::from(planned.has_pod),
        }
    }

    async fn write_pod(&self, ctx: &Context, namespace: &str, write: &HibAction) -> Outcome {
        let HibAction::PatchPod { pod_name, annotations } = write;
        outcome(ctx.writer.patch_pod_annotations(namespace, pod_name, annotations).await)
    }

    fn record(
        &mut self,
        ctx: &Context,
        step: &HibStep,
        outcome: &Outcome,
        now: Timestamp,
    ) -> Recorded {
        let Some(hib) = self.hibernation.clone() else { return Recorded::go_on() };
        let pods: Vec<PodView> = self.pods.values().cloned().collect();
        let view = HibView {
            hibernation: &hib,
            pods: &pods,
            listed: self.listed.as_deref(),
            snapshots: &self.snapshots,
            competitors: &self.competitors,
        };
        record_hib(&mut self.memory, &view, step, outcome, ctx.backoff(), now)
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
}

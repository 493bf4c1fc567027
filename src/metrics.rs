//! Prometheus metrics (prefix `cocoon_operator_`), with bounded labels only: kinds, verbs,
//! results and error categories, never object names.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindResult {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindCategory {
    pub kind: &'static str,
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbResult {
    pub verb: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Transition {
    pub transition: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

fn slow_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 14))
}

/// Every metric of the operator.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<KindResult, Counter>,
    pub reconcile_duration: Family<Kind, Histogram>,
    pub errors: Family<KindCategory, Counter>,
    pub actors: Family<Kind, Gauge>,
    pub actors_resting: Family<Kind, Gauge>,
    pub actor_restarts: Family<Kind, Counter>,
    pub mailbox_depth: Family<Kind, Gauge>,
    pub api_requests: Family<VerbResult, Counter>,
    pub transition_duration: Family<Transition, Histogram>,
    pub pod_name_watches: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("cocoon_operator");
        let reconciles = Family::<KindResult, Counter>::default();
        let reconcile_duration = Family::<Kind, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let errors = Family::<KindCategory, Counter>::default();
        let actors = Family::<Kind, Gauge>::default();
        let actors_resting = Family::<Kind, Gauge>::default();
        let actor_restarts = Family::<Kind, Counter>::default();
        let mailbox_depth = Family::<Kind, Gauge>::default();
        let api_requests = Family::<VerbResult, Counter>::default();
        let transition_duration = Family::<Transition, Histogram>::new_with_constructor(
            slow_histogram as fn() -> Histogram,
        );
        registry.register("reconciles", "Reconcile passes by kind and result", reconciles.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile pass by kind",
            reconcile_duration.clone(),
        );
        registry.register(
            "errors",
            "Failed reconcile passes by kind and error category (conflict, not_found, invalid, forbidden, transient)",
            errors.clone(),
        );
        registry.register("actors", "Running actors by kind", actors.clone());
        registry.register(
            "actors_resting",
            "Actors at rest by kind: no ractor actor, their view and bookkeeping parked until an update, a node change or the resync revives them",
            actors_resting.clone(),
        );
        registry.register(
            "actor_restarts",
            "Actors restarted after a failure",
            actor_restarts.clone(),
        );
        registry.register(
            "mailbox_depth",
            "Undelivered coalesced updates waiting for actors, by kind",
            mailbox_depth.clone(),
        );
        registry.register(
            "api_requests",
            "Requests to the Kubernetes API server by verb and result",
            api_requests.clone(),
        );
        let pod_name_watches = Gauge::default();
        registry.register(
            "pod_name_watches",
            "Open watches on one pod name: pods Hibernations name that the label watch does not show (yet)",
            pod_name_watches.clone(),
        );
        registry.register(
            "transition_duration_seconds",
            "Time from request to completion of hibernate, wake and fork",
            transition_duration.clone(),
        );
        Arc::new(Self {
            registry,
            reconciles,
            reconcile_duration,
            errors,
            actors,
            actors_resting,
            actor_restarts,
            mailbox_depth,
            api_requests,
            transition_duration,
            pod_name_watches,
        })
    }

    /// Renders the OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.push_str("# encoding error\n");
        }
        out
    }

    /// Sum of `api_requests` over every label set: what the idle test and benchmarks read.
    pub fn api_request_total(&self) -> u64 {
        API_VERBS
            .iter()
            .flat_map(|verb| API_RESULTS.iter().map(move |result| VerbResult { verb, result }))
            .map(|labels| self.api_requests.get_or_create(&labels).get())
            .sum()
    }
}

/// Verbs counted in `api_requests`.
pub const API_VERBS: &[&str] =
    &["get", "list", "watch", "create", "update", "patch", "delete", "other"];
/// Results counted in `api_requests`.
pub const API_RESULTS: &[&str] =
    &["ok", "client_error", "conflict", "not_found", "server_error", "transport_error"];

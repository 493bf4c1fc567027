//! HTTP endpoints: probes (`/healthz`, `/readyz`) on one address; `/metrics` and
//! `/debug/actors` on another.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::actors::registry::Registry;
use crate::actors::{ActorKind, tree};
use crate::metrics::{Kind, Metrics};

/// What the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    /// Watches synced (when leading) or standing by: see `operator`.
    pub ready: Arc<AtomicBool>,
    pub synced: Arc<AtomicBool>,
}

impl HttpState {
    /// Fresh state: not ready, not synced, no actors.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            registry: Registry::new(),
            ready: Arc::new(AtomicBool::new(false)),
            synced: Arc::new(AtomicBool::new(false)),
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<HttpState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: watches have not synced").into_response()
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    for kind in [ActorKind::CocoonSet, ActorKind::Hibernation] {
        let running: usize =
            s.registry.iter().filter(|e| e.key().kind == kind).map(|e| e.inbox.depth()).sum();
        let resting: usize = s
            .registry
            .iter_resting()
            .filter(|e| e.key().kind == kind)
            .map(|e| e.inbox.depth())
            .sum();
        let depth: usize = running + resting;
        s.metrics
            .mailbox_depth
            .get_or_create(&Kind { kind: kind.as_str() })
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        s.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct TreeQuery {
    format: Option<String>,
}

async fn debug_actors(State(s): State<HttpState>, Query(q): Query<TreeQuery>) -> Response {
    let snapshot = tree::snapshot(&s.registry, s.synced.load(Ordering::Acquire));
    match q.format.as_deref() {
        Some("text") => tree::render_text(&snapshot).into_response(),
        _ => axum::Json(snapshot).into_response(),
    }
}

/// Binds both servers; returns their bound addresses and tasks.
pub async fn serve(
    state: HttpState,
    metrics_addr: SocketAddr,
    probe_addr: SocketAddr,
) -> std::io::Result<(SocketAddr, SocketAddr, Vec<JoinHandle<()>>)> {
    let probes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state.clone());
    let main = Router::new()
        .route("/metrics", get(metrics))
        .route("/debug/actors", get(debug_actors))
        .route("/healthz", get(healthz))
        .with_state(state);
    let metrics_listener = TcpListener::bind(metrics_addr).await?;
    let probe_listener = TcpListener::bind(probe_addr).await?;
    let bound = (metrics_listener.local_addr()?, probe_listener.local_addr()?);
    let tasks = vec![
        tokio::spawn(async move {
            if let Err(e) = axum::serve(metrics_listener, main).await {
                tracing::error!(error = %e, "metrics server stopped");
            }
        }),
        tokio::spawn(async move {
            if let Err(e) = axum::serve(probe_listener, probes).await {
                tracing::error!(error = %e, "probe server stopped");
            }
        }),
    ];
    Ok((bound.0, bound.1, tasks))
}

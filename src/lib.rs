//! cocoon-operator: a Kubernetes operator for VM-backed pods.
//!
//! `Hibernation` hibernates and wakes one VM pod without deleting it; `CocoonSet` runs a main
//! agent VM, sub-agents forked from it and toolbox VMs as one resource. Decisions live in the
//! pure `cocoon-core` crate (re-exported here as `api`, `contract`, `plan`); this crate executes
//! them: the watches and writes (`k8s`), the index that routes watch events, the actors, HTTP.
#![forbid(unsafe_code)]

pub use cocoon_core::{api, contract, duration, lease, plan};

/// The version every binary prints: the crate version and the git commit it was built from.
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("COCOON_GIT_COMMIT"), ")");

/// Supervisor, per-resource actors, router and the actor tree.
pub mod actors;
/// The command line of the production binary: `run` and `crd`.
pub mod cli;
/// Operator settings.
pub mod config;
/// Probes, metrics and the actor-tree endpoint.
pub mod http;
/// The router as a pure index: watch events in, deliveries out.
pub mod index;
/// The only module that talks to the API server.
pub mod k8s;
/// Prometheus metrics.
pub mod metrics;
/// Runtime assembly, leader election and graceful shutdown.
pub mod operator;
/// The snapshot registry of cocoonstack providers.
pub mod registry;
/// SIGTERM / Ctrl-C, for every long-running command.
pub mod signal;
/// Logging set-up.
pub mod telemetry;

//! cocoon-operator: a Kubernetes operator for VM-backed pods.
//!
//! `Hibernation` hibernates and wakes one VM pod without deleting it; `CocoonSet` runs a main
//! agent VM, sub-agents forked from it and toolbox VMs as one resource.
#![forbid(unsafe_code)]

/// Supervisor, per-resource actors, router and the actor tree.
pub mod actors;
/// CRD types (`cocoon.cis/v1alpha1`).
pub mod api;
/// The command line.
pub mod cli;
/// Operator settings.
pub mod config;
/// Every label/annotation key and naming rule shared with vk-cocoon.
pub mod contract;
/// `cocoon-operator dev`: the local all-in-one.
pub mod dev;
/// Starts a local control plane (etcd, kube-apiserver, kube-controller-manager).
pub mod devcluster;
/// Probes, metrics and the actor-tree endpoint.
pub mod http;
/// The only module that talks to the API server.
pub mod k8s;
/// Prometheus metrics.
pub mod metrics;
/// Runtime assembly, leader election and graceful shutdown.
pub mod operator;
/// Pure decisions: desired pods, pod actions, status, the hibernation state machine.
pub mod plan;
/// The vk-cocoon simulator.
pub mod sim;
/// Logging set-up.
pub mod telemetry;

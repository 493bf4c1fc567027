//! cocoon-dev: the development tools of cocoon-operator, never part of the production binary
//! or image: the vk-cocoon simulator, the local control plane (etcd, kube-apiserver,
//! kube-controller-manager built from Go modules), and the `dev` all-in-one.
#![forbid(unsafe_code)]

// The operator's layers, reachable as `crate::...` inside this crate.
use cocoon_core::{api, contract, duration};
use cocoon_operator::{config, operator};

/// `cocoon-dev bench`: operators measured side by side, counted at the API server.
pub mod bench;
/// `cocoon-dev chaos`: SIGKILL the operator at random points under a random workload.
pub mod chaos;
/// The command line of `cocoon-dev`: `dev`, `simulate`, `chaos`, `bench`, `image`, `cluster`.
pub mod cli;
/// `cocoon-dev conformance`: the real vk-cocoon against the fake hypervisor, and the simulator
/// held to it.
pub mod conformance;
/// `cocoon-dev dev`: the local all-in-one.
pub mod dev;
/// Starts a local control plane (etcd, kube-apiserver, kube-controller-manager).
pub mod devcluster;
/// A stand-in for epoch, vk-cocoon v0.2's snapshot registry.
pub mod epoch;
/// A fake of the `cocoon` hypervisor CLI, for the real vk-cocoon in the conformance tests.
pub mod fake_cli;
/// `cocoon-dev image`: the operator's OCI image written without a container engine.
pub mod image;
/// A local OCI registry built from the distribution project, for cocoonstack snapshots.
pub mod registry;
/// The vk-cocoon simulator.
pub mod sim;
/// The integration-test harness shared by the workspace's test binaries.
pub mod testing;

//! cocoon-core: the pure core of cocoon-operator. API types (`cocoon.cis/v1alpha1`), the
//! contract shared with vk-cocoon (every key and naming rule), and the planner that turns an
//! actor's whole view and the time into the steps of a pass. No I/O: this crate depends on no
//! kube client, no async runtime and no actor framework, so impurity is a compile error.
#![forbid(unsafe_code)]

/// CRD types (`cocoon.cis/v1alpha1`).
pub mod api;
/// Every label/annotation key and naming rule shared with vk-cocoon.
pub mod contract;
/// The one duration grammar (humantime).
pub mod duration;
/// The leader-election decision.
pub mod lease;
/// Pure decisions: desired pods, pod actions, status, the hibernation state machine.
pub mod plan;

//! Operator settings: one struct built from the CLI (`run`) or in code (tests, `dev`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::duration::parse_duration;
use crate::plan::HibernationSettings;

/// Settings of the operator runtime. Every flag is also an environment variable.
#[derive(Args, Clone, Debug)]
pub struct OperatorConfig {
    /// Address of `/metrics` and `/debug/actors`.
    #[arg(long, env = "COCOON_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Address of `/healthz` and `/readyz`.
    #[arg(long, env = "COCOON_PROBE_ADDR", default_value = "0.0.0.0:8081")]
    pub probe_addr: SocketAddr,
    /// Every actor re-plans from its in-memory view this often (no API request unless
    /// something differs).
    #[arg(long, env = "COCOON_RESYNC", default_value = "15s", value_parser = parse_duration)]
    pub resync: Duration,
    /// Run actors only while holding the leader Lease.
    #[arg(long, env = "COCOON_LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "COCOON_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, env = "COCOON_LEASE_NAME", default_value = "cocoon-operator-leader")]
    pub lease_name: String,
    /// Identity in the Lease (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// A hibernate round not complete after this long goes Failed.
    #[arg(long, env = "COCOON_HIBERNATE_TIMEOUT", default_value = "3m", value_parser = parse_duration)]
    pub hibernate_timeout: Duration,
    /// A wake round not complete after this long goes Failed.
    #[arg(long, env = "COCOON_WAKE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub wake_timeout: Duration,
    /// `controller.kubernetes.io/pod-deletion-cost` of hibernated pods.
    #[arg(long, env = "COCOON_DELETION_COST", default_value_t = 1000)]
    pub deletion_cost: i32,
    /// Longest retry backoff of a failing object.
    #[arg(long, env = "COCOON_MAX_BACKOFF", default_value = "60s", value_parser = parse_duration)]
    pub max_backoff: Duration,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            probe_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            resync: Duration::from_secs(15),
            leader_elect: false,
            lease_namespace: None,
            lease_name: "cocoon-operator-leader".into(),
            identity: None,
            hibernate_timeout: Duration::from_secs(180),
            wake_timeout: Duration::from_secs(300),
            deletion_cost: 1000,
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl OperatorConfig {
    pub fn hibernation_settings(&self) -> HibernationSettings {
        HibernationSettings {
            hibernate_timeout: self.hibernate_timeout,
            wake_timeout: self.wake_timeout,
            deletion_cost: self.deletion_cost,
            retry_after: self.resync.max(Duration::from_secs(1)) * 2,
        }
    }
}

//! Operator settings: one struct built from the CLI (`run`) or in code (tests, `dev`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::contract::Dialect;
use crate::duration::parse_duration;
use crate::plan::{HibernationSettings, Nodes};

/// Settings of the operator runtime. Every flag is also an environment variable.
#[derive(Args, Clone, Debug)]
pub struct OperatorConfig {
    /// Address of `/metrics` and `/debug/actors`.
    #[arg(long, env = "COCOON_METRICS_ADDR", default_value = defaults::METRICS_ADDR)]
    pub metrics_addr: SocketAddr,
    /// Address of `/healthz` and `/readyz`.
    #[arg(long, env = "COCOON_PROBE_ADDR", default_value = defaults::PROBE_ADDR)]
    pub probe_addr: SocketAddr,
    /// Every actor re-plans from its in-memory view this often (no API request unless
    /// something differs).
    #[arg(long, env = "COCOON_RESYNC", default_value = defaults::RESYNC, value_parser = parse_period)]
    pub resync: Duration,
    /// An actor whose resync pass finds nothing to do and has no timer rests: its ractor actor
    /// stops and its view and bookkeeping wait in the registry until an update, a node change
    /// or the next resync revives it (an operator with thousands of quiet sets keeps no task
    /// and no channels for them). `false` keeps every actor running.
    #[arg(long, env = "COCOON_ACTOR_REST", default_value_t = true, action = clap::ArgAction::Set)]
    pub actor_rest: bool,
    /// Run actors only while holding the leader Lease.
    #[arg(long, env = "COCOON_LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "COCOON_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, env = "COCOON_LEASE_NAME", default_value = defaults::LEASE_NAME)]
    pub lease_name: String,
    /// Identity in the Lease (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// A hibernate round not complete after this long goes Failed.
    #[arg(long, env = "COCOON_HIBERNATE_TIMEOUT", default_value = defaults::HIBERNATE_TIMEOUT, value_parser = parse_duration)]
    pub hibernate_timeout: Duration,
    /// A wake round not complete after this long goes Failed.
    #[arg(long, env = "COCOON_WAKE_TIMEOUT", default_value = defaults::WAKE_TIMEOUT, value_parser = parse_duration)]
    pub wake_timeout: Duration,
    /// `controller.kubernetes.io/pod-deletion-cost` of hibernated pods.
    #[arg(long, env = "COCOON_DELETION_COST", default_value_t = defaults::DELETION_COST)]
    pub deletion_cost: i32,
    /// Longest retry backoff of a failing object.
    #[arg(long, env = "COCOON_MAX_BACKOFF", default_value = defaults::MAX_BACKOFF, value_parser = parse_period)]
    pub max_backoff: Duration,
    /// A CocoonSet status change that flips no condition (counts, addresses, one pod's phase)
    /// waits up to this long so that a burst of pod updates makes one write; `0s` writes every
    /// change at once.
    #[arg(long, env = "COCOON_STATUS_BATCH", default_value = defaults::STATUS_BATCH, value_parser = parse_duration)]
    pub status_batch: Duration,
    /// Most requests to the API server in flight at once (watches aside); more wait their turn.
    /// Each one in flight holds a connection (the client speaks HTTP/1.1).
    #[arg(long, env = "COCOON_API_MAX_IN_FLIGHT", default_value_t = defaults::API_MAX_IN_FLIGHT, value_parser = clap::value_parser!(u32).range(1..))]
    pub api_max_in_flight: u32,
    /// The dialect of vk-cocoon the provider's nodes speak: `auto` reads each node's from the
    /// node (its version and labels; needs `list`/`watch` on nodes), `seed`, `v0.2` or
    /// `current` forces one for every node.
    #[arg(long, env = "COCOON_DIALECT", default_value = defaults::DIALECT, value_parser = parse_dialect)]
    pub dialect: DialectFlag,
    /// The snapshot registry of cocoonstack providers (their `OCI_REGISTRY` or `EPOCH_URL`):
    /// `host[:port][/prefix]`, `http://…` for plain HTTP. The operator removes the snapshots
    /// it owns there once no VM needs them; the current dialect needs it to create pods.
    #[arg(long, env = "COCOON_REGISTRY")]
    pub registry: Option<String>,
    /// Docker `config.json` with the registry's credentials (mount a
    /// `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson` there).
    #[arg(long, env = "COCOON_REGISTRY_AUTH_FILE")]
    pub registry_auth_file: Option<std::path::PathBuf>,
}

/// `--dialect`: read from each node, or forced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DialectFlag(pub Option<Dialect>);

impl DialectFlag {
    /// The nodes as known before any is seen: a node not seen speaks seed unless forced.
    pub fn nodes(self) -> Nodes {
        Nodes::new(Dialect::Seed, self.0)
    }

    /// Whether each node's dialect is read from the node (not forced).
    pub fn auto(self) -> bool {
        self.0.is_none()
    }
}

fn parse_dialect(text: &str) -> Result<DialectFlag, String> {
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(DialectFlag(None));
    }
    Dialect::parse(text)
        .map(|d| DialectFlag(Some(d)))
        .ok_or_else(|| format!("{text:?} is no dialect: auto, seed, v0.2 or current"))
}

/// The defaults of `run`, written once: `--help` shows them and [`OperatorConfig::default`]
/// parses the same text with the same parser.
pub mod defaults {
    /// `--metrics-addr`.
    pub const METRICS_ADDR: &str = "0.0.0.0:8080";
    /// `--probe-addr`.
    pub const PROBE_ADDR: &str = "0.0.0.0:8081";
    /// `--resync`.
    pub const RESYNC: &str = "15s";
    /// `--lease-name`.
    pub const LEASE_NAME: &str = "cocoon-operator-leader";
    /// `--hibernate-timeout`.
    pub const HIBERNATE_TIMEOUT: &str = "3m";
    /// `--wake-timeout`.
    pub const WAKE_TIMEOUT: &str = "5m";
    /// `--deletion-cost`.
    pub const DELETION_COST: i32 = 1000;
    /// `--max-backoff`.
    pub const MAX_BACKOFF: &str = "60s";
    /// `--status-batch`.
    pub const STATUS_BATCH: &str = "1s";
    /// `--api-max-in-flight`.
    pub const API_MAX_IN_FLIGHT: u32 = 32;
    /// `--dialect`.
    pub const DIALECT: &str = "auto";
}

/// A default duration; every one is checked to parse by `every_default_parses`.
fn default_duration(text: &str) -> Duration {
    parse_duration(text).unwrap_or(Duration::ZERO)
}

impl Default for OperatorConfig {
    /// The flags' defaults, except the listen addresses: an operator embedded in a test or in
    /// `cocoon-dev dev` listens on loopback, on ports the system picks.
    fn default() -> Self {
        Self {
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            probe_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            resync: default_duration(defaults::RESYNC),
            actor_rest: true,
            leader_elect: false,
            lease_namespace: None,
            lease_name: defaults::LEASE_NAME.into(),
            identity: None,
            hibernate_timeout: default_duration(defaults::HIBERNATE_TIMEOUT),
            wake_timeout: default_duration(defaults::WAKE_TIMEOUT),
            deletion_cost: defaults::DELETION_COST,
            max_backoff: default_duration(defaults::MAX_BACKOFF),
            status_batch: default_duration(defaults::STATUS_BATCH),
            api_max_in_flight: defaults::API_MAX_IN_FLIGHT,
            dialect: DialectFlag::default(),
            registry: None,
            registry_auth_file: None,
        }
    }
}

/// A duration that must be more than zero (a zero resync period or backoff would be a hot loop).
fn parse_period(text: &str) -> Result<Duration, String> {
    let period = parse_duration(text)?;
    if period.is_zero() {
        return Err(format!("{text:?} must be more than zero"));
    }
    Ok(period)
}

impl OperatorConfig {
    /// The registry client, when one is configured.
    pub fn registry(&self) -> Result<Option<crate::registry::Registry>, crate::registry::Error> {
        let Some(address) = self.registry.clone().filter(|a| !a.trim().is_empty()) else {
            return Ok(None);
        };
        let config =
            crate::registry::RegistryConfig { address, auth_file: self.registry_auth_file.clone() };
        crate::registry::Registry::new(&config).map(Some)
    }

    pub fn hibernation_settings(&self) -> HibernationSettings {
        HibernationSettings {
            hibernate_timeout: self.hibernate_timeout,
            wake_timeout: self.wake_timeout,
            deletion_cost: self.deletion_cost,
            retry_after: self.resync.max(Duration::from_secs(1)) * 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Run {
        #[command(flatten)]
        config: OperatorConfig,
    }

    #[test]
    fn every_default_parses_and_the_flags_and_default_agree() {
        for text in [
            defaults::RESYNC,
            defaults::HIBERNATE_TIMEOUT,
            defaults::WAKE_TIMEOUT,
            defaults::MAX_BACKOFF,
            defaults::STATUS_BATCH,
        ] {
            assert!(parse_duration(text).is_ok(), "{text}");
        }
        let flags = Run::try_parse_from(["run"]).expect("defaults parse").config;
        let default = OperatorConfig::default();
        assert_eq!(flags.resync, default.resync);
        assert_eq!(flags.hibernate_timeout, Duration::from_secs(180));
        assert_eq!(flags.hibernation_settings(), default.hibernation_settings());
        assert_eq!(flags.max_backoff, default.max_backoff);
        assert_eq!(flags.status_batch, default.status_batch);
        assert_eq!(flags.api_max_in_flight, default.api_max_in_flight);
        assert_eq!(flags.lease_name, default.lease_name);
        assert_eq!(flags.metrics_addr.port(), 8080);
        assert_eq!(flags.dialect, default.dialect);
        assert!(flags.dialect.auto());
    }

    #[test]
    fn the_dialect_is_read_from_nodes_or_forced_and_nonsense_is_refused() {
        let parse =
            |v: &str| Run::try_parse_from(["run", "--dialect", v]).map(|r| r.config.dialect);
        assert_eq!(parse("current").unwrap(), DialectFlag(Some(Dialect::Current)));
        assert_eq!(parse("v0.2").unwrap(), DialectFlag(Some(Dialect::V02)));
        assert_eq!(parse("seed").unwrap().nodes().dialect("any"), Dialect::Seed);
        assert!(parse("AUTO").unwrap().auto());
        let error = parse("v9").expect_err("refused").to_string();
        assert!(error.contains("auto, seed, v0.2 or current"), "{error}");
    }

    #[test]
    fn a_zero_resync_period_or_backoff_is_refused_with_a_clear_error() {
        for flag in ["--resync", "--max-backoff"] {
            let error = Run::try_parse_from(["run", flag, "0s"]).err().expect("refused");
            assert!(error.to_string().contains("must be more than zero"), "{flag}: {error}");
        }
        assert!(Run::try_parse_from(["run", "--resync", "250ms"]).is_ok());
    }
}

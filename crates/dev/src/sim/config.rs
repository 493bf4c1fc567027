//! Simulator settings: node name, delays and fault injection, as clap flags with env vars.

use std::time::Duration;

use crate::duration::parse_duration;

use clap::Args;
use kube::core::{Expression, Selector};

use crate::contract::{self, Dialect};

/// Settings of the vk-cocoon simulator. Every flag is also an environment variable with the prefix
/// `COCOON_SIM_`. [`Default`] is meant for tests: zero delays and no faults; the CLI defaults are
/// small delays so a demo shows each transition.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Name of the virtual node to register and serve.
    #[arg(long = "node-name", env = "COCOON_SIM_NODE_NAME", default_value = contract::DEFAULT_NODE_NAME)]
    pub node_name: String,

    /// How many nodes to simulate: one named `--node-name`, or `<node-name>-1` … `-N`.
    #[arg(long, env = "COCOON_SIM_NODES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub nodes: u32,

    /// Time a VM takes to boot (or be adopted) after its pod is bound to the node.
    #[arg(long, env = "COCOON_SIM_CREATE_DELAY", default_value = "200ms", value_parser = parse_duration)]
    pub create_delay: Duration,

    /// Time a hibernation (snapshot and stop) takes.
    #[arg(long, env = "COCOON_SIM_HIBERNATE_DELAY", default_value = "200ms", value_parser = parse_duration)]
    pub hibernate_delay: Duration,

    /// Time a wake (restore from the snapshot) takes.
    #[arg(long, env = "COCOON_SIM_WAKE_DELAY", default_value = "200ms", value_parser = parse_duration)]
    pub wake_delay: Duration,

    /// Time the delete hook (snapshot per policy, stop the VM) takes before the pod is removed.
    #[arg(long, env = "COCOON_SIM_DELETE_DELAY", default_value = "200ms", value_parser = parse_duration)]
    pub delete_delay: Duration,

    /// Fault: latency added to every transition (create, hibernate, wake, delete).
    #[arg(long, env = "COCOON_SIM_EXTRA_LATENCY", default_value = "0s", value_parser = parse_duration)]
    pub extra_latency: Duration,

    /// Fault: probability (0.0 to 1.0) that creating a VM fails; the pod then goes Failed with
    /// reason ProviderFailed.
    #[arg(long, env = "COCOON_SIM_CREATE_FAILURE_RATE", default_value = "0", value_parser = parse_rate)]
    pub create_failure_rate: f64,

    /// Fault: pods whose hibernation never completes, as `name` (any namespace) or
    /// `namespace/name`; comma-separated.
    #[arg(long, env = "COCOON_SIM_NEVER_HIBERNATE", value_delimiter = ',')]
    pub never_hibernate: Vec<String>,

    /// Fault: label selector of pods whose hibernation never completes (equality-based:
    /// `k=v`, `k!=v`, `k`, `!k`, comma-separated, all must match).
    #[arg(long, env = "COCOON_SIM_NEVER_HIBERNATE_SELECTOR", value_parser = parse_selector)]
    pub never_hibernate_selector: Option<Selector>,

    /// Fault: pods the provider deletes right after hibernating them, as vk-cocoon v0.2.9
    /// sometimes does (PROVIDERS.md quirk 14: the `<vm>:hibernate` tag is pushed, then the pod is
    /// deleted as "VM gone"). `name` (any namespace) or `namespace/name`, comma-separated; each
    /// entry applies to one hibernation (repeat it for more). v0.2 and current dialects only.
    #[arg(long, env = "COCOON_SIM_VANISH_AFTER_HIBERNATE", value_delimiter = ',')]
    pub vanish_after_hibernate: Vec<String>,

    /// Fault: the first N forks fail, and vk-cocoon boots those VMs from the image instead
    /// (recorded as `image:<image>` in `cocoon.cis/snapshot-from`).
    #[arg(long, env = "COCOON_SIM_FORK_FAILURES", default_value_t = 0)]
    pub fork_failures: u32,

    /// Refuse to hibernate main VMs (VMs whose name ends in `-0`), as vk-cocoon v0.1.x does:
    /// the VM keeps running, a Warning Event says so.
    #[arg(long, env = "COCOON_SIM_REFUSE_MAIN_HIBERNATE")]
    pub refuse_main_hibernate: bool,

    /// The dialect of vk-cocoon to speak (`seed`, `v0.2`, `current`; PROVIDERS.md): its keys,
    /// its pod shapes, its snapshot store, its node labels and version.
    #[arg(long, env = "COCOON_SIM_DIALECT", default_value = "seed", value_parser = parse_dialect)]
    pub dialect: Dialect,

    /// Snapshot CPU class of the node (current dialect): labelled on the node; a pod selecting
    /// another class is refused.
    #[arg(long, env = "COCOON_SIM_CPU_CLASS")]
    pub cpu_class: Option<String>,

    /// OCI registry of the current dialect's snapshots (`http://127.0.0.1:5000`): `<vm>:hibernate`
    /// and `<vm>:latest` are pushed, probed and pulled there as small artefacts. Unset: the
    /// snapshots of v0.2 and current are kept in memory.
    #[arg(long, env = "COCOON_SIM_REGISTRY")]
    pub registry: Option<String>,

    /// Interval of the node heartbeat (the node's Lease in `kube-node-lease`).
    #[arg(long, env = "COCOON_SIM_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            node_name: contract::DEFAULT_NODE_NAME.to_string(),
            nodes: 1,
            create_delay: Duration::ZERO,
            hibernate_delay: Duration::ZERO,
            wake_delay: Duration::ZERO,
            delete_delay: Duration::ZERO,
            extra_latency: Duration::ZERO,
            create_failure_rate: 0.0,
            never_hibernate: Vec::new(),
            never_hibernate_selector: None,
            vanish_after_hibernate: Vec::new(),
            refuse_main_hibernate: false,
            fork_failures: 0,
            dialect: Dialect::Seed,
            cpu_class: None,
            registry: None,
            heartbeat_interval: Duration::from_secs(10),
        }
    }
}

impl SimConfig {
    /// Checks what clap's parsers cannot see when the config is built in code (tests, `dev`).
    pub fn validate(&self) -> Result<(), String> {
        if self.node_name.is_empty() {
            return Err("node name must not be empty".to_string());
        }
        parse_rate(&self.create_failure_rate.to_string())?;
        if self.heartbeat_interval.is_zero() {
            return Err("heartbeat interval must be positive".to_string());
        }
        Ok(())
    }

    /// The names of the nodes to simulate ([`SimConfig::nodes`]).
    pub fn fleet_names(&self) -> Vec<String> {
        match self.nodes {
            0 | 1 => vec![self.node_name.clone()],
            n => (1..=n).map(|i| format!("{}-{i}", self.node_name)).collect(),
        }
    }

    /// Whether the provider refuses to hibernate the VM of this name (slot 0, read from the
    /// name as vk-cocoon v0.1.x reads it; only the seed dialect does).
    pub fn refuses_hibernate(&self, vm_name: &str) -> bool {
        self.refuse_main_hibernate
            && !self.dialect.hibernates_main()
            && contract::seed_vm_slot(vm_name) == Some(0)
    }

    /// How many hibernations of this pod the provider follows by deleting it (quirk 14).
    pub fn vanishes_after_hibernate(&self, namespace: &str, name: &str) -> u32 {
        let matching =
            self.vanish_after_hibernate.iter().filter(|entry| match entry.split_once('/') {
                Some((ns, pod)) => ns == namespace && pod == name,
                None => entry.as_str() == name,
            });
        u32::try_from(matching.count()).unwrap_or(u32::MAX)
    }

    /// Whether the fault "hibernation never completes" applies to this pod.
    pub fn never_completes_hibernate(
        &self,
        namespace: &str,
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        use kube::core::SelectorExt;
        let by_name = self.never_hibernate.iter().any(|entry| match entry.split_once('/') {
            Some((ns, pod)) => ns == namespace && pod == name,
            None => entry == name,
        });
        by_name || self.never_hibernate_selector.as_ref().is_some_and(|s| s.matches(labels))
    }
}

fn parse_dialect(text: &str) -> Result<Dialect, String> {
    Dialect::parse(text).ok_or_else(|| format!("{text:?} is no dialect: seed, v0.2 or current"))
}

/// Parses a probability between 0.0 and 1.0.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("{text:?} must be between 0.0 and 1.0"));
    }
    Ok(rate)
}

/// Parses an equality-based label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated.
pub fn parse_selector(text: &str) -> Result<Selector, String> {
    let mut selector = Selector::default();
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let expression = if let Some((k, v)) = term.split_once("!=") {
            Expression::NotEqual(label_key(k)?, v.trim().to_string())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            Expression::Equal(label_key(k)?, v.trim().to_string())
        } else if let Some(k) = term.strip_prefix('!') {
            Expression::DoesNotExist(label_key(k)?)
        } else {
            Expression::Exists(label_key(term)?)
        };
        selector.extend(expression);
    }
    if selector.selects_all() {
        return Err(format!("{text:?} selects every pod; name at least one label"));
    }
    Ok(selector)
}

fn label_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    let valid = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && key.matches('/').count() <= 1;
    if valid { Ok(key.to_string()) } else { Err(format!("{key:?} is not a label key")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::collections::BTreeMap;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimConfig,
    }

    #[test]
    fn cli_defaults_are_small_delays_on_the_default_node() {
        let cli = Cli::try_parse_from(["sim"]).expect("defaults parse");
        assert_eq!(cli.sim.node_name, contract::DEFAULT_NODE_NAME);
        assert_eq!(cli.sim.create_delay, Duration::from_millis(200));
        assert_eq!(cli.sim.create_failure_rate, 0.0);
        assert!(cli.sim.validate().is_ok());
    }

    #[test]
    fn test_defaults_have_no_delays() {
        let config = SimConfig::default();
        assert_eq!(config.create_delay, Duration::ZERO);
        assert_eq!(config.delete_delay, Duration::ZERO);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn failure_rates_outside_zero_to_one_are_rejected() {
        assert!(Cli::try_parse_from(["sim", "--create-failure-rate", "1.5"]).is_err());
        assert!(Cli::try_parse_from(["sim", "--create-failure-rate", "x"]).is_err());
        let cli = Cli::try_parse_from(["sim", "--create-failure-rate", "1"]).expect("valid");
        assert_eq!(cli.sim.create_failure_rate, 1.0);
        let bad = SimConfig { create_failure_rate: -0.1, ..SimConfig::default() };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn never_hibernate_matches_names_namespaced_names_and_selectors() {
        let cli = Cli::try_parse_from([
            "sim",
            "--never-hibernate",
            "stuck,prod/frozen",
            "--never-hibernate-selector",
            "sim=stuck,!skip",
        ])
        .expect("valid");
        let none = BTreeMap::new();
        let stuck_label = BTreeMap::from([("sim".to_string(), "stuck".to_string())]);
        assert!(cli.sim.never_completes_hibernate("any", "stuck", &none));
        assert!(cli.sim.never_completes_hibernate("prod", "frozen", &none));
        assert!(!cli.sim.never_completes_hibernate("dev", "frozen", &none));
        assert!(cli.sim.never_completes_hibernate("dev", "other", &stuck_label));
        assert!(!cli.sim.never_completes_hibernate("dev", "other", &none));
    }

    #[test]
    fn a_fleet_is_named_after_the_node_name() {
        let one = SimConfig::default();
        assert_eq!(one.fleet_names(), vec!["cocoon-pool".to_string()]);
        let three = SimConfig { nodes: 3, node_name: "vk".into(), ..SimConfig::default() };
        assert_eq!(three.fleet_names(), vec!["vk-1", "vk-2", "vk-3"]);
    }

    #[test]
    fn vanish_after_hibernate_counts_each_matching_entry() {
        let cli =
            Cli::try_parse_from(["sim", "--vanish-after-hibernate", "demo-2,demo-2,prod/demo-1"])
                .expect("valid");
        assert_eq!(cli.sim.vanishes_after_hibernate("any", "demo-2"), 2);
        assert_eq!(cli.sim.vanishes_after_hibernate("prod", "demo-1"), 1);
        assert_eq!(cli.sim.vanishes_after_hibernate("dev", "demo-1"), 0);
        assert_eq!(cli.sim.vanishes_after_hibernate("prod", "demo-0"), 0);
    }

    #[test]
    fn selectors_that_select_everything_or_bad_keys_are_rejected() {
        assert!(parse_selector("").is_err());
        assert!(parse_selector("a b=c").is_err());
        assert!(parse_selector("a/b/c").is_err());
        assert!(parse_selector("app!=x").is_ok());
    }
}

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

    /// How many nodes to simulate: one named `--node-name`, or `<node-name>-1` … `-N`, all of
    /// one dialect, CPU class and pool. `--node` describes a fleet node by node instead.
    #[arg(long, env = "COCOON_SIM_NODES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub nodes: u32,

    /// One node of a mixed fleet: `NAME[,dialect=D][,cpu-class=C][,pool=P]`, repeated for each
    /// node (in the environment: `;`-separated). What a node does not say comes from
    /// `--dialect`, `--cpu-class` and `--pool`. Given, it replaces `--node-name` and `--nodes`.
    #[arg(long = "node", env = "COCOON_SIM_NODE", value_delimiter = ';', value_parser = parse_node)]
    pub fleet: Vec<NodeShape>,

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

    /// Pool of the node (v0.2 and current: the `cocoonstack.io/pool` label a set's
    /// `nodeSelector` can pick; the seed's nodes have no pool).
    #[arg(long, env = "COCOON_SIM_POOL", default_value = "default")]
    pub pool: String,

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
            fleet: Vec::new(),
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
            pool: "default".to_string(),
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
        if self.pool.is_empty() {
            return Err("pool must not be empty".to_string());
        }
        let mut seen = std::collections::BTreeSet::new();
        for node in &self.fleet {
            if !seen.insert(node.name.as_str()) {
                return Err(format!("node {} is named twice", node.name));
            }
        }
        Ok(())
    }

    /// The names of the nodes to simulate.
    pub fn fleet_names(&self) -> Vec<String> {
        self.node_configs().into_iter().map(|c| c.node_name).collect()
    }

    /// One config per node to simulate: the `--node` entries, each with what it says and the
    /// rest of this config; else `--nodes` of this config's shape.
    pub fn node_configs(&self) -> Vec<SimConfig> {
        let single = |name: String| SimConfig {
            node_name: name,
            nodes: 1,
            fleet: Vec::new(),
            ..self.clone()
        };
        if !self.fleet.is_empty() {
            return self
                .fleet
                .iter()
                .map(|node| SimConfig {
                    dialect: node.dialect.unwrap_or(self.dialect),
                    cpu_class: node.cpu_class.clone().or_else(|| self.cpu_class.clone()),
                    pool: node.pool.clone().unwrap_or_else(|| self.pool.clone()),
                    ..single(node.name.clone())
                })
                .collect();
        }
        match self.nodes {
            0 | 1 => vec![single(self.node_name.clone())],
            n => (1..=n).map(|i| single(format!("{}-{i}", self.node_name))).collect(),
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

/// One node of a mixed fleet (`--node`): its name and what sets it apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeShape {
    /// The node's name.
    pub name: String,
    /// Its dialect (else `--dialect`).
    pub dialect: Option<Dialect>,
    /// Its snapshot CPU class (current only; else `--cpu-class`).
    pub cpu_class: Option<String>,
    /// Its pool (v0.2 and current; else `--pool`).
    pub pool: Option<String>,
}

/// Parses `NAME[,dialect=D][,cpu-class=C][,pool=P]`.
pub fn parse_node(text: &str) -> Result<NodeShape, String> {
    let mut parts = text.split(',').map(str::trim);
    let name = parts.next().unwrap_or_default();
    let dns_label = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c))
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.']);
    if !dns_label {
        return Err(format!("{name:?} is no node name (lower-case letters, digits, '-', '.')"));
    }
    let mut node = NodeShape { name: name.to_string(), dialect: None, cpu_class: None, pool: None };
    for part in parts.filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!("{part:?} in {text:?}: expected key=value"));
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("{key} of node {name} is empty"));
        }
        match key.trim() {
            "dialect" => node.dialect = Some(parse_dialect(value)?),
            "cpu-class" => node.cpu_class = Some(value.to_string()),
            "pool" => node.pool = Some(value.to_string()),
            other => {
                return Err(format!(
                    "{other:?} in {text:?}: a node says its dialect, cpu-class or pool"
                ));
            }
        }
    }
    if node.cpu_class.is_some() && node.dialect.is_some_and(|d| d != Dialect::Current) {
        return Err(format!("node {name}: only a current node has a snapshot CPU class"));
    }
    if node.pool.is_some() && node.dialect == Some(Dialect::Seed) {
        return Err(format!("node {name}: a seed node has no pool"));
    }
    Ok(node)
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
    fn a_mixed_fleet_is_described_node_by_node_and_the_rest_comes_from_the_flags() {
        let cli = Cli::try_parse_from([
            "sim",
            "--dialect",
            "current",
            "--cpu-class",
            "zen4",
            "--node",
            "a",
            "--node",
            "b,cpu-class=icelake,pool=gpu",
            "--node",
            "c,dialect=v0.2",
            "--node",
            "old,dialect=seed",
        ])
        .expect("valid");
        assert!(cli.sim.validate().is_ok());
        let nodes = cli.sim.node_configs();
        let shape: Vec<_> = nodes
            .iter()
            .map(|c| (c.node_name.as_str(), c.dialect, c.cpu_class.as_deref(), c.pool.as_str()))
            .collect();
        assert_eq!(
            shape,
            vec![
                ("a", Dialect::Current, Some("zen4"), "default"),
                ("b", Dialect::Current, Some("icelake"), "gpu"),
                ("c", Dialect::V02, Some("zen4"), "default"),
                ("old", Dialect::Seed, Some("zen4"), "default"),
            ]
        );
        assert!(nodes.iter().all(|c| c.fleet.is_empty() && c.nodes == 1));
        assert_eq!(cli.sim.fleet_names(), vec!["a", "b", "c", "old"]);
    }

    #[test]
    fn a_node_that_contradicts_itself_or_is_named_twice_is_refused() {
        for bad in [
            "",
            "Upper",
            "a,colour=red",
            "a,pool",
            "a,pool=",
            "a,dialect=v9",
            "a,dialect=v0.2,cpu-class=zen4",
            "a,dialect=seed,pool=gpu",
        ] {
            assert!(parse_node(bad).is_err(), "{bad:?} is refused");
        }
        let twice =
            Cli::try_parse_from(["sim", "--node", "a", "--node", "a,pool=x"]).expect("parses");
        assert!(twice.sim.validate().unwrap_err().contains("named twice"));
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

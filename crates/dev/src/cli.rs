//! Command line of `cocoon-dev`: `dev`, `simulate`, `chaos`, `bench` and `cluster`. Every flag is also an env var.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use cocoon_operator::cli::BoxResult;

/// Development tools of cocoon-operator: local all-in-one, vk-cocoon simulator, control plane.
#[derive(Parser, Debug)]
#[command(name = "cocoon-dev", version = cocoon_operator::VERSION, about)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "COCOON_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Local all-in-one: control plane, CRDs, simulator, operator and the examples.
    Dev(crate::dev::DevArgs),
    /// Run the vk-cocoon simulator (a virtual node that fakes VMs).
    Simulate(crate::sim::SimConfig),
    /// SIGKILL the operator again and again under a random workload, then check that
    /// everything converged and nothing was lost (the `make chaos` run).
    Chaos(crate::chaos::ChaosArgs),
    /// Run the real vk-cocoon (built from ../shared/providers) against a fake hypervisor CLI,
    /// drive every documented workflow on it and on the simulator, and compare (the
    /// `make conformance` run); writes `report.json`.
    Conformance(crate::conformance::ConformanceArgs),
    /// Measure operators side by side on fresh local control planes, counted at the API server
    /// (the `make bench` run); writes `report.json` and `report.svg`.
    Bench(crate::bench::BenchArgs),
    /// Write the operator's OCI image (one layer: a static binary, /etc/passwd, /tmp; non-root)
    /// as an OCI image layout and an oci-archive tarball, without a container engine.
    Image(crate::image::ImageArgs),
    /// Run a local control plane in the foreground and write its kubeconfig.
    Cluster {
        /// Where to write the admin kubeconfig.
        #[arg(long, env = "COCOON_CLUSTER_KUBECONFIG", default_value = "target/dev/kubeconfig")]
        kubeconfig: PathBuf,
        /// Keep component logs and data in this directory.
        #[arg(long, env = "COCOON_CLUSTER_WORK_DIR")]
        work_dir: Option<PathBuf>,
    },
}

impl Cli {
    /// Where the logs go when not to stderr: `dev` prints its own progress, so its logs (the
    /// operator's, the simulator's, the control plane's) go to a file beside its kubeconfig,
    /// unless `--verbose`.
    pub fn log_file(&self) -> Option<PathBuf> {
        match &self.command {
            Command::Dev(args) if !args.verbose => Some(args.log_file()),
            _ => None,
        }
    }
}

/// Opens (appends to) a log file, creating its directory.
pub fn open_log(path: &std::path::Path) -> std::io::Result<std::sync::Mutex<std::fs::File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    Ok(std::sync::Mutex::new(file))
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> BoxResult {
    match cli.command {
        Command::Dev(args) => crate::dev::run(args).await?,
        Command::Simulate(config) => {
            let client = kube::Client::try_default().await?;
            crate::sim::run(client, config).await?;
        }
        Command::Chaos(args) => {
            let report = crate::chaos::run(args).await?;
            println!("{report}");
            if !report.violations.is_empty() {
                return Err(format!("{} invariant(s) broken", report.violations.len()).into());
            }
        }
        Command::Conformance(args) => {
            let report = crate::conformance::run(args).await?;
            println!("{report}");
            if !report.passed {
                return Err("conformance failed".into());
            }
        }
        Command::Bench(args) => {
            let report = crate::bench::run(args).await?;
            println!("{}", serde_json::to_string_pretty(&report.targets)?);
        }
        Command::Image(args) => {
            let built = crate::image::write(&args)?;
            println!("{built}");
        }
        Command::Cluster { kubeconfig, work_dir } => {
            let opts = crate::devcluster::DevClusterOptions { work_dir, ..Default::default() };
            crate::devcluster::run_foreground(opts, &kubeconfig).await?;
        }
    }
    Ok(())
}

//! Command line: `run`, `crd`, `simulate`, `dev` and `cluster`. Every flag is also an env var.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::OperatorConfig;

/// Kubernetes operator for VM-backed pods (Hibernation, CocoonSet).
#[derive(Parser, Debug)]
#[command(name = "cocoon-operator", version, about)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "COCOON_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator (kubeconfig from KUBECONFIG/~/.kube/config, or in-cluster).
    Run(OperatorConfig),
    /// Print the CRDs as YAML, or write them into a directory.
    Crd {
        /// Write `crd.yaml` and `cocoonset-crd.yaml` into this directory instead of printing.
        #[arg(long, env = "COCOON_CRD_WRITE")]
        write: Option<PathBuf>,
    },
    /// Run the vk-cocoon simulator (a virtual node that fakes VMs).
    Simulate(crate::sim::SimConfig),
    /// Local all-in-one: control plane, CRDs, simulator, operator and the examples.
    Dev(crate::dev::DevArgs),
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

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow_like::Result {
    match cli.command {
        Command::Run(config) => {
            let kube_config = kube::Config::infer().await?;
            crate::operator::run_until_signal(kube_config, config).await?;
        }
        Command::Crd { write } => match write {
            None => {
                for (_, body) in crate::api::crd_documents() {
                    print!("---\n{body}");
                }
            }
            Some(dir) => {
                std::fs::create_dir_all(&dir)?;
                for (file, body) in crate::api::crd_documents() {
                    let path = dir.join(file);
                    std::fs::write(&path, body)?;
                    println!("wrote {}", path.display());
                }
            }
        },
        Command::Simulate(config) => {
            let client = kube::Client::try_default().await?;
            crate::sim::run(client, config).await?;
        }
        Command::Dev(args) => crate::dev::run(args).await?,
        Command::Cluster { kubeconfig, work_dir } => {
            let opts = crate::devcluster::DevClusterOptions { work_dir, ..Default::default() };
            crate::devcluster::run_foreground(opts, &kubeconfig).await?;
        }
    }
    Ok(())
}

/// A boxed error for the binary's top level: every subcommand's error type converts into it.
pub mod anyhow_like {
    pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;
    pub type Result<T = ()> = std::result::Result<T, Error>;
}

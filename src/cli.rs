//! Command line of the production binary: `run` and `crd`. Every flag is also an env var. The
//! development commands (`dev`, `simulate`, `cluster`) are in `cocoon-dev`, never in the image.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::OperatorConfig;

/// Kubernetes operator for VM-backed pods (Hibernation, CocoonSet).
#[derive(Parser, Debug)]
#[command(name = "cocoon-operator", version = crate::VERSION, about)]
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
    /// Run the operator (kubeconfig from KUBECONFIG/~/.kube/config, or in-cluster).
    Run(Box<OperatorConfig>),
    /// Print the CRDs as YAML, or write them into a directory.
    Crd {
        /// Write `crd.yaml` and `cocoonset-crd.yaml` into this directory instead of printing.
        #[arg(long, env = "COCOON_CRD_WRITE")]
        write: Option<PathBuf>,
    },
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> BoxResult {
    match cli.command {
        Command::Run(config) => {
            let kube_config = kube::Config::infer().await?;
            crate::operator::run_until_signal(kube_config, *config).await?;
        }
        Command::Crd { write } => write_crds(write.as_deref())?,
    }
    Ok(())
}

/// Prints the CRDs, or writes them into `dir`.
pub fn write_crds(dir: Option<&std::path::Path>) -> BoxResult {
    match dir {
        None => {
            for (_, body) in crate::api::crd_documents() {
                print!("---\n{body}");
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            for (file, body) in crate::api::crd_documents() {
                let path = dir.join(file);
                std::fs::write(&path, body)?;
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

/// A boxed error for a binary's top level: every subcommand's error type converts into it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
/// The result of a subcommand.
pub type BoxResult<T = ()> = std::result::Result<T, BoxError>;

//! `kubectl-cocoon`: the kubectl plugin (`kubectl cocoon status|hibernate|wake|suspend|resume|
//! scale|touch`). It sees a namespace's sets and Hibernations as a tree, hibernates and wakes a
//! pod, suspends, resumes and scales a set. It is a client of the user's kubeconfig like kubectl
//! itself (`-n`, `--context`, `--kubeconfig`), built on the API types of `cocoon-core`, never on
//! the operator.
#![forbid(unsafe_code)]

pub mod target;
pub mod tree;
pub mod verbs;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use cocoon_core::api::HibernationAction;

use target::Target;

/// The version: the crate version and the git commit it was built from.
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("COCOON_GIT_COMMIT"), ")");

/// A failure, already worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

type Result<T, E = PluginError> = std::result::Result<T, E>;

/// Groups of VM pods on Kubernetes: CocoonSets and Hibernations, as kubectl does not show them.
#[derive(Parser, Debug)]
#[command(name = "kubectl-cocoon", bin_name = "kubectl cocoon", version = VERSION, about)]
pub struct PluginCli {
    /// Namespace (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig file (default: KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Colour the phases: auto (when stdout is a terminal and NO_COLOR is unset), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// When to colour the output.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    /// When stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Sets (agents with slot, role, phase, VM, IP, fork source; toolboxes) and Hibernations as a tree.
    Status {
        /// Only this CocoonSet.
        set: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Hibernate a pod's VM: create (or flip) the Hibernation that names it.
    Hibernate(PodArgs),
    /// Wake a pod's VM: flip (or create) the Hibernation that names it.
    Wake(PodArgs),
    /// Suspend a CocoonSet (hibernate every VM).
    Suspend(SetArgs),
    /// Resume a suspended CocoonSet (also stamps activity, which wakes an idle-suspended set).
    Resume(SetArgs),
    /// Stamp activity on a CocoonSet now (`cocoon.cis/last-activity`): resets its idle timer and
    /// resumes it if idle auto-suspend suspended it.
    Touch {
        /// The CocoonSet.
        set: String,
    },
    /// Move a CocoonSet's VMs to another node (sets `spec.nodeName`): hibernated into the
    /// registry where they are, recreated on NODE, restored there.
    Migrate {
        /// The CocoonSet.
        set: String,
        /// The node to move to.
        #[arg(long = "to")]
        to: String,
        /// Follow the set until its VMs run on NODE (or the move is refused).
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Set the number of sub-agents of a CocoonSet (its scale subresource, as `kubectl scale`).
    Scale {
        /// The CocoonSet.
        set: String,
        /// Sub-agents wanted (the main agent is always there).
        replicas: i32,
    },
}

/// Arguments of `hibernate` and `wake`.
#[derive(clap::Args, Debug)]
pub struct PodArgs {
    /// The pod whose VM to hibernate or wake.
    pub pod: String,
    /// Name of the Hibernation to create when none names the pod yet (default: the pod's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Follow the Hibernation until the round is done (or failed).
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Arguments of `suspend` and `resume`.
#[derive(clap::Args, Debug)]
pub struct SetArgs {
    /// The CocoonSet.
    pub set: String,
    /// Follow the set until it is Suspended (or Running again).
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs one plugin command, writing its output to stdout.
pub async fn run(cli: PluginCli) -> Result<()> {
    let target = Target::connect(&cli).await?;
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    match cli.command {
        PluginCommand::Status { set, all_namespaces } => {
            print!("{}", verbs::status(&target, set.as_deref(), all_namespaces, color).await?);
        }
        PluginCommand::Hibernate(args) => {
            verbs::pod_round(&target, args, HibernationAction::Hibernate).await?
        }
        PluginCommand::Wake(args) => {
            verbs::pod_round(&target, args, HibernationAction::Wake).await?
        }
        PluginCommand::Suspend(args) => verbs::suspend(&target, args, true).await?,
        PluginCommand::Resume(args) => verbs::suspend(&target, args, false).await?,
        PluginCommand::Migrate { set, to, wait, timeout } => {
            verbs::migrate(&target, &set, &to, wait.then_some(timeout)).await?
        }
        PluginCommand::Scale { set, replicas } => verbs::scale(&target, &set, replicas).await?,
        PluginCommand::Touch { set } => {
            verbs::touch(&target, &set).await?;
            println!("cocoonset/{set} touched");
        }
    }
    Ok(())
}

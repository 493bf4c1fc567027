//! Starts a local Kubernetes control plane for tests, `dev` and benchmarks.
//!
//! [`DevCluster::start`] runs etcd, kube-apiserver and (optionally) kube-controller-manager on
//! loopback ports with a throw-away PKI, waits until the API server is ready, and tears
//! everything down on drop. The components also die when this process dies without dropping
//! the cluster (see [`process`]). [`run_foreground`] backs `cocoon-operator cluster`.

mod binaries;
mod certs;
mod cluster;
mod components;
mod foreground;
mod kubeconfig;
mod process;
mod workdir;

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

pub use binaries::{BIN_DIR_ENV, Binaries};
pub use cluster::DevCluster;
pub use components::{CONTROLLERS, SERVICE_ACCOUNT_ISSUER, SERVICE_CLUSTER_IP_RANGE};
pub use foreground::run_foreground;
pub use kubeconfig::{CONTEXT, client_from_kubeconfig};
pub use process::{Supervised, free_ports};
pub use workdir::TMPDIR_ENV;

/// Default time [`DevCluster::start`] waits for the control plane to become ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(90);

/// How to start a [`DevCluster`].
#[derive(Clone, Debug)]
pub struct DevClusterOptions {
    /// Directory holding `etcd`, `kube-apiserver` and `kube-controller-manager`. When `None`:
    /// `$COCOON_CONTROL_PLANE_BIN`, else the output of `tests/control-plane/build.sh`.
    pub binaries_dir: Option<PathBuf>,
    /// Run kube-controller-manager (namespace deletion, garbage collection, default
    /// ServiceAccounts). Without it the ServiceAccount admission plugin is disabled.
    pub controller_manager: bool,
    /// Run kube-scheduler: a pod that names no node is bound by the real scheduler to a node
    /// that fits it (selectors, affinity, taints), as in a cluster.
    pub scheduler: bool,
    /// Write an audit log of every request at `Metadata` level; see [`DevCluster::audit_log_path`].
    pub audit_log: bool,
    /// Where certificates, kubeconfigs, logs and etcd data go. `None`: a temporary directory
    /// (under `$COCOON_DEVCLUSTER_TMPDIR`, else `/dev/shm` when it is a tmpfs of at least 1 GiB,
    /// else `$TMPDIR`) removed on drop. A given directory is kept (it holds the component logs).
    pub work_dir: Option<PathBuf>,
    /// Also write the admin kubeconfig here (removed again when the cluster stops).
    pub kubeconfig_out: Option<PathBuf>,
    /// How long to wait for the control plane to become ready.
    pub ready_timeout: Duration,
}

impl Default for DevClusterOptions {
    fn default() -> Self {
        Self {
            binaries_dir: None,
            controller_manager: true,
            scheduler: false,
            audit_log: false,
            work_dir: None,
            kubeconfig_out: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }
}

/// Why a dev cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control-plane binaries are missing or could not be built.
    #[error("control-plane binaries: {0}")]
    Binaries(String),
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Generating the PKI failed.
    #[error("generate certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    /// Serialising a kubeconfig failed.
    #[error("render kubeconfig: {0}")]
    RenderKubeconfig(#[source] serde_yaml::Error),
    /// Loading a kubeconfig failed.
    #[error("load kubeconfig: {0}")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    /// Building a kube client failed.
    #[error("build kube client: {0}")]
    Client(#[source] kube::Error),
    /// A component exited while the cluster was starting.
    #[error("{component} exited ({status}) during start-up; last lines of {log}:\n{tail}")]
    Exited { component: &'static str, status: ExitStatus, log: String, tail: String },
    /// The cluster did not reach a readiness step in time.
    #[error(
        "{step} not reached within {waited:?} (last error: {last_error}); last lines of {component} log {log}:\n{tail}"
    )]
    NotReady {
        step: &'static str,
        waited: Duration,
        last_error: String,
        component: &'static str,
        log: String,
        tail: String,
    },
}

impl Error {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}

/// Result of dev-cluster operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

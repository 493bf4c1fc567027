//! Errors of the simulator.

/// What can go wrong while simulating vk-cocoon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed; `action` says which.
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The settings are unusable (e.g. a failure rate above 1.0).
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// The snapshot ConfigMap kept changing under us.
    #[error("snapshot ConfigMap {namespace}/{name}: gave up after {attempts} conflicting attempts")]
    SnapshotContention { namespace: String, name: String, attempts: u32 },
    /// A snapshot entry write failed (the message of the shared write that carried it).
    #[error("snapshot entries in {namespace}: {detail}")]
    Snapshot { namespace: String, detail: String },
    /// The snapshot registry failed or refused (cocoonstack dialects).
    #[error("registry: {0}")]
    Registry(String),
    /// The provider refused the pod (its words are on the pod); it retries later, as
    /// virtual-kubelet retries a failed create.
    #[error("refused: {0}")]
    Refused(String),
    /// Listening for Ctrl-C or SIGTERM failed.
    #[error("cannot listen for shutdown signals: {0}")]
    Signal(#[source] std::io::Error),
}

/// Result with the simulator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a kube error with what we were doing.
    pub fn api(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Api { action: action.into(), source: Box::new(source) }
    }

    /// Whether the API server answered 404 (the object is gone, which often means "done").
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { source, .. } if status_code(source) == Some(404))
    }
}

/// HTTP status of an API error, if the server answered.
pub fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

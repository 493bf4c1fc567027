//! Errors of API requests, with a bounded category for metrics and retry decisions.

use crate::plan::{Outcome, RejectKind};

/// A failed API request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server answered with an error status.
    #[error("{verb} {what}: {source}")]
    Api {
        verb: &'static str,
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// Bounded error categories (metric labels, retry policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCategory {
    /// 409: someone else wrote first; re-read and try again.
    Conflict,
    /// 404.
    NotFound,
    /// 400/422: the request itself is wrong; retrying the same request cannot help.
    Invalid,
    /// 401/403: RBAC or credentials.
    Forbidden,
    /// 5xx, 429 or a transport failure: transient.
    Transient,
}

impl ErrorCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conflict => "conflict",
            Self::NotFound => "not_found",
            Self::Invalid => "invalid",
            Self::Forbidden => "forbidden",
            Self::Transient => "transient",
        }
    }
}

impl Error {
    pub fn api(verb: &'static str, what: impl Into<String>, source: kube::Error) -> Self {
        Self::Api { verb, what: what.into(), source }
    }

    /// HTTP status code of an API answer, if any.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Api { source: kube::Error::Api(status), .. } => Some(status.code),
            _ => None,
        }
    }

    /// The API server's reason (e.g. `AlreadyExists`), if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Api { source: kube::Error::Api(status), .. } => Some(status.reason.as_str()),
            _ => None,
        }
    }

    pub fn category(&self) -> ErrorCategory {
        match self.code() {
            Some(409) => ErrorCategory::Conflict,
            Some(404) => ErrorCategory::NotFound,
            Some(400 | 422) => ErrorCategory::Invalid,
            Some(401 | 403) => ErrorCategory::Forbidden,
            // Another status, or no answer at all (transport).
            Some(_) | None => ErrorCategory::Transient,
        }
    }

    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(409) && self.reason() == Some("AlreadyExists")
    }
}

impl ErrorCategory {
    /// The category of an outcome that is a failure of some kind; `None` for success and for
    /// `AlreadyExists` (an answer the core handles, not an error).
    pub fn of(outcome: &Outcome) -> Option<Self> {
        match outcome {
            Outcome::Done | Outcome::AlreadyExists => None,
            Outcome::NotFound => Some(Self::NotFound),
            Outcome::Conflict => Some(Self::Conflict),
            Outcome::Rejected { kind: RejectKind::Invalid, .. } => Some(Self::Invalid),
            Outcome::Rejected { kind: RejectKind::Forbidden, .. } => Some(Self::Forbidden),
            Outcome::Failed { .. } => Some(Self::Transient),
        }
    }
}

/// Translates the answer to a request into the core's [`Outcome`].
pub fn outcome(result: Result<()>) -> Outcome {
    let Err(e) = result else { return Outcome::Done };
    if e.is_already_exists() {
        return Outcome::AlreadyExists;
    }
    let detail = e.to_string();
    match e.category() {
        ErrorCategory::Conflict => Outcome::Conflict,
        ErrorCategory::NotFound => Outcome::NotFound,
        ErrorCategory::Invalid => Outcome::Rejected { kind: RejectKind::Invalid, detail },
        ErrorCategory::Forbidden => Outcome::Rejected { kind: RejectKind::Forbidden, detail },
        ErrorCategory::Transient => Outcome::Failed { detail },
    }
}

/// Result of API requests.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The only module that talks to the API server: the counted client, writes, events, watches
//! and the leader Lease.

pub mod client;
pub mod error;
pub mod events;
pub mod leader;
pub mod watch;
pub mod watched_pod;
pub mod writer;

pub use error::{Error, ErrorCategory, outcome};
pub use writer::Writer;

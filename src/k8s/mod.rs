//! The only module that talks to the API server: the counted client, writes, events, watches
//! and the leader Lease.

pub mod client;
pub mod error;
pub mod leader;
pub mod snapshot_queue;
pub mod watch;
pub mod watched_pod;
pub mod writer;

pub use error::{Error, ErrorCategory, outcome};
pub use writer::Writer;

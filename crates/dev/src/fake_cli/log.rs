//! The fake hypervisor's call log (`calls.jsonl` in its state directory): one JSON line per
//! call of any of its programs, so that tests assert on what the provider did.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// RFC 3339 with fractions.
    pub at: String,
    /// `cocoon`, `sudo` (what it did not hand to `cocoon`), `sshpass`.
    pub program: String,
    pub argv: Vec<String>,
    pub exit: i32,
    pub millis: u64,
}

impl Call {
    /// The subcommand words (`vm clone`, `snapshot save`, ...): the argv up to the first flag
    /// or operand, at most two words.
    pub fn command(&self) -> String {
        self.argv
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .take(2)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Appends `call` to the log in `dir` (one write of one line: calls from concurrent processes
/// do not interleave).
pub fn append(dir: &Path, call: &Call) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(call).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join("calls.jsonl"))?;
    f.write_all(&line)
}

/// Every call logged in `dir` so far.
pub fn read(dir: &Path) -> Vec<Call> {
    std::fs::read_to_string(dir.join("calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

//! The fault plan of the fake hypervisor (`faults.json` in its state directory, edited by a
//! test harness between steps): per-command delays, failing commands by pattern, VMs whose
//! DHCP lease never comes.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Faults to inject.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Delays, each for the calls whose argv (joined by spaces) matches its pattern.
    pub delays: Vec<Delay>,
    /// Failures, each for the calls whose argv matches its pattern.
    pub failures: Vec<Failure>,
    /// VM names (patterns) whose lease is never written: the provider waits for an address.
    pub no_lease: Vec<String>,
    /// `vm status --event` reports a VM's removal this long after it (0: at its next poll,
    /// as the real CLI does; vk-cocoon v0.2.9 may then take its own hibernation for a VM that
    /// died, PROVIDERS.md §6.14).
    pub deleted_event_delay_ms: u64,
}

/// A delay before a call is carried out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delay {
    /// `*` matches any run of characters; the pattern matches the whole joined argv.
    pub pattern: String,
    pub millis: u64,
}

/// A call that fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub pattern: String,
    /// Printed on stderr.
    #[serde(default = "injected")]
    pub message: String,
    /// Exit code.
    #[serde(default = "one")]
    pub code: i32,
}

fn injected() -> String {
    "fake-cocoon: injected failure".into()
}

fn one() -> i32 {
    1
}

impl Faults {
    /// The plan in `dir` (none when there is no file).
    pub fn load(dir: &Path) -> Self {
        std::fs::read(dir.join("faults.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the plan into `dir` (atomically: a call reads the old or the new one).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("faults.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(tmp, dir.join("faults.json"))
    }

    /// How long a call with this argv waits first.
    pub fn delay(&self, argv: &str) -> Duration {
        let ms = self.delays.iter().filter(|d| glob(&d.pattern, argv)).map(|d| d.millis).max();
        Duration::from_millis(ms.unwrap_or(0))
    }

    /// The failure of a call with this argv, if one is planned.
    pub fn failure(&self, argv: &str) -> Option<&Failure> {
        self.failures.iter().find(|f| glob(&f.pattern, argv))
    }

    /// Whether VM `name` gets no lease.
    pub fn withholds_lease(&self, name: &str) -> bool {
        self.no_lease.iter().any(|p| glob(p, name))
    }
}

/// Whether `text` matches `pattern` as a whole, `*` matching any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_whole_argv_with_stars_for_any_run() {
        assert!(glob("snapshot save --name *-fork *", "snapshot save --name vk-a-1-fork 00ab"));
        assert!(!glob("snapshot save --name *-fork *", "snapshot save --name vk-a-1-suspend 00ab"));
        assert!(glob("vm clone*", "vm clone --cold --name x img"));
        assert!(glob("vk-*-0", "vk-ns-demo-0"));
        assert!(!glob("vk-*-0", "vk-ns-demo-10x"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
        assert!(glob("a*b*c", "a-b-b-c") && !glob("a*b*c", "a-c"));
    }

    #[test]
    fn the_plan_is_read_from_its_file_and_the_longest_matching_delay_wins() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Faults::load(dir.path()), Faults::default(), "no file: no faults");
        let plan = Faults {
            delays: vec![
                Delay { pattern: "vm clone*".into(), millis: 100 },
                Delay { pattern: "vm clone --cold*".into(), millis: 300 },
            ],
            failures: vec![Failure { pattern: "vm rm*".into(), message: "no".into(), code: 2 }],
            no_lease: vec!["vk-*-2".into()],
            deleted_event_delay_ms: 0,
        };
        plan.save(dir.path()).unwrap();
        let read = Faults::load(dir.path());
        assert_eq!(read.delay("vm clone --cold --name x y"), Duration::from_millis(300));
        assert_eq!(read.failure("vm rm --force id").map(|f| f.code), Some(2));
        assert!(read.withholds_lease("vk-ns-a-2") && !read.withholds_lease("vk-ns-a-1"));
    }
}

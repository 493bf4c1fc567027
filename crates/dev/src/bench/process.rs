//! The operator under test as a process: ours (`cocoon-operator run`) or any other command,
//! leading its own process group, so that the figures count every process of the group (a
//! wrapper script or `go run` starts the operator as a child) and stopping it stops them all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::BoxError;
use crate::devcluster::Supervised;

/// Which operator a column runs.
#[derive(Clone, Debug)]
pub(crate) enum Contender {
    Ours(PathBuf),
    External {
        command: String,
        crds: Vec<PathBuf>,
        /// Files of the operator's own manifests whose roles it runs under (none: the bench
        /// binds cluster-admin and says so).
        rbac: Vec<PathBuf>,
        /// The API it serves, where the driver creates the workload.
        api: super::api::Flavour,
    },
}

/// The operator under test, as a process leading its own process group: the figures count
/// every process of the group (a wrapper script or `go run` starts the operator as a child),
/// and stopping it stops them all. A reaper outside the group kills it if the bench dies
/// without stopping it (a signal skips every drop).
pub(crate) struct OperatorProcess {
    pub child: tokio::process::Child,
    /// The leader's pid, which is also the group's id.
    pub pid: u32,
    stopped: bool,
    reaper: Option<Supervised>,
}

impl OperatorProcess {
    /// Starts the operator; ours gets `extra` flags after its own. Another operator's command
    /// finds the snapshot registry of the run (`host:port`, plain HTTP on loopback) in
    /// `BENCH_REGISTRY`, e.g. `OCI_REGISTRY=$BENCH_REGISTRY cocoon-operator …`.
    pub fn start_with(
        subject: &Contender,
        kubeconfig: &Path,
        log: &Path,
        extra: &[&str],
        registry: Option<&str>,
    ) -> Result<Self, BoxError> {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut command = match subject {
            Contender::Ours(bin) => {
                let mut c = tokio::process::Command::new(bin);
                c.args(["run", "--metrics-addr", "127.0.0.1:0", "--probe-addr", "127.0.0.1:0"]);
                c.args(extra);
                c
            }
            Contender::External { command, .. } => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(format!("exec {command}"));
                c
            }
        };
        if let Some(address) = registry {
            let host = address.trim_start_matches("http://").trim_start_matches("https://");
            command.env("BENCH_REGISTRY", host);
        }
        let child = command
            .env("KUBECONFIG", kubeconfig)
            // The operator's log filter: `BENCH_OPERATOR_LOG` (with BENCH_KEEP_LOGS), else warn.
            .env("RUST_LOG", std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("start the operator: {e}"))?;
        let pid = child.id().ok_or("the operator exited at once")?;
        let mut process = Self { child, pid, stopped: false, reaper: None };
        process.reaper = Some(Supervised::reaper(pid)?);
        Ok(process)
    }

    /// SIGTERM to the group, a grace for an orderly exit, then SIGKILL to whatever of the group
    /// is left (children that outlived their parent included).
    pub async fn stop(mut self) {
        self.signal_group("-TERM");
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        self.signal_group("-KILL");
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.stopped();
    }

    /// SIGKILL to the group at once: no shutdown, whatever was in flight is cut.
    pub async fn kill(mut self) {
        self.signal_group("-KILL");
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.stopped();
    }

    /// The group is gone: its reaper is dismissed before the group's number can be reused.
    fn stopped(&mut self) {
        self.stopped = true;
        if let Some(reaper) = self.reaper.take() {
            reaper.dismiss();
        }
    }

    fn signal_group(&self, signal: &str) {
        let _ = std::process::Command::new("kill")
            .args([signal, "--", &format!("-{}", self.pid)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for OperatorProcess {
    /// A run that ends in an error still leaves no operator process behind.
    fn drop(&mut self) {
        if !self.stopped {
            self.signal_group("-KILL");
            self.stopped();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::procstat;
    use super::*;

    /// An "operator" running `command`, once its group has `processes` processes.
    async fn started(command: &str, processes: usize) -> (tempfile::TempDir, OperatorProcess) {
        let dir = tempfile::tempdir().unwrap();
        let subject = Contender::External {
            command: command.into(),
            crds: Vec::new(),
            rbac: Vec::new(),
            api: super::super::api::Flavour::CocoonCis,
        };
        let process = OperatorProcess::start_with(
            &subject,
            &dir.path().join("kubeconfig"),
            &dir.path().join("log"),
            &[],
            None,
        )
        .unwrap();
        let pgid = process.pid;
        let deadline = Instant::now() + Duration::from_secs(10);
        while procstat::group_pids(pgid).len() < processes && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(procstat::group_pids(pgid).len(), processes, "the operator and its children");
        (dir, process)
    }

    #[tokio::test]
    async fn an_operator_started_through_a_wrapper_is_measured_and_stopped_as_one_group() {
        // A wrapper that starts the "operator" as a child and waits, as `go run` does.
        let (_dir, process) = started("sh -c 'sleep 300 & sleep 300 & wait'", 3).await;
        let pgid = process.pid;
        let (peak, now) = procstat::group_rss_kib(pgid);
        assert!(peak.unwrap_or(0) >= now.unwrap_or(0) && now.unwrap_or(0) > 0);
        process.stop().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !procstat::group_pids(pgid).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(procstat::group_pids(pgid), Vec::<u32>::new(), "nothing of the group is left");
    }

    #[tokio::test]
    async fn an_operator_left_running_by_a_bench_that_died_is_killed_by_its_reaper() {
        use std::os::unix::process::ExitStatusExt;
        let (_dir, mut process) = started("sh -c 'sleep 300 & wait'", 2).await;
        let pgid = process.pid;
        // The bench is killed: the kernel closes the reaper's lifeline and no drop runs.
        process.reaper.take().expect("a reaper watches every operator").cut_lifeline();
        let status = tokio::time::timeout(Duration::from_secs(5), process.child.wait())
            .await
            .expect("the reaper killed the operator")
            .unwrap();
        assert_eq!(status.signal(), Some(9), "SIGKILL, to the whole group");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !procstat::group_pids(pgid).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(procstat::group_pids(pgid), Vec::<u32>::new(), "its child went with it");
    }
}

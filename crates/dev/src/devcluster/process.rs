//! Child processes of a dev cluster that cannot outlive the process that started them.
//!
//! Each component runs under a small `sh` wrapper in its own process group. The wrapper's
//! stdin is a pipe whose only writer is this process: when this process exits for any reason
//! (including `SIGKILL`, or a `DevCluster` parked in a static that is never dropped) the kernel
//! closes the pipe, the wrapper reads end-of-file and kills the component. No `unsafe`
//! (`prctl(PR_SET_PDEATHSIG)`) is needed and there is no polling.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, ChildStdin, Command};

use super::{Error, Result};

/// Runs `"$@"` and exits with its status; a watcher kills it when stdin reaches end-of-file.
/// fd 3 keeps the lifeline pipe for the watcher; the component itself never sees it. The wrapper
/// exits only after its watcher, so "wrapper gone" means "nothing of it left".
const WRAPPER: &str = r#"exec 3<&0 </dev/null
"$@" 3<&- &
child=$!
{ read -r _ <&3; kill -KILL "$child" 2>/dev/null; } &
watcher=$!
wait "$child"
status=$?
kill "$watcher" 2>/dev/null
wait "$watcher"
exit "$status"
"#;

/// Removes its arguments once stdin reaches end-of-file, retrying while killed components let go.
const JANITOR: &str = r#"read -r _
for _ in 1 2 3 4 5 6 7 8 9 10; do
  rm -rf "$@" 2>/dev/null
  left=0
  for path in "$@"; do [ -e "$path" ] && left=1; done
  [ "$left" = 0 ] && exit 0
  sleep 0.5
done
"#;

/// SIGKILLs the process group `$1` once stdin reaches end-of-file (its owner is gone).
const REAPER: &str = r#"read -r _
kill -KILL "-$1" 2>/dev/null
"#;

/// How long a stop waits for the wrapper to exit before killing the whole process group.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A supervised child process: a control-plane component or the work-dir janitor.
#[derive(Debug)]
pub struct Supervised {
    name: &'static str,
    child: Child,
    /// Dropping this closes the lifeline pipe, which stops the process.
    lifeline: Option<ChildStdin>,
    log: Option<PathBuf>,
    exit: Option<ExitStatus>,
}

impl Supervised {
    /// Starts `program args...` with stdout and stderr appended to `log`.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[OsString],
        log: &Path,
    ) -> Result<Self> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| Error::io(format!("open log {}", log.display()), e))
        };
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg(format!("cocoon-{name}"))
            .arg(program)
            .args(args)
            .stdout(open()?)
            .stderr(open()?);
        let mut supervised = Self::start(name, command)?;
        supervised.log = Some(log.to_path_buf());
        Ok(supervised)
    }

    /// Starts a process that deletes `paths` once this process is gone. It covers the case where
    /// the owner is never dropped; an orderly drop deletes them itself.
    pub fn janitor(paths: &[&Path]) -> Result<Self> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(JANITOR)
            .arg("cocoon-janitor")
            .args(paths)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Self::start("janitor", command)
    }

    /// Starts a process that SIGKILLs process group `group` once this process is gone: for a
    /// process that must lead its own group unwrapped (the bench's operator, whose group is
    /// measured), where [`Supervised::spawn`]'s wrapper would join the group. [`dismiss`] it
    /// once the group was stopped in order.
    ///
    /// [`dismiss`]: Supervised::dismiss
    pub fn reaper(group: u32) -> Result<Self> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(REAPER)
            .arg("cocoon-reaper")
            .arg(group.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Self::start("reaper", command)
    }

    /// Stops a reaper without letting it act: it is killed before its lifeline closes (the
    /// group it watched is gone, and its number may be given to another).
    pub fn dismiss(mut self) {
        let _ = self.child.start_kill();
        self.wait_exit(STOP_GRACE);
    }

    /// Closes the lifeline as the kernel does when this process dies, and leaves the process
    /// to act (nothing kills it on drop, as nothing runs after a SIGKILL): for tests of what
    /// outlives its owner.
    pub fn cut_lifeline(mut self) {
        drop(self.lifeline.take());
        std::mem::forget(self);
    }

    fn start(name: &'static str, mut command: Command) -> Result<Self> {
        command.stdin(Stdio::piped()).kill_on_drop(true).process_group(0);
        let mut child =
            command.spawn().map_err(|e| Error::io(format!("spawn {name} wrapper (sh)"), e))?;
        let lifeline = child.stdin.take();
        Ok(Self { name, child, lifeline, log: None, exit: None })
    }

    /// The component's name, as used in errors.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The wrapper's process id, which is also the process group of the component.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Path of the component's log file.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The exit status if the process has exited (without blocking).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// The last `lines` lines of the component's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let Some(log) = &self.log else { return String::new() };
        match std::fs::read_to_string(log) {
            Ok(text) => {
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", log.display()),
        }
    }

    /// Stops the process and waits for it, synchronously (usable from `Drop`): closes the
    /// lifeline, then kills the whole process group if the wrapper is still there after a grace.
    pub fn stop(&mut self) {
        drop(self.lifeline.take());
        if self.wait_exit(STOP_GRACE) {
            return;
        }
        if let Some(pid) = self.child.id() {
            // The wrapper leads its own group, so this reaches the component and the watcher.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
        self.wait_exit(STOP_GRACE);
    }

    fn wait_exit(&mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        loop {
            if self.exited().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the OS does not hand it out again soon).
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io("bind a free port on 127.0.0.1", e))?;
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().map_err(|e| Error::io("read a bound port", e))?.port();
    }
    Ok(ports)
}

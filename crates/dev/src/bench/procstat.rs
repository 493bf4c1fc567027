//! CPU time and memory of processes, from `/proc` (Linux).

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// `(pgid, utime + stime in ticks)` of one process, from `/proc/<pid>/stat`.
fn stat(pid: &str) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12).
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((pgrp, utime + stime))
}

/// CPU seconds used so far by every live process of process group `pgid`.
pub fn group_cpu_seconds(pgid: u32) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    let ticks: u64 = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|pid| stat(&pid))
        .filter(|(group, _)| *group == pgid)
        .map(|(_, t)| t)
        .sum();
    ticks as f64 / TICKS_PER_SECOND
}

/// CPU seconds used so far by one process.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat(&pid.to_string()).map(|(_, t)| t as f64 / TICKS_PER_SECOND).unwrap_or(0.0)
}

/// `(peak, current)` resident set size of a process in KiB (`VmHWM`, `VmRSS`).
pub fn rss_kib(pid: u32) -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Sockets a process holds open (its API connections, watches included, and its listeners).
pub fn sockets(pid: u32) -> Option<usize> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let socket = |e: &std::fs::DirEntry| {
        std::fs::read_link(e.path())
            .ok()
            .is_some_and(|t| t.to_string_lossy().starts_with("socket:"))
    };
    Some(fds.filter_map(|e| e.ok()).filter(socket).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_cpu_time_and_a_resident_set() {
        let pid = std::process::id();
        let spin: u64 = (0..5_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        assert!(cpu_seconds(pid) >= 0.0);
        let (peak, now) = rss_kib(pid);
        assert!(peak.unwrap_or(0) >= now.unwrap_or(0) && now.unwrap_or(0) > 0);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(sockets(pid).unwrap_or(0) >= 1, "the listener is a socket of this process");
        drop(listener);
    }
}

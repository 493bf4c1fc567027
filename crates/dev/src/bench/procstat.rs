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

/// `(pid, utime + stime in ticks)` of every live process of process group `pgid`.
fn group(pgid: u32) -> Vec<(u32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|pid| Some((pid.parse().ok()?, stat(&pid)?)))
        .filter(|(_, (group, _))| *group == pgid)
        .map(|(pid, (_, ticks))| (pid, ticks))
        .collect()
}

/// The live processes of group `pgid`.
pub fn group_pids(pgid: u32) -> Vec<u32> {
    let mut pids: Vec<u32> = group(pgid).into_iter().map(|(pid, _)| pid).collect();
    pids.sort_unstable();
    pids
}

/// CPU seconds used so far by every live process of process group `pgid`.
pub fn group_cpu_seconds(pgid: u32) -> f64 {
    group(pgid).iter().map(|(_, t)| t).sum::<u64>() as f64 / TICKS_PER_SECOND
}

/// `(peak, current)` resident set of process group `pgid` in KiB: the sums over its live
/// processes (an operator started through a wrapper or `go run` is more than one process).
pub fn group_rss_kib(pgid: u32) -> (Option<u64>, Option<u64>) {
    let each: Vec<_> = group(pgid).iter().map(|(pid, _)| rss_kib(*pid)).collect();
    let total = |values: Vec<u64>| (!values.is_empty()).then(|| values.iter().sum());
    (
        total(each.iter().filter_map(|r| r.0).collect()),
        total(each.iter().filter_map(|r| r.1).collect()),
    )
}

/// Sockets the processes of group `pgid` hold open.
pub fn group_sockets(pgid: u32) -> Option<usize> {
    let each: Vec<usize> = group(pgid).iter().filter_map(|(pid, _)| sockets(*pid)).collect();
    (!each.is_empty()).then(|| each.iter().sum())
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
        let pgid = stat(&pid.to_string()).expect("this process's stat").0;
        assert!(group(pgid).iter().any(|(p, _)| *p == pid), "this process is in its group");
        assert!(group_cpu_seconds(pgid) > 0.0);
        let (group_peak, _) = group_rss_kib(pgid);
        let (peak, now) = rss_kib(pid);
        assert!(group_peak >= peak, "a group's resident set counts each of its processes");
        assert!(peak.unwrap_or(0) >= now.unwrap_or(0) && now.unwrap_or(0) > 0);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(sockets(pid).unwrap_or(0) >= 1, "the listener is a socket of this process");
        assert!(group_sockets(pgid) >= sockets(pid));
        drop(listener);
    }
}

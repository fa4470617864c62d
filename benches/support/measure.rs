//! What the benchmarks measure of a process, from `/proc/PID` (`PID` a number,
//! `self` or `thread-self`): CPU seconds and peak resident memory. CPU seconds
//! give the rate one core sustains, which holds on a busy machine where wall time
//! does not.

// Each benchmark uses the part it needs.
#![allow(dead_code)]

/// A field of `/proc/PID/status` (e.g. `VmHWM:`) in KiB; 0 once the process is gone.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Peak resident memory (`VmHWM`) in MiB.
pub fn peak_rss_mib(pid: &str) -> f64 {
    status_kib(pid, "VmHWM:") as f64 / 1024.0
}

/// User + system CPU seconds so far.
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / per_second
}

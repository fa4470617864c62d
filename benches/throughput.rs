//! End-to-end throughput: the real `ferry` binary moving the standard benchmark input
//! (the JSON lines of `shared/bench/gen_json_logs.py`, generated here) from a file
//! source to a file sink, against a `cat` baseline, and once more with a `multiline`
//! transform between them (its cost on input without traces). Prints events/s, MB/s
//! and peak RSS. Size: `FERRY_BENCH_MB` (default 100).
//!
//! Run: `cargo bench --bench throughput`

use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LEVELS: [&str; 6] = ["info", "info", "info", "warn", "error", "debug"];
const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "eve"];

/// The same lines as gen_json_logs.py; returns (lines, bytes).
fn generate(path: &Path, target_bytes: u64) -> (u64, u64) {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let (mut n, mut size) = (0u64, 0u64);
    while size < target_bytes {
        let s = n % 86400;
        let line = format!(
            "{{\"ts\":\"2026-11-20T{:02}:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"msg\":\"user {}@example.com logged in from 10.1.{}.{}\",\"req_id\":{}}}\n",
            s / 3600,
            (s / 60) % 60,
            s % 60,
            n % 1000,
            LEVELS[(n % 6) as usize],
            USERS[(n % 5) as usize],
            (n >> 8) & 255,
            n & 255,
            n
        );
        out.write_all(line.as_bytes()).unwrap();
        size += line.len() as u64;
        n += 1;
    }
    out.flush().unwrap();
    (n, size)
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn report(name: &str, lines: u64, bytes: u64, elapsed: Duration, rss_kib: Option<u64>) {
    let secs = elapsed.as_secs_f64();
    let rss = rss_kib.map_or("-".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "{name:<34} {:>12.0} events/s {:>9.1} MB/s   {secs:>6.2} s   peak RSS {rss}",
        lines as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
}

fn run_ferry(
    dir: &Path,
    input: &Path,
    lines: u64,
    bytes: u64,
    encoding: &str,
    fsync: &str,
    multiline: bool,
) {
    let name = format!(
        "{encoding}-{fsync}-{}",
        if multiline { "ml" } else { "plain" }
    );
    let out = dir.join(format!("out-{name}.log"));
    let data = dir.join(format!("data-{name}"));
    let config = dir.join(format!("ferry-{name}.toml"));
    let (transform, sink_input) = if multiline {
        (
            "[transforms.traces]\ntype = \"multiline\"\ninputs = [\"in\"]\n",
            "traces",
        )
    } else {
        ("", "in")
    };
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[api]\nenabled = false\n[sources.in]\ntype = \"file\"\ninclude = [\"{}\"]\n{transform}[sinks.out]\ntype = \"file\"\ninputs = [\"{sink_input}\"]\npath = \"{}\"\nencoding = \"{encoding}\"\nfsync = \"{fsync}\"\n",
            data.display(),
            input.display(),
            out.display()
        ),
    )
    .unwrap();
    // The last line waits `flush_timeout` for a continuation that never comes: the
    // clock stops when every line before it is out.
    let lines_out = if multiline { lines - 1 } else { lines };
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--config"])
        .arg(&config)
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let (mut seen_bytes, mut seen_lines) = (0u64, 0u64);
    let mut buf = vec![0u8; 1 << 20];
    while seen_lines < lines_out {
        peak = peak.max(peak_rss_kib(child.id()));
        if let Ok(file) = std::fs::File::open(&out) {
            loop {
                let n = file.read_at(&mut buf, seen_bytes).unwrap();
                if n == 0 {
                    break;
                }
                seen_bytes += n as u64;
                seen_lines += buf[..n].iter().filter(|c| **c == b'\n').count() as u64;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    peak = peak.max(peak_rss_kib(child.id()));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let via = if multiline { "→multiline" } else { "" };
    report(
        &format!("ferry file{via}→file {encoding}, fsync={fsync}"),
        lines,
        bytes,
        elapsed,
        Some(peak),
    );
}

fn main() {
    let megabytes: u64 = std::env::var("FERRY_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.log");
    let (lines, bytes) = generate(&input, megabytes * 1_000_000);
    println!(
        "input: {lines} lines, {bytes} bytes ({:.0} bytes/line)",
        bytes as f64 / lines as f64
    );

    let start = Instant::now();
    let status = Command::new("cat")
        .arg(&input)
        .stdout(std::fs::File::create(dir.path().join("cat.out")).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    report("cat (baseline)", lines, bytes, start.elapsed(), None);

    run_ferry(dir.path(), &input, lines, bytes, "text", "none", false);
    run_ferry(dir.path(), &input, lines, bytes, "text", "batch", false);
    run_ferry(dir.path(), &input, lines, bytes, "text", "batch", true);
    run_ferry(dir.path(), &input, lines, bytes, "json", "batch", false);
    run_ferry(dir.path(), &input, lines, bytes, "json", "batch", true);
}

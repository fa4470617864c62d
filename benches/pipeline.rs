//! End-to-end pipeline benchmark: the real `ferry` binary on the standard benchmark
//! input (the JSON lines of `shared/bench/gen_json_logs.py`, generated here), scenario
//! by scenario, against a `cat` of the same file measured in the same run.
//!
//! Scenarios (default settings, `api` on a free port):
//! - `full`: file → parse json → level → redact (every built-in detector) → file (json)
//! - `parse`: file → parse json → file (json)
//! - `text`: file → file (text)
//! - `disk`: file → file (text) through a disk buffer (`fsync = "batch"`): the
//!   buffer's cost against `text`
//! - `multiline`: file → multiline (defaults) → file (text): its cost on input
//!   without traces
//! - `demo`: demo source at unlimited rate (as many events as the input has lines) →
//!   console, into /dev/null
//! - `idle`: demo at 10 events/s → console, resident memory after a few seconds
//!
//! Per scenario it prints the wall time from launch to the last output line (to the
//! exit for `demo`), events/s, MB/s of input, CPU seconds (user + sys), the peak RSS of
//! the ferry process, and the ratio of the wall time to `cat`'s. Every run's output is
//! checked: the line count, and that every `req_id` of the input is there exactly once
//! (for `demo`: that the committed cursor reached the count).
//!
//! Run: `cargo bench --bench pipeline`. Environment: `FERRY_BENCH_MB` (input size,
//! default 100), `FERRY_BENCH_RUNS` (interleaved runs per scenario, default 3; the
//! median is reported), `FERRY_BENCH_SCENARIOS` (a comma list to run a subset),
//! `FERRY_BENCH_BIN` (another `ferry` binary to measure, e.g. main's build).

#[path = "support/measure.rs"]
mod measure;

use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LEVELS: [&str; 6] = ["info", "info", "info", "warn", "error", "debug"];
const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "eve"];

/// Writes the lines of gen_json_logs.py until `target_bytes`; returns (lines, bytes).
fn generate(path: &Path, target_bytes: u64) -> (u64, u64) {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let (mut n, mut size) = (0u64, 0u64);
    let mut line = String::with_capacity(160);
    while size < target_bytes {
        use std::fmt::Write as _;
        let s = n % 86400;
        line.clear();
        let _ = writeln!(
            line,
            "{{\"ts\":\"2026-11-20T{:02}:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"msg\":\"user {}@example.com logged in from 10.1.{}.{}\",\"req_id\":{}}}",
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Full,
    Parse,
    Text,
    Disk,
    Multiline,
    Demo,
    Idle,
}

impl Scenario {
    const ALL: [Scenario; 7] = [
        Scenario::Full,
        Scenario::Parse,
        Scenario::Text,
        Scenario::Disk,
        Scenario::Multiline,
        Scenario::Demo,
        Scenario::Idle,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Full => "full",
            Scenario::Parse => "parse",
            Scenario::Text => "text",
            Scenario::Disk => "disk",
            Scenario::Multiline => "multiline",
            Scenario::Demo => "demo",
            Scenario::Idle => "idle",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::Full => "file → parse → level → redact → file json",
            Scenario::Parse => "file → parse json → file json",
            Scenario::Text => "file → file text",
            Scenario::Disk => "file → disk buffer → file text",
            Scenario::Multiline => "file → multiline → file text",
            Scenario::Demo => "demo (unlimited) → console > /dev/null",
            Scenario::Idle => "demo at 10 events/s → console (idle)",
        }
    }

    /// The pipeline part of the config: sources, transforms, sinks.
    fn components(self, input: &Path, output: &Path, lines: u64) -> String {
        let file_source = format!(
            "[sources.in]\ntype = \"file\"\ninclude = [\"{}\"]\n",
            input.display()
        );
        let file_sink = |from: &str, encoding: &str| {
            format!(
                "[sinks.out]\ntype = \"file\"\ninputs = [\"{from}\"]\npath = \"{}\"\nencoding = \"{encoding}\"\n",
                output.display()
            )
        };
        let parse = "[transforms.parsed]\ntype = \"parse\"\ninputs = [\"in\"]\nformat = \"json\"\n";
        match self {
            Scenario::Full => format!(
                "{file_source}{parse}[transforms.tagged]\ntype = \"level\"\ninputs = [\"parsed\"]\n[transforms.clean]\ntype = \"redact\"\ninputs = [\"tagged\"]\n{}",
                file_sink("clean", "json")
            ),
            Scenario::Parse => format!("{file_source}{parse}{}", file_sink("parsed", "json")),
            Scenario::Text => format!("{file_source}{}", file_sink("in", "text")),
            Scenario::Disk => format!(
                "{file_source}{}buffer = {{ type = \"disk\", max_bytes = 1073741824 }}\n",
                file_sink("in", "text")
            ),
            Scenario::Multiline => format!(
                "{file_source}[transforms.traces]\ntype = \"multiline\"\ninputs = [\"in\"]\n{}",
                file_sink("traces", "text")
            ),
            Scenario::Demo => format!(
                "[sources.in]\ntype = \"demo\"\ncount = {lines}\n[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n"
            ),
            Scenario::Idle => "[sources.in]\ntype = \"demo\"\nrate = 10\n[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n".to_string(),
        }
    }
}

/// What one run measured.
struct Measured {
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
}

/// Waits for `child` and returns its CPU time and peak RSS: the highest `VmHWM` seen
/// while it runs. (wait4's `ru_maxrss` will not do: a child inherits the high-water
/// mark of the forked bench process, which holds whole output files when it checks
/// them.)
fn reap(child: Child) -> (std::process::ExitStatus, Duration, u64) {
    let mut peak = 0;
    loop {
        // A process that has exited (a zombie) has no VmHWM left.
        let hwm = measure::status_kib(&child.id().to_string(), "VmHWM:");
        if hwm == 0 {
            break;
        }
        peak = peak.max(hwm);
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain wait4(2) on our own child, with valid out-pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4 failed");
    std::mem::forget(child);
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = time(usage.ru_utime) + time(usage.ru_stime);
    use std::os::unix::process::ExitStatusExt;
    (std::process::ExitStatus::from_raw(status), cpu, peak)
}

struct Bench {
    ferry: PathBuf,
    dir: PathBuf,
    input: PathBuf,
    lines: u64,
}

impl Bench {
    fn cat(&self) -> Measured {
        let start = Instant::now();
        let child = Command::new("cat")
            .arg(&self.input)
            .stdout(std::fs::File::create(self.dir.join("cat.out")).unwrap())
            .spawn()
            .unwrap();
        let (status, cpu, peak_rss_kib) = reap(child);
        assert!(status.success());
        Measured {
            wall: start.elapsed(),
            cpu,
            peak_rss_kib,
        }
    }

    fn run(&self, scenario: Scenario, run: usize) -> Measured {
        let tag = format!("{}-{run}", scenario.name());
        let output = self.dir.join(format!("out-{tag}.log"));
        let config = self.dir.join(format!("ferry-{tag}.toml"));
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[api]\naddress = \"127.0.0.1:0\"\n{}",
                self.dir.join(format!("data-{tag}")).display(),
                scenario.components(&self.input, &output, self.lines)
            ),
        )
        .unwrap();
        let start = Instant::now();
        let child = Command::new(&self.ferry)
            .args(["run", "--config"])
            .arg(&config)
            .env("FERRY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let measured = match scenario {
            Scenario::Demo => {
                let (status, cpu, peak_rss_kib) = reap(child);
                let wall = start.elapsed();
                assert!(status.success(), "ferry failed: {status}");
                self.check_demo(&config);
                Measured {
                    wall,
                    cpu,
                    peak_rss_kib,
                }
            }
            Scenario::Idle => {
                std::thread::sleep(Duration::from_secs(5));
                let rss = measure::status_kib(&child.id().to_string(), "VmRSS:");
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let (status, cpu, _) = reap(child);
                assert!(status.success(), "ferry failed: {status}");
                Measured {
                    wall: start.elapsed(),
                    cpu,
                    peak_rss_kib: rss,
                }
            }
            _ => {
                // A multiline transform holds the last line `flush_timeout` for a
                // continuation that never comes: the clock stops when every line
                // before it is out (the stop flushes it).
                let awaited = match scenario {
                    Scenario::Multiline => self.lines - 1,
                    _ => self.lines,
                };
                wait_for_lines(&output, awaited, &child);
                let wall = start.elapsed();
                let peak_before_stop = measure::status_kib(&child.id().to_string(), "VmHWM:");
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let (status, cpu, peak_after_stop) = reap(child);
                assert!(status.success(), "ferry failed: {status}");
                self.check_output(&output);
                Measured {
                    wall,
                    cpu,
                    peak_rss_kib: peak_before_stop.max(peak_after_stop),
                }
            }
        };
        let _ = std::fs::remove_file(&output);
        measured
    }

    /// Every line holds one `"req_id":N` (the parsed field in JSON output, the raw line
    /// in text output), and every N of the input is there exactly once.
    fn check_output(&self, output: &Path) {
        let data = std::fs::read(output).unwrap();
        let mut seen = vec![false; self.lines as usize];
        let (mut count, mut duplicates, mut missing_id) = (0u64, 0u64, 0u64);
        let finder = memchr::memmem::Finder::new(b"\"req_id\":");
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            count += 1;
            let Some(at) = finder.find(line) else {
                missing_id += 1;
                continue;
            };
            let digits = &line[at + 9..];
            let end = digits
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(digits.len());
            let id: usize = std::str::from_utf8(&digits[..end])
                .unwrap()
                .parse()
                .unwrap();
            match seen.get_mut(id) {
                Some(slot) if *slot => duplicates += 1,
                Some(slot) => *slot = true,
                None => missing_id += 1,
            }
        }
        let absent = seen.iter().filter(|s| !**s).count();
        assert!(
            count == self.lines && duplicates == 0 && missing_id == 0 && absent == 0,
            "{}: {count} lines for {} input lines, {duplicates} duplicate req_ids, {absent} missing, {missing_id} unreadable",
            output.display(),
            self.lines
        );
    }

    /// The demo's committed cursor is the number of events delivered.
    fn check_demo(&self, config: &Path) {
        let listed = Command::new(&self.ferry)
            .args(["checkpoints", "list", "--json", "--config"])
            .arg(config)
            .output()
            .unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
        let sent = rows
            .iter()
            .find(|row| row["source"] == "in" && row["stream"] == "sequence")
            .and_then(|row| row["cursor"].as_u64());
        assert_eq!(sent, Some(self.lines), "demo delivered {sent:?} events");
    }
}

/// Polls the output file until it has `lines` lines (or ferry exits).
fn wait_for_lines(output: &Path, lines: u64, child: &Child) {
    let mut buf = vec![0u8; 1 << 20];
    let (mut offset, mut seen) = (0u64, 0u64);
    let mut file = None;
    while seen < lines {
        if file.is_none() {
            file = std::fs::File::open(output).ok();
        }
        if let Some(f) = &file {
            loop {
                let n = f.read_at(&mut buf, offset).unwrap();
                if n == 0 {
                    break;
                }
                offset += n as u64;
                seen += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            }
        }
        if seen < lines {
            assert!(
                measure::status_kib(&child.id().to_string(), "VmRSS:") > 0,
                "ferry exited with {seen} of {lines} lines written"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let megabytes: u64 = env_or("FERRY_BENCH_MB", 100);
    let runs: usize = env_or("FERRY_BENCH_RUNS", 3).max(1);
    let wanted = std::env::var("FERRY_BENCH_SCENARIOS").unwrap_or_default();
    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.split(',').any(|w| w.trim() == s.name()))
        .collect();
    let ferry = std::env::var_os("FERRY_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ferry")));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.log");
    let (lines, bytes) = generate(&input, megabytes * 1_000_000);
    println!(
        "ferry: {}\ninput: {lines} lines, {bytes} bytes ({:.0} bytes/line); {runs} interleaved runs per scenario, median shown\n",
        ferry.display(),
        bytes as f64 / lines as f64
    );
    let bench = Bench {
        ferry,
        dir: dir.path().to_path_buf(),
        input,
        lines,
    };
    let _ = bench.cat(); // warm the page cache
    let mut cat = Vec::new();
    let mut results: Vec<Vec<Measured>> = scenarios.iter().map(|_| Vec::new()).collect();
    for run in 0..runs {
        cat.push(bench.cat());
        for (scenario, results) in scenarios.iter().zip(&mut results) {
            results.push(bench.run(*scenario, run));
        }
    }
    let cat_wall = median(&mut cat.iter().map(|m| m.wall.as_secs_f64()).collect::<Vec<_>>());
    println!(
        "{:<44} {:>8} {:>12} {:>8} {:>8} {:>10} {:>7}",
        "scenario", "wall s", "events/s", "MB/s", "CPU s", "peak RSS", "× cat"
    );
    println!(
        "{:<44} {cat_wall:>8.3} {:>12.0} {:>8.0} {:>8} {:>10} {:>7}",
        "cat of the input",
        lines as f64 / cat_wall,
        bytes as f64 / 1e6 / cat_wall,
        "-",
        "-",
        "1.0"
    );
    for (scenario, results) in scenarios.iter().zip(&results) {
        let mut walls: Vec<f64> = results.iter().map(|m| m.wall.as_secs_f64()).collect();
        let mut cpus: Vec<f64> = results.iter().map(|m| m.cpu.as_secs_f64()).collect();
        let mut rss: Vec<f64> = results.iter().map(|m| m.peak_rss_kib as f64).collect();
        let (wall_min, wall_max) = (
            walls.iter().copied().fold(f64::MAX, f64::min),
            walls.iter().copied().fold(0.0, f64::max),
        );
        let rss_max = rss.iter().copied().fold(0.0, f64::max) / 1024.0;
        let wall = median(&mut walls);
        let cpu = median(&mut cpus);
        let rss = median(&mut rss) / 1024.0;
        if *scenario == Scenario::Idle {
            println!(
                "{:<44} {:>8} {:>12} {:>8} {cpu:>8.2} {:>6.1} MiB {:>7}   (RSS after 5 s; max {rss_max:.1} MiB)",
                scenario.title(),
                "-",
                "-",
                "-",
                rss,
                "-"
            );
            continue;
        }
        // The demo reads no input: its MB/s would mean nothing.
        let mb_per_s = match scenario {
            Scenario::Demo => "-".to_string(),
            _ => format!("{:.1}", bytes as f64 / 1e6 / wall),
        };
        println!(
            "{:<44} {wall:>8.3} {:>12.0} {mb_per_s:>8} {cpu:>8.2} {rss:>6.1} MiB {:>7.1}   (wall {wall_min:.3}–{wall_max:.3} s, peak RSS max {rss_max:.1} MiB)",
            scenario.title(),
            lines as f64 / wall,
            wall / cat_wall
        );
    }
    println!(
        "\nevery run: output line count and the set of req_ids checked (demo: committed count)"
    );
}

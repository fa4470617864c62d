//! End-to-end throughput of the `bytenite` source: ByteNite-simulator jobs of
//! 200-byte lines (four tasks each, every line present when ferry starts, as when
//! it catches up) read by the real `ferry` binary into a `file` sink. Each answer
//! repeats the whole job, newest first; ferry takes at most `max_poll_bytes` of
//! new lines per poll and polls again at once for the rest.
//!
//! Two shapes: jobs of 5,000 lines each — the most one ByteNite answer holds,
//! Loki's usual query limit, so this is what catching up looks like — and one job
//! of every line in a single answer, which only a simulator returns, each poll
//! re-reading the whole answer.
//! Prints events/s, MB/s of log lines, the number of polls, ferry's CPU seconds
//! and events per CPU-second (what one core sustains, also on a busy machine),
//! and ferry's peak RSS.
//!
//! `cargo bench --bench bytenite`; `FERRY_BENCH_EVENTS` sets the event count
//! (default 500000) of each shape, `FERRY_BENCH_ENCODING=json` writes JSON events instead of
//! bare messages, `FERRY_BENCH_POLL_BYTES` sets `max_poll_bytes`,
//! `FERRY_BENCH_JOBS` runs one shape only, with that many jobs.

#[path = "../tests/support/bytenite_sim.rs"]
mod bytenite_sim;
#[path = "support/measure.rs"]
mod measure;

use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytenite_sim::{ByteniteSim, LogLine, Origin, SimConfig};

const LINE_BYTES: usize = 200;
const TASKS: usize = 4;
/// Lines in one job of the first shape.
const LINES_PER_JOB: usize = 5_000;

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let events: usize = env("FERRY_BENCH_EVENTS").unwrap_or(500_000);
    let encoding = std::env::var("FERRY_BENCH_ENCODING").unwrap_or_else(|_| "text".into());
    let poll_bytes: Option<usize> = env("FERRY_BENCH_POLL_BYTES");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let shapes = match env("FERRY_BENCH_JOBS") {
        Some(jobs) => vec![jobs],
        None => vec![events.div_ceil(LINES_PER_JOB), 1],
    };
    for jobs in shapes {
        runtime.block_on(run(jobs, events, &encoding, poll_bytes));
    }
}

/// `events` lines spread over `jobs` jobs.
async fn run(jobs: usize, events: usize, encoding: &str, poll_bytes: Option<usize>) {
    let sim = ByteniteSim::start(SimConfig::default()).await;
    let start = 1_750_780_800_000_000_000i64;
    let per_job = events.div_ceil(jobs);
    let mut job_ids = Vec::new();
    for job in 0..jobs {
        let id = format!("bench-{job}");
        sim.add_job(&id, "bench@v1");
        sim.start_job(&id);
        let first = job * per_job;
        let last = ((job + 1) * per_job).min(events);
        for task in 0..TASKS {
            let lines = (first + task..last).step_by(TASKS).map(|n| {
                let mut text = format!("task-{task} line {n:09} ");
                while text.len() < LINE_BYTES {
                    text.push('x');
                }
                LogLine::new(text, start + n as i64 * 1000, "INFO", "app")
            });
            sim.append(&id, Origin::Task(format!("task-{task}")), lines);
        }
        job_ids.push(format!("{id:?}"));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out.log");
    let config = dir.path().join("bench.toml");
    let poll_bytes = poll_bytes.map_or(String::new(), |b| format!("max_poll_bytes = {b}\n"));
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[api]
enabled = false
[sources.bench]
type = "bytenite"
endpoint = "{url}"
api_key = "{key}"
job_ids = [{job_ids}]
poll_interval = "1h"
{poll_bytes}
[sinks.out]
type = "file"
inputs = ["bench"]
path = "{out}"
encoding = "{encoding}"
fsync = "none"
"#,
            data = dir.path().join("data").display(),
            url = sim.url(),
            key = sim.config().api_key,
            job_ids = job_ids.join(", "),
            out = out.display(),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut ferry = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferry starts");
    let mut written = 0;
    let mut offset = 0;
    let mut buffer = Vec::new();
    while written < events {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let Ok(mut file) = std::fs::File::open(&out) else {
            continue;
        };
        file.seek(SeekFrom::Start(offset)).unwrap();
        buffer.clear();
        file.read_to_end(&mut buffer).unwrap();
        offset += buffer.len() as u64;
        written += buffer.iter().filter(|b| **b == b'\n').count();
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "stalled at {written}"
        );
    }
    let elapsed = started.elapsed();
    let pid = ferry.id().to_string();
    let cpu = measure::cpu_seconds(&pid);
    let peak = measure::peak_rss_mib(&pid);
    let _ = ferry.kill();
    let _ = ferry.wait();
    let polls = sim.logs_requests().len();
    let mb = (events * (LINE_BYTES + 1)) as f64 / 1e6;
    println!(
        "bytenite: {events} events of {LINE_BYTES} B ({encoding}) in {jobs} job(s), in {:.2} s (start to last line): {:.0} events/s, {:.1} MB/s of log lines; {polls} polls; ferry {cpu:.2} CPU-s ({:.0} events per CPU-second), peak RSS {peak:.1} MiB",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        mb / elapsed.as_secs_f64(),
        events as f64 / cpu,
    );
}

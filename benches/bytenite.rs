//! End-to-end throughput of the `bytenite` source: a ByteNite-simulator job of
//! 200-byte lines (four tasks, every line present when ferry starts, as when it
//! catches up on a long job) read by the real `ferry` binary into a `file` sink.
//! Each answer repeats the whole job, newest first; ferry takes at most
//! `max_poll_bytes` of new lines per poll and polls again at once for the rest.
//! Prints events/s, MB/s of log lines, the number of polls, and ferry's peak RSS.
//!
//! `cargo bench --bench bytenite`; `FERRY_BENCH_EVENTS` sets the event count
//! (default 500000), `FERRY_BENCH_ENCODING=json` writes JSON events instead of
//! bare messages, `FERRY_BENCH_POLL_BYTES` sets `max_poll_bytes`.

#[path = "../tests/support/bytenite_sim.rs"]
mod bytenite_sim;

use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytenite_sim::{ByteniteSim, LogLine, Origin, SimConfig};

const LINE_BYTES: usize = 200;
const TASKS: usize = 4;

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
    runtime.block_on(run(events, &encoding, poll_bytes));
}

async fn run(events: usize, encoding: &str, poll_bytes: Option<usize>) {
    let sim = ByteniteSim::start(SimConfig::default()).await;
    sim.add_job("bench", "bench@v1");
    sim.start_job("bench");
    let start = 1_750_780_800_000_000_000i64;
    for task in 0..TASKS {
        let lines = (task..events).step_by(TASKS).map(|n| {
            let mut text = format!("task-{task} line {n:09} ");
            while text.len() < LINE_BYTES {
                text.push('x');
            }
            LogLine::new(text, start + n as i64 * 1000, "INFO", "app")
        });
        sim.append("bench", Origin::Task(format!("task-{task}")), lines);
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
job_ids = ["bench"]
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
    let peak_kib = std::fs::read_to_string(format!("/proc/{}/status", ferry.id()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let _ = ferry.kill();
    let _ = ferry.wait();
    let polls = sim.logs_requests().len();
    let mb = (events * (LINE_BYTES + 1)) as f64 / 1e6;
    println!(
        "bytenite: {events} events of {LINE_BYTES} B ({encoding}) in {:.2} s (start to last line): {:.0} events/s, {:.1} MB/s of log lines; {polls} polls; ferry peak RSS {:.1} MiB",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        mb / elapsed.as_secs_f64(),
        peak_kib as f64 / 1024.0,
    );
}

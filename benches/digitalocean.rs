//! End-to-end throughput of the `digitalocean` source: the App Platform
//! simulator's live websocket replaying 200-byte log lines (one
//! `{"data": "<component> <RFC3339Nano> <message>\n"}` message each, as App
//! Platform sends them) into the real `ferry` binary and its `file` sink, JSON
//! encoded. Prints events/s and MB/s over wall time, ferry's CPU seconds and
//! events per CPU-second, and ferry's peak resident memory (VmHWM).
//!
//! `cargo bench --bench digitalocean`; `FERRY_BENCH_EVENTS` sets the event count
//! (default 500000), `FERRY_BENCH_LINES_PER_MESSAGE` the lines per websocket
//! message (default 1).

#[path = "../tests/support/digitalocean_sim.rs"]
mod digitalocean_sim;
#[path = "support/measure.rs"]
mod measure;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use digitalocean_sim::{DigitalOceanSim, Phase, SimConfig, message};

const LINE_BYTES: usize = 200;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let events = env_number("FERRY_BENCH_EVENTS", 500_000);
    let per_message = env_number("FERRY_BENCH_LINES_PER_MESSAGE", 1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(events, per_message));
}

async fn run(events: usize, per_message: usize) {
    let sim = DigitalOceanSim::start(SimConfig {
        lines_per_message: per_message,
        ..SimConfig::default()
    })
    .await;
    sim.add_deployment("d1", Phase::Active);
    // `web 2026-…Z ` is 36 bytes of the 200.
    sim.append(
        "d1",
        "RUN",
        "web",
        (0..events).map(|n| message("bench", n, LINE_BYTES - 36)),
    );
    let written = sim.lines("d1", "RUN")[0].len();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out.log");
    let config_path = dir.path().join("bench.toml");
    let config = sim.config();
    std::fs::write(
        &config_path,
        format!(
            r#"data_dir = "{data}"
[api]
enabled = false
[sources.bench]
type = "digitalocean"
endpoint = "{url}"
token = "{token}"
app_id = "{app}"
discovery_interval = "1h"
[sinks.out]
type = "file"
inputs = ["bench"]
path = "{out}"
encoding = "json"
fsync = "none"
"#,
            data = dir.path().join("data").display(),
            url = sim.url(),
            token = config.token,
            app = config.app_id,
            out = out.display(),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut ferry = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--config"])
        .arg(&config_path)
        .env("FERRY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("ferry binary");
    let pid = ferry.id();
    let mut lines = 0;
    let mut file = None;
    let mut chunk = Vec::new();
    while lines < events {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if file.is_none() {
            file = std::fs::File::open(&out).ok();
        }
        if let Some(file) = file.as_mut() {
            chunk.clear();
            file.read_to_end(&mut chunk).unwrap();
            lines += chunk.iter().filter(|b| **b == b'\n').count();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "stuck at {lines}"
        );
    }
    let elapsed = started.elapsed();
    let cpu = measure::cpu_seconds(&pid.to_string());
    let peak = measure::status_kib(&pid.to_string(), "VmHWM:");
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let _ = ferry.wait();
    let mb = (events * (written + 1)) as f64 / 1e6;
    println!(
        "digitalocean: {events} events of {} B, {per_message} per message, in {:.2} s: {:.0} events/s, {:.1} MB/s of log lines; ferry {:.2} CPU-s ({:.0} events per CPU-second), peak RSS {:.1} MiB",
        written,
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        mb / elapsed.as_secs_f64(),
        cpu,
        events as f64 / cpu,
        peak as f64 / 1024.0
    );
}

//! End-to-end throughput of the `scalingo` source: the Scalingo simulator into a
//! `file` sink, JSON-encoded, on a tokio runtime with one worker thread, with
//! 200-byte lines (`2026-03-01 00:00:00.00125 +0000 UTC [web-1] <message>`), two ways:
//!
//! - `dump`: a first start shipping `N` lines of history (`history_lines = N`), the
//!   text dump merged through the dedupe cursor;
//! - `stream`: `N` lines published once the websocket is open, one JSON `log`
//!   event per websocket message.
//!
//! Prints events/s over wall time and per CPU-second of the whole process
//! (simulator included, so the per-core figure is a lower bound for ferry alone),
//! and the process's peak RSS. `cargo bench --bench scalingo`;
//! `FERRY_BENCH_EVENTS` sets `N` (default 300000).

#[path = "support/measure.rs"]
mod measure;
#[path = "../tests/support/scalingo_sim.rs"]
mod scalingo_sim;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::checkpoint::CheckpointStore;
use ferry::telemetry::Health;
use scalingo_sim::{ScalingoSim, SimConfig, message};

/// Bytes of a line's prefix: time, offset, zone and `[web-1] `.
const PREFIX_BYTES: usize = 45;
const LINE_BYTES: usize = 200;

fn main() {
    let events: usize = std::env::var("FERRY_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300_000);
    for mode in ["dump", "stream"] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run(events, mode));
    }
}

async fn run(events: usize, mode: &str) {
    let sim = ScalingoSim::start(SimConfig::default()).await;
    let publish = |sim: &ScalingoSim| {
        let lines = sim.publish(
            "web-1",
            (0..events).map(|n| message("web-1", n, LINE_BYTES - PREFIX_BYTES)),
        );
        lines.iter().map(|l| l.len() + 1).sum::<usize>()
    };
    let mut bytes = if mode == "dump" { publish(&sim) } else { 0 };
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out.json");
    let config = sim.config();
    let text = format!(
        r#"data_dir = "{data}"
[api]
enabled = false
[sources.bench]
type = "scalingo"
endpoint = "{url}"
auth_endpoint = "{url}"
api_token = "{token}"
app = "{app}"
history_lines = {history}
[sinks.out]
type = "file"
inputs = ["bench"]
path = "{out}"
encoding = "json"
fsync = "none"
"#,
        data = dir.path().join("data").display(),
        url = sim.url(),
        token = config.api_token,
        app = config.app,
        history = if mode == "dump" { events } else { 0 },
        out = out.display(),
    );
    let config =
        ferry::topology::config::parse(&text, std::path::Path::new("bench.toml"), |_| None)
            .expect("config");
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let store = Arc::new(CheckpointStore::open(&config.data_dir).expect("store"));
    let pipeline =
        ferry::topology::start(&config, store, Arc::new(Health::default())).expect("pipeline");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut cpu_before = measure::cpu_seconds("self");
    let mut started = Instant::now();
    let task = tokio::spawn(pipeline.run(
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(30),
    ));
    if mode == "stream" {
        while sim.open_streams() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        bytes = publish(&sim);
        cpu_before = measure::cpu_seconds("self");
        started = Instant::now();
    }
    let mut written = Lines::default();
    while written.count(&out) < events {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counted = written.lines;
    let elapsed = started.elapsed();
    let cpu = measure::cpu_seconds("self") - cpu_before;
    let _ = stop.send(());
    let _ = task.await;
    println!(
        "scalingo {mode}: {counted} events of {} B in {:.2} s: {:.0} events/s, {:.1} MB/s of log lines; {:.2} CPU-s: {:.0} events per CPU-second; peak RSS {:.0} MiB",
        bytes / events,
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        bytes as f64 / 1e6 / elapsed.as_secs_f64(),
        cpu,
        events as f64 / cpu,
        measure::peak_rss_mib("self"),
    );
}

/// Counts the lines of a growing file, reading only what was added.
#[derive(Default)]
struct Lines {
    offset: u64,
    lines: usize,
}

impl Lines {
    fn count(&mut self, path: &std::path::Path) -> usize {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut file) = std::fs::File::open(path) else {
            return 0;
        };
        let mut added = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_ok() && file.read_to_end(&mut added).is_ok() {
            self.offset += added.len() as u64;
            self.lines += added.iter().filter(|b| **b == b'\n').count();
        }
        self.lines
    }
}

//! End-to-end throughput of the `ionet` source: one io.net-simulator SSE stream of
//! 200-byte lines (`id:` + `data:` frames) into a `file` sink, JSON-encoded, on a
//! tokio runtime with one worker thread. Prints events/s over wall time and per
//! CPU-second of the whole process (simulator included, so the per-core figure is
//! a lower bound for ferry alone).
//!
//! `cargo bench --bench ionet_sse`; `FERRY_BENCH_EVENTS` sets the event count
//! (default 500000), `FERRY_BENCH_ENCODING=text` writes bare messages instead.

#[path = "../tests/support/ionet_sim.rs"]
mod ionet_sim;
#[path = "support/measure.rs"]
mod measure;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::checkpoint::CheckpointStore;
use ferry::telemetry::Health;
use ionet_sim::{IonetSim, SimConfig, line};

const LINE_BYTES: usize = 200;

fn main() {
    let events: usize = std::env::var("FERRY_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500_000);
    let encoding = std::env::var("FERRY_BENCH_ENCODING").unwrap_or_else(|_| "json".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(events, &encoding));
}

async fn run(events: usize, encoding: &str) {
    let sim = IonetSim::start(SimConfig::default()).await;
    sim.add_container("c1", "running", "dev-1");
    sim.append(
        "c1",
        "stdout",
        (0..events).map(|n| line("bench", n, LINE_BYTES)),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out.log");
    let config = sim.config();
    let text = format!(
        r#"data_dir = "{data}"
[api]
enabled = false
[sources.bench]
type = "ionet"
endpoint = "{url}"
api_key = "{key}"
deployment_id = "{deployment}"
container_ids = ["c1"]
streams = ["stdout"]
lifecycle_events = false
discovery_interval = "1h"
[sinks.out]
type = "file"
inputs = ["bench"]
path = "{out}"
encoding = "{encoding}"
fsync = "none"
"#,
        data = dir.path().join("data").display(),
        url = sim.url(),
        key = config.api_key,
        deployment = config.deployment_id,
        out = out.display(),
    );
    let config =
        ferry::topology::config::parse(&text, std::path::Path::new("bench.toml"), |_| None)
            .expect("config");
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let store = Arc::new(CheckpointStore::open(&config.data_dir).expect("store"));
    let cpu_before = measure::cpu_seconds("self");
    let started = Instant::now();
    let pipeline =
        ferry::topology::start(&config, store, Arc::new(Health::default())).expect("pipeline");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(pipeline.run(
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(30),
    ));
    let line_len = loop {
        if let Some(first) = std::fs::read_to_string(&out)
            .ok()
            .and_then(|t| t.lines().next().map(str::len))
        {
            break first + 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let expected = (line_len * events) as u64;
    loop {
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        if size >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let cpu = measure::cpu_seconds("self") - cpu_before;
    let _ = stop.send(());
    let _ = task.await;
    let mb = (events * (LINE_BYTES + 1)) as f64 / 1e6;
    println!(
        "ionet_sse: {events} events of {LINE_BYTES} B ({encoding}) in {:.2} s: {:.0} events/s, {:.1} MB/s of log lines; {:.2} CPU-s: {:.0} events per CPU-second",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        mb / elapsed.as_secs_f64(),
        cpu,
        events as f64 / cpu
    );
}

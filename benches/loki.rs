//! End-to-end throughput of the Loki sink: pre-built batches of events with 250-byte
//! lines go through the sink (routing, batching, encoding, HTTP) on a single-threaded
//! runtime — one core — into the test receiver, which runs on its own thread and
//! decodes every push. Prints events/s and MB/s of lines for protobuf + snappy and for
//! JSON (plain and gzip).
//!
//! `cargo bench --bench loki` (set `FERRY_BENCH_EVENTS` to change the event count).

#[path = "support/events.rs"]
mod events;
#[path = "../tests/support/loki_receiver.rs"]
mod loki_receiver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use events::{BATCH, LINE_BYTES, events};
use ferry::checkpoint::Delivery;
use ferry::event::{Batch, Event};
use ferry::sinks::loki::{LokiSink, LokiSinkConfig};
use ferry::sinks::{Sink, SinkContext};
use ferry::telemetry::Health;
use ferry::topology::batch_channel;
use loki_receiver::LokiReceiver;

fn batches(total: usize) -> Vec<Vec<Event>> {
    (0..total)
        .step_by(BATCH)
        .map(|start| events(start, (start + BATCH).min(total)))
        .collect()
}

fn run(name: &str, extra: &str, total: usize) {
    let receiver_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("receiver runtime");
    let loki = receiver_runtime.block_on(LokiReceiver::start());
    loki.count_only();
    let options = format!(
        r#"endpoint = "{}"
labels = {{ app = "{{{{ app }}}}", level = "{{{{ level }}}}", source = "{{{{ source }}}}" }}
{extra}"#,
        loki.endpoint()
    );
    let config: LokiSinkConfig = toml::from_str(&options).expect("valid options");
    let input = batches(total);
    let sink_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("sink runtime");
    let elapsed = sink_runtime.block_on(async {
        let sink = Box::new(LokiSink::new(&config).expect("sink builds"));
        let (sender, receiver) = batch_channel(64 << 20);
        let ctx = SinkContext {
            id: "bench".into(),
            health: Arc::new(Health::default()),
            stopping: Default::default(),
            disk_buffered: false,
        };
        let started = Instant::now();
        let task = tokio::spawn(sink.run(receiver, ctx));
        for events in input {
            let batch = Batch {
                events,
                delivery: Delivery::detached(),
            };
            sender.send(batch).await.expect("sink runs");
        }
        drop(sender);
        task.await.expect("sink task").expect("sink ends cleanly");
        started.elapsed()
    });
    let accepted = loki.accepted();
    assert_eq!(accepted, total, "the receiver got every event");
    let seconds = elapsed.as_secs_f64();
    println!(
        "loki sink, {name:<16} {total} events of {LINE_BYTES} B in {seconds:.2} s: {:>9.0} events/s, {:.1} MB/s of lines",
        total as f64 / seconds,
        (total * LINE_BYTES) as f64 / seconds / 1e6
    );
    drop(loki);
    receiver_runtime.shutdown_timeout(Duration::from_secs(1));
}

fn main() {
    let total = std::env::var("FERRY_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    run("protobuf+snappy", "", total);
    run("json", "encoding = \"json\"", total);
    run(
        "json+gzip",
        "encoding = \"json\"\ncompression = \"gzip\"",
        total,
    );
}

//! Throughput of the Kafka sink and source against the test broker (tansu on
//! 127.0.0.1), with 250-byte events:
//!
//! - sink: batches generated on another thread go through the `kafka` sink (record
//!   building, librdkafka, delivery reports) on a single-threaded runtime — one core
//!   for ferry's side — with lz4, until every delivery report is in;
//! - source: a topic filled beforehand is read by the real `ferry` binary (`kafka`
//!   source, `text` decoding) into a `file` sink; the rate is measured from the first
//!   line written to the last, so the consumer group join is not counted.
//!
//! Each prints events/s, MB/s of event text, events per CPU-second (of the sink's
//! thread; of the whole ferry process for the source, librdkafka's threads included)
//! and peak RSS. Needs the test broker:
//!
//!     eval "$(scripts/kafka-broker start)"; export FERRY_TEST_KAFKA FERRY_TEST_TANSU
//!     cargo bench --bench kafka       # FERRY_BENCH_EVENTS sets the count (1,000,000)
//!
//! `FERRY_BENCH_ONLY=sink` or `source` runs one side; `FERRY_BENCH_SOURCE_OPTIONS` adds
//! lines to the source's config (e.g. `fetch_buffer_bytes = 4194304`).

#[path = "support/events.rs"]
mod events;
#[path = "../tests/support/ferry_process.rs"]
mod ferry_process;
#[path = "../tests/support/kafka.rs"]
mod kafka;
#[path = "support/measure.rs"]
mod measure;

use std::sync::Arc;
use std::time::{Duration, Instant};

use events::{BATCH, LINE_BYTES, events, line};
use ferry::checkpoint::Delivery;
use ferry::event::Batch;
use ferry::sinks::kafka::{KafkaSink, KafkaSinkConfig};
use ferry::sinks::{Sink, SinkContext};
use ferry::telemetry::Health;
use ferry::topology::batch_channel;
use ferry_process::Ferry;
use kafka::{broker, create_topic, produce, unique};

fn report(what: &str, total: usize, seconds: f64, cpu: f64, rss: f64) {
    println!(
        "{what:<44} {total} events of {LINE_BYTES} B in {seconds:.2} s: {:>9.0} events/s, {:>6.1} MB/s, {:>9.0} events per CPU-second, peak RSS {rss:.0} MiB",
        total as f64 / seconds,
        (total * LINE_BYTES) as f64 / seconds / 1e6,
        total as f64 / cpu.max(0.01)
    );
}

fn sink(broker: &str, total: usize, encoding: &str) {
    let topic = unique("bench-sink");
    create_topic(broker, &topic, 4);
    let options = format!(
        "bootstrap_servers = \"{broker}\"\ntopic = \"{topic}\"\nencoding = \"{encoding}\"\ncompression = \"lz4\"\n"
    );
    let config: KafkaSinkConfig = toml::from_str(&options).expect("valid options");
    let (sender, receiver) = batch_channel(8 << 20);
    let generator = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("generator runtime");
        runtime.block_on(async {
            for start in (0..total).step_by(BATCH) {
                let batch = Batch {
                    events: events(start, (start + BATCH).min(total)),
                    delivery: Delivery::detached(),
                };
                sender.send(batch).await.expect("the sink runs");
            }
        });
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("sink runtime");
    let cpu_before = measure::cpu_seconds("thread-self");
    let elapsed = runtime.block_on(async {
        let sink = Box::new(KafkaSink::new(&config).expect("sink builds"));
        let ctx = SinkContext {
            id: "bench".into(),
            health: Arc::new(Health::default()),
            stopping: Default::default(),
            disk_buffered: false,
        };
        let started = Instant::now();
        sink.run(receiver, ctx).await.expect("sink ends cleanly");
        started.elapsed()
    });
    let sink_cpu = measure::cpu_seconds("thread-self") - cpu_before;
    generator.join().expect("generator");
    report(
        &format!("kafka sink, {encoding}, lz4 (sink thread)"),
        total,
        elapsed.as_secs_f64(),
        sink_cpu,
        measure::peak_rss_mib("self"),
    );
}

fn source(broker: &str, total: usize) {
    let topic = unique("bench-source");
    create_topic(broker, &topic, 4);
    produce(
        broker,
        &topic,
        (0..total).map(|n| (None, Vec::new(), line(n).into_bytes())),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out.log");
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[api]
enabled = false
[sources.bus]
type = "kafka"
bootstrap_servers = "{broker}"
group_id = "{group}"
topics = ["{topic}"]
decoding = "text"
metadata_field = ""
session_timeout = "6s"
{extra}
[sinks.out]
type = "file"
inputs = ["bus"]
path = "{out}"
encoding = "text"
"#,
            data = dir.path().join("data").display(),
            group = unique("bench"),
            out = out.display(),
            extra = std::env::var("FERRY_BENCH_SOURCE_OPTIONS").unwrap_or_default(),
        ),
    )
    .expect("config");
    let ferry = Ferry::start(&config);
    let pid = ferry.pid().to_string();
    let expected = (total * (LINE_BYTES + 1)) as u64;
    let size = || std::fs::metadata(&out).map_or(0, |m| m.len());
    let limit = Instant::now() + Duration::from_secs(600);
    while size() == 0 {
        assert!(Instant::now() < limit, "no record arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
    let first = (Instant::now(), size(), measure::cpu_seconds(&pid));
    while size() < expected {
        assert!(Instant::now() < limit, "not every record arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    let seconds = first.0.elapsed().as_secs_f64();
    let counted = total - (first.1 / (LINE_BYTES as u64 + 1)) as usize;
    let cpu = measure::cpu_seconds(&pid) - first.2;
    let rss = measure::peak_rss_mib(&pid);
    assert!(ferry.terminate().success());
    report(
        "kafka source → file sink (ferry process)",
        counted,
        seconds,
        cpu,
        rss,
    );
}

fn main() {
    let total = std::env::var("FERRY_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let only = std::env::var("FERRY_BENCH_ONLY").unwrap_or_default();
    let broker = broker();
    if only.is_empty() || only == "sink" {
        sink(&broker, total, "text");
        sink(&broker, total, "native");
    }
    if only.is_empty() || only == "source" {
        source(&broker, total);
    }
}

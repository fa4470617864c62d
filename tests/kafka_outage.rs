//! The `kafka` sink while the broker is unreachable for 20 s: a TCP proxy between
//! ferry and a broker of the test's own is cut mid-run (the in-memory broker keeps
//! running, since stopping it would empty it). The sink holds the source back; ferry
//! is SIGKILLed during the outage and restarted, so anything acknowledged without
//! having been delivered would be missing at the end; after the proxy is restored
//! every event is in the topic, and the duplicates are bounded by what was retried
//! (counted) plus the first process's in-flight window.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/kafka.rs"]
mod kafka;
#[path = "support/tcp_proxy.rs"]
mod tcp_proxy;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_process::{Ferry, free_port, http_get, metric, scaled, wait_until};
use kafka::{OwnBroker, consume_until, create_topic, unique};
use tcp_proxy::TcpProxy;

const OUTAGE: Duration = Duration::from_secs(20);
const WINDOW_BATCHES: usize = 8;
const BATCH_EVENTS: usize = 500;

fn start_ferry(dir: &Path, api: u16, bootstrap: &str, topic: &str) -> Ferry {
    let config = format!(
        r#"data_dir = "{data}"
[api]
address = "127.0.0.1:{api}"

[sources.logs]
type = "file"
include = ["{input}"]
poll_interval = "20ms"
max_in_flight_batches = {WINDOW_BATCHES}
batch_max_events = {BATCH_EVENTS}

[sinks.kafka]
type = "kafka"
inputs = ["logs"]
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
encoding = "text"
compression = "lz4"
message_timeout = "3s"
retry_initial_backoff = "200ms"
retry_max_backoff = "1s"
librdkafka_options = {{ "reconnect.backoff.max.ms" = "500", "socket.connection.setup.timeout.ms" = "2000" }}
"#,
        data = dir.join("data").display(),
        input = dir.join("in.log").display(),
    );
    let path = dir.join("ferry.toml");
    std::fs::write(&path, config).unwrap();
    Ferry::start(&path)
}

/// `ferry_component_sent_events_total` of the components of `kind` (source, sink).
fn sent(api: u16, kind: &str) -> usize {
    metric(
        api,
        "ferry_component_sent_events_total",
        &format!("component_kind=\"{kind}\""),
    )
    .unwrap_or(0.0) as usize
}

#[test]
fn an_unreachable_broker_holds_the_source_back_and_nothing_unsent_is_acknowledged() {
    // Checked up front so a missing broker setup fails loudly before anything starts.
    kafka::broker();
    let proxy = TcpProxy::start();
    let broker_port = free_port();
    let _broker = OwnBroker::start(broker_port, proxy.port());
    proxy.connect_to(broker_port);
    let bootstrap = format!("127.0.0.1:{}", proxy.port());
    let topic = unique("outage");
    create_topic(&bootstrap, &topic, 3);

    let dir = tempfile::tempdir().unwrap();
    let total = scaled(60_000);
    let written = Arc::new(AtomicBool::new(false));
    let writer = {
        let path = dir.path().join("in.log");
        let written = Arc::clone(&written);
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            for chunk in (0..total).collect::<Vec<_>>().chunks(1_000) {
                let mut text = String::new();
                for seq in chunk {
                    text.push_str(&format!("line {seq:09}\n"));
                }
                file.write_all(text.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(150));
            }
            written.store(true, Ordering::Release);
        })
    };

    let api = free_port();
    let first = start_ferry(dir.path(), api, &bootstrap, &topic);
    wait_until(Duration::from_secs(60), "some events delivered", || {
        sent(api, "sink") >= total / 6
    });
    proxy.cut();
    let cut_at = Instant::now();
    // Held back: the source gets at most its in-flight window ahead of the broker.
    std::thread::sleep(Duration::from_secs(8));
    let read = sent(api, "source");
    let delivered = sent(api, "sink");
    assert!(
        read - delivered <= WINDOW_BATCHES * BATCH_EVENTS,
        "the source read {read} events with {delivered} delivered: not held back"
    );
    assert!(read < total, "the source was not held back at all");
    let (status, body) = http_get(api, "/health").expect("/health answers");
    assert_eq!(status, 503, "/health reports the failing sink: {body}");
    assert!(body.contains("sink:kafka"), "{body}");
    first.kill();

    let api = free_port();
    let second = start_ferry(dir.path(), api, &bootstrap, &topic);
    std::thread::sleep(OUTAGE.saturating_sub(cut_at.elapsed()));
    assert_eq!(
        sent(api, "sink"),
        0,
        "nothing can be delivered while the broker is unreachable"
    );
    proxy.restore();
    writer.join().unwrap();
    assert!(written.load(Ordering::Acquire));

    let records = consume_until(&bootstrap, &topic, Duration::from_secs(180), |records| {
        let mut distinct: Vec<&[u8]> = records.iter().map(|r| r.payload.as_slice()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        distinct.len() >= total
    });
    wait_until(
        Duration::from_secs(60),
        "the restarted ferry to settle",
        || sent(api, "source") <= sent(api, "sink"),
    );
    let retried = metric(api, "ferry_kafka_retried_events_total", "").unwrap_or(0.0) as usize;
    assert!(second.terminate().success());

    let mut seen: HashMap<String, usize> = HashMap::new();
    for record in &records {
        *seen.entry(record.text().to_string()).or_default() += 1;
    }
    for seq in 0..total {
        assert!(
            seen.contains_key(&format!("line {seq:09}")),
            "line {seq} never reached the topic"
        );
    }
    let duplicates = records.len() - seen.len();
    eprintln!(
        "outage: {total} events, {} records in the topic, {duplicates} duplicates, {retried} records retried",
        records.len()
    );
    assert!(
        duplicates <= retried + WINDOW_BATCHES * BATCH_EVENTS,
        "{duplicates} duplicates, {retried} records retried"
    );
}

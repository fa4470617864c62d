//! Stopping when nothing can be delivered: the real `ferry` binary ships a demo
//! source to the test Loki receiver; when SIGTERM comes while the sink is in its
//! retry backoff (Loki refusing, or not listening at all), ferry gives the held
//! batches back and exits 0 long before `shutdown_timeout`, with one warning naming
//! the sink. A restart with Loki up then delivers every event: the checkpoints did
//! not move past what was given back. The same holds for a file sink whose disk is
//! full. A sink that is making progress still drains.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/loki_receiver.rs"]
mod loki_receiver;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use ferry::sources::demo::{DemoFormat, demo_line};
use ferry_process::{Ferry, free_port, scaled, warnings_after_sigterm};
use loki_receiver::LokiReceiver;

/// Far longer than any stop that gives back takes: exiting before it proves ferry
/// did not wait out the drain.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// A hang guard, inside `SHUTDOWN_TIMEOUT`.
const STOP_LIMIT: Duration = Duration::from_secs(45);
const WAIT: Duration = Duration::from_secs(60);

/// The test's ferry config: `count` demo events (`rate` line) to a Loki sink at
/// `endpoint` with `buffer` (a line), and `/metrics` on `api_port` if given.
fn write_config(
    dir: &Path,
    endpoint: &str,
    count: usize,
    rate: &str,
    buffer: &str,
    api_port: Option<u16>,
) -> std::path::PathBuf {
    let sink = format!(
        r#"[sinks.loki]
type = "loki"
inputs = ["shop"]
endpoint = "{endpoint}"
labels = {{ app = "{{{{ app }}}}" }}
batch_timeout = "100ms"
retry_initial_backoff = "50ms"
retry_max_backoff = "500ms"
{buffer}"#
    );
    write_config_with(dir, count, rate, &sink, api_port)
}

/// The test's ferry config: `count` demo events (`rate` line) to `sink` (a table),
/// and `/metrics` on `api_port` if given.
fn write_config_with(
    dir: &Path,
    count: usize,
    rate: &str,
    sink: &str,
    api_port: Option<u16>,
) -> std::path::PathBuf {
    let api = match api_port {
        Some(port) => format!("address = \"127.0.0.1:{port}\""),
        None => "enabled = false".into(),
    };
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
shutdown_timeout = "{timeout}s"

[api]
{api}

[sources.shop]
type = "demo"
count = {count}
{rate}
batch_max_events = 100

{sink}
"#,
            data = dir.join("data").display(),
            timeout = SHUTDOWN_TIMEOUT.as_secs(),
        ),
    )
    .unwrap();
    config
}

/// Sends SIGTERM and waits for the exit (blocking this worker only).
fn stop(ferry: Ferry) -> (std::process::ExitStatus, String) {
    tokio::task::block_in_place(|| {
        let mut ferry = ferry;
        ferry.signal(libc::SIGTERM);
        let status = ferry.wait(STOP_LIMIT);
        (status, ferry.log_text())
    })
}

/// Stops `ferry` while its sink cannot deliver: it must exit 0 (before
/// `shutdown_timeout`) with one warning, naming the sink, which is returned.
fn stop_giving_back(ferry: Ferry) -> String {
    let (status, log) = stop(ferry);
    assert!(
        status.success(),
        "exit 0 after giving back: {status:?}\n{log}"
    );
    let warnings = warnings_after_sigterm(&log);
    assert_eq!(warnings.len(), 1, "one warning:\n{log}");
    let warning = warnings[0];
    assert!(
        warning.contains("gave back") && warning.contains("sinks.loki"),
        "{warning}"
    );
    warning.to_string()
}

/// Starts ferry again and waits until the demo source has sent everything and the
/// pipeline has finished by itself.
fn run_to_the_end(config: &Path) -> String {
    tokio::task::block_in_place(|| {
        let mut ferry = Ferry::start(config);
        let status = ferry.wait(WAIT);
        assert!(status.success(), "{status:?}\n{}", ferry.log_text());
        ferry.log_text()
    })
}

fn assert_every_event_delivered(loki: &LokiReceiver, count: usize) {
    let lines: HashSet<String> = loki.entries().into_iter().map(|e| e.line).collect();
    let expected: HashSet<String> = (0..count as u64)
        .map(|n| demo_line(n, DemoFormat::Mixed))
        .collect();
    let missing = expected.difference(&lines).count();
    assert_eq!(missing, 0, "{missing} of {count} events never reached Loki");
}

/// The demo source's committed cursor: how many events it may skip on a restart.
fn committed(dir: &Path) -> u64 {
    let store = ferry::checkpoint::CheckpointStore::open(&dir.join("data")).unwrap();
    let cursors = store.load("shop").unwrap();
    cursors
        .get("sequence")
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_refusing_at_stop_gives_back_and_a_restart_delivers_everything() {
    let loki = LokiReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let count = scaled(3000);
    let config = write_config(dir.path(), &loki.endpoint(), count, "rate = 1000", "", None);
    let ferry = Ferry::start(&config);
    assert!(loki.wait_for_entries(300, WAIT).await, "pushes start");
    loki.begin_outage(503);
    assert!(loki.wait_for_status(503, 3, WAIT).await, "ferry retries");

    let warning = stop_giving_back(ferry);
    assert!(warning.contains("sources' last checkpoints"), "{warning}");
    let delivered = loki.entries().len() as u64;
    assert!(
        committed(dir.path()) <= delivered,
        "the checkpoint did not move past what Loki took"
    );

    loki.end_outage();
    run_to_the_end(&config);
    assert_every_event_delivered(&loki, count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_down_with_a_disk_buffer_stops_at_once_and_replays_from_the_buffer() {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let count = scaled(2000);
    let config = write_config(
        dir.path(),
        &endpoint,
        count,
        "",
        "buffer = { type = \"disk\" }",
        None,
    );
    let ferry = Ferry::start(&config);
    let buffer = ferry::buffer::directory(&dir.path().join("data"), "loki");
    tokio::task::block_in_place(|| {
        ferry_process::wait_until(WAIT, "every event in the disk buffer", || {
            ferry::buffer::inspect::stats(&buffer).is_ok_and(|s| s.events as usize >= count)
        });
        ferry_process::wait_until(WAIT, "a failed push", || {
            ferry.log_text().contains("Loki push failing")
        });
    });

    let warning = stop_giving_back(ferry);
    assert!(warning.contains("disk buffer"), "{warning}");
    assert_eq!(
        committed(dir.path()),
        count as u64,
        "the disk buffer settled every event for the source"
    );

    let loki = LokiReceiver::start_on(([127, 0, 0, 1], port).into()).await;
    run_to_the_end(&config);
    assert_every_event_delivered(&loki, count);
}

#[test]
fn a_file_sink_on_a_full_disk_gives_back_at_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    std::os::unix::fs::symlink("/dev/full", &out).unwrap();
    let count = scaled(2000);
    let sink = format!(
        r#"[sinks.files]
type = "file"
inputs = ["shop"]
path = "{}"
encoding = "text"
retry_max_backoff = "200ms""#,
        out.display()
    );
    let config = write_config_with(dir.path(), count, "", &sink, None);
    let mut ferry = Ferry::start(&config);
    ferry_process::wait_until(WAIT, "a failed write", || {
        ferry.log_text().contains("file sink write failed")
    });
    ferry.signal(libc::SIGTERM);
    let (status, log) = (ferry.wait(STOP_LIMIT), ferry.log_text());
    assert!(status.success(), "{status:?}\n{log}");
    let warnings = warnings_after_sigterm(&log);
    assert!(
        warnings.len() == 1 && warnings[0].contains("sinks.files"),
        "one warning naming the sink:\n{log}"
    );
    assert_eq!(committed(dir.path()), 0, "nothing was written");

    std::fs::remove_file(&out).unwrap();
    let mut ferry = Ferry::start(&config);
    assert!(ferry.wait(WAIT).success(), "{}", ferry.log_text());
    let written = std::fs::read_to_string(&out).unwrap();
    for n in 0..count as u64 {
        assert!(
            written.contains(&demo_line(n, DemoFormat::Mixed)),
            "line {n} is missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_making_progress_still_drains() {
    let loki = LokiReceiver::start().await;
    // Every push takes a while: at the stop, pushes are in flight and more are queued.
    loki.set_delay(Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let count = scaled(100_000);
    let port = free_port();
    let config = write_config(
        dir.path(),
        &loki.endpoint(),
        count,
        "rate = 2000",
        "",
        Some(port),
    );
    let ferry = Ferry::start(&config);
    assert!(loki.wait_for_entries(500, WAIT).await, "pushes start");
    let sent_before_stop = ferry_process::metric(
        port,
        "ferry_component_sent_events_total",
        "component_kind=\"source\",component_id=\"shop\"",
    )
    .expect("ferry serves /metrics") as u64;
    let delivered_before_stop = loki.entries().len();

    let (status, log) = stop(ferry);
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        warnings_after_sigterm(&log).is_empty(),
        "nothing given back:\n{log}"
    );
    let committed = committed(dir.path());
    let delivered: HashSet<String> = loki.entries().into_iter().map(|e| e.line).collect();
    println!(
        "at the stop: {sent_before_stop} sent, {delivered_before_stop} delivered; after the drain: {} delivered, {committed} committed",
        delivered.len()
    );
    assert!(
        committed >= sent_before_stop,
        "what the source had sent before the stop was drained and committed"
    );
    assert!(
        (0..committed).all(|n| delivered.contains(&demo_line(n, DemoFormat::Mixed))),
        "everything committed was delivered"
    );
    assert!(committed < count as u64, "stopped before the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_sink_without_reachable_brokers_gives_back_at_the_stop() {
    // Nothing listens on this port: librdkafka would hold the records until
    // `message_timeout` (5 minutes), far past `shutdown_timeout`.
    let unreachable = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let sink = format!(
        r#"[sinks.bus]
type = "kafka"
inputs = ["shop"]
bootstrap_servers = "{unreachable}"
topic = "logs"
batch_timeout = "100ms"
"#
    );
    let config = write_config_with(dir.path(), 100_000, "rate = 1000", &sink, None);
    let ferry = Ferry::start(&config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, log) = stop(ferry);
    assert!(
        status.success(),
        "exit 0 after giving back: {status:?}\n{log}"
    );
    let given_back: Vec<&str> = warnings_after_sigterm(&log)
        .into_iter()
        .filter(|warning| warning.contains("gave back"))
        .collect();
    assert_eq!(given_back.len(), 1, "one give-back warning:\n{log}");
    assert!(given_back[0].contains("sinks.bus"), "{}", given_back[0]);
    assert_eq!(committed(dir.path()), 0, "nothing was delivered");
}

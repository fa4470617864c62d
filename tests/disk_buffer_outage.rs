//! Why the disk buffer exists: a source that cannot replay far (Scalingo's stream
//! sends only new lines; a reconnect dumps the last `resume_lines`) feeding a Loki
//! that is down for longer than that history covers, while the stream drops. With
//! the memory buffer the source is held back, its stream drops with lines unsent,
//! and what the dump cannot reach back to is lost (the test prints how much); with
//! the disk buffer the source never waits, so nothing is lost.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/loki_receiver.rs"]
mod loki_receiver;
#[path = "support/scalingo_sim.rs"]
mod scalingo_sim;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ferry::checkpoint::CheckpointStore;
use ferry::telemetry::Health;
use ferry::topology::Outcome;
use ferry_process::scaled;
use loki_receiver::LokiReceiver;
use scalingo_sim::{ScalingoSim, SimConfig, message};

const WAIT: Duration = Duration::from_secs(120);
const RESUME_LINES: usize = 100;

/// Polls `check` every 50 ms until it holds; panics after `WAIT` (a hang guard).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(
    sim: &ScalingoSim,
    loki: &LokiReceiver,
    data_dir: &std::path::Path,
    buffer: &str,
) -> String {
    let sim_config = sim.config();
    format!(
        r#"data_dir = "{data}"
shutdown_timeout = "10s"

[api]
enabled = false

[sources.app]
type = "scalingo"
endpoint = "{url}"
auth_endpoint = "{url}"
api_token = "{token}"
app = "{app}"
idle_timeout = "30s"
retry_min_backoff = "50ms"
retry_max_backoff = "500ms"
history_lines = 0
resume_lines = {RESUME_LINES}
max_in_flight_batches = 4
batch_max_events = 50

[sinks.loki]
type = "loki"
inputs = ["app"]
endpoint = "{endpoint}"
labels = {{ app = "{{{{ app }}}}" }}
batch_timeout = "50ms"
retry_initial_backoff = "50ms"
retry_max_backoff = "200ms"
{buffer}
"#,
        data = data_dir.display(),
        url = sim.url(),
        token = sim_config.api_token,
        app = sim_config.app,
        endpoint = loki.endpoint(),
    )
}

/// Runs the outage with `buffer` in the sink; returns (lines published, lines lost).
async fn outage_with(buffer: &str, disk: bool) -> (usize, usize) {
    let sim = ScalingoSim::start(SimConfig::default()).await;
    let loki = LokiReceiver::start().await;
    // The simulator's clock starts in March 2026.
    loki.set_max_age(None);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let text = config(&sim, &loki, &data_dir, buffer);
    let config =
        ferry::topology::config::parse(&text, &dir.path().join("ferry.toml"), |_| None).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    let store = Arc::new(CheckpointStore::open(&data_dir).unwrap());
    let pipeline = ferry::topology::start(&config, store, Arc::new(Health::default())).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(pipeline.run(
        async {
            let _ = stopped.await;
        },
        config.shutdown_timeout,
    ));

    let mut published = 0;
    let mut publish = |range: std::ops::Range<usize>| {
        for n in range {
            sim.publish("web-1", [message("web-1", n, 200)]);
            published += 1;
        }
    };
    eventually("the stream open", || sim.open_streams() > 0).await;
    publish(0..100);
    eventually("the first lines in Loki", || loki.accepted() >= 100).await;

    // Loki goes down; the app logs far more than the dump can give back.
    loki.begin_outage(503);
    let during = scaled(20_000);
    publish(100..100 + during);
    if disk {
        let buffer = ferry::buffer::directory(&data_dir, "loki");
        eventually("every line in the disk buffer", || {
            ferry::buffer::inspect::stats(&buffer).is_ok_and(|s| s.events as usize >= during)
        })
        .await;
    } else {
        // The source is held back: give it time to take what it can.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    sim.disconnect_all();
    loki.end_outage();
    eventually("the stream open again", || sim.open_streams() > 0).await;
    publish(100 + during..200 + during);
    let last = 200 + during - 1;
    eventually("the last line in Loki", || {
        loki.entries().iter().any(|e| number(&e.line) == Some(last))
    })
    .await;
    let _ = stop.send(());
    assert_eq!(running.await.unwrap().0, Outcome::Completed);

    let received: BTreeSet<usize> = loki
        .entries()
        .iter()
        .filter_map(|e| number(&e.line))
        .collect();
    let lost = (0..published).filter(|n| !received.contains(n)).count();
    (published, lost)
}

/// The number of a test message in a Loki line.
fn number(line: &str) -> Option<usize> {
    let (_, rest) = line.split_once("web-1 message ")?;
    rest.get(..7)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_buffer_loses_nothing_where_the_memory_buffer_loses_what_the_source_cannot_replay() {
    let (published, lost) =
        outage_with(r#"buffer = { type = "disk", max_bytes = 268435456 }"#, true).await;
    eprintln!("disk buffer: {published} lines published, {lost} lost");
    assert_eq!(lost, 0, "the disk buffer loses nothing");

    let (published, lost) = outage_with("", false).await;
    eprintln!(
        "memory buffer: {published} lines published, {lost} lost (resume_lines = {RESUME_LINES})"
    );
    assert!(
        lost > 0,
        "the memory buffer holds the source back, so a dropped stream loses what the dump cannot reach"
    );
}

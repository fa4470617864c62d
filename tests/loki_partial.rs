//! Loki refusing part of a push, through the real `ferry` binary as in issue 15: one
//! file of JSON lines, parsed with `timestamp_field = "ts"`, into one stream
//! `{app="dlqcheck"}`; Loki (the test receiver, judging each entry with Loki's limits
//! and wording) refuses 300 entries too old, 50 lines too long and 20 entries too far
//! behind the stream, spread through 3,000. Exactly the valid entries are stored,
//! exactly the refused ones are dead-lettered, once each, the counters by reason match,
//! and the extra requests the isolation took are printed.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/loki_receiver.rs"]
mod loki_receiver;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use ferry::event::now_nanos;
use ferry_process::{Ferry, free_port, metric};
use loki_receiver::{LokiReceiver, dead_letter_messages};

const ENTRIES: usize = 3000;
/// The receiver's `max_line_size`.
const MAX_LINE: usize = 1024;
const HOUR: i64 = 3_600_000_000_000;
const LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Valid,
    /// `"ts":"2020-01-01T00:00:00Z"`: older than Loki's week.
    TooOld,
    /// Longer than `MAX_LINE`.
    TooLong,
    /// Two hours behind the stream's newest entry (Loki's window is one hour).
    Behind,
}

/// 300 too old, 50 too long, 20 behind, spread through the file.
fn kind(n: usize) -> Kind {
    if n % 10 == 0 {
        Kind::TooOld
    } else if n % 60 == 5 {
        Kind::TooLong
    } else if n % 150 == 77 {
        Kind::Behind
    } else {
        Kind::Valid
    }
}

/// Line `n` of the file, with `now` the stream's newest time.
fn line(n: usize, now: i64) -> String {
    let ts = match kind(n) {
        Kind::TooOld => "2020-01-01T00:00:00Z".to_string(),
        Kind::Behind => nanos_rfc3339(now - 2 * HOUR + n as i64 * 1_000_000),
        Kind::Valid | Kind::TooLong => nanos_rfc3339(now - 10_000_000_000 + n as i64 * 1_000),
    };
    let padding = match kind(n) {
        Kind::TooLong => "x".repeat(MAX_LINE + n % 7),
        _ => String::new(),
    };
    format!(r#"{{"ts":"{ts}","n":{n},"msg":"entry {n}{padding}"}}"#)
}

fn nanos_rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn config(dir: &Path, input: &Path, dead: &Path, endpoint: &str, port: u16) -> String {
    format!(
        r#"
data_dir = "{data}"
[api]
address = "127.0.0.1:{port}"

[sources.app]
type = "file"
include = ["{input}"]
poll_interval = "20ms"

[transforms.parsed]
type = "parse"
inputs = ["app"]
format = "json"
timestamp_field = "ts"

[sinks.loki]
type = "loki"
inputs = ["parsed"]
endpoint = "{endpoint}"
labels = {{ app = "dlqcheck" }}
batch_timeout = "200ms"
dead_letter = {{ type = "file", path = "{dead}" }}
"#,
        data = dir.join("data").display(),
        input = input.display(),
        dead = dead.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_entries_loki_refused_are_dead_lettered() {
    let loki = LokiReceiver::start().await;
    loki.set_max_line(MAX_LINE);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.log");
    let dead = dir.path().join("rejected.log");
    let port = free_port();
    let config_path = dir.path().join("ferry.toml");
    std::fs::write(
        &config_path,
        config(dir.path(), &input, &dead, &loki.endpoint(), port),
    )
    .unwrap();

    // The stream's newest entry comes first, in a push of its own.
    let now = now_nanos();
    let primer = format!(r#"{{"ts":"{}","msg":"primer"}}"#, nanos_rfc3339(now));
    std::fs::write(&input, format!("{primer}\n")).unwrap();
    let ferry = Ferry::start(&config_path);
    assert!(
        loki.wait_for_entries(1, LIMIT).await,
        "the primer arrives; log:\n{}",
        ferry.log_text()
    );

    let lines: Vec<String> = (0..ENTRIES).map(|n| line(n, now)).collect();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    file.write_all(format!("{}\n", lines.join("\n")).as_bytes())
        .unwrap();
    drop(file);

    let of = |wanted: Kind| -> HashSet<String> {
        (0..ENTRIES)
            .filter(|&n| kind(n) == wanted)
            .map(|n| lines[n].clone())
            .collect()
    };
    let (valid, too_old, too_long, behind) = (
        of(Kind::Valid),
        of(Kind::TooOld),
        of(Kind::TooLong),
        of(Kind::Behind),
    );
    assert_eq!((too_old.len(), too_long.len(), behind.len()), (300, 50, 20));
    let refused: HashSet<String> = too_old
        .iter()
        .chain(&too_long)
        .chain(&behind)
        .cloned()
        .collect();

    assert!(
        loki.wait_for_entries(1 + valid.len(), LIMIT).await,
        "the valid entries arrive; log:\n{}",
        ferry.log_text()
    );
    let started = tokio::time::Instant::now();
    while dead_letter_messages(&dead).len() < refused.len() {
        assert!(
            started.elapsed() < LIMIT,
            "the refused entries reach the dead letter; log:\n{}",
            ferry.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Everything is settled: the counters have their final values.
    let counters = tokio::task::spawn_blocking(move || {
        let reason = |r: &str| {
            metric(
                port,
                "ferry_loki_refused_entries_total",
                &format!("reason=\"{r}\""),
            )
            .unwrap_or(0.0)
        };
        (
            reason("too_old"),
            reason("line_too_long"),
            reason("out_of_order"),
            ["too_new", "labels", "stream_limit", "other"].map(reason),
            metric(port, "ferry_loki_isolation_requests_total", "").unwrap_or(0.0),
            metric(port, "ferry_loki_dead_letter_events_total", "").unwrap_or(0.0),
        )
    })
    .await
    .unwrap();
    let log_path = ferry.log.clone();
    let status = ferry.terminate();
    assert!(status.success(), "ferry exits cleanly: {status}");

    let stored: Vec<String> = loki
        .entries()
        .into_iter()
        .map(|e| e.line)
        .filter(|l| *l != primer)
        .collect();
    let stored_set: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_set.len(), "each entry stored once");
    assert_eq!(
        stored_set, valid,
        "the receiver stores exactly the valid entries"
    );

    let dead = dead_letter_messages(&dead);
    let dead_set: HashSet<String> = dead.iter().cloned().collect();
    assert_eq!(
        dead.len(),
        refused.len(),
        "each refused entry dead-lettered once"
    );
    assert_eq!(
        dead_set, refused,
        "the dead letter holds exactly the refused entries"
    );

    let (old, long, out_of_order, others, extra, dead_count) = counters;
    assert_eq!((old, long, out_of_order), (300.0, 50.0, 20.0));
    assert_eq!(others, [0.0; 4]);
    assert_eq!(dead_count, 370.0);

    let pushes = loki.requests().len();
    println!(
        "isolation: {extra} extra requests to find {} refused among {ENTRIES} entries ({pushes} pushes in all, {} re-sent entries dropped by the receiver as duplicates)",
        refused.len(),
        loki.duplicates()
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let refusal_lines: Vec<&str> = log.lines().filter(|l| l.contains("Loki refused")).collect();
    assert!(
        !refusal_lines.is_empty() && refusal_lines.len() <= 10,
        "one line per push, not per entry: {refusal_lines:#?}"
    );
    assert!(
        refusal_lines.iter().any(|l| l.contains("too_old=")),
        "{refusal_lines:#?}"
    );
}

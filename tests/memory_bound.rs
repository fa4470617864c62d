//! Memory stays within the documented bound whatever the input's size: the real
//! `ferry` binary reads a large file of the standard benchmark lines (40 MB, times
//! `FERRY_TEST_SCALE`; 7.5 gives the issue's 300 MB) through the full pipeline —
//! parse json → level → redact (every detector) — into a deliberately slow Loki
//! (the test receiver answers each push 100 ms late), so the sink holds everything
//! back and every budget fills. Peak RSS (`VmHWM`) must stay under the README's
//! bound, and every line must arrive once.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/loki_receiver.rs"]
mod loki_receiver;

use std::io::Write;
use std::time::Duration;

use ferry_process::{Ferry, scaled};
use loki_receiver::LokiReceiver;

/// The README's bound for a default pipeline into a slow sink.
const BOUND_MIB: u64 = 48;

/// Writes lines of the standard benchmark shape until `bytes`; returns the count.
fn write_input(path: &std::path::Path, bytes: usize) -> usize {
    const LEVELS: [&str; 6] = ["debug", "info", "info", "warn", "error", "info"];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut count, mut written) = (0usize, 0usize);
    while written < bytes {
        let s = count % 86400;
        let line = format!(
            "{{\"ts\":\"2026-11-20T{:02}:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"msg\":\"user u{}@example.com logged in from 10.1.{}.{}\",\"req_id\":{count}}}\n",
            s / 3600,
            (s / 60) % 60,
            s % 60,
            count % 1000,
            LEVELS[count % 6],
            count % 5,
            (count >> 8) & 255,
            count & 255,
        );
        out.write_all(line.as_bytes()).unwrap();
        written += line.len();
        count += 1;
    }
    out.flush().unwrap();
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_input_into_a_slow_sink_stays_within_the_memory_bound() {
    let loki = LokiReceiver::start().await;
    loki.count_only();
    loki.set_max_age(None);
    loki.set_delay(Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.log");
    let lines = write_input(&input, scaled(40_000_000));
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{data}"
[api]
enabled = false

[sources.app]
type = "file"
include = ["{input}"]

[transforms.parsed]
type = "parse"
inputs = ["app"]
format = "json"

[transforms.tagged]
type = "level"
inputs = ["parsed"]

[transforms.clean]
type = "redact"
inputs = ["tagged"]

[sinks.loki]
type = "loki"
inputs = ["clean"]
endpoint = "{endpoint}"
labels = {{ app = "bench" }}
"#,
            data = dir.path().join("data").display(),
            input = input.display(),
            endpoint = loki.endpoint(),
        ),
    )
    .unwrap();

    let ferry = Ferry::start(&config);
    let limit = Duration::from_secs(600);
    assert!(
        loki.wait_for_entries(lines, limit).await,
        "{} of {lines} lines reached Loki",
        loki.accepted()
    );
    let peak = ferry.peak_rss_kib();
    assert!(ferry.terminate().success());
    eprintln!(
        "{lines} lines into a slow Loki: peak RSS {} MiB",
        peak / 1024
    );
    assert!(
        peak < BOUND_MIB * 1024,
        "peak RSS {peak} KiB is over the bound of {BOUND_MIB} MiB"
    );
    assert_eq!(loki.accepted(), lines);
    assert_eq!(loki.duplicates(), 0);
}

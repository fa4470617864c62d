//! SIGKILL during retries loses nothing: the real `ferry` binary pushes a demo source
//! to the test receiver, the receiver goes down (503), ferry is killed with SIGKILL
//! while it retries, the receiver comes back, and a restarted ferry delivers every
//! event (replaying at most its in-flight window).

#[path = "support/loki_receiver.rs"]
mod loki_receiver;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferry::sources::demo::{DemoFormat, demo_line};
use loki_receiver::LokiReceiver;

const COUNT: u64 = 4000;

fn spawn_ferry(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--config"])
        .arg(config)
        .env("FERRY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start ferry")
}

/// Waits for `child` to exit by itself, up to `timeout`.
async fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait for ferry") {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn sigkill_during_retries_then_restart_loses_nothing() {
    let loki = LokiReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{data}"
[api]
enabled = false

[sources.shop]
type = "demo"
count = {COUNT}
rate = 1000
batch_max_events = 100

[sinks.loki]
type = "loki"
inputs = ["shop"]
endpoint = "{endpoint}"
labels = {{ app = "{{{{ app }}}}" }}
batch_timeout = "100ms"
retry_initial_backoff = "50ms"
retry_max_backoff = "500ms"
"#,
            data = dir.path().join("data").display(),
            endpoint = loki.endpoint()
        ),
    )
    .unwrap();

    let mut ferry = spawn_ferry(&config);
    assert!(
        loki.wait_for_entries(500, Duration::from_secs(30)).await,
        "pushes start"
    );
    loki.begin_outage(503);
    assert!(
        loki.wait_for_status(503, 5, Duration::from_secs(30)).await,
        "ferry retries"
    );
    ferry.kill().expect("SIGKILL ferry");
    ferry.wait().expect("reap ferry");
    let before = loki.accepted();
    assert!(
        before < COUNT as usize,
        "killed before the end ({before} delivered)"
    );
    loki.end_outage();

    let mut ferry = spawn_ferry(&config);
    let status = wait_exit(&mut ferry, Duration::from_secs(60)).await;
    if status.is_none() {
        let _ = ferry.kill();
        let _ = ferry.wait();
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "restarted ferry finishes: {status:?}"
    );

    let lines: Vec<String> = loki.entries().into_iter().map(|e| e.line).collect();
    let distinct: HashSet<String> = lines.iter().cloned().collect();
    let expected: HashSet<String> = (0..COUNT)
        .map(|n| demo_line(n, DemoFormat::Mixed))
        .collect();
    assert_eq!(distinct, expected, "every event arrived");
    let replayed = lines.len() - distinct.len();
    assert!(
        replayed <= 32 * 100,
        "replays bounded by the in-flight window: {replayed}"
    );
}

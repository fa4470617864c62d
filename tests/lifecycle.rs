//! The daemon's lifecycle with the real binary: SIGHUP reload (and a refused reload),
//! `/health` and `/metrics`, stdin to stdout, private state files.

#[path = "support/ferry_process.rs"]
mod ferry_process;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_process::{Ferry, free_port, http_get, metric, wait_until};

const LIMIT: Duration = Duration::from_secs(120);

fn demo_config(dir: &Path, port: u16, out: &str) -> String {
    format!(
        r#"data_dir = "{data}"
[api]
address = "127.0.0.1:{port}"
[sources.demo]
type = "demo"
rate = 2000.0
[sinks.out]
type = "file"
inputs = ["demo"]
path = "{out}"
encoding = "text"
"#,
        data = dir.join("data").display(),
        out = dir.join(out).display(),
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn sighup_reloads_a_valid_config_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, demo_config(dir.path(), port, "a.log")).unwrap();
    let mut ferry = Ferry::start(&config);
    wait_until(LIMIT, "output in a.log", || {
        !lines(&dir.path().join("a.log")).is_empty()
    });

    std::fs::write(&config, demo_config(dir.path(), port, "b.log")).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(ferry.pid(), libc::SIGHUP) };
    wait_until(LIMIT, "output in b.log after reload", || {
        !lines(&dir.path().join("b.log")).is_empty()
    });

    std::fs::write(&config, "[sources.demo]\ntype = \"nope\"\n").unwrap();
    unsafe { libc::kill(ferry.pid(), libc::SIGHUP) };
    wait_until(LIMIT, "the refused reload to be logged", || {
        ferry
            .log_text()
            .contains("config is invalid; keeping the running pipeline")
    });
    let before = lines(&dir.path().join("b.log")).len();
    wait_until(LIMIT, "the old pipeline to keep running", || {
        lines(&dir.path().join("b.log")).len() > before
    });
    assert!(ferry.is_running());
    assert!(ferry.terminate().success());

    // The demo sequence continued across the reload: every line once, none twice.
    let mut all = lines(&dir.path().join("a.log"));
    all.extend(lines(&dir.path().join("b.log")));
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "a reload must not replay delivered events"
    );
}

#[test]
fn health_and_metrics_are_served_and_state_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, demo_config(dir.path(), port, "out.log")).unwrap();
    let ferry = Ferry::start(&config);
    wait_until(LIMIT, "the api", || http_get(port, "/health").is_some());
    let (status, body) = http_get(port, "/health").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\""), "{body}");
    wait_until(LIMIT, "events counted", || {
        metric(
            port,
            "ferry_component_sent_events_total",
            "component_kind=\"sink\",component_id=\"out\"",
        )
        .unwrap_or(0.0)
            > 0.0
    });
    wait_until(LIMIT, "a checkpoint commit", || {
        metric(port, "ferry_checkpoint_commits_total", "source=\"demo\"").unwrap_or(0.0) > 0.0
    });
    assert!(
        metric(
            port,
            "ferry_component_sent_events_total",
            "component_kind=\"source\",component_id=\"demo\""
        )
        .unwrap()
            > 0.0
    );
    assert!(ferry.terminate().success());

    let data = dir.path().join("data");
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let store = data.join("checkpoints.redb");
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn stdin_to_console_passes_every_line_and_exits_when_input_ends() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[api]\nenabled = false\n[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\nencoding = \"text\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--config"])
        .arg(&config)
        .env("FERRY_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for n in 0..5000 {
        input.push_str(&format!("line {n} caf\u{e9}\n"));
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(input.as_bytes()).unwrap();
        stdin
            .write_all(b"bad \xff byte\nlast line without newline")
            .unwrap();
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got.len(), 5002);
    assert_eq!(got[4999], "line 4999 caf\u{e9}");
    assert_eq!(got[5000], "bad \u{fffd} byte");
    assert_eq!(got[5001], "last line without newline");
}

#[test]
fn fan_in_and_fan_out_deliver_every_event_to_every_sink() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    let out = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[api]
enabled = false
[sources.one]
type = "demo"
count = 3000
format = "json"
[sources.two]
type = "demo"
count = 2000
format = "logfmt"
[sinks.a]
type = "file"
inputs = ["one", "two"]
path = "{a}"
[sinks.b]
type = "file"
inputs = ["one", "two"]
path = "{b}"
encoding = "text"
"#,
            data = out("data"),
            a = out("a.log"),
            b = out("b.log"),
        ),
    )
    .unwrap();
    let mut ferry = Ferry::start(&config);
    assert!(ferry.wait(LIMIT).success(), "{}", ferry.log_text());
    let a = lines(&dir.path().join("a.log"));
    let b = lines(&dir.path().join("b.log"));
    assert_eq!(a.len(), 5000);
    assert_eq!(b.len(), 5000);
    let from_a: BTreeSet<String> = a
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["message"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let from_b: BTreeSet<String> = b.into_iter().collect();
    assert_eq!(from_a.len(), 5000);
    assert_eq!(from_a, from_b, "both sinks got the same events");
}

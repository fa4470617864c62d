//! Runs the real `ferry` binary for the provider tests: one source (given as TOML)
//! into a JSON `file` sink that the test reads back; stopped with SIGTERM, or killed
//! with SIGKILL. Each harness owns a temporary directory with the config,
//! `data_dir`, the output file and ferry's log (`stderr.log`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Harness {
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn out_path(&self) -> PathBuf {
        self.dir.path().join("out.json")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("ferry.toml")
    }

    /// A whole config around `source` (the body of `[sources.src]`).
    pub fn config(&self, source: &str) -> String {
        format!(
            r#"data_dir = "{data}"
shutdown_timeout = "10s"

[api]
enabled = false

[sources.src]
{source}

[sinks.out]
type = "file"
inputs = ["src"]
path = "{out}"
encoding = "json"
fsync = "none"
"#,
            data = self.dir.path().join("data").display(),
            out = self.out_path().display(),
        )
    }

    /// Starts the real binary on this config; its stderr goes to `stderr.log`.
    pub fn start(&self, source: &str) -> Binary {
        std::fs::write(self.config_path(), self.config(source)).unwrap();
        let stderr_path = self.dir.path().join("stderr.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("run")
            .arg("--config")
            .arg(self.config_path())
            .env("FERRY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("ferry binary starts");
        Binary { child, stderr_path }
    }

    /// Every event written so far.
    pub fn events(&self) -> Vec<Value> {
        read_events(&self.out_path())
    }

    /// Waits until at least `n` events are written; panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {n} events, have {}",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the output stops growing for `quiet`.
    pub async fn wait_quiet(&self, quiet: Duration) -> Vec<Value> {
        let mut last = usize::MAX;
        let mut since = Instant::now();
        loop {
            let events = self.events();
            if events.len() != last {
                last = events.len();
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The committed cursors by source and sub-stream, read with
    /// `ferry checkpoints list --json` (ferry must be stopped).
    pub fn checkpoints(&self) -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["checkpoints", "list", "--json", "--config"])
            .arg(self.config_path())
            .output()
            .expect("ferry checkpoints list");
        let rows: Vec<Value> =
            serde_json::from_slice(&output.stdout).expect("checkpoints as JSON rows");
        let mut sources = serde_json::Map::new();
        for row in rows {
            let (Some(source), Some(stream)) = (row["source"].as_str(), row["stream"].as_str())
            else {
                panic!("a checkpoint row without source or stream: {row}");
            };
            sources
                .entry(source)
                .or_insert_with(|| Value::Object(serde_json::Map::new()))
                .as_object_mut()
                .expect("an object")
                .insert(stream.to_string(), row["cursor"].clone());
        }
        Value::Object(sources)
    }
}

/// Polls `check` every 50 ms until it holds; panics with `what` after `timeout` (a
/// guard against hangs, not a timing assertion).
pub async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The complete JSON lines of the sink's output; a last line still being written
/// (no newline yet) is left for the next read.
pub fn read_events(path: &Path) -> Vec<Value> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let complete = bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(&bytes[..0], |end| &bytes[..=end]);
    let text = std::str::from_utf8(complete).expect("UTF-8 output");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON event line"))
        .collect()
}

/// The messages of `events` whose `field` equals `value`.
pub fn messages_where<'a>(events: &'a [Value], field: &str, value: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e[field] == value)
        .map(|e| e["message"].as_str().unwrap())
        .collect()
}

pub struct Binary {
    child: Child,
    stderr_path: PathBuf,
}

impl Binary {
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on the child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }

    /// SIGTERM, then waits for the exit off the runtime's threads (the simulators
    /// keep serving meanwhile).
    pub async fn stop(mut self) -> std::process::ExitStatus {
        tokio::task::spawn_blocking(move || self.terminate())
            .await
            .expect("waiting for ferry")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Runs the real `ferry` binary for end-to-end tests: writes its config, starts it
//! with its log captured to a file, signals it (SIGTERM, SIGKILL), reads its
//! `/metrics` and `/health`, and measures its memory.
//!
//! Test sizes scale with `FERRY_TEST_SCALE` (a float, default 1) for local soak runs.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The warnings and errors ferry logged once it was told to stop.
pub fn warnings_after_sigterm(log: &str) -> Vec<&str> {
    log.lines()
        .skip_while(|l| !l.contains("SIGTERM received"))
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

/// Multiplies a test size by `FERRY_TEST_SCALE`.
pub fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("FERRY_TEST_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64) * scale).max(1.0) as usize
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `limit` (a
/// guard against hangs, not a timing assertion).
pub fn wait_until(limit: Duration, what: &str, check: impl FnMut() -> bool) {
    wait_every(Duration::from_millis(20), limit, what, check);
}

/// Polls `check` every `every` until it holds; panics with `what` after `limit`.
pub fn wait_every(every: Duration, limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(every);
    }
}

pub struct Ferry {
    child: Child,
    pub log: PathBuf,
}

impl Ferry {
    /// Starts `ferry run --config CONFIG`, its stderr going to `CONFIG.N.log`.
    pub fn start(config: &Path) -> Ferry {
        Ferry::start_with_env(config, &[])
    }

    /// [`Ferry::start`] with more environment variables.
    pub fn start_with_env(config: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Ferry {
        Ferry::start_wrapped(config, &[], env)
    }

    /// [`Ferry::start_with_env`] through `wrapper`: a program and its arguments, to
    /// which `FERRY run --config CONFIG` is appended, and which must exec it (so that
    /// the child's pid is ferry's).
    pub fn start_wrapped(
        config: &Path,
        wrapper: &[&std::ffi::OsStr],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Ferry {
        let mut n = 0;
        let log = loop {
            let candidate = config.with_extension(format!("{n}.log"));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        let ferry = std::ffi::OsStr::new(env!("CARGO_BIN_EXE_ferry"));
        let (program, args) = match wrapper.split_first() {
            Some((program, args)) => (*program, [args, &[ferry]].concat()),
            None => (ferry, Vec::new()),
        };
        let child = Command::new(program)
            .args(args)
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("FERRY_LOG", "info")
            .env_remove("FERRY_CONFIG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Ferry { child, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// SIGKILL: no chance to drain or commit anything.
    pub fn kill(mut self) {
        self.signal(libc::SIGKILL);
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(60))
    }

    /// Waits for ferry to exit by itself.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > limit {
                self.signal(libc::SIGKILL);
                let _ = self.child.wait();
                panic!(
                    "ferry did not exit within {limit:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        if self.is_running() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// `GET path` on 127.0.0.1:port: (status, body), or None if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The sum of a Prometheus metric's samples whose labels contain `labels`.
pub fn metric(port: u16, name: &str, labels: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics")?;
    let mut total = None;
    for line in body.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let matches =
            series == name || (series.starts_with(&format!("{name}{{")) && series.contains(labels));
        if matches {
            *total.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    total
}

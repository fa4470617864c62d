//! Operating the real binary: what it tells systemd (READY, STATUS, WATCHDOG,
//! RELOADING, STOPPING on a test `NOTIFY_SOCKET`), watchdog pings that stop when a
//! pipeline task is wedged, reloads that apply only the difference (the unchanged
//! source and sink keep their connections; no event lost or repeated), refused and
//! coalesced reloads, and `ferry tap`.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/ionet_sim.rs"]
mod ionet_sim;
#[path = "support/loki_receiver.rs"]
mod loki_receiver;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_process::{Ferry, free_port, http_get, metric, scaled, wait_until};
use ionet_sim::{IonetSim, SimConfig, line};
use loki_receiver::LokiReceiver;

const LIMIT: Duration = Duration::from_secs(120);

/// A test `NOTIFY_SOCKET`: every datagram ferry sends, in order.
struct NotifySocket {
    path: std::path::PathBuf,
    received: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        std::thread::spawn(move || {
            let mut buffer = vec![0; 4096];
            while let Ok(n) = socket.recv(&mut buffer) {
                let message = String::from_utf8_lossy(&buffer[..n]).trim_end().to_string();
                sink.lock().unwrap().push(message);
            }
        });
        NotifySocket { path, received }
    }

    fn messages(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    fn count(&self, line: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }

    fn env(&self) -> (&'static str, &OsStr) {
        ("NOTIFY_SOCKET", self.path.as_os_str())
    }
}

fn demo_config(dir: &Path, port: u16, level: &str) -> String {
    format!(
        r#"data_dir = "{data}"
[api]
address = "127.0.0.1:{port}"
[sources.demo]
type = "demo"
rate = 2000.0
[transforms.tagged]
type = "level"
inputs = ["demo"]
sources = ["fields"]
default = "{level}"
[sinks.out]
type = "file"
inputs = ["tagged"]
path = "{out}"
"#,
        data = dir.join("data").display(),
        out = dir.join("out.log").display(),
    )
}

fn output_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn systemd_hears_ready_status_watchdog_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, demo_config(dir.path(), port, "info")).unwrap();
    let notify = NotifySocket::bind(dir.path());
    let started = Instant::now();
    let ferry = Ferry::start_with_env(
        &config,
        &[notify.env(), ("WATCHDOG_USEC", OsStr::new("400000"))],
    );
    wait_until(LIMIT, "READY=1", || notify.count("READY=1") == 1);
    wait_until(LIMIT, "a STATUS line showing events in and out", || {
        notify.messages().iter().any(|m| {
            m.strip_prefix("STATUS=").is_some_and(|status| {
                !status.starts_with("0 events/s in") && !status.contains(" 0 events/s out")
            })
        })
    });
    let status = notify
        .messages()
        .into_iter()
        .find(|m| m.starts_with("STATUS="))
        .unwrap();
    assert!(status.ends_with("sources lagging"), "{status}");
    wait_until(LIMIT, "watchdog pings", || notify.count("WATCHDOG=1") >= 3);

    std::fs::write(&config, demo_config(dir.path(), port, "warn")).unwrap();
    ferry.signal(libc::SIGHUP);
    wait_until(LIMIT, "READY=1 after the reload", || {
        notify.count("READY=1") == 2
    });
    let messages = notify.messages();
    let reloading = messages
        .iter()
        .position(|m| m.lines().any(|l| l == "RELOADING=1"))
        .expect("RELOADING=1 before READY=1");
    assert!(
        messages[reloading]
            .lines()
            .any(|l| l.starts_with("MONOTONIC_USEC=") && l[15..].parse::<u64>().is_ok()),
        "{:?}",
        messages[reloading]
    );
    let ready_again = messages.iter().rposition(|m| m == "READY=1").unwrap();
    assert!(reloading < ready_again);

    assert!(ferry.terminate().success());
    let lifetime = started.elapsed();
    let messages = notify.messages();
    assert_eq!(messages.last().map(String::as_str), Some("STOPPING=1"));
    // Pings come every 200 ms at most (half of WATCHDOG_USEC), never faster.
    let pings = notify.count("WATCHDOG=1");
    assert!(
        pings as u128 <= lifetime.as_millis() / 200 + 1,
        "{pings} pings in {lifetime:?}"
    );
}

#[test]
fn watchdog_pings_stop_while_a_pipeline_task_is_wedged() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, demo_config(dir.path(), port, "info")).unwrap();
    let notify = NotifySocket::bind(dir.path());
    let wedge = dir.path().join("wedge");
    let ferry = Ferry::start_with_env(
        &config,
        &[
            notify.env(),
            ("WATCHDOG_USEC", OsStr::new("400000")),
            ("FERRY_TEST_WEDGE", wedge.as_os_str()),
        ],
    );
    wait_until(LIMIT, "watchdog pings", || notify.count("WATCHDOG=1") >= 3);
    std::fs::write(&wedge, "sinks.out").unwrap();
    // The pings stop: none for ten intervals in a row, then none for ten more.
    let quiet = || {
        let before = notify.count("WATCHDOG=1");
        std::thread::sleep(Duration::from_secs(2));
        notify.count("WATCHDOG=1") == before
    };
    wait_until(LIMIT, "the pings to stop", quiet);
    assert!(quiet(), "pings resumed while the sink is wedged");
    if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
        // With a worker thread left, ferry says which task is not answering.
        wait_until(LIMIT, "the wedged task to be named", || {
            ferry
                .log_text()
                .lines()
                .any(|l| l.contains("not answering") && l.contains("sinks.out"))
        });
    }
    ferry.kill();
}

/// `ferry reload` (or `ferry tap`) against the agent of `config`.
fn ferry_command(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("FERRY_LOG", "warn")
        .output()
        .unwrap()
}

fn loki_config(dir: &Path, port: u16, sim: &IonetSim, loki: &LokiReceiver, level: &str) -> String {
    let sim_config = sim.config();
    format!(
        r#"data_dir = "{data}"
[api]
address = "127.0.0.1:{port}"
[sources.in]
type = "ionet"
endpoint = "{endpoint}"
api_key = "{key}"
deployment_id = "{deployment}"
container_ids = ["c1"]
streams = ["stdout"]
lifecycle_events = false
idle_timeout = "60s"
discovery_interval = "200ms"
batch_max_events = 50
[transforms.tagged]
type = "level"
inputs = ["in"]
sources = ["fields"]
default = "{level}"
[sinks.loki]
type = "loki"
inputs = ["tagged"]
endpoint = "{loki}"
labels = {{ level = "{{{{ level }}}}" }}
max_in_flight_requests = 1
batch_timeout = "50ms"
"#,
        data = dir.join("data").display(),
        endpoint = sim.url(),
        key = sim_config.api_key,
        deployment = sim_config.deployment_id,
        loki = loki.endpoint(),
    )
}

#[test]
fn a_reload_changing_a_transform_keeps_source_and_sink_connections_and_every_event_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime.block_on(IonetSim::start(SimConfig::default()));
    sim.add_container("c1", "running", "dev-1");
    let loki = runtime.block_on(LokiReceiver::start());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, loki_config(dir.path(), port, &sim, &loki, "info")).unwrap();
    let mut ferry = Ferry::start(&config);

    // Lines keep arriving, 20 every 10 ms, before, during and after the reload.
    let mut written = 0;
    let mut write_step = || {
        sim.append(
            "c1",
            "stdout",
            (written..written + 20).map(|n| line("c1", n, 80)),
        );
        written += 20;
        std::thread::sleep(Duration::from_millis(10));
    };
    for _ in 0..scaled(50) {
        write_step();
    }
    wait_until(LIMIT, "deliveries before the reload", || {
        loki.accepted() > 0
    });
    let connections = loki.connections();
    assert_eq!(connections, 1);

    std::fs::write(&config, loki_config(dir.path(), port, &sim, &loki, "warn")).unwrap();
    let reloader = std::thread::spawn({
        let config = config.clone();
        move || ferry_command(&config, &["reload"])
    });
    while !reloader.is_finished() {
        write_step();
    }
    let reload = reloader.join().unwrap();
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    for _ in 0..scaled(50) {
        write_step();
    }
    let total = written;
    wait_until(LIMIT, "every line in Loki", || loki.accepted() >= total);
    assert!(ferry.is_running());
    let log = ferry.log_text();
    assert!(ferry.terminate().success());

    let entries = loki.entries();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in &entries {
        *seen.entry(entry.line.as_str()).or_default() += 1;
    }
    assert_eq!(seen.len(), total, "every line arrived");
    assert!(seen.values().all(|&n| n == 1), "no line arrived twice");
    assert_eq!(entries.len(), total);
    let last = entries.iter().max_by_key(|e| e.line.clone()).unwrap();
    assert_eq!(last.labels["level"], "warn", "the new transform ran");
    assert!(
        entries.iter().any(|e| e.labels["level"] == "info"),
        "the old one ran before"
    );
    assert_eq!(
        loki.connections(),
        connections,
        "the unchanged sink kept its connection"
    );
    let streams = sim.requests().len();
    assert_eq!(streams, 1, "the unchanged source kept its log stream open");
    let reloaded = log.lines().find(|l| l.contains("reloaded")).unwrap();
    assert!(
        reloaded.contains("kept=sinks.loki,sources.in"),
        "{reloaded}"
    );
}

#[test]
fn a_broken_config_is_refused_and_the_running_pipeline_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, demo_config(dir.path(), port, "info")).unwrap();
    let ferry = Ferry::start(&config);
    let out = dir.path().join("out.log");
    wait_until(LIMIT, "output", || output_lines(&out) > 0);

    let broken = demo_config(dir.path(), port, "warn") + "[sources.extra]\ntype = \"nope\"\n";
    std::fs::write(&config, broken).unwrap();
    let refused = ferry_command(&config, &["reload"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("keeps running the previous config"),
        "{stderr}"
    );
    assert!(stderr.contains("nope"), "{stderr}");
    let (status, health) = http_get(port, "/health").unwrap();
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["last_reload"]["result"], "rejected");
    assert_eq!(
        metric(port, "ferry_reloads_total", "result=\"rejected\""),
        Some(1.0)
    );
    assert_eq!(metric(port, "ferry_last_reload_successful", ""), Some(0.0));
    let before = output_lines(&out);
    wait_until(LIMIT, "the old pipeline to keep delivering", || {
        output_lines(&out) > before
    });
    assert!(ferry.terminate().success());
}

#[test]
fn three_sighups_in_a_row_make_one_reload() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, demo_config(dir.path(), port, "info")).unwrap();
    let ferry = Ferry::start(&config);
    wait_until(LIMIT, "the api", || http_get(port, "/health").is_some());
    std::fs::write(&config, demo_config(dir.path(), port, "warn")).unwrap();
    // Apart enough that ferry sees each (the kernel merges signals still pending),
    // close enough to fall within one reload's settling time.
    for _ in 0..3 {
        ferry.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until(LIMIT, "the reload", || {
        metric(port, "ferry_reloads_total", "result=\"ok\"").is_some()
    });
    // Well past the settling time, still one reload.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        metric(port, "ferry_reloads_total", "result=\"ok\""),
        Some(1.0)
    );
    let (_, health) = http_get(port, "/health").unwrap();
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["last_reload"]["result"], "ok");
    assert!(health["last_reload"]["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(metric(port, "ferry_last_reload_successful", ""), Some(1.0));
    let log = ferry.log_text();
    assert!(log.matches("SIGHUP received").count() >= 2, "{log}");
    assert_eq!(log.matches("reloaded").count(), 1, "{log}");
    assert!(ferry.terminate().success());
}

#[test]
fn tap_shows_a_sample_of_the_events_at_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, demo_config(dir.path(), port, "warn")).unwrap();
    let ferry = Ferry::start(&config);
    wait_until(LIMIT, "the api", || http_get(port, "/health").is_some());

    let tapped = ferry_command(&config, &["tap", "tagged", "--limit", "5", "--rate", "50"]);
    assert!(
        tapped.status.success(),
        "{}",
        String::from_utf8_lossy(&tapped.stderr)
    );
    let stdout = String::from_utf8(tapped.stdout).unwrap();
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 5, "{stdout}");
    for event in &events {
        assert_eq!(event["source"], "demo");
        assert_eq!(event["level"], "warn", "after the level transform");
        assert!(event["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let entering_sink = ferry_command(&config, &["tap", "sinks.out", "--limit", "1"]);
    assert!(entering_sink.status.success());
    assert_eq!(
        String::from_utf8_lossy(&entering_sink.stdout)
            .lines()
            .count(),
        1
    );

    let unknown = ferry_command(&config, &["tap", "nope"]);
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("no component named \"nope\""), "{stderr}");
    assert!(stderr.contains("transforms.tagged"), "{stderr}");
    assert!(ferry.terminate().success());
}

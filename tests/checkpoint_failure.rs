//! A checkpoint store that cannot commit (its filesystem is full) is logged once,
//! counted, turns `/health` unhealthy and holds the source back; when space returns,
//! commits resume and nothing was lost. The full filesystem is a real 4 MiB tmpfs
//! (the suite runs as root, as CI does).

#[path = "support/ferry_process.rs"]
mod ferry_process;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_process::{Ferry, free_port, http_get, metric, wait_until};

const LIMIT: Duration = Duration::from_secs(120);

/// A small tmpfs, unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path) -> SmallFs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(at)
            .status()
            .expect("mount(8) must exist");
        assert!(
            status.success(),
            "this test mounts a tmpfs and must run as root"
        );
        SmallFs(at.to_path_buf())
    }

    /// Fills the filesystem up with a file; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", filler.display()))
            .arg("bs=64k")
            .stderr(std::process::Stdio::null())
            .status();
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_checkpoint_disk_is_reported_holds_the_source_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SmallFs::mount(&dir.path().join("state"));
    let port = free_port();
    let count = 20_000;
    let out = dir.path().join("out.log");
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[api]
address = "127.0.0.1:{port}"
[sources.demo]
type = "demo"
count = {count}
rate = 4000.0
batch_max_events = 100
max_in_flight_batches = 4
[sinks.out]
type = "file"
inputs = ["demo"]
path = "{out}"
encoding = "text"
"#,
            data = fs.0.join("data").display(),
            out = out.display(),
        ),
    )
    .unwrap();
    let mut ferry = Ferry::start(&config);
    wait_until(LIMIT, "a first commit", || {
        metric(port, "ferry_checkpoint_commits_total", "source=\"demo\"").unwrap_or(0.0) > 0.0
    });
    let filler = fs.fill();
    wait_until(LIMIT, "/health to report the checkpoint", || {
        http_get(port, "/health")
            .is_some_and(|(status, body)| status == 503 && body.contains("checkpoint:demo"))
    });
    assert!(metric(port, "ferry_checkpoint_errors_total", "source=\"demo\"").unwrap_or(0.0) >= 1.0);
    let held = metric(
        port,
        "ferry_component_sent_events_total",
        "component_kind=\"source\",component_id=\"demo\"",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let still = metric(
        port,
        "ferry_component_sent_events_total",
        "component_kind=\"source\",component_id=\"demo\"",
    )
    .unwrap();
    assert!(
        still - held <= 400.0,
        "the source kept reading ({held} → {still}) while nothing could be committed"
    );

    std::fs::remove_file(filler).unwrap();
    wait_until(LIMIT, "/health to recover", || {
        http_get(port, "/health").is_some_and(|(status, _)| status == 200)
    });
    assert!(
        ferry.wait(LIMIT).success(),
        "the demo source finishes and ferry exits 0"
    );
    let log = ferry.log_text();
    assert_eq!(
        log.matches("checkpoint commit failed").count(),
        1,
        "logged once per failure episode:\n{log}"
    );
    assert!(log.contains("checkpoint commits succeed again"));

    let lines: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let unique: BTreeSet<&String> = lines.iter().collect();
    assert_eq!(unique.len(), count, "every demo event delivered");
    assert_eq!(lines.len(), count, "and none twice");
}

//! The delivery contract, end to end with the real binary and real files: file →
//! file at scale, SIGKILL at random moments, SIGTERM and restart, rotation by rename
//! and by copytruncate while lines are written, and a sink whose disk is full.
//!
//! Input lines look like `f<file> <seq, 9 digits> <padding>`, so the output can be
//! checked line by line for loss, duplicates and per-file order.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/line_files.rs"]
mod line_files;

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use ferry_process::{Ferry, free_port, http_get, metric, scaled, wait_until};
use line_files::{Output, Setup, Writer, append_lines, line, sigkill_while_writing};

const HANG_GUARD: Duration = Duration::from_secs(600);

#[test]
fn file_to_file_a_million_lines_exactly_once_in_order() {
    let setup = Setup::new();
    let total = scaled(1_000_000) as u64;
    let files = 4;
    let per_file = total / files as u64;
    let mut bytes = 0;
    for f in 0..files {
        bytes += append_lines(&setup.path(&format!("in/{f}.log")), f, 0..per_file);
    }
    let config = setup.config("in/*.log", "", "", None);
    let ferry = Ferry::start(&config);
    wait_until(HANG_GUARD, "all lines in the output", || {
        setup.output_len() >= bytes
    });
    let log = ferry.log_text();
    assert!(ferry.terminate().success(), "{log}");
    let output = setup.output();
    for f in 0..files {
        output.assert_exact(f, per_file);
    }
    assert_eq!(setup.output_len(), bytes);
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_duplicates_only_the_in_flight_window() {
    let setup = Setup::new();
    let (window, batch) = (8u64, 200u64);
    let kills = 12;
    let (output, written) = sigkill_while_writing(&setup, (window, batch), "", kills);
    output.assert_complete(0, written);
    let duplicates = output.lines as u64 - written;
    let bound = kills * window * batch;
    eprintln!("{written} lines, {kills} kills, {duplicates} duplicates (bound {bound})");
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates exceed {kills} kills x {window} batches x {batch} events"
    );
}

#[test]
fn sigterm_then_restart_neither_loses_nor_duplicates() {
    let setup = Setup::new();
    let config = setup.config("in/app.log", "", "", None);
    let writer = Writer::start(
        setup.path("in/app.log"),
        0,
        scaled(500) as u64,
        Duration::from_millis(10),
    );
    let ferry = Ferry::start(&config);
    wait_until(HANG_GUARD, "some output", || setup.output_len() > 100_000);
    let log = ferry.log_text();
    assert!(ferry.terminate().success(), "{log}");
    std::thread::sleep(Duration::from_millis(300));
    let mut ferry = Ferry::start(&config);
    std::thread::sleep(Duration::from_millis(300));
    let written = writer.finish();
    wait_until(HANG_GUARD, "every line delivered", || {
        setup.output().lines as u64 >= written
    });
    assert!(ferry.is_running());
    assert!(ferry.terminate().success());
    setup.output().assert_exact(0, written);
}

#[derive(Clone, Copy)]
enum Rotation {
    Rename,
    CopyTruncate,
}

/// Writes `rotations` generations of `per_generation` lines to `in/app.log`,
/// rotating between generations (after `pause`), while ferry follows `include`.
fn rotation_while_writing(rotation: Rotation, include: &str, pause: Duration) {
    let setup = Setup::new();
    let config = setup.config(include, "rotate_wait = \"1s\"", "", None);
    let ferry = Ferry::start(&config);
    let live = setup.path("in/app.log");
    let rotations = 8u64;
    let per_generation = scaled(4000) as u64;
    let mut seq = 0;
    for generation in 0..rotations {
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&live)
            .unwrap();
        for _ in 0..per_generation / 100 {
            let mut chunk = String::new();
            for _ in 0..100 {
                chunk.push_str(&line(0, seq));
                seq += 1;
            }
            out.write_all(chunk.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(pause);
        let rotated = setup.path(&format!("in/app.log.{generation}"));
        match rotation {
            Rotation::Rename => std::fs::rename(&live, &rotated).unwrap(),
            Rotation::CopyTruncate => {
                std::fs::copy(&live, &rotated).unwrap();
                out.set_len(0).unwrap();
            }
        }
    }
    wait_until(HANG_GUARD, "every line delivered", || {
        setup.output().unique() as u64 >= seq
    });
    let log = ferry.log_text();
    assert!(ferry.terminate().success(), "{log}");
    let output = setup.output();
    output.assert_complete(0, seq);
    eprintln!("{seq} lines written, {} delivered", output.lines);
    assert!(
        output.lines as u64 <= seq + seq / 4,
        "{} lines delivered for {seq} written: rotated files were read again from the start",
        output.lines
    );
}

#[test]
fn rotation_by_rename_loses_nothing() {
    rotation_while_writing(Rotation::Rename, "in/app.log*", Duration::ZERO);
}

#[test]
fn rotation_by_rename_out_of_the_pattern_loses_nothing() {
    // Rotating faster than ferry looks for new files (glob_interval) would let a whole
    // generation come and go unseen when rotated names are not included.
    rotation_while_writing(Rotation::Rename, "in/app.log", Duration::from_millis(300));
}

#[test]
fn rotation_by_copytruncate_loses_nothing() {
    rotation_while_writing(Rotation::CopyTruncate, "in/app.log*", Duration::ZERO);
}

#[test]
fn a_full_disk_holds_the_source_back_with_bounded_memory_and_loses_nothing() {
    let setup = Setup::new();
    let total = scaled(300_000) as u64;
    append_lines(&setup.path("in/app.log"), 0, 0..total);
    let sink_path = setup.path("out/out.log");
    std::os::unix::fs::symlink("/dev/full", &sink_path).unwrap();
    let (window, batch) = (8u64, 500u64);
    let port = free_port();
    let config = setup.config(
        "in/app.log",
        &format!("max_in_flight_batches = {window}\nbatch_max_events = {batch}"),
        "retry_max_backoff = \"200ms\"",
        Some(port),
    );
    let ferry = Ferry::start(&config);
    wait_until(HANG_GUARD, "/health to report the failing sink", || {
        http_get(port, "/health").is_some_and(|(status, _)| status == 503)
    });
    let mut peak_rss = 0;
    for _ in 0..10 {
        let read = metric(
            port,
            "ferry_component_sent_events_total",
            "component_kind=\"source\",component_id=\"logs\"",
        )
        .unwrap_or(0.0);
        assert!(
            read <= (window * batch) as f64,
            "source read {read} events while the sink was failing; the window is {}",
            window * batch
        );
        peak_rss = peak_rss.max(ferry.rss_kib());
        std::thread::sleep(Duration::from_millis(150));
    }
    let (_, health) = http_get(port, "/health").unwrap();
    assert!(health.contains("No space left on device"), "{health}");
    eprintln!("peak RSS during the outage: {peak_rss} KiB");
    assert!(peak_rss < 64 * 1024, "RSS {peak_rss} KiB during the outage");

    // The disk "recovers": the sink's path now leads to a regular file.
    let staging = setup.path("out/next-link");
    std::os::unix::fs::symlink(setup.path("out/real.log"), &staging).unwrap();
    std::fs::rename(&staging, &sink_path).unwrap();
    wait_until(HANG_GUARD, "every line delivered", || {
        std::fs::metadata(setup.path("out/real.log"))
            .is_ok_and(|m| m.len() >= total * line(0, 0).len() as u64)
    });
    wait_until(HANG_GUARD, "/health to recover", || {
        http_get(port, "/health").is_some_and(|(status, _)| status == 200)
    });
    assert!(ferry.terminate().success());
    Output::read(&setup.path("out/real.log")).assert_exact(0, total);
}

#[test]
fn demo_source_resumes_its_sequence_after_sigterm() {
    let setup = Setup::new();
    let count = scaled(20_000);
    let text = format!(
        r#"data_dir = "{data}"
[api]
enabled = false
[sources.demo]
type = "demo"
count = {count}
rate = {rate}
[sinks.out]
type = "file"
inputs = ["demo"]
path = "{out}"
"#,
        data = setup.path("data").display(),
        rate = count / 2,
        out = setup.path("out/demo.json").display(),
    );
    let config = setup.path("ferry.toml");
    std::fs::write(&config, text).unwrap();
    let ferry = Ferry::start(&config);
    wait_until(HANG_GUARD, "some output", || {
        std::fs::metadata(setup.path("out/demo.json")).is_ok_and(|m| m.len() > 0)
    });
    assert!(ferry.terminate().success());
    let mut ferry = Ferry::start(&config);
    assert!(
        ferry.wait(HANG_GUARD).success(),
        "a finished demo source ends the run"
    );
    let text = std::fs::read_to_string(setup.path("out/demo.json")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        count,
        "each demo event exactly once across the restart"
    );
    for l in &lines {
        assert_eq!(l["source"], "demo");
        assert_eq!(l["provider"], "demo");
        assert!(l["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}

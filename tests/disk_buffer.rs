//! The disk buffer end to end with the real binary: a file source writing through a
//! disk-buffered file sink, stopped and restarted in the middle (nothing lost, order
//! kept, nothing twice), SIGKILLed at random moments (nothing lost, duplicates
//! bounded by the in-flight windows), and `ferry buffer stats|verify` on what it
//! leaves.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/line_files.rs"]
mod line_files;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ferry_process::{Ferry, free_port, metric, scaled, wait_until};
use line_files::{Setup, append_lines, sigkill_while_writing};

const HANG_GUARD: Duration = Duration::from_secs(600);

/// The sink options of a disk buffer small enough to roll segments at scale 1.
const DISK_BUFFER: &str = r#"buffer = { type = "disk", max_bytes = 67108864 }"#;

/// Runs `ferry buffer ACTION` on `config`: (success, stdout).
fn buffer_command(config: &Path, action: &str) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["buffer", action, "--config"])
        .arg(config)
        .env_remove("FERRY_CONFIG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn a_restart_in_the_middle_loses_nothing_and_keeps_the_order() {
    let setup = Setup::new();
    let port = free_port();
    let config = setup.config("in/*.log", "", DISK_BUFFER, Some(port));
    let per_file = scaled(100_000) as u64;
    let mut bytes = append_lines(&setup.path("in/0.log"), 0, 0..per_file / 2);
    let ferry = Ferry::start(&config);
    wait_until(HANG_GUARD, "some output", || setup.output_len() > 0);
    bytes += append_lines(&setup.path("in/1.log"), 1, 0..per_file / 2);
    let log = ferry.log_text();
    assert!(ferry.terminate().success(), "{log}");

    let (ok, stats) = buffer_command(&config, "verify");
    assert!(ok, "verify found damage: {stats}");
    assert!(stats.starts_with("sinks.out: "), "{stats}");

    bytes += append_lines(&setup.path("in/0.log"), 0, per_file / 2..per_file);
    bytes += append_lines(&setup.path("in/1.log"), 1, per_file / 2..per_file);
    let ferry = Ferry::start(&config);
    wait_until(HANG_GUARD, "all lines in the output", || {
        setup.output_len() >= bytes
    });
    wait_until(HANG_GUARD, "the buffer emptied", || {
        metric(port, "ferry_buffer_events", "sink=\"out\"") == Some(0.0)
    });
    let log = ferry.log_text();
    assert!(ferry.terminate().success(), "{log}");
    let output = setup.output();
    output.assert_exact(0, per_file);
    output.assert_exact(1, per_file);
    assert_eq!(setup.output_len(), bytes);

    let (ok, stats) = buffer_command(&config, "stats");
    assert!(ok);
    assert!(
        stats.starts_with("sinks.out: 0 undelivered records"),
        "{stats}"
    );
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_duplicates_only_the_in_flight_windows() {
    let setup = Setup::new();
    let (window, batch) = (8u64, 200u64);
    let kills = 20;
    let (output, written) = sigkill_while_writing(&setup, (window, batch), DISK_BUFFER, kills);
    output.assert_complete(0, written);
    let duplicates = output.lines as u64 - written;
    // Per kill: the source's unsettled window (batches not yet appended) and the
    // buffer's replay window (records the sink wrote but the ledger did not yet mark).
    let replay_window = 16;
    let bound = kills * (window + replay_window) * batch;
    eprintln!("{written} lines, {kills} kills, {duplicates} duplicates (bound {bound})");
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates exceed {bound}"
    );
    let (ok, stats) = buffer_command(&setup.path("ferry.toml"), "verify");
    assert!(ok, "verify found damage after a clean stop: {stats}");
}

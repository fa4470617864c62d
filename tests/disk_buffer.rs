//! The disk buffer end to end with the real binary: a file source writing through a
//! disk-buffered file sink, stopped and restarted in the middle (nothing lost, order
//! kept, nothing twice), SIGKILLed at random moments (nothing lost, duplicates
//! bounded by the in-flight windows), on a disk that fills up (a tmpfs of 4 MiB in
//! a private mount namespace: `/health` 503, the source held, nothing lost once space
//! returns, also across a SIGKILL; a SIGTERM gives back at once what the buffer could
//! not append), and `ferry buffer stats|verify` on what it leaves.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/line_files.rs"]
mod line_files;

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_process::{
    Ferry, free_port, http_get, metric, scaled, wait_until, warnings_after_sigterm,
};
use line_files::{Output, Setup, Writer, append_lines, line, sigkill_while_writing};

const HANG_GUARD: Duration = Duration::from_secs(600);

/// The sink options of a disk buffer small enough to roll segments at scale 1.
const DISK_BUFFER: &str = r#"buffer = { type = "disk", max_bytes = 67108864 }"#;

/// Runs `ferry ARGS --config CONFIG`: (success, stdout).
fn ferry_command(config: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .arg("--config")
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

    let (ok, stats) = ferry_command(&config, &["buffer", "verify"]);
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

    let (ok, stats) = ferry_command(&config, &["buffer", "stats"]);
    assert!(ok);
    assert!(
        stats.starts_with("sinks.out: 0 undelivered records"),
        "{stats}"
    );
}

/// Records the sink delivered that the ledger may not yet have marked at a crash.
const REPLAY_WINDOW: u64 = 16;

/// Every line 0..written is in `output`, and duplicates stay within, per kill, the
/// source's unsettled window (batches not yet appended) and the buffer's replay
/// window (records delivered but not yet marked in the ledger).
fn assert_nothing_lost(output: &Output, written: u64, kills: u64, (window, batch): (u64, u64)) {
    output.assert_complete(0, written);
    let duplicates = output.lines as u64 - written;
    let bound = kills * (window + REPLAY_WINDOW) * batch;
    eprintln!("{written} lines, {kills} kills, {duplicates} duplicates (bound {bound})");
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates exceed {bound}"
    );
}

/// SIGKILLs ferry at `kills` random moments while lines are written through a file
/// sink with `buffer`: nothing lost, duplicates bounded, no damage left.
fn sigkills_lose_nothing(buffer: &str, kills: u64) {
    let setup = Setup::new();
    let window = (8, 200);
    let (output, written) = sigkill_while_writing(&setup, window, buffer, kills);
    assert_nothing_lost(&output, written, kills, window);
    let (ok, stats) = ferry_command(&setup.path("ferry.toml"), &["buffer", "verify"]);
    assert!(ok, "verify found damage after a clean stop: {stats}");
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_duplicates_only_the_in_flight_windows() {
    sigkills_lose_nothing(DISK_BUFFER, 20);
}

/// Mounts a 4 MiB tmpfs on `$1`, leaves a process in the mount namespace (its pid
/// written to `$2`) so the tmpfs outlives ferry, then execs the rest of the arguments.
const TINY_DISK: &str = r#"mount -t tmpfs -o size=4m,mode=0700 tmpfs "$1" && { sleep 3600 & echo $! > "$2"; } && shift 2 && exec "$@""#;

/// How to run a command in a private mount namespace where it may mount a tmpfs:
/// `unshare --mount` as root, else inside a user namespace too. Err(why) where
/// neither is allowed.
fn mount_namespace(probe: &Path) -> Result<&'static [&'static str], String> {
    const WAYS: [&[&str]; 2] = [
        &["unshare", "--mount"],
        &["unshare", "--user", "--map-root-user", "--mount"],
    ];
    let mut refusals = Vec::new();
    for way in WAYS {
        let output = Command::new(way[0])
            .args(&way[1..])
            .args(["sh", "-c", r#"mount -t tmpfs -o size=64k tmpfs "$1""#, "sh"])
            .arg(probe)
            .output();
        match output {
            Ok(o) if o.status.success() => return Ok(way),
            Ok(o) => refusals.push(format!(
                "`{}`: {}",
                way.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => refusals.push(format!("`{}`: {e}", way.join(" "))),
        }
    }
    Err(refusals.join("; "))
}

/// The process that keeps a tiny disk's mount namespace (and so the tmpfs) alive.
struct TinyDisk {
    keeper: i32,
    /// `nsenter` into the namespace.
    enter: Vec<String>,
}

impl TinyDisk {
    /// Starts ferry with `config` in the namespace, where the tiny disk is.
    fn start(&self, config: &Path) -> Ferry {
        let enter: Vec<&OsStr> = self.enter.iter().map(OsStr::new).collect();
        Ferry::start_wrapped(config, &enter, &[])
    }

    /// Where `path` (on the tiny disk) is seen from outside the namespace.
    fn outside(&self, path: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}", self.keeper, path.display()))
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on the `sleep` the test started.
        unsafe {
            libc::kill(self.keeper, libc::SIGKILL);
        }
    }
}

/// Writes `path` until the disk it is on is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) => return written,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return written,
            Err(e) => panic!("cannot fill {}: {e}", path.display()),
        }
    }
}

/// Keeps the disk full until ferry has given up on it: `/health` says 503 and names
/// the buffer, and the buffer has delivered and deleted everything it held (so no
/// delivered segment can free space any more). Returns the health body.
fn hold_full(port: u16, filler: &Path) -> String {
    let mut body = String::new();
    wait_until(HANG_GUARD, "ferry held by the full disk", || {
        fill(filler);
        let Some((status, text)) = http_get(port, "/health") else {
            return false;
        };
        body = text;
        status == 503
            && body.contains("buffer:out")
            && metric(port, "ferry_buffer_events", "sink=\"out\"") == Some(0.0)
            && metric(port, "ferry_buffer_disk_bytes", "sink=\"out\"") == Some(0.0)
    });
    fill(filler);
    body
}

/// The file source's committed offset in its one input file (ferry stopped).
fn committed_offset(config: &Path) -> u64 {
    let (ok, json) = ferry_command(config, &["checkpoints", "list", "--json"]);
    assert!(ok, "{json}");
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    rows[0]["cursor"]["offset"].as_u64().unwrap_or(0)
}

/// Starts ferry with `config` in a private mount namespace where a tiny disk is
/// mounted on `setup`'s `data/buffers`; `None`, after saying why, where the
/// environment refuses one.
fn start_on_a_tiny_disk(setup: &Setup, config: &Path) -> Option<(Ferry, TinyDisk)> {
    let buffers = setup.path("data/buffers");
    std::fs::create_dir_all(&buffers).unwrap();
    let way = match mount_namespace(&buffers) {
        Ok(way) => way,
        Err(refusals) => {
            eprintln!(
                "NOT TESTED: a full disk under the buffer needs a tmpfs in a private mount namespace, and this environment refuses one: {refusals}"
            );
            return None;
        }
    };
    let keeper_pid = setup.path("keeper.pid");
    let mut wrapper: Vec<&OsStr> = way.iter().map(OsStr::new).collect();
    wrapper.extend(["sh", "-c", TINY_DISK, "sh"].map(OsStr::new));
    wrapper.extend([buffers.as_os_str(), keeper_pid.as_os_str()]);
    let ferry = Ferry::start_wrapped(config, &wrapper, &[]);
    wait_until(HANG_GUARD, "the tiny disk mounted", || {
        std::fs::read_to_string(&keeper_pid).is_ok_and(|pid| pid.ends_with('\n'))
    });
    let keeper: i32 = std::fs::read_to_string(&keeper_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut enter = vec!["nsenter".to_string(), format!("--target={keeper}")];
    if way.contains(&"--user") {
        enter.push("--user".into());
    }
    enter.push("--mount".into());
    Some((ferry, TinyDisk { keeper, enter }))
}

/// Ferry running on a tiny disk that filled up under its buffer.
struct FilledDisk {
    ferry: Ferry,
    disk: TinyDisk,
    config: PathBuf,
    port: u16,
    /// The file that takes the disk's space.
    filler: PathBuf,
    /// Lines written to the input: `lines` delivered, then `lines` held back.
    written: u64,
    /// `/health` once ferry is held.
    health: String,
}

/// Starts ferry on a tiny disk (its source holds at most 4 batches of 100 lines in
/// flight; its buffer may take far more than the 4 MiB disk has, its segments being
/// 8 MiB), lets `lines` lines through, fills the disk, writes `lines` more and waits
/// until ferry is held by the full disk. `None` where no tiny disk can be had.
fn fill_the_disk_under_a_running_ferry(setup: &Setup, lines: u64) -> Option<FilledDisk> {
    let port = free_port();
    let config = setup.config(
        "in/app.log",
        "max_in_flight_batches = 4\nbatch_max_events = 100",
        DISK_BUFFER,
        Some(port),
    );
    let (ferry, disk) = start_on_a_tiny_disk(setup, &config)?;
    let filler = disk.outside(&setup.path("data/buffers/filler"));
    let input = setup.path("in/app.log");
    append_lines(&input, 0, 0..lines);
    wait_until(HANG_GUARD, "the first lines delivered", || {
        setup.output_len() >= lines * line(0, 0).len() as u64
    });
    fill(&filler);
    append_lines(&input, 0, lines..2 * lines);
    let health = hold_full(port, &filler);
    Some(FilledDisk {
        ferry,
        disk,
        config,
        port,
        filler,
        written: 2 * lines,
        health,
    })
}

#[test]
fn a_full_disk_under_the_buffer_turns_health_503_holds_the_sources_and_loses_nothing() {
    let setup = Setup::new();
    // More than the disk holds goes through while it has room; then the disk fills
    // up under the buffer: health turns 503 naming it, and the source is held back.
    let more = scaled(20_000) as u64;
    let Some(FilledDisk {
        ferry,
        disk,
        config,
        port,
        filler,
        mut written,
        health,
    }) = fill_the_disk_under_a_running_ferry(&setup, more)
    else {
        return;
    };
    let buffers = setup.path("data/buffers");
    let input = setup.path("in/app.log");
    let line_bytes = line(0, 0).len() as u64;
    assert!(health.contains("disk buffer append failing"), "{health}");
    let held = setup.output().lines as u64;
    assert!(held < written, "the source went on with a full disk");

    // Space returns: everything is delivered, health is back.
    std::fs::remove_file(&filler).unwrap();
    wait_until(HANG_GUARD, "every line delivered", || {
        setup.output_len() >= written * line_bytes
    });
    wait_until(HANG_GUARD, "health back to 200", || {
        http_get(port, "/health").is_some_and(|(status, _)| status == 200)
    });
    setup.output().assert_exact(0, written);

    // Full again, and ferry is killed: the source's checkpoint has not passed what
    // the buffer holds or delivered.
    fill(&filler);
    append_lines(&input, 0, written..written + more);
    written += more;
    hold_full(port, &filler);
    ferry.kill();
    let buffer = ferry::buffer::inspect::stats(&disk.outside(&buffers.join("out"))).unwrap();
    let output = setup.output();
    let committed = committed_offset(&config) / line_bytes;
    eprintln!(
        "{written} lines written, {} delivered and {} buffered when killed, checkpoint at line {committed}",
        output.lines, buffer.events
    );
    assert!(
        committed <= output.lines as u64 + buffer.events,
        "the checkpoint passed what was buffered"
    );
    assert!(committed < written, "the source went on with a full disk");

    // Restarted on the same full disk, then space returns: nothing lost.
    let ferry = disk.start(&config);
    hold_full(port, &filler);
    std::fs::remove_file(&filler).unwrap();
    wait_until(HANG_GUARD, "every line delivered after the restart", || {
        setup.output().unique() as u64 >= written
    });
    let log = ferry.log_text();
    assert!(ferry.terminate().success(), "{log}");
    assert_nothing_lost(&setup.output(), written, 1, (4, 100));
}

#[test]
fn sigterm_while_the_buffers_disk_is_full_stops_at_once_and_a_restart_loses_nothing() {
    let setup = Setup::new();
    let Some(FilledDisk {
        mut ferry,
        disk,
        config,
        filler,
        written,
        ..
    }) = fill_the_disk_under_a_running_ferry(&setup, scaled(5_000) as u64)
    else {
        return;
    };

    // The stop gives the batches the buffer could not append back to their source
    // instead of retrying them until `shutdown_timeout`.
    ferry.signal(libc::SIGTERM);
    let status = ferry.wait(HANG_GUARD);
    let log = ferry.log_text();
    assert!(status.success(), "{status:?}\n{log}");
    let warnings = warnings_after_sigterm(&log);
    assert!(
        warnings.len() == 1 && warnings[0].contains("could not append"),
        "one warning, about the batches given back:\n{log}"
    );

    std::fs::remove_file(&filler).unwrap();
    let ferry = disk.start(&config);
    wait_until(HANG_GUARD, "every line delivered after the restart", || {
        setup.output().unique() as u64 >= written
    });
    let log = ferry.log_text();
    assert!(ferry.terminate().success(), "{log}");
    setup.output().assert_exact(0, written);
}

#[test]
fn fsync_none_survives_a_crash_of_ferry() {
    // `fsync = "none"` hands appends to the OS only: a SIGKILL of ferry loses
    // nothing (a crash of the machine could; that is what `batch` is for).
    sigkills_lose_nothing(
        r#"buffer = { type = "disk", max_bytes = 67108864, fsync = "none" }"#,
        6,
    );
}

/// A second disk-buffered sink whose every write fails (`/dev/full`), so its buffer
/// keeps what it was given.
const STUCK_SINK: &str = r#"
[sinks.stuck]
type = "file"
inputs = ["logs"]
path = "/dev/full"
encoding = "text"
buffer = { type = "disk", max_bytes = 67108864 }
"#;

/// The warning about a buffer whose sink is gone from the config.
const LEFT_BEHIND: &str = "a disk buffer holds undelivered events of a sink that is not (or no longer) disk-buffered in the config";

#[test]
fn a_removed_sinks_buffer_stays_on_disk_with_a_warning_at_reload_and_at_start() {
    let setup = Setup::new();
    let port = free_port();
    let with_stuck = setup.config("in/*.log", "", STUCK_SINK, Some(port));
    let lines = scaled(1_000) as u64;
    let bytes = append_lines(&setup.path("in/0.log"), 0, 0..lines);
    let ferry = Ferry::start(&with_stuck);
    wait_until(HANG_GUARD, "every line in the stuck sink's buffer", || {
        metric(port, "ferry_buffer_events", "sink=\"stuck\"") == Some(lines as f64)
    });
    wait_until(HANG_GUARD, "every line in the output", || {
        setup.output_len() >= bytes
    });

    // Reloaded without the stuck sink: its buffer is kept, with a warning.
    let without = setup.config("in/*.log", "", "", Some(port));
    ferry.signal(libc::SIGHUP);
    wait_until(HANG_GUARD, "the warning at reload", || {
        ferry.log_text().contains(LEFT_BEHIND)
    });
    let log = ferry.log_text();
    assert!(log.contains("sink=stuck"), "{log}");
    assert!(log.contains(&format!("events={lines}")), "{log}");
    // Its sink still tries to deliver what it holds: stop it the hard way.
    ferry.kill();
    let buffer = ferry::buffer::directory(&setup.path("data"), "stuck");
    let stats = ferry::buffer::inspect::stats(&buffer).unwrap();
    assert_eq!(stats.events, lines, "nothing deleted");

    // Started without it: the same warning, and the buffer still there.
    let ferry = Ferry::start(&without);
    wait_until(HANG_GUARD, "the warning at start", || {
        ferry.log_text().contains(LEFT_BEHIND)
    });
    let log = ferry.log_text();
    assert!(log.contains("sink=stuck"), "{log}");
    assert!(ferry.terminate().success(), "{log}");
    assert_eq!(
        ferry::buffer::inspect::stats(&buffer).unwrap().events,
        lines
    );
}

#[test]
fn a_reload_changing_a_disk_buffered_sink_hands_it_the_running_buffer_and_loses_nothing() {
    let setup = Setup::new();
    let port = free_port();
    let config = setup.config("in/app.log", "", DISK_BUFFER, Some(port));
    let ferry = Ferry::start(&config);
    let writer = Writer::start(
        setup.path("in/app.log"),
        0,
        scaled(200) as u64,
        Duration::from_millis(10),
    );
    wait_until(HANG_GUARD, "some output", || setup.output_len() > 0);

    // The sink changes (not its buffer) while lines flow.
    let changed = format!("{DISK_BUFFER}\nretry_max_backoff = \"3s\"");
    setup.config("in/app.log", "", &changed, Some(port));
    ferry.signal(libc::SIGHUP);
    wait_until(HANG_GUARD, "the reload applied", || {
        http_get(port, "/health").is_some_and(|(_, body)| body.contains("\"result\":\"ok\""))
    });
    let before = setup.output().lines;
    wait_until(HANG_GUARD, "lines through the new sink", || {
        setup.output().lines > before + 1_000
    });
    // A change of the buffer itself is refused; the pipeline runs on.
    let resized = r#"buffer = { type = "disk", max_bytes = 33554432 }"#;
    setup.config("in/app.log", "", resized, Some(port));
    ferry.signal(libc::SIGHUP);
    let mut health = String::new();
    wait_until(HANG_GUARD, "the reload refused", || {
        health = http_get(port, "/health")
            .map(|(_, body)| body)
            .unwrap_or_default();
        health.contains("\"result\":\"rejected\"")
    });
    assert!(health.contains("sinks.out has a disk buffer"), "{health}");

    let written = writer.finish();
    wait_until(HANG_GUARD, "every line delivered", || {
        setup.output().unique() as u64 >= written
    });
    let log = ferry.log_text();
    assert!(ferry.terminate().success(), "{log}");
    let output = setup.output();
    output.assert_complete(0, written);
    assert_eq!(output.lines as u64, written, "nothing twice");
}

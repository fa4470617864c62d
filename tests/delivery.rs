//! The delivery contract, end to end with the real binary and real files: file →
//! file at scale, SIGKILL at random moments, SIGTERM and restart, rotation by rename
//! and by copytruncate while lines are written, and a sink whose disk is full.
//!
//! Input lines look like `f<file> <seq, 9 digits> <padding>`, so the output can be
//! checked line by line for loss, duplicates and per-file order.

#[path = "support/ferry_process.rs"]
mod ferry_process;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ferry_process::{Ferry, free_port, http_get, metric, scaled, wait_until};

const PADDING: &str =
    "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor";

fn line(file: usize, seq: u64) -> String {
    format!("f{file} {seq:09} {PADDING}\n")
}

/// Appends lines `seqs` of input `file` to `path`.
fn append_lines(path: &Path, file: usize, seqs: std::ops::Range<u64>) -> u64 {
    let mut out = BufWriter::with_capacity(
        1 << 20,
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap(),
    );
    let mut bytes = 0;
    for seq in seqs {
        let text = line(file, seq);
        bytes += text.len() as u64;
        out.write_all(text.as_bytes()).unwrap();
    }
    out.flush().unwrap();
    bytes
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("in")).unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `ferry.toml`: a file source on `include` into a text file sink.
    fn config(
        &self,
        include: &str,
        source_extra: &str,
        sink_extra: &str,
        api_port: Option<u16>,
    ) -> PathBuf {
        let api = match api_port {
            Some(port) => format!("[api]\naddress = \"127.0.0.1:{port}\"\n"),
            None => "[api]\nenabled = false\n".to_string(),
        };
        let text = format!(
            r#"data_dir = "{data}"
shutdown_timeout = "30s"
{api}
[sources.logs]
type = "file"
include = ["{include}"]
poll_interval = "20ms"
glob_interval = "100ms"
{source_extra}

[sinks.out]
type = "file"
inputs = ["logs"]
path = "{out}"
encoding = "text"
{sink_extra}
"#,
            data = self.path("data").display(),
            include = self.path(include).display(),
            out = self.path("out/out.log").display(),
        );
        let path = self.path("ferry.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn output(&self) -> Output {
        Output::read(&self.path("out/out.log"))
    }

    fn output_len(&self) -> u64 {
        std::fs::metadata(self.path("out/out.log")).map_or(0, |m| m.len())
    }
}

/// The sink's output, parsed.
struct Output {
    per_file: BTreeMap<usize, Vec<u64>>,
    lines: usize,
    /// The file ends inside a line (being written, or torn).
    partial_tail: bool,
}

impl Output {
    /// Parses the complete lines; a last line without its newline is only noted, as
    /// the sink may be writing it right now.
    fn read(path: &Path) -> Output {
        let bytes = std::fs::read(path).unwrap_or_default();
        let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let text = std::str::from_utf8(&bytes[..end]).expect("UTF-8 output");
        let mut per_file: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        let mut lines = 0;
        for l in text.lines() {
            lines += 1;
            let mut parts = l.splitn(3, ' ');
            let file = parts
                .next()
                .and_then(|f| f.strip_prefix('f'))
                .and_then(|f| f.parse().ok());
            let seq = parts.next().and_then(|s| s.parse().ok());
            let (Some(file), Some(seq), Some(PADDING)) = (file, seq, parts.next()) else {
                panic!("corrupt output line: {l:?}");
            };
            per_file.entry(file).or_default().push(seq);
        }
        Output {
            per_file,
            lines,
            partial_tail: end < bytes.len(),
        }
    }

    /// Distinct lines seen.
    fn unique(&self) -> usize {
        self.per_file
            .values()
            .map(|seqs| {
                let mut s = seqs.clone();
                s.sort_unstable();
                s.dedup();
                s.len()
            })
            .sum()
    }

    /// Every line 0..count of `file` is there at least once (and no torn line).
    fn assert_complete(&self, file: usize, count: u64) {
        assert!(!self.partial_tail, "the output ends with a torn line");
        let seqs = self.per_file.get(&file).cloned().unwrap_or_default();
        let mut present = vec![false; count as usize];
        for s in seqs {
            assert!(s < count, "file {file}: line {s} was never written");
            present[s as usize] = true;
        }
        let missing: Vec<usize> = present
            .iter()
            .enumerate()
            .filter(|(_, p)| !**p)
            .map(|(i, _)| i)
            .collect();
        assert!(
            missing.is_empty(),
            "file {file}: {} lines lost, first {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }

    /// Every line 0..count of `file` exactly once, in order.
    fn assert_exact(&self, file: usize, count: u64) {
        assert!(!self.partial_tail, "the output ends with a torn line");
        let seqs = self.per_file.get(&file).cloned().unwrap_or_default();
        if seqs.len() as u64 == count && seqs.iter().enumerate().all(|(i, s)| *s == i as u64) {
            return;
        }
        self.assert_complete(file, count);
        let first_bad = seqs.iter().enumerate().find(|(i, s)| **s != *i as u64);
        panic!(
            "file {file}: {} lines for {count} written (duplicates or disorder), first mismatch at {first_bad:?}",
            seqs.len()
        );
    }
}

/// A writer thread that appends lines to one file at a steady pace until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(path: PathBuf, file: usize, lines_per_tick: u64, tick: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (s, w) = (Arc::clone(&stop), Arc::clone(&written));
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                let from = w.load(Ordering::Acquire);
                append_lines(&path, file, from..from + lines_per_tick);
                w.store(from + lines_per_tick, Ordering::Release);
                std::thread::sleep(tick);
            }
        });
        Writer {
            stop,
            written,
            handle: Some(handle),
        }
    }

    /// Stops writing; returns how many lines were written.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            handle.join().unwrap();
        }
        self.written.load(Ordering::Acquire)
    }
}

/// A small deterministic random sequence (the seed is printed for reruns).
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("FERRY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("random seed {seed} (set FERRY_TEST_SEED to replay)");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

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
    let config = setup.config(
        "in/app.log",
        &format!("max_in_flight_batches = {window}\nbatch_max_events = {batch}"),
        "",
        None,
    );
    let writer = Writer::start(
        setup.path("in/app.log"),
        0,
        scaled(500) as u64,
        Duration::from_millis(10),
    );
    let mut rng = Rng::seeded();
    let kills = 12;
    for _ in 0..kills {
        let ferry = Ferry::start(&config);
        std::thread::sleep(Duration::from_millis(150 + rng.below(450)));
        ferry.kill();
    }
    let written = writer.finish();
    let mut ferry = Ferry::start(&config);
    wait_until(HANG_GUARD, "every line delivered", || {
        setup.output().unique() as u64 >= written
    });
    assert!(ferry.is_running());
    assert!(ferry.terminate().success());

    let output = setup.output();
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
        let read = metric(port, "ferry_source_events_total", "source=\"logs\"").unwrap_or(0.0);
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

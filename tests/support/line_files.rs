//! Line files for end-to-end delivery tests: numbered input lines
//! (`f<file> <seq, 9 digits> <padding>`), a file source → text file sink config, the
//! sink's output parsed and checked for loss, duplicates and per-file order, a
//! writer thread appending at a steady pace, a seeded random sequence, and SIGKILLs
//! at random moments while lines are written.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::ferry_process::{Ferry, scaled, wait_until};

pub const PADDING: &str =
    "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor";

pub fn line(file: usize, seq: u64) -> String {
    format!("f{file} {seq:09} {PADDING}\n")
}

/// Appends lines `seqs` of input `file` to `path`.
pub fn append_lines(path: &Path, file: usize, seqs: std::ops::Range<u64>) -> u64 {
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

pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("in")).unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        Setup { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `ferry.toml`: a file source on `include` into a text file sink.
    pub fn config(
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

    pub fn output(&self) -> Output {
        Output::read(&self.path("out/out.log"))
    }

    pub fn output_len(&self) -> u64 {
        std::fs::metadata(self.path("out/out.log")).map_or(0, |m| m.len())
    }
}

/// The sink's output, parsed.
pub struct Output {
    pub per_file: BTreeMap<usize, Vec<u64>>,
    pub lines: usize,
    /// The file ends inside a line (being written, or torn).
    pub partial_tail: bool,
}

impl Output {
    /// Parses the complete lines; a last line without its newline is only noted, as
    /// the sink may be writing it right now.
    pub fn read(path: &Path) -> Output {
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
    pub fn unique(&self) -> usize {
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
    pub fn assert_complete(&self, file: usize, count: u64) {
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
    pub fn assert_exact(&self, file: usize, count: u64) {
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
pub struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(path: PathBuf, file: usize, lines_per_tick: u64, tick: Duration) -> Writer {
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
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            handle.join().unwrap();
        }
        self.written.load(Ordering::Acquire)
    }
}

/// A small deterministic random sequence (the seed is printed for reruns).
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
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

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs ferry on a config of `setup` (a window of `window` batches of `batch` events,
/// `sink_extra` in the sink) while a writer appends to `in/app.log`, SIGKILLs it at
/// `kills` random moments, then runs it once more until every line is out and stops
/// it with SIGTERM. Returns the output and the lines written.
pub fn sigkill_while_writing(
    setup: &Setup,
    (window, batch): (u64, u64),
    sink_extra: &str,
    kills: u64,
) -> (Output, u64) {
    let config = setup.config(
        "in/app.log",
        &format!("max_in_flight_batches = {window}\nbatch_max_events = {batch}"),
        sink_extra,
        None,
    );
    let writer = Writer::start(
        setup.path("in/app.log"),
        0,
        scaled(500) as u64,
        Duration::from_millis(10),
    );
    let mut rng = Rng::seeded();
    for _ in 0..kills {
        let ferry = Ferry::start(&config);
        std::thread::sleep(Duration::from_millis(150 + rng.below(450)));
        ferry.kill();
    }
    let written = writer.finish();
    let mut ferry = Ferry::start(&config);
    wait_until(Duration::from_secs(600), "every line delivered", || {
        setup.output().unique() as u64 >= written
    });
    assert!(ferry.is_running());
    let log = ferry.log_text();
    assert!(ferry.terminate().success(), "{log}");
    (setup.output(), written)
}

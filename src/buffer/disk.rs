//! A disk buffer as opened: recovery of what a crash left (a torn or damaged tail is
//! cut off, counted and logged once; released segments are deleted), the state the
//! writer, the reader and the release tracker share, and the release itself, which
//! the tracker commits through the ledger ([`CursorLog`]).

use std::collections::{BTreeMap, VecDeque};
use std::fs::{DirBuilder, File};
use std::future::Future;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ledger::Ledger;
use super::reader::Handoff;
use super::segment::{self, Item, Scanner};
use super::{BufferConfig, DEFAULT_MAX_BYTES, WhenFull};
use crate::checkpoint::{CursorLog, TrackerHandle, TrackerOwner, spawn_tracker_into};
use crate::event::now_nanos;
use crate::sinks::file::FsyncPolicy;
use crate::telemetry::Health;
use crate::topology::BatchReceiver;

/// The cursor key under which replayed batches carry their record number.
pub(super) const RELEASED_KEY: &str = "released";

/// Batches handed to the sink and not yet settled, at most.
const REPLAY_WINDOW: usize = 16;

/// A segment is closed and a new one started past this share of `max_bytes`
/// (within [`MIN_SEGMENT`, `MAX_SEGMENT`]), so whole segments can be freed long
/// before the buffer is full.
const SEGMENTS_PER_BUFFER: u64 = 8;
const MIN_SEGMENT: u64 = 64 << 10;
const MAX_SEGMENT: u64 = 128 << 20;

pub(super) struct Limits {
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub when_full: WhenFull,
    pub sync: bool,
}

/// A segment file as the buffer knows it.
pub(super) struct SegmentInfo {
    pub id: u64,
    /// Bytes written (and, under `fsync = "batch"`, fsynced): what the reader may read.
    pub size: u64,
    /// The number of its last intact record (0: none).
    pub last_seq: u64,
}

/// A record handed to the sink and not yet released.
pub(super) struct InFlight {
    pub seq: u64,
    pub events: u64,
    pub bytes: u64,
    pub appended_at: i64,
}

pub(super) struct State {
    pub segments: VecDeque<SegmentInfo>,
    /// The segment the writer appends to (it is never deleted).
    pub active: Option<u64>,
    /// The id the next new segment gets.
    pub next_segment: u64,
    pub next_seq: u64,
    pub released: u64,
    pub disk_bytes: u64,
    /// Records not yet released: events and record bytes.
    pub buffered_events: u64,
    pub buffered_bytes: u64,
    pub in_flight: VecDeque<InFlight>,
    /// When the next record the reader will hand out was appended.
    pub next_appended_at: Option<i64>,
    pub writer_done: bool,
    /// Damaged records cut off or skipped since the buffer was opened.
    pub corrupt_records: u64,
    /// The reader has finished; the gauges stop updating.
    pub closed: bool,
}

impl State {
    /// Records every record up to `seq` as delivered; returns the segments that are
    /// now wholly delivered (taken out of the state, to be deleted).
    fn release(&mut self, seq: u64) -> Vec<u64> {
        self.released = self.released.max(seq);
        while self
            .in_flight
            .front()
            .is_some_and(|r| r.seq <= self.released)
        {
            if let Some(done) = self.in_flight.pop_front() {
                self.buffered_events = self.buffered_events.saturating_sub(done.events);
                self.buffered_bytes = self.buffered_bytes.saturating_sub(done.bytes);
            }
        }
        self.take_released_segments()
    }

    pub fn take_released_segments(&mut self) -> Vec<u64> {
        let mut doomed = Vec::new();
        while let Some(first) = self.segments.front() {
            if Some(first.id) == self.active || first.last_seq > self.released {
                break;
            }
            self.disk_bytes = self.disk_bytes.saturating_sub(first.size);
            doomed.push(first.id);
            self.segments.pop_front();
        }
        doomed
    }

    fn oldest_appended_at(&self) -> Option<i64> {
        self.in_flight
            .front()
            .map(|r| r.appended_at)
            .or(self.next_appended_at)
    }
}

/// The buffer's metrics, labelled with its sink.
pub(super) struct Gauges {
    events: metrics::Gauge,
    bytes: metrics::Gauge,
    disk: metrics::Gauge,
    oldest_age: metrics::Gauge,
    pub corrupt: metrics::Counter,
    pub dropped: metrics::Counter,
}

impl Gauges {
    fn new(sink: &str) -> Gauges {
        let label = [("sink", sink.to_string())];
        Gauges {
            events: metrics::gauge!("ferry_buffer_events", &label),
            bytes: metrics::gauge!("ferry_buffer_bytes", &label),
            disk: metrics::gauge!("ferry_buffer_disk_bytes", &label),
            oldest_age: metrics::gauge!("ferry_buffer_oldest_event_age_seconds", &label),
            corrupt: metrics::counter!("ferry_buffer_corrupt_records_total", &label),
            dropped: metrics::counter!("ferry_buffer_dropped_events_total", &label),
        }
    }
}

pub(super) struct Shared {
    pub sink: Arc<str>,
    pub dir: PathBuf,
    pub limits: Limits,
    state: Mutex<State>,
    ledger: Mutex<Ledger>,
    /// The writer made more records durable, or finished.
    pub data: Notify,
    /// Records were released (and maybe segments deleted).
    pub space: Notify,
    pub gauges: Gauges,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Updates the gauges from the state.
    pub fn publish(&self) {
        let state = self.state();
        self.publish_locked(&state);
    }

    pub fn publish_locked(&self, state: &State) {
        self.gauges.events.set(state.buffered_events as f64);
        self.gauges.bytes.set(state.buffered_bytes as f64);
        self.gauges.disk.set(state.disk_bytes as f64);
        let age = state
            .oldest_appended_at()
            .map_or(0.0, |at| (now_nanos() - at).max(0) as f64 / 1e9);
        self.gauges.oldest_age.set(age);
    }

    /// Whether segment `id` is still there (not yet wholly delivered and deleted).
    pub fn has_segment(&self, id: u64) -> bool {
        self.state().segments.iter().any(|s| s.id == id)
    }

    /// Counts `records` damaged records cut off or skipped.
    pub fn count_corrupt(&self, records: u64) {
        self.gauges.corrupt.increment(records);
        self.state().corrupt_records += records;
    }

    /// Deletes segment files no longer needed.
    pub fn delete_segments(&self, ids: &[u64]) {
        for id in ids {
            let path = segment::path(&self.dir, *id);
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(sink = %self.sink, path = %path.display(), "cannot delete a delivered buffer segment: {error}");
            }
        }
    }
}

impl CursorLog for Shared {
    fn commit(&self, _owner: &str, updates: &BTreeMap<String, Option<Value>>) -> Result<()> {
        let Some(seq) = updates
            .get(RELEASED_KEY)
            .and_then(|v| v.as_ref())
            .and_then(Value::as_u64)
        else {
            return Ok(());
        };
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(seq, self.limits.sync)
            .with_context(|| format!("cannot write the ledger in {}", self.dir.display()))?;
        let doomed = {
            let mut state = self.state();
            let doomed = state.release(seq);
            self.publish_locked(&state);
            doomed
        };
        self.delete_segments(&doomed);
        self.space.notify_one();
        Ok(())
    }
}

/// An opened disk buffer, ready to start.
pub struct DiskBuffer {
    shared: Arc<Shared>,
}

pub type BufferTask = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A started disk buffer: the receiver the sink reads instead of its channel, the
/// buffer's tasks (for the pipeline to run) and its release tracker.
pub struct Attached {
    pub input: BatchReceiver,
    pub tasks: Vec<(String, BufferTask)>,
    pub tracker: TrackerHandle,
    /// Hands the buffer over to a new instance of its sink (gone once the reader ended).
    pub handoff: Weak<Handoff>,
}

impl DiskBuffer {
    /// Opens the buffer in `dir` (creating it), recovering what is there.
    pub fn open(dir: &Path, sink: &str, config: &BufferConfig) -> Result<DiskBuffer> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the buffer directory {}", dir.display()))?;
        let mut ledger = Ledger::open(dir)
            .with_context(|| format!("cannot open the ledger in {}", dir.display()))?;
        let max_bytes = config.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        let limits = Limits {
            max_bytes,
            segment_bytes: (max_bytes / SEGMENTS_PER_BUFFER).clamp(MIN_SEGMENT, MAX_SEGMENT),
            when_full: config.when_full,
            sync: config.fsync.unwrap_or_default() == FsyncPolicy::Batch,
        };
        let gauges = Gauges::new(sink);
        let state = recover(dir, sink, &ledger, &gauges)?;
        if ledger.is_fresh() {
            // From now on a damaged first record is counted, not taken for delivered.
            ledger
                .release(state.released, true)
                .with_context(|| format!("cannot write the ledger in {}", dir.display()))?;
        }
        let shared = Arc::new(Shared {
            sink: Arc::from(sink),
            dir: dir.to_path_buf(),
            limits,
            state: Mutex::new(state),
            ledger: Mutex::new(ledger),
            data: Notify::new(),
            space: Notify::new(),
            gauges,
        });
        let doomed = shared.state().take_released_segments();
        shared.delete_segments(&doomed);
        shared.publish();
        {
            let state = shared.state();
            if state.buffered_events > 0 {
                tracing::info!(
                    sink = %sink,
                    events = state.buffered_events,
                    bytes = state.buffered_bytes,
                    "disk buffer holds undelivered events; replaying them first"
                );
            }
        }
        Ok(DiskBuffer { shared })
    }

    /// Starts the writer (fed by `input`), the reader (feeding the returned
    /// receiver) and the release tracker. After `stop` the reader hands the sink no
    /// new batch (what is on disk stays for the next start); when the input ends
    /// without a stop (the sources finished), it first replays everything.
    pub fn start(
        self,
        input: BatchReceiver,
        health: Arc<Health>,
        stop: CancellationToken,
    ) -> Attached {
        let shared = self.shared;
        let (acker, tracker) = spawn_tracker_into(
            TrackerOwner::sink_buffer(Arc::clone(&shared.sink)),
            Arc::clone(&shared) as Arc<dyn CursorLog>,
            REPLAY_WINDOW,
            Arc::clone(&health),
        );
        let (output, sink_input) = Handoff::new();
        let handoff = Arc::downgrade(&output);
        tokio::spawn(super::reader::keep_gauges(Arc::downgrade(&shared)));
        let name = format!("buffers.{}", shared.sink);
        let writer = super::writer::run(Arc::clone(&shared), input, health, stop.clone());
        let reader = super::reader::run(shared, acker, output, stop);
        Attached {
            input: sink_input,
            tasks: vec![
                (format!("{name}.writer"), Box::pin(writer)),
                (format!("{name}.reader"), Box::pin(reader)),
            ],
            tracker,
            handoff,
        }
    }
}

/// Scans every segment: sizes, last records, what is still to deliver; cuts off a
/// damaged tail (after the last intact record) and deletes segments holding nothing
/// intact after it.
fn recover(dir: &Path, sink: &str, ledger: &Ledger, gauges: &Gauges) -> Result<State> {
    let mut released = ledger.released();
    let mut state = State {
        segments: VecDeque::new(),
        active: None,
        next_segment: 1,
        next_seq: released + 1,
        released,
        disk_bytes: 0,
        buffered_events: 0,
        buffered_bytes: 0,
        in_flight: VecDeque::new(),
        next_appended_at: None,
        writer_done: false,
        corrupt_records: 0,
        closed: false,
    };
    let ids = segment::list(dir)
        .with_context(|| format!("cannot list the buffer directory {}", dir.display()))?;
    // Where the last intact record ends (segment index, offset), and the damage after it.
    let mut last_intact: Option<(usize, u64)> = None;
    let mut tail_records = 0u64;
    let mut tail_bytes = 0u64;
    for (index, id) in ids.iter().enumerate() {
        let path = segment::path(dir, *id);
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = file.metadata()?.len();
        let mut scanner = Scanner::new(0, size, true);
        let mut last_seq = 0;
        while let Some(item) = scanner
            .next(&file)
            .with_context(|| format!("cannot read {}", path.display()))?
        {
            match item {
                Item::Record { offset, header } => {
                    if ledger.is_fresh() && last_intact.is_none() && header.seq > 1 {
                        tracing::warn!(sink = %sink, path = %dir.display(), "the disk buffer's ledger is missing or damaged: replaying every record in it (some events may be delivered twice)");
                        released = header.seq - 1;
                        state.released = released;
                    }
                    last_seq = header.seq;
                    last_intact = Some((index, offset + header.record_len()));
                    tail_records = 0;
                    tail_bytes = 0;
                    state.next_seq = state.next_seq.max(header.seq + 1);
                    if header.seq > released {
                        state.buffered_events += u64::from(header.events);
                        state.buffered_bytes += header.record_len();
                        state.next_appended_at.get_or_insert(header.appended_at);
                    }
                }
                Item::Damaged { len, starts, .. } => {
                    tail_records += starts;
                    tail_bytes += len;
                }
            }
        }
        state.segments.push_back(SegmentInfo {
            id: *id,
            size,
            last_seq,
        });
        state.next_segment = id + 1;
        state.disk_bytes += size;
    }
    if tail_bytes > 0 {
        cut_tail(dir, &mut state, last_intact)?;
        tracing::warn!(
            sink = %sink,
            bytes = tail_bytes,
            records = tail_records,
            "cut off a damaged tail of the disk buffer (a write torn by a crash or a power loss, or a damaged disk); the records before it are kept"
        );
        gauges.corrupt.increment(tail_records);
        state.corrupt_records = tail_records;
    }
    Ok(state)
}

/// Truncates the segment of the last intact record after it and deletes the later
/// segments (which hold no intact record).
fn cut_tail(dir: &Path, state: &mut State, last_intact: Option<(usize, u64)>) -> Result<()> {
    let (keep, end) = last_intact.map_or((0, 0), |(index, end)| (index + 1, end));
    while state.segments.len() > keep {
        let Some(gone) = state.segments.pop_back() else {
            break;
        };
        state.disk_bytes -= gone.size;
        let path = segment::path(dir, gone.id);
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    if let Some(last) = state.segments.back_mut() {
        let path = segment::path(dir, last.id);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.set_len(end)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot cut the damaged tail of {}", path.display()))?;
        state.disk_bytes -= last.size - end;
        last.size = end;
    }
    Ok(())
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;

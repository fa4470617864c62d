//! The writer task: takes batches from the sink's input channel and appends each as
//! a record, in groups: every batch that arrived while the previous group was being
//! written goes into one write and one fsync (group commit). Only then are their
//! deliveries settled, so a source's checkpoint never passes a batch the buffer could
//! still lose. When `max_bytes` is reached it waits for the sink to free space
//! (`block`) or drops and counts the batch (`drop_newest`). A failed write (a full
//! disk) is undone, reported in `/health` and retried with backoff; meanwhile the
//! batches stay unsettled, which holds the sources back. The segment being written
//! is sealed then, so once the sink has released it, it is deleted and its space
//! comes back even on a disk smaller than a segment. After a stop, a writer that is
//! waiting (for space in the buffer or on the disk) gives up: its batches are left
//! unsettled, to be read again from the sources' checkpoints on the next start.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::WhenFull;
use super::disk::{SegmentInfo, Shared};
use super::record;
use super::segment;
use crate::checkpoint::{BatchStatus, Delivery};
use crate::event::now_nanos;
use crate::http::retry::backoff;
use crate::telemetry::Health;
use crate::topology::BatchReceiver;

/// Most batches appended in one group.
const MAX_BATCHES_PER_GROUP: usize = 256;
/// A group is written once its records reach this many bytes.
const MAX_GROUP_BYTES: usize = 1 << 20;
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5);

pub(super) async fn run(
    shared: Arc<Shared>,
    mut input: BatchReceiver,
    health: Arc<Health>,
    stop: CancellationToken,
) -> Result<()> {
    let mut writer = Writer {
        appender: Some(Appender {
            dir: shared.dir.clone(),
            sync: shared.limits.sync,
            open: None,
        }),
        group: Group::default(),
        health_key: format!("buffer:{}", shared.sink),
        health,
        shared: Arc::clone(&shared),
        stop,
        warned_oversize: false,
    };
    'batches: while let Some(first) = input.recv().await {
        if writer.append(first).await? == Progress::Stopped {
            break;
        }
        while writer.group.records.len() < MAX_BATCHES_PER_GROUP
            && writer.group.bytes.len() < MAX_GROUP_BYTES
        {
            match input.try_recv() {
                Some(batch) => {
                    if writer.append(batch).await? == Progress::Stopped {
                        break 'batches;
                    }
                }
                None => break,
            }
        }
        if writer.flush().await? == Progress::Stopped {
            writer.give_back(None);
            break;
        }
    }
    // After a stop: what still comes is given back (its sources read it again on
    // the next start), and taken so that no sender waits on a closed channel.
    while let Some(batch) = input.recv().await {
        batch.delivery.settle(BatchStatus::GivenBack);
    }
    {
        let mut state = shared.state();
        state.writer_done = true;
        state.active = None;
    }
    shared.data.notify_one();
    Ok(())
}

/// Records encoded and not yet written.
#[derive(Default)]
struct Group {
    bytes: Vec<u8>,
    records: Vec<Pending>,
}

struct Pending {
    seq: u64,
    len: u64,
    events: u64,
    delivery: Delivery,
}

struct Writer {
    /// `None` only while a write runs on the blocking pool.
    appender: Option<Appender>,
    group: Group,
    shared: Arc<Shared>,
    health: Arc<Health>,
    health_key: String,
    stop: CancellationToken,
    warned_oversize: bool,
}

/// Whether the writer goes on, or gave up waiting because of a stop.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    Done,
    Stopped,
}

enum Room {
    Fits,
    /// Fits only because nothing else is buffered: a batch larger than the buffer.
    Alone,
    Full,
}

impl Writer {
    /// Encodes `batch` into the group, making room for it first as `when_full` says.
    async fn append(&mut self, batch: crate::event::Batch) -> Result<Progress> {
        if batch.events.is_empty() {
            batch.delivery.settle(BatchStatus::Delivered);
            return Ok(Progress::Done);
        }
        let mut start = self.group.bytes.len();
        let seq = self.shared.state().next_seq + self.group.records.len() as u64;
        let header = record::encode(&mut self.group.bytes, seq, now_nanos(), &batch.events);
        let len = header.record_len();
        loop {
            match self.room(len) {
                Room::Fits => break,
                Room::Alone => {
                    if !std::mem::replace(&mut self.warned_oversize, true) {
                        tracing::warn!(sink = %self.shared.sink, bytes = len, max_bytes = self.shared.limits.max_bytes, "a batch larger than the disk buffer's max_bytes is buffered alone");
                    }
                    break;
                }
                Room::Full if self.shared.limits.when_full == WhenFull::DropNewest => {
                    self.group.bytes.truncate(start);
                    self.shared
                        .gauges
                        .dropped
                        .increment(batch.events.len() as u64);
                    batch.delivery.settle(BatchStatus::Delivered);
                    return Ok(Progress::Done);
                }
                Room::Full => {
                    // Write what came before, then wait for the sink to free space;
                    // the batch stays unsettled, so the sources wait too.
                    let record = self.group.bytes.split_off(start);
                    let progress = if self.group.records.is_empty() {
                        tokio::select! {
                            () = self.shared.space.notified() => Progress::Done,
                            () = self.stop.cancelled() => Progress::Stopped,
                        }
                    } else {
                        self.flush().await?
                    };
                    if progress == Progress::Stopped {
                        self.give_back(Some(batch.delivery));
                        return Ok(Progress::Stopped);
                    }
                    // The group is empty now: the record is all of it.
                    self.group.bytes = record;
                    start = 0;
                }
            }
        }
        self.group.records.push(Pending {
            seq,
            len,
            events: batch.events.len() as u64,
            delivery: batch.delivery,
        });
        Ok(Progress::Done)
    }

    fn room(&self, len: u64) -> Room {
        let state = self.shared.state();
        let pending: u64 = self.group.records.iter().map(|r| r.len).sum();
        if state.disk_bytes + pending + len <= self.shared.limits.max_bytes {
            Room::Fits
        } else if state.buffered_bytes == 0 && pending == 0 {
            Room::Alone
        } else {
            Room::Full
        }
    }

    /// At a stop: the batches not appended (the group's, and `held`) go back to their
    /// sources, with one warning, as a sink gives back what it cannot deliver.
    fn give_back(&mut self, held: Option<Delivery>) {
        let group = std::mem::take(&mut self.group);
        let batches = group.records.len() + usize::from(held.is_some());
        if batches == 0 {
            return;
        }
        tracing::warn!(sink = %self.shared.sink, batches, "stopping with batches the disk buffer could not append; their sources read them again on the next start");
        for delivery in group.records.into_iter().map(|r| r.delivery).chain(held) {
            delivery.settle(BatchStatus::GivenBack);
        }
    }

    /// Writes the group (retrying until it succeeds, or until a stop, which leaves
    /// it as it is), then settles its batches.
    async fn flush(&mut self) -> Result<Progress> {
        if self.group.records.is_empty() {
            return Ok(Progress::Done);
        }
        let mut retry = backoff(Duration::from_millis(50), MAX_RETRY_BACKOFF);
        let mut failures = 0u32;
        let plan = loop {
            let plan = self.plan();
            let mut appender = self.appender.take().context("buffer writer lost")?;
            let bytes = std::mem::take(&mut self.group.bytes);
            let writes = plan.clone();
            let (appender, bytes, result) = tokio::task::spawn_blocking(move || {
                let result = appender.write(&writes, &bytes);
                (appender, bytes, result)
            })
            .await
            .context("buffer write task failed")?;
            self.appender = Some(appender);
            self.group.bytes = bytes;
            match result {
                Ok(()) => break plan,
                Err(error) => {
                    if failures == 0 {
                        tracing::error!(sink = %self.shared.sink, "cannot append to the disk buffer, retrying with backoff and holding the sources back: {error}");
                    }
                    failures += 1;
                    self.health.set(
                        &self.health_key,
                        format!("disk buffer append failing: {error}"),
                    );
                    self.seal_active();
                    tokio::select! {
                        () = tokio::time::sleep(retry.next().unwrap_or(MAX_RETRY_BACKOFF)) => {}
                        () = self.stop.cancelled() => return Ok(Progress::Stopped),
                    }
                }
            }
        };
        if failures > 0 {
            tracing::info!(sink = %self.shared.sink, failures, "disk buffer appends succeed again");
            self.health.clear(&self.health_key);
        }
        self.commit(&plan);
        Ok(Progress::Done)
    }

    /// Ends the segment being written: the next append starts a new one, and this
    /// one is deleted as soon as the sink has released it (at once if it has). On a
    /// full disk that is where space comes back, even when the segment is larger
    /// than the whole disk.
    fn seal_active(&self) {
        let doomed = {
            let mut state = self.shared.state();
            state.active = None;
            state.take_released_segments()
        };
        self.shared.delete_segments(&doomed);
        self.shared.data.notify_one();
    }

    /// Which segment each record goes to: the active one until it would pass the
    /// segment size, then a new one.
    fn plan(&self) -> Vec<Write> {
        let state = self.shared.state();
        let mut current = state.active.and_then(|id| {
            state
                .segments
                .iter()
                .find(|s| s.id == id)
                .map(|s| (id, s.size))
        });
        let mut next_id = state.next_segment;
        let mut writes: Vec<Write> = Vec::new();
        let mut at = 0usize;
        for record in &self.group.records {
            let len = record.len as usize;
            let roll = match current {
                None => true,
                Some((_, size)) => size > 0 && size + record.len > self.shared.limits.segment_bytes,
            };
            if roll {
                current = Some((next_id, 0));
                next_id += 1;
            }
            let (id, size) = current.as_mut().expect("set above");
            match writes.last_mut() {
                Some(last) if last.id == *id => last.range.end += len,
                _ => writes.push(Write {
                    id: *id,
                    offset: *size,
                    range: at..at + len,
                    new_file: roll,
                    last_seq: 0,
                }),
            }
            if let Some(last) = writes.last_mut() {
                last.last_seq = record.seq;
            }
            *size += record.len;
            at += len;
        }
        writes
    }

    /// Makes a written group visible: state, reader, metrics, deliveries.
    fn commit(&mut self, plan: &[Write]) {
        let records = std::mem::take(&mut self.group.records);
        self.group.bytes.clear();
        let doomed = {
            let mut state = self.shared.state();
            for write in plan {
                let len = (write.range.end - write.range.start) as u64;
                if write.new_file {
                    state.segments.push_back(SegmentInfo {
                        id: write.id,
                        size: 0,
                        last_seq: 0,
                    });
                }
                if let Some(info) = state.segments.iter_mut().find(|s| s.id == write.id) {
                    info.size += len;
                    info.last_seq = write.last_seq;
                }
                state.active = Some(write.id);
                state.next_segment = state.next_segment.max(write.id + 1);
                state.disk_bytes += len;
            }
            for record in &records {
                state.next_seq = record.seq + 1;
                state.buffered_events += record.events;
                state.buffered_bytes += record.len;
            }
            let doomed = state.take_released_segments();
            self.shared.publish_locked(&state);
            doomed
        };
        self.shared.delete_segments(&doomed);
        self.shared.data.notify_one();
        for record in records {
            record.delivery.settle(BatchStatus::Delivered);
        }
    }
}

/// One contiguous write into one segment.
#[derive(Clone)]
struct Write {
    id: u64,
    offset: u64,
    /// The bytes of the group it takes.
    range: std::ops::Range<usize>,
    new_file: bool,
    last_seq: u64,
}

/// The blocking side: segment files and fsyncs.
struct Appender {
    dir: PathBuf,
    sync: bool,
    /// The open active segment.
    open: Option<(u64, File)>,
}

impl Appender {
    /// Writes every part of the plan; on failure undoes them all, so a retry starts
    /// from the same place and no torn record stays behind.
    fn write(&mut self, writes: &[Write], bytes: &[u8]) -> io::Result<()> {
        let result = self.try_write(writes, bytes);
        if result.is_err() {
            self.open = None;
            for write in writes {
                let path = segment::path(&self.dir, write.id);
                let _ = if write.new_file {
                    std::fs::remove_file(&path)
                } else {
                    OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(write.offset))
                };
            }
        }
        result
    }

    fn try_write(&mut self, writes: &[Write], bytes: &[u8]) -> io::Result<()> {
        let mut touched: Vec<File> = Vec::new();
        for write in writes {
            let file = match self.open.take() {
                Some((id, file)) if id == write.id => file,
                previous => {
                    if let Some((_, file)) = previous {
                        touched.push(file);
                    }
                    open_segment(&self.dir, write.id, write.new_file, self.sync)?
                }
            };
            file.write_all_at(&bytes[write.range.clone()], write.offset)?;
            self.open = Some((write.id, file));
        }
        if self.sync {
            for file in &touched {
                file.sync_data()?;
            }
            if let Some((_, file)) = &self.open {
                file.sync_data()?;
            }
        }
        Ok(())
    }
}

fn open_segment(dir: &Path, id: u64, new: bool, sync: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(new)
        .truncate(new)
        .mode(0o600)
        .open(segment::path(dir, id))?;
    if new && sync {
        // The new file's name must be as durable as the records in it.
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

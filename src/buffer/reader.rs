//! The reader task: replays the buffer's records to the sink, in order, each as a
//! batch whose delivery reports to the buffer's release tracker (so a record is
//! released only after the sink settled it). It reads only what the writer has made
//! durable, a few records ahead of the sink; damaged records are skipped and counted
//! (how many, by the gap in record numbers). After a stop it hands out nothing more.

use std::fs::File;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::disk::{InFlight, RELEASED_KEY, Shared};
use super::record::{self, Header};
use super::segment::{Item, Scanner};
use crate::checkpoint::{Acker, CursorUpdate};
use crate::event::{Batch, Event};
use crate::topology::{BatchReceiver, BatchSender, batch_channel};

/// The byte budget of the channel between the reader and the sink.
const READ_AHEAD_BYTES: usize = 512 << 10;
/// Most payload bytes decoded in one step.
const STEP_BYTES: usize = 256 << 10;
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// Where the reader sends its batches: the input of the buffer's sink, which a
/// reload may replace with the input of a new instance of the sink (the buffer, its
/// files and its release tracker stay). The previous instance gets nothing more and
/// ends once it has delivered what it had; its deliveries still release their
/// records. The reader holds the only strong reference, so the sink's input closes
/// when the reader ends.
pub struct Handoff {
    sink: Mutex<BatchSender>,
}

impl Handoff {
    /// The reader's output, and the sink's first input.
    pub(super) fn new() -> (Arc<Handoff>, BatchReceiver) {
        let (sender, receiver) = batch_channel(READ_AHEAD_BYTES);
        (
            Arc::new(Handoff {
                sink: Mutex::new(sender),
            }),
            receiver,
        )
    }

    /// Sends from now on to a new sink instance; returns its input.
    pub fn reattach(&self) -> BatchReceiver {
        let (sender, receiver) = batch_channel(READ_AHEAD_BYTES);
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = sender;
        receiver
    }

    fn current(&self) -> BatchSender {
        self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A record (or damage) found in one read step.
enum Found {
    Record {
        header: Header,
        events: Result<Vec<Event>, String>,
    },
    Damaged {
        offset: u64,
        len: u64,
    },
}

/// The segment being read.
struct Cursor {
    id: u64,
    file: File,
    scanner: Scanner,
    /// Scanned to the end of a sealed segment.
    done: bool,
}

impl Cursor {
    /// Reads and decodes the next few records (blocking).
    fn step(&mut self) -> std::io::Result<Vec<Found>> {
        let mut found = Vec::new();
        let mut bytes = 0;
        while bytes < STEP_BYTES {
            match self.scanner.next(&self.file)? {
                None => break,
                Some(Item::Record { header, .. }) => {
                    bytes += header.len as usize;
                    found.push(Found::Record {
                        header,
                        events: record::decode(&header, self.scanner.payload()),
                    });
                }
                Some(Item::Damaged { offset, len, .. }) => {
                    found.push(Found::Damaged { offset, len })
                }
            }
        }
        Ok(found)
    }
}

/// What to read next.
enum Next {
    /// Segment `id`, durable up to `size`; `sealed` when nothing more will be written.
    Read {
        id: u64,
        size: u64,
        sealed: bool,
    },
    Wait,
    Finished,
}

pub(super) async fn run(
    shared: Arc<Shared>,
    mut acker: Acker,
    output: Arc<Handoff>,
    stop: CancellationToken,
) -> Result<()> {
    let result = replay(&shared, &mut acker, &output, &stop).await;
    shared.state().closed = true;
    result
}

async fn replay(
    shared: &Shared,
    acker: &mut Acker,
    output: &Handoff,
    stop: &CancellationToken,
) -> Result<()> {
    let mut cursor: Option<Cursor> = None;
    // The segment read last, once its file is closed.
    let mut closed: Option<u64> = None;
    let mut last_seq = shared.state().released;
    let mut damage: Option<(u64, u64, u64)> = None;
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        let (id, size, sealed) = match next(shared, cursor.as_ref(), closed) {
            Next::Finished => return Ok(()),
            Next::Wait => {
                // A segment read to its end, or deleted, is closed while waiting: an
                // open file would keep its space taken on a full disk.
                if let Some(done) = cursor.take_if(|c| c.done || !shared.has_segment(c.id)) {
                    closed = Some(done.id);
                }
                tokio::select! {
                    () = shared.data.notified() => {}
                    () = stop.cancelled() => return Ok(()),
                }
                continue;
            }
            Next::Read { id, size, sealed } => (id, size, sealed),
        };
        let mut current = match cursor.take() {
            Some(c) if c.id == id => c,
            _ => {
                let path = super::segment::path(&shared.dir, id);
                match File::open(&path) {
                    Ok(file) => Cursor {
                        id,
                        file,
                        scanner: Scanner::new(0, size, sealed),
                        done: false,
                    },
                    // Deleted meanwhile: it was wholly delivered.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot open {}", path.display()));
                    }
                }
            }
        };
        current.scanner.extend(size, sealed);
        let (back, found) = tokio::task::spawn_blocking(move || {
            let found = current.step();
            (current, found)
        })
        .await
        .context("buffer read task failed")?;
        let mut current = back;
        let found = found.with_context(|| {
            format!(
                "cannot read {}",
                super::segment::path(&shared.dir, id).display()
            )
        })?;
        if found.is_empty() {
            if sealed {
                current.done = true;
            } else {
                tokio::select! {
                    () = shared.data.notified() => {}
                    () = stop.cancelled() => return Ok(()),
                }
            }
        }
        cursor = Some(current);
        for item in found {
            let (header, events) = match item {
                Found::Damaged { offset, len } => {
                    let (from, bytes, _) = damage.get_or_insert((offset, 0, id));
                    *from = (*from).min(offset);
                    *bytes += len;
                    continue;
                }
                Found::Record { header, events } => (header, events),
            };
            if header.seq <= last_seq {
                continue;
            }
            if header.seq > last_seq + 1 {
                let lost = header.seq - last_seq - 1;
                let (offset, bytes, segment) = damage.take().unwrap_or((0, 0, id));
                tracing::warn!(
                    sink = %shared.sink,
                    segment,
                    offset,
                    bytes,
                    records = lost,
                    "skipped damaged records in the disk buffer; the records after them are kept"
                );
                shared.count_corrupt(lost);
            }
            damage = None;
            last_seq = header.seq;
            let events = match events {
                Ok(events) => events,
                Err(reason) => {
                    tracing::warn!(sink = %shared.sink, seq = header.seq, "skipped a disk buffer record whose events do not decode: {reason}");
                    shared.count_corrupt(1);
                    let mut state = shared.state();
                    state.buffered_events = state
                        .buffered_events
                        .saturating_sub(u64::from(header.events));
                    state.buffered_bytes = state.buffered_bytes.saturating_sub(header.record_len());
                    continue;
                }
            };
            shared.state().next_appended_at = Some(header.appended_at);
            let delivery = tokio::select! {
                delivery = acker.delivery(CursorUpdate::set(RELEASED_KEY, json!(header.seq))) => delivery,
                () = stop.cancelled() => return Ok(()),
            };
            {
                let mut state = shared.state();
                state.next_appended_at = None;
                state.in_flight.push_back(InFlight {
                    seq: header.seq,
                    events: u64::from(header.events),
                    bytes: header.record_len(),
                    appended_at: header.appended_at,
                });
            }
            output
                .current()
                .send(Batch { events, delivery })
                .await
                .map_err(|_| anyhow::anyhow!("the sink stopped"))?;
        }
    }
}

/// The segment to read next: the current one while it has more, else the one after
/// it (or after the `closed` one).
fn next(shared: &Shared, cursor: Option<&Cursor>, closed: Option<u64>) -> Next {
    let state = shared.state();
    let sealed = |id: u64| Some(id) != state.active;
    if let Some(c) = cursor.filter(|c| !c.done)
        && let Some(info) = state.segments.iter().find(|s| s.id == c.id)
    {
        return Next::Read {
            id: info.id,
            size: info.size,
            sealed: sealed(info.id),
        };
    }
    let after = cursor.map(|c| c.id).or(closed);
    match state
        .segments
        .iter()
        .find(|s| after.is_none_or(|a| s.id > a))
    {
        Some(info) => Next::Read {
            id: info.id,
            size: info.size,
            sealed: sealed(info.id),
        },
        None if state.writer_done => Next::Finished,
        None => Next::Wait,
    }
}

/// Keeps the age gauge current while the buffer runs.
pub(super) async fn keep_gauges(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(GAUGE_INTERVAL).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.state().closed {
            return;
        }
        shared.publish();
    }
}

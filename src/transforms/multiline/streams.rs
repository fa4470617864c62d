//! The sub-streams a `multiline` transform keeps apart, each with the event pending
//! in it: found by the origin of a line (source, app, deployment, component,
//! instance, host, file) plus its `stream`, ordered by when they last had a line (the
//! oldest is the first due and the first flushed past a budget), and the bytes they
//! hold counted.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::time::Instant;
use xxhash_rust::xxh3::Xxh3Default;

use super::rules::Mode;
use crate::checkpoint::Delivery;
use crate::event::Event;

/// What tells one sub-stream from another.
#[derive(Debug)]
struct StreamKey {
    source: Arc<str>,
    file: Option<Arc<str>>,
    stream: Option<String>,
    app: Option<String>,
    deployment: Option<String>,
    component: Option<String>,
    instance: Option<String>,
    host: Option<String>,
}

impl StreamKey {
    fn of(event: &Event) -> StreamKey {
        let o = &event.origin;
        StreamKey {
            source: Arc::clone(&event.source),
            file: o.file.clone(),
            stream: event.stream.clone(),
            app: o.app.clone(),
            deployment: o.deployment.clone(),
            component: o.component.clone(),
            instance: o.instance.clone(),
            host: o.host.clone(),
        }
    }

    fn matches(&self, event: &Event) -> bool {
        let o = &event.origin;
        same_text(&self.source, &event.source)
            && match (&self.file, &o.file) {
                (Some(a), Some(b)) => same_text(a, b),
                (a, b) => a.is_none() && b.is_none(),
            }
            && self.stream == event.stream
            && self.instance == o.instance
            && self.component == o.component
            && self.app == o.app
            && self.deployment == o.deployment
            && self.host == o.host
    }

    fn hash_of(event: &Event) -> u64 {
        let o = &event.origin;
        let mut h = Xxh3Default::new();
        event.source.hash(&mut h);
        o.file.hash(&mut h);
        event.stream.hash(&mut h);
        o.app.hash(&mut h);
        o.deployment.hash(&mut h);
        o.component.hash(&mut h);
        o.instance.hash(&mut h);
        o.host.hash(&mut h);
        h.finish()
    }

    /// Heap bytes the key holds (shared `Arc`s not counted).
    fn size(&self) -> usize {
        [
            &self.stream,
            &self.app,
            &self.deployment,
            &self.component,
            &self.instance,
            &self.host,
        ]
        .iter()
        .map(|s| s.as_ref().map_or(0, String::capacity))
        .sum()
    }
}

fn same_text(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// The event being merged in one sub-stream, and the deliveries it holds.
#[derive(Debug)]
pub struct Pending {
    pub event: Event,
    pub lines: usize,
    pub mode: Mode,
    /// Cut by `max_lines` or `max_bytes`.
    pub truncated: bool,
    /// One clone of the delivery of each input batch the event has lines from
    /// (those of earlier batches may ride on a later one instead: see `continues`).
    pub held: Vec<Delivery>,
    /// The serial of the last input batch in `held`.
    held_through: u64,
    /// The serial of the input batch of the last line.
    last_batch: u64,
    /// The event's bytes other than its message's buffer.
    base_bytes: usize,
}

/// An event whose last line has come, with the deliveries it held.
pub struct Finished {
    pub event: Event,
    pub lines: usize,
    pub truncated: bool,
    pub held: Vec<Delivery>,
}

impl Pending {
    /// An event beginning with `event`, a line of input batch `batch`.
    pub fn new(event: Event, mode: Mode, batch: u64) -> Pending {
        let base_bytes = event.allocated_bytes() - event.message.capacity();
        Pending {
            event,
            lines: 1,
            mode,
            truncated: false,
            held: Vec::new(),
            held_through: 0,
            last_batch: batch,
            base_bytes,
        }
    }

    /// The event is about to take a line of input batch `batch`. If that is its first
    /// line of a later batch than before, the event now spans a boundary between
    /// batches, where the source's cursor should not stop (a replay from there would
    /// send the rest of the event as a fragment): the deliveries it holds are handed
    /// to `delivery`, the later batch's, so they are finalized only with it.
    ///
    /// Batches chained this way all wait for the last one, and each keeps a slot of
    /// its source's in-flight window and its bytes charged to the source's byte
    /// budget. A chain is never let grow past half the window or half the budget:
    /// past it, the source would stall until `flush_timeout` cut the event in two.
    /// There the event keeps its deliveries instead, and the cursor may stop inside
    /// it (a crash at that moment replays its tail as an event of its own; nothing
    /// is lost).
    pub fn continues(&mut self, batch: u64, delivery: &mut Delivery) {
        if self.last_batch == batch {
            return;
        }
        self.last_batch = batch;
        let chain = delivery.riders() + self.held.iter().map(|d| 1 + d.riders()).sum::<usize>();
        let charged = delivery.charged() + self.held.iter().map(Delivery::charged).sum::<usize>();
        if delivery.window().is_none_or(|window| chain <= window / 2)
            && delivery
                .byte_budget()
                .is_none_or(|budget| charged <= budget / 2)
        {
            for held in self.held.drain(..) {
                delivery.attach(held);
            }
        }
    }

    /// Appends a continuation line.
    pub fn append(&mut self, line: &str, mode: Mode) {
        self.event.message.reserve(line.len() + 1);
        self.event.message.push('\n');
        self.event.message.push_str(line);
        self.lines += 1;
        self.mode = mode;
    }

    /// Puts `event` in the place of this one as the start of a new event; returns
    /// this one, finished.
    pub fn restart(&mut self, event: Event, mode: Mode, batch: u64) -> Finished {
        self.base_bytes = event.allocated_bytes() - event.message.capacity();
        self.last_batch = batch;
        let finished = Finished {
            event: std::mem::replace(&mut self.event, event),
            lines: self.lines,
            truncated: self.truncated,
            held: std::mem::take(&mut self.held),
        };
        self.lines = 1;
        self.mode = mode;
        self.truncated = false;
        self.held_through = 0;
        finished
    }

    pub fn finish(self) -> Finished {
        Finished {
            event: self.event,
            lines: self.lines,
            truncated: self.truncated,
            held: self.held,
        }
    }

    /// Bytes held in memory for this event.
    pub fn bytes(&self) -> usize {
        self.base_bytes + self.event.message.capacity()
    }

    /// Keeps `delivery` (of input batch `serial`) until the event is emitted.
    pub fn hold(&mut self, serial: u64, delivery: &Delivery) {
        if self.held_through != serial {
            self.held.push(delivery.clone());
            self.held_through = serial;
        }
    }
}

pub struct SubStream {
    key: StreamKey,
    hash: u64,
    /// Its place in the age order: a new value each time it is touched.
    touch: u64,
    /// The serial of the last input batch that touched it.
    batch: u64,
    pub last_line_at: Instant,
    pub pending: Pending,
}

/// A sub-stream's slot and touch: it names the sub-stream for as long as it lives
/// (a slot is reused after a removal, with a new touch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRef {
    slot: usize,
    touch: u64,
}

#[derive(Default)]
pub struct Streams {
    slots: Vec<Option<SubStream>>,
    free: Vec<usize>,
    index: HashMap<u64, Vec<usize>>,
    by_age: BTreeMap<u64, usize>,
    next_touch: u64,
    /// The slot of the last line's sub-stream: consecutive lines usually share one.
    last: Option<usize>,
    live: usize,
    bytes: usize,
}

/// Fixed bytes of a sub-stream besides its key and pending event.
const STREAM_OVERHEAD: usize = std::mem::size_of::<SubStream>() + 64;

impl Streams {
    pub fn len(&self) -> usize {
        self.live
    }

    /// Bytes held by every sub-stream and pending event.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The sub-stream of `event`, touched for input batch `batch` at `now` (which
    /// moves it to the young end of the age order once per batch); `None` if it
    /// has no pending event.
    pub fn find(&mut self, event: &Event, batch: u64, now: Instant) -> Option<StreamRef> {
        let slot = match self.last {
            Some(slot)
                if self.slots[slot]
                    .as_ref()
                    .is_some_and(|s| s.key.matches(event)) =>
            {
                slot
            }
            _ => {
                let hash = StreamKey::hash_of(event);
                let slots = &self.slots;
                let slot = self
                    .index
                    .get(&hash)?
                    .iter()
                    .copied()
                    .find(|&i| slots[i].as_ref().is_some_and(|s| s.key.matches(event)))?;
                self.last = Some(slot);
                slot
            }
        };
        let stream = self.slots[slot].as_mut()?;
        if stream.batch != batch {
            stream.batch = batch;
            stream.last_line_at = now;
            self.by_age.remove(&stream.touch);
            stream.touch = self.next_touch;
            self.next_touch += 1;
            self.by_age.insert(stream.touch, slot);
        }
        Some(StreamRef {
            slot,
            touch: stream.touch,
        })
    }

    /// Opens the sub-stream of `pending`'s event, touched for `batch` at `now`.
    pub fn insert(&mut self, pending: Pending, batch: u64, now: Instant) -> StreamRef {
        let key = StreamKey::of(&pending.event);
        let hash = StreamKey::hash_of(&pending.event);
        self.bytes += STREAM_OVERHEAD + key.size() + pending.bytes();
        let touch = self.next_touch;
        self.next_touch += 1;
        let stream = SubStream {
            key,
            hash,
            touch,
            batch,
            last_line_at: now,
            pending,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(stream);
                slot
            }
            None => {
                self.slots.push(Some(stream));
                self.slots.len() - 1
            }
        };
        self.index.entry(hash).or_default().push(slot);
        self.by_age.insert(touch, slot);
        self.last = Some(slot);
        self.live += 1;
        StreamRef { slot, touch }
    }

    /// The sub-stream `at` names, if it still lives.
    pub fn get_mut(&mut self, at: StreamRef) -> Option<&mut SubStream> {
        self.slots[at.slot]
            .as_mut()
            .filter(|stream| stream.touch == at.touch)
    }

    /// The pending event of `at`, to change, and the byte count to keep: call
    /// [`Streams::recount`] with its bytes before and after.
    pub fn pending_mut(&mut self, at: StreamRef) -> &mut Pending {
        &mut self.slots[at.slot]
            .as_mut()
            .expect("a StreamRef from find or insert names a live sub-stream")
            .pending
    }

    pub fn recount(&mut self, before: usize, after: usize) {
        self.bytes = self.bytes + after - before;
    }

    /// The sub-stream that had a line least recently.
    pub fn oldest(&self) -> Option<(StreamRef, &SubStream)> {
        let (&touch, &slot) = self.by_age.first_key_value()?;
        let stream = self.slots[slot].as_ref()?;
        Some((StreamRef { slot, touch }, stream))
    }

    /// Closes the sub-stream `at`, returning its pending event.
    pub fn remove(&mut self, at: StreamRef) -> Pending {
        let stream = self.slots[at.slot]
            .take()
            .expect("a StreamRef from find or insert names a live sub-stream");
        self.by_age.remove(&stream.touch);
        if let Some(bucket) = self.index.get_mut(&stream.hash) {
            bucket.retain(|&i| i != at.slot);
            if bucket.is_empty() {
                self.index.remove(&stream.hash);
            }
        }
        self.free.push(at.slot);
        self.live -= 1;
        self.bytes -= STREAM_OVERHEAD + stream.key.size() + stream.pending.bytes();
        stream.pending
    }
}

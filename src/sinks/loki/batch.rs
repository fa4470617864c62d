//! Batching: entries wait per tenant, grouped by stream, until a tenant's batch is full
//! (`batch_max_bytes` / `batch_max_events`) or old (`batch_timeout`); then it becomes
//! a [`Payload`], the unit of one push request. Each stream remembers the input
//! batches its entries came from (one `Delivery` clone per input batch and stream), so
//! an input batch is acknowledged only once every request that carries a part of it
//! has been settled.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::checkpoint::{BatchStatus, Delivery};
use crate::event::Event;

/// One log line on its way to Loki.
#[derive(Debug)]
pub struct Entry {
    pub event: Event,
    /// Structured metadata: rendered templates and labels dropped by the stream cap.
    pub metadata: Vec<(String, String)>,
    /// The id the sink gave the input batch the event came from.
    pub batch: u64,
}

impl Entry {
    /// Bytes this entry adds to a request body, roughly (before compression).
    pub fn size(&self) -> usize {
        24 + self.event.message.len()
            + self
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.len() + 8)
                .sum::<usize>()
    }
}

/// The entries of one stream in one request.
#[derive(Debug)]
pub struct Stream {
    /// The label set in Prometheus text form, as pushed.
    pub labels: String,
    /// The same labels as (name, value) pairs, sorted by name.
    pub pairs: Vec<(String, String)>,
    pub entries: Vec<Entry>,
    /// One clone of the delivery of each input batch with entries here.
    pub deliveries: Vec<(u64, Delivery)>,
}

impl Stream {
    /// Settles this stream's share of its input batches.
    pub fn settle(self, status: BatchStatus) {
        for (_, delivery) in self.deliveries {
            delivery.settle(status);
        }
    }
}

/// What one push request carries: one tenant's streams.
#[derive(Debug)]
pub struct Payload {
    /// `X-Scope-OrgID`; empty for none.
    pub tenant: String,
    pub streams: Vec<Stream>,
}

impl Payload {
    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.entries.len()).sum()
    }

    /// Sorts each stream's entries by timestamp (stable: equal times keep input order).
    pub fn sort(&mut self) {
        for stream in &mut self.streams {
            stream.entries.sort_by_key(|e| e.event.timestamp);
        }
    }

    /// The entries at `positions` (ascending): entries are numbered across the
    /// streams in order, the first stream's from 0.
    pub fn part(&self, positions: &[usize]) -> Part<'_> {
        let mut streams: Vec<PartStream<'_>> = Vec::new();
        let mut wanted = positions.iter().copied().peekable();
        let mut offset = 0;
        for stream in &self.streams {
            let end = offset + stream.entries.len();
            let mut entries = Vec::new();
            while let Some(position) = wanted.next_if(|&p| p < end) {
                if let Some(entry) = position
                    .checked_sub(offset)
                    .and_then(|i| stream.entries.get(i))
                {
                    entries.push((position, entry));
                }
            }
            if !entries.is_empty() {
                streams.push(PartStream { stream, entries });
            }
            offset = end;
        }
        Part { streams }
    }

    pub fn settle(self, status: BatchStatus) {
        for stream in self.streams {
            stream.settle(status);
        }
    }
}

/// Some entries of a payload, sent as one push request.
pub struct Part<'a> {
    pub streams: Vec<PartStream<'a>>,
}

/// The entries of one stream in a [`Part`], with their positions in the payload.
pub struct PartStream<'a> {
    pub stream: &'a Stream,
    pub entries: Vec<(usize, &'a Entry)>,
}

impl Part<'_> {
    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.entries.len()).sum()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_events: usize,
    pub timeout: Duration,
}

struct Open {
    tenant: String,
    /// Stream key → index in `streams`.
    index: HashMap<String, usize>,
    streams: Vec<Stream>,
    bytes: usize,
    events: usize,
    opened: Instant,
}

/// The open batches, one per tenant (few: a linear search beats hashing).
pub struct Batcher {
    limits: Limits,
    open: Vec<Open>,
}

impl Batcher {
    pub fn new(limits: Limits) -> Self {
        Batcher {
            limits,
            open: Vec::new(),
        }
    }

    /// Adds `entry` to stream `key` of `tenant`. Returns the tenant's previous batch if
    /// this entry would have taken it past a limit.
    pub fn push(
        &mut self,
        tenant: &str,
        key: &str,
        pairs: impl FnOnce() -> Vec<(String, String)>,
        entry: Entry,
        delivery: &Delivery,
        now: Instant,
    ) -> Option<Payload> {
        let size = entry.size();
        let position = match self.open.iter().position(|open| open.tenant == tenant) {
            Some(position) => position,
            None => {
                self.open.push(Open::new(tenant.to_string(), now));
                self.open.len() - 1
            }
        };
        let open = &mut self.open[position];
        let mut full = None;
        if open.events > 0
            && (open.events >= self.limits.max_events || open.bytes + size > self.limits.max_bytes)
        {
            let previous = std::mem::replace(open, Open::new(tenant.to_string(), now));
            full = Some(previous.into_payload());
        }
        let index = match open.index.get(key) {
            Some(&index) => index,
            None => {
                open.bytes += key.len() + 8;
                open.index.insert(key.to_string(), open.streams.len());
                open.streams.push(Stream {
                    labels: key.to_string(),
                    pairs: pairs(),
                    entries: Vec::new(),
                    deliveries: Vec::new(),
                });
                open.streams.len() - 1
            }
        };
        let stream = &mut open.streams[index];
        if stream.deliveries.last().map(|(id, _)| *id) != Some(entry.batch) {
            stream.deliveries.push((entry.batch, delivery.clone()));
        }
        stream.entries.push(entry);
        open.bytes += size;
        open.events += 1;
        full
    }

    /// When the oldest open batch times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open
            .iter()
            .map(|open| open.opened + self.limits.timeout)
            .min()
    }

    /// The batches that are old enough to send.
    pub fn take_due(&mut self, now: Instant) -> Vec<Payload> {
        let timeout = self.limits.timeout;
        let (due, keep): (Vec<Open>, Vec<Open>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|open| now.saturating_duration_since(open.opened) >= timeout);
        self.open = keep;
        due.into_iter().map(Open::into_payload).collect()
    }

    /// Every open batch, for the final flush.
    pub fn take_all(&mut self) -> Vec<Payload> {
        self.open.drain(..).map(Open::into_payload).collect()
    }
}

impl Open {
    fn new(tenant: String, now: Instant) -> Self {
        Open {
            tenant,
            index: HashMap::new(),
            streams: Vec::new(),
            bytes: 0,
            events: 0,
            opened: now,
        }
    }

    fn into_payload(self) -> Payload {
        let mut payload = Payload {
            tenant: self.tenant,
            streams: self.streams,
        };
        payload.sort();
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(message: &str, timestamp: i64, batch: u64) -> Entry {
        Entry {
            event: Event::new("s".into(), "demo".into(), message.into(), timestamp),
            metadata: Vec::new(),
            batch,
        }
    }

    #[test]
    fn full_batches_come_out_sorted_with_one_delivery_per_input_batch() {
        let limits = Limits {
            max_bytes: 1 << 20,
            max_events: 3,
            timeout: Duration::from_secs(1),
        };
        let mut batcher = Batcher::new(limits);
        let delivery = Delivery::detached();
        let now = Instant::now();
        let push = |b: &mut Batcher, key: &str, msg: &str, ts: i64| {
            b.push("t", key, Vec::new, entry(msg, ts, 7), &delivery, now)
        };
        assert!(push(&mut batcher, "{a=\"1\"}", "late", 30).is_none());
        assert!(push(&mut batcher, "{a=\"1\"}", "early", 10).is_none());
        assert!(push(&mut batcher, "{a=\"2\"}", "other", 20).is_none());
        let full = push(&mut batcher, "{a=\"2\"}", "next", 40).expect("fourth entry overflows");
        assert_eq!(full.event_count(), 3);
        let first = full
            .streams
            .iter()
            .find(|s| s.labels == "{a=\"1\"}")
            .unwrap();
        let lines: Vec<&str> = first
            .entries
            .iter()
            .map(|e| e.event.message.as_str())
            .collect();
        assert_eq!(lines, ["early", "late"]);
        assert_eq!(first.deliveries.len(), 1);
        assert_eq!(batcher.next_deadline(), Some(now + Duration::from_secs(1)));
        assert!(batcher.take_due(now).is_empty());
        assert_eq!(batcher.take_due(now + Duration::from_secs(1)).len(), 1);
        full.settle(BatchStatus::Delivered);
        delivery.settle(BatchStatus::Delivered);
    }
}

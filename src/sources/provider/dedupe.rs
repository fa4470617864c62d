//! The resume cursor of a sub-stream whose provider gives no cursor of its own
//! (DigitalOcean, Scalingo, ByteNite, io.net lifecycle events): the newest
//! timestamp delivered (the high-water mark) and the multiset of hashes of the lines
//! delivered at exactly that timestamp, as a count per hash.
//!
//! Lines reach it through [`Feed`]s: one per ordered view of the sub-stream — a
//! replayed history (sorted with [`sort_by_time`] first), a live connection, one
//! poll's answer. A feed counts how often it has seen each line at its current
//! timestamp. [`DedupeCursor::admit`] skips a line older than the mark, and a line
//! at the mark whose occurrence in its feed is not beyond the count already
//! delivered; anything else is new. So history replayed over what was delivered is
//! skipped, a live connection that overlaps a dump is skipped where it overlaps, and
//! identical lines at one timestamp are delivered as often as the provider sent
//! them — whatever the order in which feeds interleave, as long as each feed
//! starts at or before what was delivered (no gap) and not inside the run of lines
//! sharing the mark's timestamp (the tests check exactly this).
//!
//! Key a cursor by the finest unit whose lines come in time order (a container, a
//! component, a task): a line older than the mark is taken for one already
//! delivered. The cursor is what the checkpoint stores (`{"time": ns, "hashes":
//! [h, h, …]}`, a hash repeated once per delivery), committed only after delivery.
//!
//! Memory: at most [`MAX_HASHES`] distinct hashes per cursor and per feed. Past
//! that, further distinct lines at the same timestamp are delivered without being
//! remembered, so a replay may deliver them again: duplicates, never loss.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::xxh3_64;

/// Most distinct line hashes remembered at one timestamp.
pub const MAX_HASHES: usize = 1024;

/// A sub-stream's high-water mark and the lines delivered at it (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupeCursor {
    time: i64,
    delivered: HashMap<u64, u32>,
}

/// One ordered view of a sub-stream (see the module doc). Start a new one for
/// every replay, connection or poll.
#[derive(Debug, Clone, Default)]
pub struct Feed {
    time: i64,
    seen: HashMap<u64, u32>,
}

impl Feed {
    pub fn new() -> Self {
        Feed::default()
    }

    /// Counts one more `hash` at `time`: which occurrence it is at that time, or
    /// `None` once too many distinct lines share the time to count them.
    fn occurrence(&mut self, time: i64, hash: u64) -> Option<u32> {
        if time != self.time {
            self.time = time;
            self.seen.clear();
        }
        if let Some(count) = self.seen.get_mut(&hash) {
            *count = count.saturating_add(1);
            return Some(*count);
        }
        if self.seen.len() >= MAX_HASHES {
            return None;
        }
        self.seen.insert(hash, 1);
        Some(1)
    }
}

impl DedupeCursor {
    /// The high-water mark: the newest timestamp delivered (Unix ns), 0 if none.
    pub fn time(&self) -> i64 {
        self.time
    }

    /// Whether `line` at `time` (Unix ns), seen through `feed`, is new. If it is, it
    /// counts as delivered from now on: emit it.
    pub fn admit(&mut self, feed: &mut Feed, time: i64, line: &[u8]) -> bool {
        let hash = xxh3_64(line);
        let occurrence = feed.occurrence(time, hash);
        if time < self.time {
            return false;
        }
        if time > self.time {
            self.time = time;
            self.delivered.clear();
        }
        let delivered = self.delivered.get(&hash).copied().unwrap_or(0);
        match occurrence {
            Some(n) if n <= delivered => false,
            Some(n) => {
                if delivered > 0 || self.delivered.len() < MAX_HASHES {
                    self.delivered.insert(hash, n);
                }
                true
            }
            None => true,
        }
    }
}

/// Sorts a history chunk by timestamp, keeping the provider's order among equal
/// timestamps (a stable sort), before it goes through a [`Feed`].
pub fn sort_by_time<T>(items: &mut [T], time: impl FnMut(&T) -> i64) {
    items.sort_by_key(time);
}

/// The stored form: `{"time": ns, "hashes": [h, …]}`, a hash once per delivery.
#[derive(Serialize, Deserialize)]
struct Stored {
    time: i64,
    #[serde(default)]
    hashes: Vec<u64>,
}

impl Serialize for DedupeCursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut hashes: Vec<u64> = self
            .delivered
            .iter()
            .flat_map(|(hash, count)| std::iter::repeat_n(*hash, *count as usize))
            .collect();
        hashes.sort_unstable();
        Stored {
            time: self.time,
            hashes,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DedupeCursor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = Stored::deserialize(deserializer)?;
        let mut delivered: HashMap<u64, u32> = HashMap::new();
        for hash in stored.hashes {
            if let Some(count) = delivered.get_mut(&hash) {
                *count = count.saturating_add(1);
            } else if delivered.len() < MAX_HASHES {
                delivered.insert(hash, 1);
            }
        }
        Ok(DedupeCursor {
            time: stored.time,
            delivered,
        })
    }
}

#[cfg(test)]
mod tests;

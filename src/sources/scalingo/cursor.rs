//! The resume cursor of one app (and filter): a [`DedupeCursor`] per container —
//! each container's lines come in time order, the app's do not — plus a floor below
//! which every line counts as shipped. Stored as
//! `{"floor": ns, "containers": {"web-1": {"time": ns, "hashes": […]}, …}}`.
//!
//! Memory: containers come and go (every one-off run has its own name), so a
//! container whose last line is [`RETENTION`] older than the newest line shipped
//! is forgotten, and past [`MAX_CONTAINERS`] the one silent longest is; the floor
//! rises to the mark of what was forgotten. Every container still known is newer
//! than the floor, so forgetting loses nothing of theirs: only a line older than the
//! floor from a container never seen before would be skipped.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::line::Line;
use crate::sources::provider::{DedupeCursor, Feed};

/// Most containers remembered per app.
pub const MAX_CONTAINERS: usize = 256;
/// A container silent this long behind the newest line shipped is forgotten.
pub const RETENTION: Duration = Duration::from_secs(3600);

/// See the module doc.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppCursor {
    #[serde(default)]
    floor: i64,
    #[serde(default)]
    containers: BTreeMap<String, DedupeCursor>,
}

/// One view of the app's lines (a dump, a connection): a [`Feed`] per container.
#[derive(Debug, Default)]
pub struct Feeds(HashMap<String, Feed>);

impl AppCursor {
    /// Whether `line` (whose raw text is `raw`), seen through `feeds`, is new; if
    /// it is, it counts as shipped from now on.
    pub fn admit(&mut self, feeds: &mut Feeds, line: &Line<'_>, raw: &str) -> bool {
        if line.time < self.floor {
            return false;
        }
        let feed = match feeds.0.get_mut(line.container) {
            Some(feed) => feed,
            None => feeds.0.entry(line.container.to_string()).or_default(),
        };
        if let Some(cursor) = self.containers.get_mut(line.container) {
            return cursor.admit(feed, line.time, raw.as_bytes());
        }
        let mut cursor = DedupeCursor::default();
        let new = cursor.admit(feed, line.time, raw.as_bytes());
        self.containers.insert(line.container.to_string(), cursor);
        if self.containers.len() > MAX_CONTAINERS {
            self.forget(feeds);
        }
        new
    }

    /// Forgets the containers silent for [`RETENTION`], and the longest silent
    /// ones past [`MAX_CONTAINERS`], raising the floor to their marks.
    pub fn forget(&mut self, feeds: &mut Feeds) {
        let newest = self.containers.values().map(DedupeCursor::time).max();
        let Some(newest) = newest else {
            return;
        };
        let stale = newest.saturating_sub(RETENTION.as_nanos() as i64);
        let mut marks: Vec<(i64, String)> = self
            .containers
            .iter()
            .map(|(name, cursor)| (cursor.time(), name.clone()))
            .collect();
        marks.sort_unstable();
        let over = self.containers.len().saturating_sub(MAX_CONTAINERS);
        for (index, (time, name)) in marks.into_iter().enumerate() {
            if index >= over && time >= stale {
                break;
            }
            self.containers.remove(&name);
            feeds.0.remove(&name);
            self.floor = self.floor.max(time);
        }
    }

    /// Nothing shipped yet.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.floor == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(time: i64, container: &str) -> (Line<'_>, String) {
        let raw = format!("{time} [{container}] m");
        (
            Line {
                time,
                container,
                message: "m",
            },
            raw,
        )
    }

    fn admit(cursor: &mut AppCursor, feeds: &mut Feeds, time: i64, container: &str) -> bool {
        let (line, raw) = line(time, container);
        cursor.admit(feeds, &line, &raw)
    }

    #[test]
    fn containers_are_merged_each_in_its_own_order() {
        let mut cursor = AppCursor::default();
        let mut live = Feeds::default();
        assert!(admit(&mut cursor, &mut live, 20, "web-1"));
        assert!(
            admit(&mut cursor, &mut live, 10, "worker-1"),
            "older, other container"
        );
        let mut dump = Feeds::default();
        for (time, container) in [(5, "worker-1"), (10, "worker-1"), (20, "web-1")] {
            assert!(!admit(&mut cursor, &mut dump, time, container));
        }
        assert!(admit(&mut cursor, &mut dump, 21, "web-1"));
        assert!(admit(&mut cursor, &mut dump, 11, "worker-1"));
        let stored: AppCursor =
            serde_json::from_value(serde_json::to_value(&cursor).unwrap()).unwrap();
        assert_eq!(stored, cursor);
    }

    #[test]
    fn silent_containers_are_forgotten_under_the_floor() {
        let hour = RETENTION.as_nanos() as i64;
        let mut cursor = AppCursor::default();
        let mut feeds = Feeds::default();
        admit(&mut cursor, &mut feeds, 100, "one-off-1");
        admit(&mut cursor, &mut feeds, 200, "web-1");
        admit(&mut cursor, &mut feeds, 200 + hour, "web-2");
        cursor.forget(&mut feeds);
        assert_eq!(cursor.containers.len(), 2, "{cursor:?}");
        assert_eq!(cursor.floor, 100);
        assert!(!admit(&mut cursor, &mut Feeds::default(), 99, "one-off-2"));
        assert!(admit(&mut cursor, &mut Feeds::default(), 201, "web-1"));
    }

    #[test]
    fn containers_are_bounded() {
        let mut cursor = AppCursor::default();
        let mut feeds = Feeds::default();
        for n in 0..MAX_CONTAINERS as i64 * 3 {
            assert!(admit(
                &mut cursor,
                &mut feeds,
                1000 + n,
                &format!("one-off-{n}")
            ));
        }
        assert_eq!(cursor.containers.len(), MAX_CONTAINERS);
        assert!(feeds.0.len() <= MAX_CONTAINERS);
        assert_eq!(cursor.floor, 1000 + MAX_CONTAINERS as i64 * 2 - 1);
    }

    proptest! {
        /// Whatever the interleaving of containers in the live stream, a dump
        /// overlapping it (sorted, as served) adds exactly what the stream missed.
        #[test]
        fn a_dump_over_a_live_stream_ships_each_line_once(
            lines in proptest::collection::vec((0usize..3, 1i64..4), 1..60),
            cut in 0usize..60,
            overlap in 0usize..60,
        ) {
            // Each container's times increase; containers interleave freely.
            let mut clocks = [0i64; 3];
            let published: Vec<(i64, String)> = lines
                .iter()
                .map(|(c, step)| {
                    clocks[*c] += step;
                    (clocks[*c], format!("web-{c}"))
                })
                .collect();
            let cut = cut.min(published.len());
            let mut cursor = AppCursor::default();
            let mut shipped = Vec::new();
            let mut live = Feeds::default();
            for (time, container) in &published[..cut] {
                if admit(&mut cursor, &mut live, *time, container) {
                    shipped.push((*time, container.clone()));
                }
            }
            let start = cut.saturating_sub(overlap);
            let mut history = published[start..].to_vec();
            history.sort_by_key(|(time, _)| *time);
            let mut dump = Feeds::default();
            for (time, container) in &history {
                if admit(&mut cursor, &mut dump, *time, container) {
                    shipped.push((*time, container.clone()));
                }
            }
            let mut expected = published.clone();
            expected.sort();
            shipped.sort();
            prop_assert_eq!(shipped, expected);
        }
    }
}

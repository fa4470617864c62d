//! The benchmark input shared by the sink benchmarks: 250-byte logfmt-like lines,
//! as events with a level and an app, in batches of 1,000.

use std::sync::Arc;

use ferry::event::{Event, Level};

pub const LINE_BYTES: usize = 250;
pub const BATCH: usize = 1000;

pub fn line(n: usize) -> String {
    let mut line = format!(
        "2026-11-20T10:00:00.{:09}Z level=info msg=\"request served\" path=/api/orders/{n} status=200 user=user{} duration={}ms ",
        n % 1_000_000_000,
        n % 977,
        n % 900
    );
    while line.len() < LINE_BYTES {
        line.push(char::from(b'a' + (line.len() % 26) as u8));
    }
    line.truncate(LINE_BYTES);
    line
}

/// Events `start..end`.
pub fn events(start: usize, end: usize) -> Vec<Event> {
    let source: Arc<str> = Arc::from("bench");
    let provider: Arc<str> = Arc::from("demo");
    // A minute ago: within Loki's (and the test receiver's) age limits.
    let base = ferry::event::now_nanos() - 60_000_000_000;
    (start..end)
        .map(|n| {
            let mut event = Event::new(
                Arc::clone(&source),
                Arc::clone(&provider),
                line(n),
                base + n as i64,
            );
            event.level = Some([Level::Info, Level::Warn, Level::Error][n % 3]);
            event.origin.app = Some(["shop", "blog"][n % 2].to_string());
            event
        })
        .collect()
}

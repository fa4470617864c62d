//! One io.net container stream (`stdout` or `stderr`), followed across reconnects.
//!
//! Position: the byte offset of the end of the last line read, taken from the SSE
//! `id:` when the server sends numeric ids, else counted as `len(line) + 1` per line
//! since offset 0 (Nomad's alloc-logs semantics). A reconnect, and a restart from
//! the committed cursor, asks for `?offset=N`. If the server ignores it and replays
//! from the start, the replayed prefix is skipped: by id (events with `id <= N`),
//! or, without ids, by recognising the stream's first lines (their hashes are kept
//! in the cursor) and skipping as many lines as were already read. A server that
//! honours `offset` gives no duplicates; one that ignores it gives none either,
//! unless it sends no ids and the lines at the offset repeat the stream's first
//! lines exactly (then up to `lines` lines may be skipped; documented in
//! docs/providers.md).
//!
//! io.net gives no time with a line: an event is stamped when it is read, unless
//! the line itself starts with an RFC 3339 timestamp (kept in the message).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::{Deployment, LogStream};
use crate::event::now_nanos;
use crate::http::connection::{Connection, Frame};
use crate::http::stream::Ended;
use crate::sources::provider::{Context, Emitter, Follow};

/// Lines of the stream's start remembered to recognise a replay from offset 0.
const HEAD_LINES: usize = 4;

/// The time of a line that starts with an RFC 3339 timestamp and a space
/// (`2024-05-01T12:00:00.123456Z listening`), as many apps write, in Unix ns.
fn leading_time(line: &str) -> Option<i64> {
    let bytes = line.as_bytes();
    let looks_like = bytes.len() > 20
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && matches!(bytes[10], b'T' | b't');
    if !looks_like {
        return None;
    }
    let stamp = line.split_ascii_whitespace().next()?;
    chrono::DateTime::parse_from_rfc3339(stamp)
        .ok()?
        .timestamp_nanos_opt()
}

/// The committed cursor of one container stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Byte offset of the end of the last line read (`?offset=` on resume).
    pub offset: u64,
    /// Lines read since offset 0.
    #[serde(default)]
    pub lines: u64,
    /// Hashes of the stream's first lines.
    #[serde(default)]
    pub head: Vec<u64>,
}

/// How the start of a resumed connection is checked for a replay.
enum Resume {
    /// Nothing to check: emit everything.
    Fresh,
    /// Replay detection pending: held lines so far match the head hashes.
    Checking {
        resumed_at: Position,
        held: Vec<Frame>,
    },
    /// A replay from offset 0: skip this many more lines.
    Skipping(u64),
}

/// One container stream (`stdout` or `stderr`).
pub(crate) struct ContainerStream {
    deployment: Arc<Deployment>,
    container: String,
    host: Option<String>,
    stream: LogStream,
    key: String,
    position: Position,
    /// The offset the current connection resumed from.
    resumed_offset: u64,
    resume: Resume,
}

impl ContainerStream {
    pub fn new(
        deployment: Arc<Deployment>,
        container: &str,
        host: Option<&str>,
        stream: LogStream,
        key: String,
        position: Position,
    ) -> Self {
        ContainerStream {
            deployment,
            container: container.to_string(),
            host: host.map(str::to_string),
            stream,
            key,
            position,
            resumed_offset: 0,
            resume: Resume::Fresh,
        }
    }

    /// Turns one frame into a log event and advances the position.
    fn emit(&mut self, frame: Frame, id: Option<u64>, now: i64, ctx: &Context, out: &mut Emitter) {
        let position = &mut self.position;
        position.offset = id.unwrap_or(position.offset + frame.data_len as u64 + 1);
        if position.head.len() < HEAD_LINES && position.lines == position.head.len() as u64 {
            position.head.push(xxh3_64(frame.data.as_bytes()));
        }
        position.lines += 1;
        if frame.data.is_empty() {
            return;
        }
        let time = leading_time(&frame.data).unwrap_or(now);
        let mut log = ctx.event(frame.data, time);
        log.stream = Some(self.stream.as_str().to_string());
        log.origin.deployment = Some(self.deployment.id.clone());
        log.origin.instance = Some(self.container.clone());
        log.origin.host.clone_from(&self.host);
        if frame.truncated {
            log.fields
                .insert("truncated".into(), serde_json::Value::Bool(true));
        }
        out.push(log);
    }

    /// A frame without a numeric id, through the replay detection.
    fn unnumbered(&mut self, frame: Frame, now: i64, ctx: &Context, out: &mut Emitter) {
        self.resume = match std::mem::replace(&mut self.resume, Resume::Fresh) {
            Resume::Fresh => {
                self.emit(frame, None, now, ctx, out);
                Resume::Fresh
            }
            Resume::Skipping(left) if left > 1 => Resume::Skipping(left - 1),
            Resume::Skipping(_) => Resume::Fresh,
            Resume::Checking {
                resumed_at,
                mut held,
            } => {
                let hash = xxh3_64(frame.data.as_bytes());
                if resumed_at.head.get(held.len()) != Some(&hash) {
                    for held_frame in held {
                        self.emit(held_frame, None, now, ctx, out);
                    }
                    self.emit(frame, None, now, ctx, out);
                    return;
                }
                held.push(frame);
                let needed = resumed_at.head.len().min(resumed_at.lines as usize);
                if held.len() < needed {
                    Resume::Checking { resumed_at, held }
                } else {
                    tracing::info!(source = %ctx.source, container = %self.container, stream = self.stream.as_str(), lines = resumed_at.lines, "server replayed the stream from its start (offset ignored); skipping lines already read");
                    match resumed_at.lines.saturating_sub(held.len() as u64) {
                        0 => Resume::Fresh,
                        left => Resume::Skipping(left),
                    }
                }
            }
        };
    }
}

#[async_trait]
impl Follow for ContainerStream {
    fn name(&self) -> String {
        format!("{}/{}", self.container, self.stream.as_str())
    }

    async fn open(&mut self, ctx: &Context, _out: &mut Emitter) -> Result<Connection, Ended> {
        let mut url = self.deployment.url(&format!("/log/{}", self.container))?;
        url.query_pairs_mut()
            .append_pair("stream", self.stream.as_str());
        if self.position.offset > 0 {
            url.query_pairs_mut()
                .append_pair("offset", &self.position.offset.to_string());
        }
        let response = ctx
            .api
            .send(|client| {
                client
                    .get(url.clone())
                    .header(reqwest::header::ACCEPT, "text/event-stream")
            })
            .await?;
        self.resumed_offset = self.position.offset;
        self.resume = if self.position.offset > 0 && !self.position.head.is_empty() {
            Resume::Checking {
                resumed_at: self.position.clone(),
                held: Vec::new(),
            }
        } else {
            Resume::Fresh
        };
        Ok(Connection::sse(response, &ctx.options))
    }

    fn frame(&mut self, frame: Frame, ctx: &Context, out: &mut Emitter) {
        let now = now_nanos();
        let id = frame
            .id
            .as_deref()
            .and_then(|id| id.trim().parse::<u64>().ok());
        match id {
            Some(id) if self.resumed_offset > 0 && id <= self.resumed_offset => {}
            Some(id) => {
                self.resume = Resume::Fresh;
                self.emit(frame, Some(id), now, ctx, out);
            }
            None => self.unnumbered(frame, now, ctx, out),
        }
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn position(&self) -> Option<serde_json::Value> {
        serde_json::to_value(&self.position).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::leading_time;

    #[test]
    fn a_leading_rfc3339_timestamp_is_the_lines_time() {
        assert_eq!(
            leading_time("2024-05-01T12:00:00.123456789Z listening on :8080"),
            Some(1_714_564_800_123_456_789)
        );
        assert_eq!(
            leading_time("2024-05-01T14:00:00+02:00 up"),
            Some(1_714_564_800_000_000_000)
        );
        for untimed in [
            "INFO:     Started server process [1]",
            "2024-05-01 12:00:00 space-separated",
            "2024-05-01T99:00:00Z not a time",
            "2024-05-01T12:00:00Z",
            "",
            "2024-é",
        ] {
            assert_eq!(leading_time(untimed), None, "{untimed}");
        }
    }
}

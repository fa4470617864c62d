//! One DC/OS target (the journal, a journald unit, or one file of a task),
//! followed across reconnects with exact resume.
//!
//! journald: the cursor is `{"cursor": C, "realtime": µs, "hash": h}` for the last
//! entry shipped; a reconnect sends `Last-Event-ID: C` and the server starts after
//! it. If the server refuses the cursor with 500 or 400 (the journal was vacuumed or
//! rotated), the next connection asks for the last `fallback_entries` entries
//! (`skip=-N`) and drops those at or before the saved one: an older
//! `realtime_timestamp`, or the same one with the same cursor or message hash.
//!
//! Task files: the cursor is `{"offset": N}`, the SSE id (the byte offset of the
//! end of the line). The first line of a file carries no id; its end is the
//! length of its message. A reconnect sends `Last-Event-ID: N`. Task files have no
//! keepalive, so an idle timeout there is an ordinary, quiet reconnect. Before
//! resuming a task file from an offset, its size is read from the sandbox listing
//! (`…/task/{id}/browse`); a file now shorter than the offset was truncated
//! (rotated by copytruncate) and is read again from its start.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::entry;
use crate::event::now_nanos;
use crate::http::client::FailureKind;
use crate::http::connection::{Connection, Frame};
use crate::http::stream::Ended;
use crate::sources::provider::{Context, Emitter, Follow, Next};

#[derive(Debug, Clone)]
pub(crate) enum Target {
    Journal,
    Component(String),
    Task { id: String, file: String },
}

impl Target {
    pub fn key(&self) -> String {
        match self {
            Target::Journal => "journal".into(),
            Target::Component(name) => format!("component/{name}"),
            Target::Task { id, file } => format!("task/{id}/{file}"),
        }
    }
}

/// The last journald entry shipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPosition {
    pub cursor: String,
    pub realtime: u64,
    pub hash: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TaskPosition {
    offset: u64,
}

/// One entry of a Mesos sandbox listing (`/files/browse`).
#[derive(Debug, Deserialize)]
struct SandboxFile {
    path: String,
    size: u64,
}

/// What the streams of one source share besides the [`Context`].
pub(crate) struct Cluster {
    pub source: Arc<str>,
    /// `{endpoint}/system/v1/logs/v2`.
    pub logs: String,
    pub finished_task_grace: Duration,
    pub fallback_entries: u64,
}

pub(crate) struct Stream {
    cluster: Arc<Cluster>,
    target: Target,
    key: String,
    journal: Option<JournalPosition>,
    offset: u64,
    /// The next connection asks for the last entries instead of sending the cursor.
    fallback: bool,
    /// Entries at or before this one are dropped (after a fallback).
    dedupe: Option<JournalPosition>,
}

impl Stream {
    pub fn new(ctx: &Context, cluster: Arc<Cluster>, target: Target) -> Self {
        let key = target.key();
        let (journal, offset) = match target {
            Target::Task { .. } => (
                None,
                ctx.saved::<TaskPosition>(&key).map_or(0, |p| p.offset),
            ),
            _ => (ctx.saved::<JournalPosition>(&key), 0),
        };
        Stream {
            cluster,
            target,
            key,
            journal,
            offset,
            fallback: false,
            dedupe: None,
        }
    }

    fn is_task(&self) -> bool {
        matches!(self.target, Target::Task { .. })
    }

    fn url(&self, task_route: &str) -> Result<url::Url, Ended> {
        let bad = |e: String| Ended::Lost(format!("bad URL: {e}"));
        let mut url =
            url::Url::parse(&format!("{}/", self.cluster.logs)).map_err(|e| bad(e.to_string()))?;
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| bad("endpoint cannot be a base URL".into()))?;
            path.pop_if_empty();
            match &self.target {
                Target::Journal => {
                    path.push("component");
                }
                Target::Component(name) => {
                    path.push("component").push(name);
                }
                Target::Task { id, file } => {
                    path.push("task").push(id);
                    match task_route {
                        "browse" => path.push("browse"),
                        _ => path.push("file").push(file),
                    };
                }
            }
        }
        if self.fallback {
            url.query_pairs_mut()
                .append_pair("skip", &format!("-{}", self.cluster.fallback_entries));
        }
        Ok(url)
    }

    /// A task file shorter than the saved offset was truncated: read it again from
    /// its start. A listing that cannot be read leaves the offset as it is.
    async fn check_truncation(&mut self, ctx: &Context) {
        let Target::Task { file, .. } = &self.target else {
            return;
        };
        let Ok(url) = self.url("browse") else {
            return;
        };
        let timeout = ctx.options.request_timeout;
        let listing: Vec<SandboxFile> = match ctx
            .api
            .json(|client| client.get(url.clone()).timeout(timeout))
            .await
        {
            Ok(listing) => listing,
            Err(ended) => {
                tracing::debug!(source = %ctx.source, stream = %self.key, "cannot read the sandbox listing ({ended:?}); resuming at the saved offset");
                return;
            }
        };
        let suffix = format!("/{file}");
        let size = listing
            .iter()
            .find(|f| f.path.ends_with(&suffix) || f.path == *file)
            .map(|f| f.size);
        if let Some(size) = size
            && size < self.offset
        {
            tracing::warn!(source = %ctx.source, stream = %self.key, size, offset = self.offset, "task file is shorter than the saved offset (truncated); reading it from the start");
            metrics::counter!("ferry_file_truncations_total", "source" => ctx.source.to_string())
                .increment(1);
            self.offset = 0;
        }
    }

    /// Adds a journald entry unless already shipped.
    fn journal_entry(&mut self, frame: Frame, ctx: &Context, out: &mut Emitter) {
        let who = (&ctx.source, &ctx.provider);
        let now = now_nanos();
        let Some(entry) = entry::parse(&frame.data) else {
            out.push(entry::raw_event(who, frame, now));
            return;
        };
        let cursor = entry.cursor.clone().or(frame.id).unwrap_or_default();
        let position = JournalPosition {
            realtime: entry.realtime_timestamp.unwrap_or(0),
            hash: xxh3_64(entry.field("MESSAGE").unwrap_or_default().as_bytes()),
            cursor,
        };
        self.fallback = false;
        if let Some(saved) = &self.dedupe {
            let shipped = position.realtime < saved.realtime
                || (position.realtime == saved.realtime
                    && (position.cursor == saved.cursor || position.hash == saved.hash));
            if shipped {
                return;
            }
            self.dedupe = None;
        }
        out.push(entry::journal_event(who, &entry, now));
        if !position.cursor.is_empty() {
            self.journal = Some(position);
        }
    }

    /// Adds a task-file line and advances the offset.
    fn task_entry(&mut self, frame: Frame, ctx: &Context, out: &mut Emitter) {
        let who = (&ctx.source, &ctx.provider);
        let now = now_nanos();
        let id = frame
            .id
            .as_deref()
            .and_then(|id| id.trim().parse::<u64>().ok());
        let Target::Task { id: task, .. } = &self.target else {
            return;
        };
        let (log, length) = match entry::parse(&frame.data) {
            Some(entry) => {
                let length = entry.field("MESSAGE").map_or(0, str::len) as u64;
                (entry::task_event(who, task, &entry, now), length)
            }
            None => (entry::raw_event(who, frame, now), 0),
        };
        self.offset = match id {
            Some(id) => id,
            None if self.offset == 0 => length,
            None => self.offset + 1 + length,
        };
        out.push(log);
    }
}

#[async_trait]
impl Follow for Stream {
    async fn open(&mut self, ctx: &Context, _out: &mut Emitter) -> Result<Connection, Ended> {
        if self.is_task() && self.offset > 0 {
            self.check_truncation(ctx).await;
        }
        let url = self.url("file")?;
        let last_event_id = match (&self.target, &self.journal) {
            (Target::Task { .. }, _) => (self.offset > 0).then(|| self.offset.to_string()),
            (_, Some(position)) if !self.fallback => Some(position.cursor.clone()),
            _ => None,
        };
        let response = ctx
            .api
            .send(|client| {
                let request = client
                    .get(url.clone())
                    .header(reqwest::header::ACCEPT, "text/event-stream");
                match &last_event_id {
                    Some(id) => request.header("last-event-id", id),
                    None => request,
                }
            })
            .await?;
        let mut connection = Connection::sse(response, &ctx.options);
        if self.is_task() {
            // Task files send no keepalive: silence is no failure.
            connection.end_when_quiet();
        }
        Ok(connection)
    }

    fn frame(&mut self, frame: Frame, ctx: &Context, out: &mut Emitter) {
        if self.is_task() {
            self.task_entry(frame, ctx, out);
        } else {
            self.journal_entry(frame, ctx, out);
        }
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn position(&self) -> Option<serde_json::Value> {
        if self.is_task() {
            serde_json::to_value(TaskPosition {
                offset: self.offset,
            })
            .ok()
        } else {
            serde_json::to_value(self.journal.as_ref()?).ok()
        }
    }

    fn ended(&mut self, ended: &Ended, finished: bool) -> Next {
        let quiet = match ended {
            Ended::Closed => true,
            Ended::Failed(failure) => failure.kind == FailureKind::NotFound,
            Ended::Lost(_) => false,
        };
        if finished && quiet {
            return Next::Stop;
        }
        if let Ended::Failed(failure) = ended
            && matches!(failure.status.as_u16(), 400 | 500)
            && self.journal.is_some()
            && !self.fallback
            && !self.is_task()
        {
            tracing::warn!(source = %self.cluster.source, stream = %self.key, "the saved journald cursor was refused ({failure}); reading the last {} entries and skipping those already shipped", self.cluster.fallback_entries);
            self.fallback = true;
            self.dedupe.clone_from(&self.journal);
            return Next::Now;
        }
        Next::Backoff
    }

    fn finish_grace(&self) -> Option<Duration> {
        self.is_task().then_some(self.cluster.finished_task_grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_keys_name_the_target() {
        assert_eq!(Target::Journal.key(), "journal");
        assert_eq!(
            Target::Component("dcos-log.service".into()).key(),
            "component/dcos-log.service"
        );
        assert_eq!(
            Target::Task {
                id: "nginx.1".into(),
                file: "stderr".into()
            }
            .key(),
            "task/nginx.1/stderr"
        );
    }
}

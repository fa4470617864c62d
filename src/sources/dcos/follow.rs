//! One DC/OS target (the journal, a journald unit, or one file of a task),
//! followed across reconnects with exact resume.
//!
//! journald: the cursor is `{"cursor": C, "realtime": µs, "hash": h}` for the last
//! entry shipped; a reconnect sends `Last-Event-ID: C` and the server starts after
//! it. If the server refuses the cursor with 500 (the journal was vacuumed or
//! rotated), the next connection asks for the last `fallback_entries` entries
//! (`skip=-N`) and drops those at or before the saved one: an older
//! `realtime_timestamp`, or the same one with the same cursor or message hash.
//!
//! Task files: the cursor is `{"offset": N}`, the SSE id (the byte offset of the
//! end of the line). The first line of a file carries no id; its end is the
//! length of its message. A reconnect sends `Last-Event-ID: N`. Task files have no
//! keepalive, so an idle timeout there is an ordinary, quiet reconnect.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use xxhash_rust::xxh3::xxh3_64;

use super::Shared;
use super::entry;
use crate::checkpoint::Cursors;
use crate::event::now_nanos;
use crate::http::client::{AuthHeader, FailureKind, HttpFailure};
use crate::http::sse::{Decoder, SseEvent};
use crate::http::stream::{
    Connection, Ended, RETRY_AFTER_CAP, ReadError, Reconnect, error_chain, sleep_or_cancel,
};
use crate::sources::merge::{PieceBuilder, PieceSender};

#[derive(Debug, Clone)]
pub(crate) enum Target {
    Journal,
    Component(String),
    Task { id: String, file: String },
}

impl Target {
    fn key(&self) -> String {
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

pub(crate) struct Follower {
    shared: Arc<Shared>,
    target: Target,
    key: String,
    journal: Option<JournalPosition>,
    offset: u64,
    /// The next connection asks for the last entries instead of sending the cursor.
    fallback: bool,
    /// Entries at or before this one are dropped (after a fallback).
    dedupe: Option<JournalPosition>,
    pieces: PieceSender,
    stop: CancellationToken,
    /// Cancelled once this target's task has ended (tasks only).
    finished: Option<CancellationToken>,
}

/// The source is stopping.
struct Stopped;

impl Follower {
    pub fn new(
        shared: Arc<Shared>,
        target: Target,
        checkpoint: &Cursors,
        pieces: PieceSender,
        stop: CancellationToken,
        finished: Option<CancellationToken>,
    ) -> Self {
        let key = target.key();
        let saved = checkpoint.get(&key).cloned();
        let journal = saved
            .clone()
            .and_then(|v| serde_json::from_value::<JournalPosition>(v).ok());
        let offset = saved
            .and_then(|v| serde_json::from_value::<TaskPosition>(v).ok())
            .map_or(0, |p| p.offset);
        Follower {
            shared,
            target,
            key,
            journal,
            offset,
            fallback: false,
            dedupe: None,
            pieces,
            stop,
            finished,
        }
    }

    fn task_ended(&self) -> bool {
        self.finished
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    fn is_task(&self) -> bool {
        matches!(self.target, Target::Task { .. })
    }

    pub async fn run(mut self) {
        let mut reconnect = Reconnect::new(
            self.shared.options.clone(),
            Arc::clone(&self.shared.source),
            self.key.clone(),
            self.shared.auth_report.clone(),
        );
        let mut decoder = Decoder::new(self.shared.options.max_event_bytes);
        let mut builder = PieceBuilder::new(self.shared.max_events, self.shared.max_bytes);
        let mut relogged = false;
        loop {
            let (ended, used) = match self.connect().await {
                Ok((mut connection, used)) => {
                    reconnect.connected();
                    match self
                        .read(&mut connection, &mut decoder, &mut builder, &mut reconnect)
                        .await
                    {
                        Ok(ended) => (ended, Some(used)),
                        Err(Stopped) => return,
                    }
                }
                Err((ended, used)) => (ended, used),
            };
            decoder.reset();
            if self.task_ended()
                && matches!(
                    &ended,
                    Ended::Closed
                        | Ended::Failed(HttpFailure {
                            kind: FailureKind::NotFound,
                            ..
                        })
                )
            {
                tracing::info!(source = %self.shared.source, stream = %self.key, "task ended and its file is quiet; stopped following it");
                return;
            }
            if let Ended::Failed(failure) = &ended {
                if failure.kind == FailureKind::Auth
                    && !relogged
                    && let Some(used) = &used
                    && self.shared.credentials.refused(used).await
                {
                    tracing::info!(source = %self.shared.source, stream = %self.key, "token refused; logging in again");
                    relogged = true;
                    continue;
                }
                if failure.status.as_u16() == 500
                    && self.journal.is_some()
                    && !self.fallback
                    && !self.is_task()
                {
                    tracing::warn!(source = %self.shared.source, stream = %self.key, "the saved journald cursor was refused ({failure}); reading the last {} entries and skipping those already shipped", self.shared.fallback_entries);
                    self.fallback = true;
                    self.dedupe.clone_from(&self.journal);
                    continue;
                }
            } else {
                relogged = false;
            }
            let delay = reconnect.delay(&ended, decoder.retry());
            if !sleep_or_cancel(delay, &self.stop).await {
                return;
            }
        }
    }

    fn url(&self) -> Result<url::Url, String> {
        let mut url = url::Url::parse(&format!("{}/system/v1/logs/v2/", self.shared.base))
            .map_err(|e| e.to_string())?;
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| "endpoint cannot be a base URL".to_string())?;
            path.pop_if_empty();
            match &self.target {
                Target::Journal => {
                    path.push("component");
                }
                Target::Component(name) => {
                    path.push("component").push(name);
                }
                Target::Task { id, file } => {
                    path.push("task").push(id).push("file").push(file);
                }
            }
        }
        if self.fallback {
            url.query_pairs_mut()
                .append_pair("skip", &format!("-{}", self.shared.fallback_entries));
        }
        Ok(url)
    }

    async fn connect(&self) -> Result<(Connection, AuthHeader), (Ended, Option<AuthHeader>)> {
        let header = tokio::select! {
            () = self.stop.cancelled() => return Err((Ended::Closed, None)),
            header = self.shared.credentials.header() => header.map_err(|e| (e, None))?,
        };
        let url = self
            .url()
            .map_err(|e| (Ended::Lost(format!("bad URL: {e}")), None))?;
        let mut request = header.apply(
            self.shared
                .client
                .get(url)
                .header(reqwest::header::ACCEPT, "text/event-stream"),
        );
        let last_event_id = match (&self.target, &self.journal) {
            (Target::Task { .. }, _) => (self.offset > 0).then(|| self.offset.to_string()),
            (_, Some(position)) if !self.fallback => Some(position.cursor.clone()),
            _ => None,
        };
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = tokio::select! {
            () = self.stop.cancelled() => return Err((Ended::Closed, None)),
            response = request.send() => response,
        };
        let scrub = |text: String| self.shared.credentials.scrub(&header.scrub(&text));
        let response = match response {
            Ok(response) => response,
            Err(error) => return Err((Ended::Lost(scrub(error_chain(&error))), Some(header))),
        };
        if !response.status().is_success() {
            let mut failure =
                HttpFailure::from_response(response, Some(&header), RETRY_AFTER_CAP).await;
            failure.detail = scrub(failure.detail);
            return Err((Ended::Failed(failure), Some(header)));
        }
        Ok((
            Connection::new(response, self.shared.options.idle_timeout),
            header,
        ))
    }

    async fn read(
        &mut self,
        connection: &mut Connection,
        decoder: &mut Decoder,
        builder: &mut PieceBuilder,
        reconnect: &mut Reconnect,
    ) -> Result<Ended, Stopped> {
        loop {
            if self.task_ended() {
                connection.set_idle(self.shared.finished_task_grace);
            }
            let more = tokio::select! {
                () = self.stop.cancelled() => return Err(Stopped),
                () = wait_cancelled(self.finished.as_ref()), if !self.task_ended() => continue,
                more = connection.read(decoder) => more,
            };
            match more {
                Ok(true) => {}
                Ok(false) => return Ok(Ended::Closed),
                Err(ReadError::Idle(_)) if self.is_task() => return Ok(Ended::Closed),
                Err(error) => return Ok(Ended::Lost(error.to_string())),
            }
            let now = now_nanos();
            let mut any = false;
            while let Some(event) = decoder.next_event() {
                any = true;
                let full = if self.is_task() {
                    self.task_entry(event, now, builder)
                } else {
                    self.journal_entry(event, now, builder)
                };
                if full {
                    self.send(builder).await?;
                }
            }
            if any {
                reconnect.healthy();
            }
            if !builder.is_empty() {
                self.send(builder).await?;
            }
        }
    }

    /// Adds a journald entry unless already shipped; `true` when the piece is full.
    fn journal_entry(&mut self, event: SseEvent, now: i64, builder: &mut PieceBuilder) -> bool {
        let Some(entry) = entry::parse(&event.data) else {
            return builder.push(entry::raw_event(
                (&self.shared.source, &self.shared.provider),
                event,
                now,
            ));
        };
        let cursor = entry.cursor.clone().or(event.id).unwrap_or_default();
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
                return false;
            }
            self.dedupe = None;
        }
        let log = entry::journal_event((&self.shared.source, &self.shared.provider), &entry, now);
        if !position.cursor.is_empty() {
            self.journal = Some(position);
        }
        builder.push(log)
    }

    /// Adds a task-file line and advances the offset; `true` when the piece is full.
    fn task_entry(&mut self, event: SseEvent, now: i64, builder: &mut PieceBuilder) -> bool {
        let id = event
            .id
            .as_deref()
            .and_then(|id| id.trim().parse::<u64>().ok());
        let Target::Task { id: task, .. } = &self.target else {
            return false;
        };
        let (log, length) = match entry::parse(&event.data) {
            Some(entry) => {
                let length = entry.field("MESSAGE").map_or(0, str::len) as u64;
                (
                    entry::task_event(
                        (&self.shared.source, &self.shared.provider),
                        task,
                        &entry,
                        now,
                    ),
                    length,
                )
            }
            None => (
                entry::raw_event((&self.shared.source, &self.shared.provider), event, now),
                0,
            ),
        };
        self.offset = match id {
            Some(id) => id,
            None if self.offset == 0 => length,
            None => self.offset + 1 + length,
        };
        builder.push(log)
    }

    fn cursor(&self) -> Option<(String, serde_json::Value)> {
        let value = if self.is_task() {
            serde_json::to_value(TaskPosition {
                offset: self.offset,
            })
            .ok()?
        } else {
            serde_json::to_value(self.journal.as_ref()?).ok()?
        };
        Some((self.key.clone(), value))
    }

    async fn send(&self, builder: &mut PieceBuilder) -> Result<(), Stopped> {
        let piece = builder.take(self.cursor());
        tokio::select! {
            () = self.stop.cancelled() => Err(Stopped),
            sent = self.pieces.send(piece) => sent.map_err(|_| Stopped),
        }
    }
}

/// Resolves when `token` is cancelled; never without one.
async fn wait_cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
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

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

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use xxhash_rust::xxh3::xxh3_64;

use super::{LogStream, Shared};
use crate::event::{Event, now_nanos};
use crate::http::client::HttpFailure;
use crate::http::sse::{Decoder, SseEvent};
use crate::http::stream::{
    Connection, Ended, RETRY_AFTER_CAP, Reconnect, error_chain, sleep_or_cancel,
};
use crate::sources::merge::{PieceBuilder, PieceSender};

/// Lines of the stream's start remembered to recognise a replay from offset 0.
const HEAD_LINES: usize = 4;

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

pub(crate) struct Follower {
    pub shared: Arc<Shared>,
    pub container: String,
    pub host: Option<String>,
    pub stream: LogStream,
    pub key: String,
    pub position: Position,
    pub pieces: PieceSender,
    /// The source is stopping: end now.
    pub stop: CancellationToken,
    /// The container is gone: end when the stream does.
    pub finish: CancellationToken,
}

/// How the start of a resumed connection is checked for a replay.
enum Resume {
    /// Nothing to check: emit everything.
    Fresh,
    /// Replay detection pending: held lines so far match the head hashes.
    Checking {
        resumed_at: Position,
        held: Vec<SseEvent>,
    },
    /// A replay from offset 0: skip this many more lines.
    Skipping(u64),
}

/// The follower's input stopped because the source is stopping.
struct Stopped;

impl Follower {
    pub async fn run(mut self) {
        let label = format!("{}/{}", self.container, self.stream.as_str());
        let mut reconnect = Reconnect::new(
            self.shared.options.clone(),
            Arc::clone(&self.shared.source),
            label,
            self.shared.auth_report.clone(),
        );
        let mut decoder = Decoder::new(self.shared.options.max_event_bytes);
        let mut builder = PieceBuilder::new(self.shared.max_events, self.shared.max_bytes);
        loop {
            let ended = match self.connect().await {
                Ok(mut connection) => {
                    reconnect.connected();
                    match self
                        .read(&mut connection, &mut decoder, &mut builder, &mut reconnect)
                        .await
                    {
                        Ok(ended) => ended,
                        Err(Stopped) => return,
                    }
                }
                Err(ended) => ended,
            };
            decoder.reset();
            if self.finish.is_cancelled() {
                tracing::info!(source = %self.shared.source, container = %self.container, stream = self.stream.as_str(), "stream of a finished container ended");
                return;
            }
            let delay = reconnect.delay(&ended, decoder.retry());
            if !sleep_or_cancel(delay, &self.stop).await {
                return;
            }
        }
    }

    async fn connect(&self) -> Result<Connection, Ended> {
        let path = format!(
            "/deployment/{}/log/{}",
            self.shared.deployment, self.container
        );
        let mut url = self
            .shared
            .url(&path)
            .map_err(|e| Ended::Lost(format!("bad URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("stream", self.stream.as_str());
        if self.position.offset > 0 {
            url.query_pairs_mut()
                .append_pair("offset", &self.position.offset.to_string());
        }
        let request = self
            .shared
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let request = self.shared.auth.apply(request);
        let response = tokio::select! {
            () = self.stop.cancelled() => return Err(Ended::Closed),
            response = request.send() => response,
        };
        let response =
            response.map_err(|e| Ended::Lost(self.shared.auth.scrub(&error_chain(&e))))?;
        if !response.status().is_success() {
            let failure =
                HttpFailure::from_response(response, Some(&self.shared.auth), RETRY_AFTER_CAP)
                    .await;
            return Err(Ended::Failed(failure));
        }
        Ok(Connection::new(response, self.shared.options.idle_timeout))
    }

    async fn read(
        &mut self,
        connection: &mut Connection,
        decoder: &mut Decoder,
        builder: &mut PieceBuilder,
        reconnect: &mut Reconnect,
    ) -> Result<Ended, Stopped> {
        let mut resume = if self.position.offset > 0 && !self.position.head.is_empty() {
            Resume::Checking {
                resumed_at: self.position.clone(),
                held: Vec::new(),
            }
        } else {
            Resume::Fresh
        };
        let resumed_offset = self.position.offset;
        loop {
            let more = tokio::select! {
                () = self.stop.cancelled() => return Err(Stopped),
                more = connection.read(decoder) => more,
            };
            match more {
                Ok(true) => {}
                Ok(false) => return Ok(Ended::Closed),
                Err(error) => return Ok(Ended::Lost(error.to_string())),
            }
            let now = now_nanos();
            let mut any = false;
            while let Some(event) = decoder.next_event() {
                any = true;
                if let Some(id) = event
                    .id
                    .as_deref()
                    .and_then(|id| id.trim().parse::<u64>().ok())
                {
                    if resumed_offset > 0 && id <= resumed_offset {
                        continue;
                    }
                    resume = Resume::Fresh;
                    self.emit(event, Some(id), now, builder).await?;
                    continue;
                }
                resume = match resume {
                    Resume::Fresh => {
                        self.emit(event, None, now, builder).await?;
                        Resume::Fresh
                    }
                    Resume::Skipping(left) => {
                        if left > 1 {
                            Resume::Skipping(left - 1)
                        } else {
                            Resume::Fresh
                        }
                    }
                    Resume::Checking {
                        resumed_at,
                        mut held,
                    } => {
                        let hash = xxh3_64(event.data.as_bytes());
                        if resumed_at.head.get(held.len()) == Some(&hash) {
                            held.push(event);
                            let needed = resumed_at.head.len().min(resumed_at.lines as usize);
                            if held.len() >= needed {
                                tracing::info!(source = %self.shared.source, container = %self.container, stream = self.stream.as_str(), lines = resumed_at.lines, "server replayed the stream from its start (offset ignored); skipping lines already read");
                                let left = resumed_at.lines.saturating_sub(held.len() as u64);
                                if left > 0 {
                                    Resume::Skipping(left)
                                } else {
                                    Resume::Fresh
                                }
                            } else {
                                Resume::Checking { resumed_at, held }
                            }
                        } else {
                            for held_event in held {
                                self.emit(held_event, None, now, builder).await?;
                            }
                            self.emit(event, None, now, builder).await?;
                            Resume::Fresh
                        }
                    }
                };
            }
            if any {
                reconnect.healthy();
            }
            if !builder.is_empty() {
                self.send(builder).await?;
            }
        }
    }

    /// Turns one SSE event into a log event and advances the position.
    async fn emit(
        &mut self,
        event: SseEvent,
        id: Option<u64>,
        now: i64,
        builder: &mut PieceBuilder,
    ) -> Result<(), Stopped> {
        let position = &mut self.position;
        position.offset = id.unwrap_or(position.offset + event.data_len as u64 + 1);
        if position.head.len() < HEAD_LINES && position.lines == position.head.len() as u64 {
            position.head.push(xxh3_64(event.data.as_bytes()));
        }
        position.lines += 1;
        if event.data.is_empty() {
            return Ok(());
        }
        let shared = &self.shared;
        let mut log = Event::new(
            Arc::clone(&shared.source),
            Arc::clone(&shared.provider),
            event.data,
            now,
        );
        log.stream = Some(self.stream.as_str().to_string());
        log.origin.deployment = Some(shared.deployment.clone());
        log.origin.instance = Some(self.container.clone());
        log.origin.host.clone_from(&self.host);
        if event.truncated {
            log.fields
                .insert("truncated".into(), serde_json::Value::Bool(true));
        }
        if builder.push(log) {
            self.send(builder).await?;
        }
        Ok(())
    }

    async fn send(&self, builder: &mut PieceBuilder) -> Result<(), Stopped> {
        let cursor = serde_json::to_value(&self.position)
            .ok()
            .map(|v| (self.key.clone(), v));
        let piece = builder.take(cursor);
        tokio::select! {
            () = self.stop.cancelled() => Err(Stopped),
            sent = self.pieces.send(piece) => sent.map_err(|_| Stopped),
        }
    }
}

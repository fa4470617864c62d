//! One followed sub-stream and the loop that keeps it followed: open a connection
//! from the stream's position, turn its frames into events and send them with the
//! cursor reached (a piece at a time, so a full pipeline stops the reading), and
//! when the connection ends, ask the stream what next — by default reconnect after
//! the backoff of [`Reconnect`], which honours `Retry-After`, the server's SSE
//! `retry:`, and reports refused credentials once. A stream whose group has
//! finished (its container or task is gone) is read to its end, then left.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Context, Emitter, Stopped};
use crate::http::connection::{Connection, Frame};
use crate::http::stream::{Ended, Reconnect};

/// One sub-stream of a provider source: its position, how to open a connection
/// from there, and how frames become events.
#[async_trait]
pub trait Follow: Send + 'static {
    /// Names the stream in logs (`c1/stdout`, `component/dcos-log.service`): by
    /// default its [`key`](Follow::key).
    fn name(&self) -> String {
        self.key().to_string()
    }

    /// Opens a connection from the current position, through `ctx.api`. It may
    /// push events itself first (a history dump, a poll's whole answer) with
    /// `out.push`, sending with `out.send(self.cursor())` whenever
    /// `out.is_full()`, and then return
    /// [`Connection::done`] if nothing more is to be read.
    async fn open(&mut self, ctx: &Context, out: &mut Emitter) -> Result<Connection, Ended>;

    /// Turns one frame into events (`out.push`) and advances the position.
    fn frame(&mut self, frame: Frame, ctx: &Context, out: &mut Emitter);

    /// The checkpoint key the stream's cursor is committed under.
    fn key(&self) -> &str;

    /// The stream's position, the cursor's value; `None` while there is nothing
    /// to resume from.
    fn position(&self) -> Option<Value>;

    /// The cursor (key, position) to commit once every event pushed so far is
    /// delivered.
    fn cursor(&self) -> Option<(String, Value)> {
        Some((self.key().to_string(), self.position()?))
    }

    /// What to do after a connection, or an attempt at one, `ended`; `finished`
    /// when the stream's group has finished. By default: stop once finished,
    /// else reconnect after the backoff.
    fn ended(&mut self, ended: &Ended, finished: bool) -> Next {
        let _ = ended;
        if finished { Next::Stop } else { Next::Backoff }
    }

    /// Once the group has finished: how long the stream may stay silent before it
    /// counts as ended (for streams that never end by themselves). `None`: read
    /// until the server ends it.
    fn finish_grace(&self) -> Option<Duration> {
        None
    }

    /// Whether to leave the current connection now and open a new one: the stream
    /// learned from a frame that it must ask differently (DigitalOcean: the history
    /// a live socket replays does not reach back to the last line delivered).
    /// Checked after every frame; the connection then ends as [`Ended::Closed`]
    /// and [`ended`](Follow::ended) decides what comes next.
    fn reopen(&self) -> bool {
        false
    }
}

/// What a stream does after a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Reconnect after the backoff (or `Retry-After`, or SSE `retry:`).
    Backoff,
    /// Reconnect after this long (a poll interval).
    After(Duration),
    /// Reconnect at once (the stream changed how it will ask).
    Now,
    /// The stream is done.
    Stop,
}

/// Follows `stream` until the source stops or the stream says [`Next::Stop`].
pub(super) async fn run(ctx: Arc<Context>, mut stream: Box<dyn Follow>, finish: CancellationToken) {
    let name = stream.name();
    let mut reconnect = ctx.reconnect(name.clone());
    let mut out = ctx.emitter();
    let mut sse_retry = None;
    loop {
        let opened = tokio::select! {
            () = ctx.stop.cancelled() => return,
            opened = stream.open(&ctx, &mut out) => opened,
        };
        let ended = match opened {
            Ok(mut connection) => {
                reconnect.connected();
                if connection.is_done() {
                    // A poll answered: the stream works, whether or not it had news.
                    reconnect.healthy();
                }
                let read = read(
                    &ctx,
                    &mut *stream,
                    &mut connection,
                    &mut out,
                    &mut reconnect,
                    &finish,
                )
                .await;
                sse_retry = connection.retry().or(sse_retry);
                match read {
                    Ok(ended) => ended,
                    Err(Stopped) => return,
                }
            }
            Err(ended) => ended,
        };
        if ctx.stop.is_cancelled() || (!out.is_empty() && out.send(stream.cursor()).await.is_err())
        {
            return;
        }
        let wait = match stream.ended(&ended, finish.is_cancelled()) {
            Next::Stop => {
                tracing::info!(source = %ctx.source, stream = %name, "stream finished; stopped following it");
                return;
            }
            Next::Now => continue,
            Next::After(wait) => wait,
            Next::Backoff => reconnect.delay(&ended, sse_retry),
        };
        if !ctx.sleep(wait).await {
            return;
        }
    }
}

/// Reads one connection to its end.
async fn read(
    ctx: &Context,
    stream: &mut dyn Follow,
    connection: &mut Connection,
    out: &mut Emitter,
    reconnect: &mut Reconnect,
    finish: &CancellationToken,
) -> Result<Ended, Stopped> {
    let mut finishing = finish.is_cancelled();
    if finishing {
        apply_grace(stream, connection);
    }
    loop {
        let mut any = false;
        while let Some(frame) = connection.next_frame() {
            any = true;
            stream.frame(frame, ctx, out);
            if stream.reopen() {
                return Ok(Ended::Closed);
            }
            if out.is_full() {
                let cursor = stream.cursor();
                out.send(cursor).await?;
            }
        }
        if any {
            reconnect.healthy();
        }
        if !out.is_empty() {
            out.send(stream.cursor()).await?;
        }
        let more = tokio::select! {
            () = ctx.stop.cancelled() => return Err(Stopped),
            () = finish.cancelled(), if !finishing => {
                finishing = true;
                apply_grace(stream, connection);
                continue;
            }
            more = connection.fill() => more,
        };
        match more {
            Ok(true) => {}
            Ok(false) => return Ok(Ended::Closed),
            Err(error) => return Ok(Ended::Lost(error.to_string())),
        }
    }
}

fn apply_grace(stream: &dyn Follow, connection: &mut Connection) {
    if let Some(grace) = stream.finish_grace() {
        connection.set_idle(grace);
        connection.end_when_quiet();
    }
}

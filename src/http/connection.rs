//! One open connection of a followed stream, whatever its framing: an SSE body, a
//! plain-text body read line by line (history dumps, archived files), or a
//! websocket's text messages. All three give [`Frame`]s through the same two calls
//! — [`next_frame`](Connection::next_frame) for what is already buffered, and
//! [`fill`](Connection::fill) to wait for more — with the same idle-read timeout (a
//! connection silent that long is a dead one) and the same end: the server closing
//! the body or sending a websocket close is a normal end, anything else is a
//! [`ReadError`]. Memory per connection: an HTTP body holds one network chunk plus
//! one frame of at most `max_event_bytes`; a websocket holds the message being
//! received (at most four times `max_event_bytes`, see `ws.rs`) plus the frames
//! taken at once (at most [`WS_BATCH`], and no more once they hold
//! `max_event_bytes`), each cut at `max_event_bytes`.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::sse::{Decoder, SseEvent};
use super::stream::StreamOptions;

/// One framed message: an SSE event, a line of text, or a websocket text message
/// (its `data`; `id` and `event` are SSE-only).
pub type Frame = SseEvent;

/// Most websocket messages taken from the socket per [`Connection::fill`] (fewer
/// once they hold `max_event_bytes`).
pub const WS_BATCH: usize = 64;

/// Why reading a connection stopped before the server ended it.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no data for {0:?} (idle timeout)")]
    Idle(Duration),
    #[error("connection lost: {0}")]
    Network(String),
}

pub(crate) type Socket = WebSocketStream<reqwest::Upgraded>;

enum Body {
    Http(reqwest::Response),
    WebSocket(Box<Socket>),
    Done,
}

/// An open connection (see the module doc).
pub struct Connection {
    body: Body,
    /// SSE or plain-text decoding of an HTTP body.
    decoder: Decoder,
    /// Websocket messages received and not yet taken.
    messages: VecDeque<Frame>,
    max_event_bytes: usize,
    idle: Duration,
    quiet_is_end: bool,
    /// The HTTP body has ended: the decoder's unterminated remainder is the last frame.
    body_ended: bool,
    /// An error that came after frames still to be taken: reported next.
    failed: Option<ReadError>,
}

impl Connection {
    fn new(body: Body, decoder: Decoder, options: &StreamOptions) -> Self {
        Connection {
            body,
            decoder,
            messages: VecDeque::new(),
            max_event_bytes: options.max_event_bytes,
            idle: options.idle_timeout,
            quiet_is_end: false,
            body_ended: false,
            failed: None,
        }
    }

    /// A `text/event-stream` body.
    pub fn sse(response: reqwest::Response, options: &StreamOptions) -> Self {
        Self::new(
            Body::Http(response),
            Decoder::new(options.max_event_bytes),
            options,
        )
    }

    /// A plain-text body, one frame per non-empty line.
    pub fn lines(response: reqwest::Response, options: &StreamOptions) -> Self {
        Self::new(
            Body::Http(response),
            Decoder::plain(options.max_event_bytes),
            options,
        )
    }

    pub(crate) fn websocket(socket: Socket, options: &StreamOptions) -> Self {
        Self::new(
            Body::WebSocket(Box::new(socket)),
            Decoder::new(options.max_event_bytes),
            options,
        )
    }

    /// A connection with nothing (more) to read: for a source that handled the whole
    /// answer while opening (a poll), it ends at once as if the server closed it.
    pub fn done(options: &StreamOptions) -> Self {
        Self::new(Body::Done, Decoder::new(1), options)
    }

    /// Whether this is a [`Connection::done`]: the whole answer was handled while
    /// opening (a poll), so the connection succeeding is the stream being healthy.
    pub fn is_done(&self) -> bool {
        matches!(self.body, Body::Done)
    }

    /// Changes the idle timeout for the reads to come.
    pub fn set_idle(&mut self, idle: Duration) {
        self.idle = idle;
    }

    /// Makes an idle timeout a normal end of the connection rather than a lost one:
    /// for streams that send no keepalive and may simply have nothing to say.
    pub fn end_when_quiet(&mut self) {
        self.quiet_is_end = true;
    }

    /// The reconnection time the server asked for with SSE `retry:`.
    pub fn retry(&self) -> Option<Duration> {
        self.decoder.retry()
    }

    /// The next frame already received, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if let Some(frame) = self.messages.pop_front() {
            return Some(frame);
        }
        match self.decoder.next_event() {
            Some(frame) => Some(frame),
            None if self.body_ended => self.decoder.finish(),
            None => None,
        }
    }

    /// Waits for more data. `Ok(false)` once the server has ended the connection
    /// and every frame has been taken (a plain-text body's unterminated last line
    /// is its last frame).
    pub async fn fill(&mut self) -> Result<bool, ReadError> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        let idle = self.idle;
        let read = match &mut self.body {
            Body::Done => return Ok(false),
            Body::Http(response) => match tokio::time::timeout(idle, response.chunk()).await {
                Err(_) => Err(ReadError::Idle(idle)),
                Ok(Err(error)) => Err(ReadError::Network(super::client::request_error(error))),
                Ok(Ok(None)) => {
                    self.body_ended = true;
                    Ok(false)
                }
                Ok(Ok(Some(chunk))) => {
                    self.decoder.feed(&chunk);
                    Ok(true)
                }
            },
            Body::WebSocket(socket) => {
                read_messages(socket, &mut self.messages, idle, self.max_event_bytes).await
            }
        };
        match read {
            Ok(true) => Ok(true),
            // What is left is taken before the next call reports the end.
            Ok(false) => {
                self.body = Body::Done;
                Ok(true)
            }
            Err(ReadError::Idle(_)) if self.quiet_is_end => {
                self.body = Body::Done;
                Ok(false)
            }
            // Frames received before the error are taken first.
            Err(error) if !self.messages.is_empty() => {
                self.failed = Some(error);
                Ok(true)
            }
            Err(error) => Err(error),
        }
    }
}

/// Waits up to `idle` for a websocket message, then takes those already arrived
/// (at most [`WS_BATCH`]); `Ok(false)` at a close or the end of the socket.
async fn read_messages(
    socket: &mut Socket,
    messages: &mut VecDeque<Frame>,
    idle: Duration,
    max_event_bytes: usize,
) -> Result<bool, ReadError> {
    let mut next = tokio::time::timeout(idle, socket.next())
        .await
        .map_err(|_| ReadError::Idle(idle))?;
    let mut held = 0;
    for taken in 1..=WS_BATCH {
        match next {
            None | Some(Ok(Message::Close(_))) => return Ok(false),
            Some(Err(error)) => return Err(ReadError::Network(error.to_string())),
            Some(Ok(message)) => {
                if let Some(frame) = text_frame(message, max_event_bytes) {
                    held += frame.data.len();
                    messages.push_back(frame);
                }
            }
        }
        // Full: the next message waits for the next fill (taking it now would drop it).
        if taken == WS_BATCH || held >= max_event_bytes {
            break;
        }
        match socket.next().now_or_never() {
            Some(more) => next = more,
            None => break,
        }
    }
    Ok(true)
}

/// The lines of log text (a websocket message or a frame may hold several): split
/// on `\n`, a `\r` before it dropped, empty ones skipped.
pub fn text_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.is_empty())
}

/// The text of a websocket message (binary taken as lossy UTF-8), cut at `max`
/// bytes; control messages give none (tungstenite answers pings itself).
fn text_frame(message: Message, max: usize) -> Option<Frame> {
    let bytes = match message {
        Message::Text(text) => bytes::Bytes::from(text),
        Message::Binary(bytes) => bytes,
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {
            return None;
        }
    };
    let data_len = bytes.len();
    let cut = &bytes[..data_len.min(max)];
    let mut data = String::from_utf8_lossy(cut).into_owned();
    let truncated = data_len > max;
    if truncated {
        // A cut inside a UTF-8 sequence leaves a replacement character: drop it.
        while data.len() > max {
            data.pop();
        }
    }
    Some(Frame {
        data,
        event: None,
        id: None,
        data_len,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_messages_become_bounded_text_frames() {
        let frame = text_frame(Message::text("hello"), 1024).unwrap();
        assert_eq!((frame.data.as_str(), frame.truncated), ("hello", false));
        let cut = text_frame(Message::text("héllo wörld"), 4).unwrap();
        assert!(cut.truncated && cut.data.len() <= 4, "{cut:?}");
        let binary = text_frame(Message::binary(&b"a\xffb"[..]), 16).unwrap();
        assert_eq!(binary.data, "a\u{fffd}b");
        assert!(text_frame(Message::Ping(Default::default()), 16).is_none());
    }
}

//! A decoder for `text/event-stream` bodies, following the WHATWG "event stream
//! interpretation" rules, extended for providers that send bare text lines.
//!
//! Rules, all covered by the tests below:
//! - lines end with `\n`, `\r\n` or `\r` (a `\r` at the end of one chunk and a `\n` at
//!   the start of the next are one line end); a leading UTF-8 BOM is dropped;
//! - `data:` lines accumulate, joined with `\n`; `event:`, `id:` (ignored if it holds
//!   a NUL) and `retry:` (ASCII digits only, milliseconds) are recorded; one space
//!   after the colon is dropped; a field without a colon has an empty value;
//! - a line starting with `:` is a comment (a keepalive) and is only counted;
//! - an event is dispatched only at the blank line that ends it, and only if it had a
//!   `data` line, so a half-received event (or a bare line without its line end) at a
//!   dropped connection is discarded by [`Decoder::reset`], never emitted;
//! - any other line (not one of the four field names) is a bare log line: outside an
//!   event it is an event of its own, dispatched at its line end; inside an event it
//!   is one more `data` line. This is what io.net's plain-text variant needs; WHATWG
//!   would ignore such lines;
//! - invalid UTF-8 is replaced with U+FFFD; [`SseEvent::data_len`] keeps the received
//!   byte count for byte-offset cursors;
//! - memory is bounded: a line or an event's data longer than `max_event_bytes` is cut
//!   there (the event is flagged `truncated`) and the rest of it is skipped.
//!
//! [`Decoder::plain`] reads plain text instead (history dumps, archived log files): every
//! non-empty line is an event of its own, with no SSE fields, and
//! [`Decoder::finish`] yields a last line the body ended without a line end. Line
//! ends, the BOM, invalid UTF-8 and the memory bound are handled as above.
//!
//! No published crate handles bare lines and the byte accounting, so it lives here.

use std::time::Duration;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The `event:` type, when given.
    pub event: Option<String>,
    /// The `id:` given inside this event, when given (see [`Decoder::last_event_id`]
    /// for the id that persists across events).
    pub id: Option<String>,
    /// Bytes of `data` as received, before invalid UTF-8 was replaced.
    pub data_len: usize,
    /// A line or the data was longer than the decoder's bound and was cut.
    pub truncated: bool,
}

/// Incremental decoder: [`feed`](Decoder::feed) bytes as they arrive, then take
/// events with [`next_event`](Decoder::next_event) until it returns `None`.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
    state: State,
}

#[derive(Debug)]
struct State {
    max_event_bytes: usize,
    /// Plain text: every non-empty line is an event, nothing is an SSE field.
    plain: bool,
    /// The previous line ended with `\r`: a `\n` right after belongs to it.
    skip_lf: bool,
    bom_checked: bool,
    /// The kept prefix of a line longer than the bound; the rest is being skipped.
    overlong: Option<Vec<u8>>,
    data: Vec<u8>,
    data_len: usize,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    in_event: bool,
    truncated: bool,
    last_event_id: String,
    retry: Option<Duration>,
    comments: u64,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Decoder {
    /// A decoder that keeps at most `max_event_bytes` of one line or one event's data.
    pub fn new(max_event_bytes: usize) -> Self {
        Self::with_mode(max_event_bytes, false)
    }

    /// A decoder of plain text lines (see the module doc), same bound.
    pub fn plain(max_event_bytes: usize) -> Self {
        Self::with_mode(max_event_bytes, true)
    }

    fn with_mode(max_event_bytes: usize, plain: bool) -> Self {
        Decoder {
            buf: Vec::new(),
            pos: 0,
            state: State {
                max_event_bytes: max_event_bytes.max(1),
                plain,
                skip_lf: false,
                bom_checked: false,
                overlong: None,
                data: Vec::new(),
                data_len: 0,
                has_data: false,
                event: None,
                id: None,
                in_event: false,
                truncated: false,
                last_event_id: String::new(),
                retry: None,
                comments: 0,
            },
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if the bytes fed so far hold one.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if !self.state.bom_checked {
                let rest = &self.buf[self.pos..];
                if rest.len() < BOM.len() && BOM.starts_with(rest) {
                    return None;
                }
                if rest.starts_with(BOM) {
                    self.pos += BOM.len();
                }
                self.state.bom_checked = true;
            }
            if self.state.skip_lf {
                match self.buf.get(self.pos) {
                    None => return None,
                    Some(b'\n') => self.pos += 1,
                    Some(_) => {}
                }
                self.state.skip_lf = false;
            }
            let rest = &self.buf[self.pos..];
            let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
                if self.state.overlong.is_none() && rest.len() > self.state.max_event_bytes {
                    self.state.overlong = Some(rest[..self.state.max_event_bytes].to_vec());
                }
                if self.state.overlong.is_some() {
                    self.pos = self.buf.len();
                }
                return None;
            };
            self.state.skip_lf = rest[end] == b'\r';
            let line_start = self.pos;
            self.pos += end + 1;
            let dispatched = match self.state.overlong.take() {
                Some(prefix) => self.state.line(&prefix, true),
                None => {
                    let line = &self.buf[line_start..line_start + end];
                    let cut = line.len() > self.state.max_event_bytes;
                    let line = &line[..line.len().min(self.state.max_event_bytes)];
                    self.state.line(line, cut)
                }
            };
            if dispatched.is_some() {
                return dispatched;
            }
        }
    }

    /// The body ended: in plain mode, the last line if it had no line end (call it
    /// once [`next_event`](Decoder::next_event) gives nothing more). An SSE event is
    /// never complete without its blank line, so SSE mode gives `None`.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.state.plain {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let event = match self.state.overlong.take() {
            Some(prefix) => self.state.line(&prefix, true),
            None => {
                let cut = rest.len() > self.state.max_event_bytes;
                let line = &rest[..rest.len().min(self.state.max_event_bytes)];
                self.state.line(line, cut)
            }
        };
        self.pos = self.buf.len();
        event
    }

    /// Forgets the bytes and the half-received event of a connection that ended,
    /// keeping the last event id and the reconnection time for the next one.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
        let s = &mut self.state;
        s.skip_lf = false;
        s.bom_checked = false;
        s.overlong = None;
        s.clear_event();
    }

    /// The id of the last event with an `id:` field (empty if none yet).
    pub fn last_event_id(&self) -> &str {
        &self.state.last_event_id
    }

    /// The reconnection time the server asked for with `retry:`.
    pub fn retry(&self) -> Option<Duration> {
        self.state.retry
    }

    /// Comment lines (keepalives) seen so far.
    pub fn comments(&self) -> u64 {
        self.state.comments
    }

    /// Bytes held in memory: undecoded input plus the event being assembled.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
            + self.state.data.len()
            + self.state.overlong.as_ref().map_or(0, Vec::len)
    }
}

impl State {
    /// Interprets one line (without its line end); returns an event when it ends one.
    fn line(&mut self, line: &[u8], cut: bool) -> Option<SseEvent> {
        if self.plain {
            if line.is_empty() {
                return None;
            }
            self.push_data(line, cut);
            return self.dispatch();
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            self.comments += 1;
            return None;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => self.push_data(value, cut),
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" => {
                if !value.contains(&0) {
                    let id = String::from_utf8_lossy(value).into_owned();
                    self.last_event_id.clone_from(&id);
                    self.id = Some(id);
                }
            }
            b"retry" => {
                if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
                    let millis = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(u64::MAX);
                    self.retry = Some(Duration::from_millis(millis));
                }
            }
            _ => {
                self.push_data(line, cut);
                if !self.in_event {
                    return self.dispatch();
                }
            }
        }
        self.in_event = true;
        None
    }

    fn push_data(&mut self, value: &[u8], cut: bool) {
        if self.has_data {
            self.push_bounded(b"\n");
        }
        self.has_data = true;
        self.truncated |= cut;
        self.push_bounded(value);
    }

    fn push_bounded(&mut self, bytes: &[u8]) {
        self.data_len += bytes.len();
        let room = self.max_event_bytes.saturating_sub(self.data.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.data.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if !self.has_data {
            self.clear_event();
            return None;
        }
        let bytes = std::mem::take(&mut self.data);
        let data = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        };
        let event = SseEvent {
            data,
            event: self.event.take(),
            id: self.id.take(),
            data_len: self.data_len,
            truncated: self.truncated,
        };
        self.clear_event();
        Some(event)
    }

    fn clear_event(&mut self) {
        self.data.clear();
        self.data_len = 0;
        self.has_data = false;
        self.event = None;
        self.id = None;
        self.in_event = false;
        self.truncated = false;
    }
}

#[cfg(test)]
mod tests;

//! A Loki receiver for tests: an HTTP server on 127.0.0.1 that accepts
//! `POST /loki/api/v1/push` in both encodings (snappy block + protobuf
//! `logproto.PushRequest`, decoded with the same generated types as ferry's
//! `proto/push.proto`; JSON, optionally gzipped), validates like Loki (label names,
//! at least one label, no duplicate names, line size, per-stream order: entries older
//! than the stream's newest minus a window are "too far behind", or any older entry is
//! "out of order" in strict mode), ingests the valid streams and answers 400 naming
//! the rest, drops exact duplicates (same stream, time and line) as Loki does, and
//! stores what it accepted for the test to query.
//!
//! Failures can be injected: scripted answers for the next requests (e.g. 429 with
//! `Retry-After: 3`), an outage (every request answered 500/503 until cleared), or a
//! 400 for streams carrying a chosen label value.
//!
//! Use from an integration test (or bench) with
//! `#[path = "support/loki_receiver.rs"] mod loki_receiver;`, then
//! `let loki = LokiReceiver::start().await;` and point a sink at `loki.endpoint()`.
//! To run it by hand and watch a real ferry push into it:
//! `LOKI_RECEIVER_ADDR=127.0.0.1:3100 cargo test --test loki_pipeline -- --ignored --nocapture serve_by_hand`
//! (every accepted entry is printed; stop it with Ctrl-C).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ferry::sinks::loki::proto::PushRequest;
use prost::Message;

/// Loki's default `max_line_size`.
pub const DEFAULT_MAX_LINE: usize = 256 * 1024;

/// How the receiver judges an entry older than its stream's newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderRule {
    /// Loki ≥ 2.4: accepted unless older than newest − window ("too far behind").
    Window(Duration),
    /// `unordered_writes = false`: any older entry is "out of order".
    Strict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEntry {
    pub tenant: String,
    /// The stream's labels, canonical (sorted) text form.
    pub stream: String,
    pub labels: BTreeMap<String, String>,
    pub timestamp: i64,
    pub line: String,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub at: Instant,
    pub tenant: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub authorization: Option<String>,
    /// The body as sent (still compressed).
    pub body: Vec<u8>,
    pub status: u16,
    /// Every stream of the request had its entries in timestamp order.
    pub sorted: bool,
    pub entries: usize,
}

#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
}

struct Inner {
    entries: Vec<ReceivedEntry>,
    seen: HashSet<(String, String, i64, String)>,
    duplicates: usize,
    accepted: usize,
    newest: HashMap<(String, String), i64>,
    requests: Vec<ReceivedRequest>,
    script: VecDeque<Answer>,
    outage: Option<Answer>,
    reject: Vec<(String, String, String)>,
    order: OrderRule,
    max_line: usize,
    store: bool,
    print: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: tokio::sync::Notify,
}

pub struct LokiReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for LokiReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl LokiReceiver {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> LokiReceiver {
        Self::start_on("127.0.0.1:0".parse().expect("valid address")).await
    }

    pub async fn start_on(addr: SocketAddr) -> LokiReceiver {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                seen: HashSet::new(),
                duplicates: 0,
                accepted: 0,
                newest: HashMap::new(),
                requests: Vec::new(),
                script: VecDeque::new(),
                outage: None,
                reject: Vec::new(),
                order: OrderRule::Window(Duration::from_secs(3600)),
                max_line: DEFAULT_MAX_LINE,
                store: true,
                print: false,
            }),
            changed: tokio::sync::Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the Loki receiver");
        let addr = listener.local_addr().expect("local address");
        let app = Router::new()
            .route("/loki/api/v1/push", post(push))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LokiReceiver {
            addr,
            shared,
            server,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The base URL to configure as the sink's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepted entries, in arrival order (exact duplicates left out, as Loki does).
    pub fn entries(&self) -> Vec<ReceivedEntry> {
        self.lock().entries.clone()
    }

    /// How many entries were accepted (counted even when not stored).
    pub fn accepted(&self) -> usize {
        self.lock().accepted
    }

    /// Entries dropped as exact duplicates of accepted ones.
    pub fn duplicates(&self) -> usize {
        self.lock().duplicates
    }

    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.lock().requests.clone()
    }

    /// Keeps only counts, not entries or bodies (for benchmarks).
    pub fn count_only(&self) {
        self.lock().store = false;
    }

    pub fn set_order(&self, order: OrderRule) {
        self.lock().order = order;
    }

    pub fn set_max_line(&self, max_line: usize) {
        self.lock().max_line = max_line;
    }

    /// The next `times` requests are answered `status` (with `Retry-After` if given),
    /// before anything else is looked at.
    pub fn script(&self, status: u16, retry_after: Option<&str>, times: usize) {
        let answer = Answer {
            status: StatusCode::from_u16(status).expect("a valid status"),
            retry_after: retry_after.map(str::to_string),
        };
        let mut inner = self.lock();
        for _ in 0..times {
            inner.script.push_back(answer.clone());
        }
    }

    /// Answers every request with `status` (500, 503…) until [`end_outage`](Self::end_outage).
    pub fn begin_outage(&self, status: u16) {
        self.lock().outage = Some(Answer {
            status: StatusCode::from_u16(status).expect("a valid status"),
            retry_after: None,
        });
    }

    pub fn end_outage(&self) {
        self.lock().outage = None;
    }

    /// Refuses (400, with `reason`) every stream whose label `name` is `value`.
    pub fn reject_streams(&self, name: &str, value: &str, reason: &str) {
        self.lock()
            .reject
            .push((name.to_string(), value.to_string(), reason.to_string()));
    }

    /// Prints every accepted entry to stdout (for running by hand).
    pub fn print_entries(&self) {
        self.lock().print = true;
    }

    /// Waits until at least `count` entries were accepted; false on timeout.
    pub async fn wait_for_entries(&self, count: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |inner| inner.accepted >= count)
            .await
    }

    /// Waits until at least `count` requests were answered `status`.
    pub async fn wait_for_status(&self, status: u16, count: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |inner| {
            inner.requests.iter().filter(|r| r.status == status).count() >= count
        })
        .await
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&Inner) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if done(&self.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(&self.lock());
            }
        }
    }
}

/// One stream of a push, decoded.
struct PushedStream {
    labels: Result<BTreeMap<String, String>, String>,
    entries: Vec<(i64, String, BTreeMap<String, String>)>,
}

async fn push(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut record = ReceivedRequest {
        at: Instant::now(),
        tenant: header("x-scope-orgid"),
        content_type: header(header::CONTENT_TYPE.as_str()),
        content_encoding: header(header::CONTENT_ENCODING.as_str()),
        authorization: header(header::AUTHORIZATION.as_str()),
        body: Vec::new(),
        status: 0,
        sorted: true,
        entries: 0,
    };
    let injected = {
        let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.store {
            record.body = body.to_vec();
        }
        inner.script.pop_front().or_else(|| inner.outage.clone())
    };
    let response = match injected {
        Some(answer) => {
            record.status = answer.status.as_u16();
            let mut response = (answer.status, "injected failure").into_response();
            if let Some(retry_after) = answer.retry_after
                && let Ok(value) = retry_after.parse()
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        None => match decode(&record, &body) {
            Err(message) => {
                record.status = 400;
                (StatusCode::BAD_REQUEST, message).into_response()
            }
            Ok(streams) => {
                let tenant = record.tenant.clone().unwrap_or_else(|| "fake".into());
                let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
                let errors = ingest(&mut inner, &tenant, streams, &mut record);
                if errors.is_empty() {
                    record.status = 204;
                    StatusCode::NO_CONTENT.into_response()
                } else {
                    record.status = 400;
                    (StatusCode::BAD_REQUEST, errors.join("\n")).into_response()
                }
            }
        },
    };
    shared
        .inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .requests
        .push(record);
    shared.changed.notify_waiters();
    response
}

fn decode(record: &ReceivedRequest, body: &[u8]) -> Result<Vec<PushedStream>, String> {
    match record.content_type.as_deref() {
        Some("application/x-protobuf") => {
            if record.content_encoding.is_some() {
                return Err("protobuf pushes carry no Content-Encoding".into());
            }
            let raw = snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| format!("snappy: {e}"))?;
            let request =
                PushRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))?;
            Ok(request
                .streams
                .into_iter()
                .map(|stream| PushedStream {
                    labels: parse_labels(&stream.labels),
                    entries: stream
                        .entries
                        .into_iter()
                        .map(|e| {
                            let ts = e
                                .timestamp
                                .map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos));
                            let metadata = e
                                .structured_metadata
                                .into_iter()
                                .map(|p| (p.name, p.value))
                                .collect();
                            (ts, e.line, metadata)
                        })
                        .collect(),
                })
                .collect())
        }
        Some("application/json") => {
            let raw = match record.content_encoding.as_deref() {
                None => body.to_vec(),
                Some("gzip") => {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(body)
                        .read_to_end(&mut out)
                        .map_err(|e| format!("gzip: {e}"))?;
                    out
                }
                Some(other) => return Err(format!("unsupported Content-Encoding {other}")),
            };
            decode_json(&raw)
        }
        other => Err(format!("unsupported Content-Type {other:?}")),
    }
}

fn decode_json(raw: &[u8]) -> Result<Vec<PushedStream>, String> {
    use serde_json::Value;
    let value: Value = serde_json::from_slice(raw).map_err(|e| format!("JSON: {e}"))?;
    let streams = value["streams"]
        .as_array()
        .ok_or("JSON: no `streams` array")?;
    let mut out = Vec::new();
    for stream in streams {
        let labels = stream["stream"]
            .as_object()
            .ok_or("JSON: `stream` is not an object")?
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    v.as_str()
                        .ok_or("JSON: label value is not a string")?
                        .to_string(),
                ))
            })
            .collect::<Result<BTreeMap<_, _>, &str>>()?;
        let labels = check_labels(labels);
        let mut entries = Vec::new();
        for value in stream["values"]
            .as_array()
            .ok_or("JSON: no `values` array")?
        {
            let ts = value[0]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or("JSON: timestamp must be a string of Unix nanoseconds")?;
            let line = value[1]
                .as_str()
                .ok_or("JSON: line must be a string")?
                .to_string();
            let metadata = match value.get(2) {
                None => BTreeMap::new(),
                Some(meta) => meta
                    .as_object()
                    .ok_or("JSON: structured metadata must be an object")?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
            };
            entries.push((ts, line, metadata));
        }
        out.push(PushedStream { labels, entries });
    }
    Ok(out)
}

/// Parses `{name="value", …}` as Loki does, checking names and escapes.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let error = |what: &str| Err(format!("error parsing labels {text:?}: {what}"));
    let Some(inner) = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
    else {
        return error("not enclosed in {}");
    };
    let mut labels = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return error("expected name=\"value\"");
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return error("unterminated value"),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    _ => return error("invalid escape"),
                },
                Some(c) => value.push(c),
            }
        }
        labels.push((name, value));
        match chars.peek() {
            None | Some(',') => {}
            Some(_) => return error("expected `,` between labels"),
        }
    }
    let mut map = BTreeMap::new();
    for (name, value) in labels {
        if map.insert(name.clone(), value).is_some() {
            return error(&format!("duplicate label name {name}"));
        }
    }
    check_labels(map)
}

fn check_labels(labels: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    if labels.is_empty() {
        return Err("error at least one label pair is required per stream".into());
    }
    for name in labels.keys() {
        let mut chars = name.chars();
        let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("error parsing labels: invalid label name {name:?}"));
        }
    }
    Ok(labels)
}

/// The canonical text form of a label set.
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Applies Loki's per-stream rules; returns the errors (empty when all was accepted).
fn ingest(
    inner: &mut Inner,
    tenant: &str,
    streams: Vec<PushedStream>,
    record: &mut ReceivedRequest,
) -> Vec<String> {
    let mut errors = Vec::new();
    for stream in streams {
        record.entries += stream.entries.len();
        record.sorted &= stream.entries.windows(2).all(|w| w[0].0 <= w[1].0);
        let labels = match stream.labels {
            Ok(labels) => labels,
            Err(message) => {
                errors.push(message);
                continue;
            }
        };
        let text = labels_text(&labels);
        if let Some((_, _, reason)) = inner
            .reject
            .iter()
            .find(|(name, value, _)| labels.get(name) == Some(value))
        {
            errors.push(format!("stream {text}: {reason}"));
            continue;
        }
        let key = (tenant.to_string(), text.clone());
        for (ts, line, metadata) in stream.entries {
            if line.len() > inner.max_line {
                errors.push(format!(
                    "Max entry size '{}' bytes exceeded for stream '{text}' while adding an entry with length '{}' bytes",
                    inner.max_line,
                    line.len()
                ));
                continue;
            }
            let newest = inner.newest.get(&key).copied().unwrap_or(i64::MIN);
            let refused = match inner.order {
                OrderRule::Strict => (ts < newest).then_some("entry out of order"),
                OrderRule::Window(window) => (ts < newest.saturating_sub(window.as_nanos() as i64))
                    .then_some("entry too far behind"),
            };
            if let Some(reason) = refused {
                errors.push(format!(
                    "entry for stream '{text}' with timestamp {ts} ignored, reason: '{reason}'"
                ));
                continue;
            }
            inner.newest.insert(key.clone(), newest.max(ts));
            if inner.store {
                if !inner
                    .seen
                    .insert((tenant.to_string(), text.clone(), ts, line.clone()))
                {
                    inner.duplicates += 1;
                    continue;
                }
                if inner.print {
                    println!("{tenant} {text} {ts} {line} {metadata:?}");
                }
                inner.entries.push(ReceivedEntry {
                    tenant: tenant.to_string(),
                    stream: text.clone(),
                    labels: labels.clone(),
                    timestamp: ts,
                    line,
                    metadata,
                });
            }
            inner.accepted += 1;
        }
    }
    errors
}

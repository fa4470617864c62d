//! A Loki receiver for tests: an HTTP server on 127.0.0.1 that accepts
//! `POST /loki/api/v1/push` in both encodings (snappy block + protobuf
//! `logproto.PushRequest`, decoded with the same generated types as ferry's
//! `proto/push.proto`; JSON, optionally gzipped) and judges each push as Loki does,
//! entry by entry, with Loki's wording (`pkg/validation/validate.go`,
//! `pkg/distributor`, `pkg/ingester/stream.go`):
//!
//! - the distributor refuses streams with bad labels (unparsable, no label, more than
//!   15 names) and entries older than `reject_old_samples_max_age` (default 1 week),
//!   further in the future than `creation_grace_period` (10 min) or longer than
//!   `max_line_size` (256 KiB); its errors are grouped by text as Loki's
//!   `GroupedErrors` does (`300 errors like: …; 50 errors like: …`);
//! - an ingester then appends each stream's remaining entries, refusing those older
//!   than the stream's newest minus a window ("too far behind"; or any older one,
//!   "out of order", in strict mode) and dropping exact duplicates (same stream, time
//!   and line); it lists up to `max_returned_stream_errors` (10) refused entries with
//!   nanosecond timestamps and `total ignored: N out of M for stream: …`.
//!
//! The valid entries of a push are stored; if anything was refused the answer is 400
//! with the ingester's list when it refused something (the last such stream, as Loki
//! returns), else with the distributor's grouped errors.
//!
//! Failures can be injected: scripted answers for the next requests (e.g. 429 with
//! `Retry-After: 3`) or for the request arriving n-th, an outage (every request answered 500/503 until cleared), a
//! stream-level refusal for streams carrying a chosen label value, or a gateway that
//! hides Loki's messages behind a generic 400 page. It can also be slow: every
//! push answered after a delay.
//!
//! Use from an integration test (or bench) with
//! `#[path = "support/loki_receiver.rs"] mod loki_receiver;`, then
//! `let loki = LokiReceiver::start().await;` and point a sink at `loki.endpoint()`.
//! To run it by hand and watch a real ferry push into it:
//! `LOKI_RECEIVER_ADDR=127.0.0.1:3100 cargo test --test loki_pipeline -- --ignored --nocapture serve_by_hand`
//! (every accepted entry is printed; stop it with Ctrl-C).

#![allow(dead_code)]

// A test may also include a simulator, which has its own copy of `sim_server`.
#[allow(clippy::duplicate_mod)]
#[path = "sim_server.rs"]
mod sim_server;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ferry::sinks::loki::proto::PushRequest;
use prost::Message;
use sim_server::Seen;

/// Loki's default `max_line_size`.
pub const DEFAULT_MAX_LINE: usize = 256 * 1024;

/// Loki's default `reject_old_samples_max_age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Loki's default `creation_grace_period`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10 * 60);

/// Loki's default `max_returned_stream_errors`.
pub const DEFAULT_MAX_RETURNED_ERRORS: usize = 10;

/// Loki's default `max_label_names_per_series`.
const MAX_LABEL_NAMES: usize = 15;

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

/// A push as the receiver saw it: its `body` as sent (still compressed; empty with
/// [`LokiReceiver::count_only`]), and what the receiver read from it.
pub type ReceivedRequest = Seen<Push>;

/// The headers of a push the receiver looks at, and what it found in the entries.
#[derive(Debug, Clone)]
pub struct Push {
    pub tenant: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub authorization: Option<String>,
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
    /// Answers for given requests, by arrival (0 for the first).
    planned: HashMap<usize, Answer>,
    arrivals: usize,
    outage: Option<Answer>,
    refused_values: Vec<(String, String)>,
    order: OrderRule,
    max_line: usize,
    max_age: Option<Duration>,
    grace: Duration,
    max_returned_errors: usize,
    hide_messages: bool,
    store: bool,
    print: bool,
    /// Every push is answered this much later.
    delay: Duration,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: tokio::sync::Notify,
    connections: AtomicUsize,
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
                planned: HashMap::new(),
                arrivals: 0,
                outage: None,
                refused_values: Vec::new(),
                order: OrderRule::Window(Duration::from_secs(3600)),
                max_line: DEFAULT_MAX_LINE,
                max_age: Some(DEFAULT_MAX_AGE),
                grace: DEFAULT_GRACE,
                max_returned_errors: DEFAULT_MAX_RETURNED_ERRORS,
                hide_messages: false,
                store: true,
                print: false,
                delay: Duration::ZERO,
            }),
            changed: tokio::sync::Notify::new(),
            connections: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the Loki receiver");
        let addr = listener.local_addr().expect("local address");
        let counting = Arc::clone(&shared);
        let listener = axum::serve::ListenerExt::tap_io(listener, move |_| {
            counting.connections.fetch_add(1, Ordering::Relaxed);
        });
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

    /// How many TCP connections clients have opened.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
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

    /// Answers every push `delay` after it arrived: a slow Loki.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    pub fn set_order(&self, order: OrderRule) {
        self.lock().order = order;
    }

    pub fn set_max_line(&self, max_line: usize) {
        self.lock().max_line = max_line;
    }

    /// `reject_old_samples_max_age`; `None` is `reject_old_samples: false`.
    pub fn set_max_age(&self, max_age: Option<Duration>) {
        self.lock().max_age = max_age;
    }

    /// `creation_grace_period`.
    pub fn set_grace(&self, grace: Duration) {
        self.lock().grace = grace;
    }

    /// Answers refusals with a gateway's generic 400 page instead of Loki's message
    /// (as a proxy with `proxy_intercept_errors` does); entries are judged as before.
    pub fn hide_messages(&self) {
        self.lock().hide_messages = true;
    }

    /// `max_returned_stream_errors` (0: list every refused entry).
    pub fn set_max_returned_errors(&self, max: usize) {
        self.lock().max_returned_errors = max;
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

    /// Answers the request arriving `index`-th (0 for the first) with `status`,
    /// whatever it holds.
    pub fn plan(&self, index: usize, status: u16) {
        let answer = Answer {
            status: StatusCode::from_u16(status).expect("a valid status"),
            retry_after: None,
        };
        self.lock().planned.insert(index, answer);
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

    /// Refuses every stream whose label `name` is `value`, as Loki refuses a stream
    /// whose label value breaks its limits (`stream '…' has label value too long`).
    pub fn refuse_label_value(&self, name: &str, value: &str) {
        self.lock()
            .refused_values
            .push((name.to_string(), value.to_string()));
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
    /// The labels as the client wrote them.
    pushed: String,
    labels: Result<BTreeMap<String, String>, String>,
    entries: Vec<(i64, String, BTreeMap<String, String>)>,
}

async fn push(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| sim_server::header_str(&headers, name).map(str::to_string);
    let delay = shared.inner.lock().unwrap_or_else(|e| e.into_inner()).delay;
    tokio::time::sleep(delay).await;
    let push = Push {
        tenant: header("x-scope-orgid"),
        content_type: header(header::CONTENT_TYPE.as_str()),
        content_encoding: header(header::CONTENT_ENCODING.as_str()),
        authorization: header(header::AUTHORIZATION.as_str()),
        sorted: true,
        entries: 0,
    };
    let stored = shared.inner.lock().unwrap_or_else(|e| e.into_inner()).store;
    let kept = if stored { body.clone() } else { Bytes::new() };
    let mut record =
        Seen::new(Instant::now(), Method::POST, &uri, headers.clone(), kept).with(push);
    let injected = {
        let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
        let arrival = inner.arrivals;
        inner.arrivals += 1;
        let planned = inner.planned.remove(&arrival);
        planned
            .or_else(|| inner.script.pop_front())
            .or_else(|| inner.outage.clone())
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
                match ingest(&mut inner, &tenant, streams, &mut record) {
                    None => {
                        record.status = 204;
                        StatusCode::NO_CONTENT.into_response()
                    }
                    Some(message) => {
                        record.status = 400;
                        let body = if inner.hide_messages {
                            "<html><head><title>400 Bad Request</title></head></html>".into()
                        } else {
                            message
                        };
                        (StatusCode::BAD_REQUEST, body).into_response()
                    }
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
                    pushed: stream.labels,
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
        let pushed = labels_text(&labels);
        let labels = check_labels(labels, &pushed);
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
        out.push(PushedStream {
            pushed,
            labels,
            entries,
        });
    }
    Ok(out)
}

/// Parses `{name="value", …}` as Loki does, checking names and escapes.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let error = |what: &str| Err(format!("Error parsing labels '{text}' with error: {what}"));
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
            return Err(format!(
                "stream '{text}' has duplicate label name: '{name}'"
            ));
        }
    }
    check_labels(map, text)
}

/// Loki's label checks on a parsed set; `pushed` is the set as the client wrote it.
fn check_labels(
    labels: BTreeMap<String, String>,
    pushed: &str,
) -> Result<BTreeMap<String, String>, String> {
    if labels.is_empty() {
        return Err("error at least one label pair is required per stream".into());
    }
    for name in labels.keys() {
        let mut chars = name.chars();
        let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "Error parsing labels '{pushed}' with error: invalid label name {name:?}"
            ));
        }
    }
    if labels.len() > MAX_LABEL_NAMES {
        return Err(format!(
            "entry for stream '{pushed}' has {} label names; limit {MAX_LABEL_NAMES}",
            labels.len()
        ));
    }
    Ok(labels)
}

/// The canonical text form of a label set.
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Loki's judgement of one push: the distributor's validation, then an ingester's
/// appends; the valid entries are stored. Returns the 400 body, or `None` when every
/// entry was accepted.
fn ingest(
    inner: &mut Inner,
    tenant: &str,
    streams: Vec<PushedStream>,
    record: &mut ReceivedRequest,
) -> Option<String> {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let mut validation: Vec<String> = Vec::new();
    let mut valid_streams = Vec::new();
    for stream in streams {
        record.entries += stream.entries.len();
        record.sorted &= stream.entries.windows(2).all(|w| w[0].0 <= w[1].0);
        if stream.entries.is_empty() {
            continue;
        }
        let labels = match stream.labels {
            Ok(labels) => labels,
            Err(message) => {
                validation.push(message);
                continue;
            }
        };
        if let Some((_, value)) = inner
            .refused_values
            .iter()
            .find(|(name, value)| labels.get(name) == Some(value))
        {
            validation.push(format!(
                "stream '{}' has label value too long: '{value}'",
                stream.pushed
            ));
            continue;
        }
        let text = labels_text(&labels);
        let mut valid = Vec::new();
        for (ts, line, metadata) in stream.entries {
            let oldest = inner.max_age.map(|age| now - age.as_nanos() as i64);
            if let Some(oldest) = oldest.filter(|oldest| ts < *oldest) {
                validation.push(format!(
                    "entry for stream '{text}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                    rfc3339(ts),
                    rfc3339(oldest)
                ));
            } else if ts > now + inner.grace.as_nanos() as i64 {
                validation.push(format!(
                    "entry for stream '{text}' has timestamp too new: {}",
                    rfc3339(ts)
                ));
            } else if line.len() > inner.max_line {
                validation.push(format!(
                    "Max entry size '{}' bytes exceeded for stream '{text}' while adding an entry with length '{}' bytes",
                    inner.max_line,
                    line.len()
                ));
            } else {
                valid.push((ts, line, metadata));
            }
        }
        if !valid.is_empty() {
            valid_streams.push((text, labels, valid));
        }
    }
    let mut ingester_error = None;
    for (text, labels, entries) in valid_streams {
        let received = entries.len();
        let failed = append(inner, tenant, &text, &labels, entries);
        if !failed.is_empty() {
            let listed = match inner.max_returned_errors {
                0 => failed.len(),
                max => max.min(failed.len()),
            };
            ingester_error = Some(ignored(tenant, &text, received, &failed, listed));
        }
    }
    ingester_error.or_else(|| grouped(&validation))
}

/// An ingester's answer for a stream it refused entries of (`errorForFailedEntries`):
/// the first `listed` entries, then the total.
fn ignored(
    tenant: &str,
    text: &str,
    received: usize,
    failed: &[(i64, String)],
    listed: usize,
) -> String {
    let mut message = String::new();
    for (ts, reason) in &failed[..listed] {
        let _ = writeln!(
            message,
            "entry with timestamp {} ignored, reason: '{reason}',",
            go_time(*ts)
        );
    }
    let _ = write!(
        message,
        "user '{tenant}', total ignored: {} out of {received} for stream: {text}",
        failed.len()
    );
    message
}

/// An ingester appending one stream's entries: refuses those behind the stream's
/// newest (beyond the window, or at all in strict mode), drops exact duplicates, stores
/// the rest. Returns the refused entries with Loki's reason.
fn append(
    inner: &mut Inner,
    tenant: &str,
    text: &str,
    labels: &BTreeMap<String, String>,
    entries: Vec<(i64, String, BTreeMap<String, String>)>,
) -> Vec<(i64, String)> {
    let key = (tenant.to_string(), text.to_string());
    let mut failed = Vec::new();
    for (ts, line, metadata) in entries {
        let newest = inner.newest.get(&key).copied();
        let refused = match (inner.order, newest) {
            (_, None) => None,
            (OrderRule::Strict, Some(newest)) => {
                (ts < newest).then(|| "entry out of order".to_string())
            }
            (OrderRule::Window(window), Some(newest)) => {
                let cutoff = newest.saturating_sub(window.as_nanos() as i64);
                (ts < cutoff).then(|| {
                    format!(
                        "entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}",
                        rfc3339(ts),
                        rfc3339(cutoff)
                    )
                })
            }
        };
        if let Some(reason) = refused {
            failed.push((ts, reason));
            continue;
        }
        inner
            .newest
            .insert(key.clone(), newest.map_or(ts, |newest| newest.max(ts)));
        if inner.store {
            if !inner
                .seen
                .insert((tenant.to_string(), text.to_string(), ts, line.clone()))
            {
                inner.duplicates += 1;
                continue;
            }
            if inner.print {
                println!("{tenant} {text} {ts} {line} {metadata:?}");
            }
            inner.entries.push(ReceivedEntry {
                tenant: tenant.to_string(),
                stream: text.to_string(),
                labels: labels.clone(),
                timestamp: ts,
                line,
                metadata,
            });
        }
        inner.accepted += 1;
    }
    failed
}

/// Loki's `GroupedErrors`: errors of equal text counted together, `N errors like:
/// TEXT` joined by `; `, a lone error as is.
fn grouped(errors: &[String]) -> Option<String> {
    let mut groups: Vec<(&str, usize)> = Vec::new();
    for error in errors {
        match groups.iter_mut().find(|(text, _)| *text == error.as_str()) {
            Some((_, count)) => *count += 1,
            None => groups.push((error, 1)),
        }
    }
    if let [(text, 1)] = groups.as_slice() {
        return Some(text.to_string());
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(text, count)| format!("{count} errors like: {text}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Go's `time.RFC3339` of Unix nanoseconds, in UTC: `2020-01-01T00:00:00Z`.
pub fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Go's `time.Time.String()` of Unix nanoseconds, in UTC:
/// `2024-05-06 15:58:50.123456789 +0000 UTC` (fraction trimmed, absent when zero).
pub fn go_time(nanos: i64) -> String {
    let time = chrono::DateTime::from_timestamp_nanos(nanos);
    let mut text = time.format("%Y-%m-%d %H:%M:%S").to_string();
    let fraction = nanos.rem_euclid(1_000_000_000);
    if fraction != 0 {
        let digits = format!("{fraction:09}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text.push_str(" +0000 UTC");
    text
}

/// The `message` of each event a file sink wrote as JSON lines (a dead letter), the
/// last line left out while it is still being written.
pub fn dead_letter_messages(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("JSON lines")["message"]
                .as_str()
                .expect("a message")
                .to_string()
        })
        .collect()
}

//! A local model of Scalingo's application logs (seed 003 and providers.md §4), for
//! ferry's tests, benchmarks and demos, on the shared `sim_server`. One server plays
//! the three hosts:
//!
//! - auth: `POST /v1/tokens/exchange` with `Authorization: Basic base64(":<api
//!   token>")` → `{"token": "<JWT>"}` whose `exp` is [`SimConfig::token_ttl`] away
//!   (401 `{"error": …}` otherwise);
//! - API: `GET /v1/apps/{app}/logs` (`{app}` the name or the id) with `Authorization:
//!   Bearer <JWT>` → `{"app": {…}, "logs_url": "<signed URL>"}`; 401 for a missing,
//!   unknown or expired JWT, 404 `{"resource":"app","error":"not found"}`, and
//!   Scalingo's limit of [`SimConfig::api_limit`] requests per sliding
//!   [`SimConfig::api_window`]: past it, 429 with the plain-text body `Retry later`;
//! - logs host: `GET /apps/{app_id}/logs?timestamp=…&token=…` (the signed URL; it
//!   expires after [`SimConfig::url_ttl`] or [`ScalingoSim::expire_urls`]: 401) with
//!   `n` and `filter` dumps the last `n` lines (default 20) as `text/plain`, 204 when
//!   there are none; with `stream=true` it upgrades to a websocket when asked to
//!   (else, or with [`SimConfig::websocket`] off, answers SSE with the same JSON in
//!   `data:`) and sends each line published after it opened as
//!   `{"event":"log","log":"<line>\n","timestamp":…}`, a `ping` event after
//!   [`SimConfig::ping_every`] of silence, keyed `event`, `name` or both
//!   ([`EventKey`]). `filter` is a container name (`web-1`), a type (`web`) or an
//!   alternation (`web|worker`), matched whole.
//!
//! Lines are `2026-03-01 00:00:00.00125 +0000 UTC [web-1] message`: Go's time format
//! with the fraction trimmed, from a clock advancing [`SimConfig::step`] per line.
//! Faults: queued [`Fault`]s and the random 5xx of `sim_server` apply to every
//! request; [`SimConfig::drops`] makes every stream drop after a random number of
//! frames. Errors echo the refused token, as careless servers do, so that clients
//! must scrub it.
//!
//! Run it by hand: `cargo run --example scalingo_sim -- [LINES]`.

#![allow(dead_code)]

#[path = "sim_server.rs"]
mod sim_server;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};

use sim_server::{
    Configured, Flow, Frames, RateLimit, RequestKind, Server, Sim, StreamSpec, Tokens, json, text,
};
pub use sim_server::{Fault, Seen};

/// Which key names the type of a stream event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKey {
    /// `{"event": "log", …}`, as Scalingo's CLI and scalingo.js read it.
    Event,
    /// `{"name": "log", …}`, as the documentation shows it.
    Name,
    Both,
}

sim_server::sim_config! {
    pub api_token: String = "tk-us-Qm9vYmFyYmF6cXV4".into(),
    pub app: String = "my-app".into(),
    pub app_id: String = "66b24069fb0de6002981dd79".into(),
    pub token_ttl: Duration = Duration::from_secs(3600),
    pub url_ttl: Duration = Duration::from_secs(3600),
    pub ping_every: Duration = Duration::from_secs(25),
    pub event_key: EventKey = EventKey::Event,
    /// Upgrade `stream=true` requests that ask for a websocket; off: always SSE.
    pub websocket: bool = true,
    pub api_limit: usize = 60,
    pub api_window: Duration = Duration::from_secs(60),
    /// Lines per `log` event (Scalingo may pack several).
    pub lines_per_event: usize = 1,
    /// Every stream drops after a random number of frames in `1..=N`.
    pub drops: Option<usize> = None,
    /// Clock step between published lines, in ns.
    pub step: i64 = 1_250_000,
}

/// What a request was, as the simulator saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exchange,
    LogsUrl,
    Dump,
    Stream,
}

impl RequestKind for Kind {
    /// What `request` was, by its path (and query).
    fn of(request: &Seen) -> Kind {
        if request.path.ends_with("/tokens/exchange") {
            Kind::Exchange
        } else if request.path.starts_with("/v1/") {
            Kind::LogsUrl
        } else if request.param("stream").as_deref() == Some("true") {
            Kind::Stream
        } else {
            Kind::Dump
        }
    }
}

#[derive(Debug, Clone)]
struct LogLine {
    container: String,
    text: String,
}

pub struct ScalingoState {
    config: SimConfig,
    lines: Vec<LogLine>,
    clock: i64,
    tokens: Tokens,
    /// Every JWT issued (for tests that look for leaks).
    jwts: Vec<String>,
    /// Signed-URL token → (its `timestamp`, expiry).
    signed: BTreeMap<String, (u64, Instant)>,
    api_limit: RateLimit,
    rng: rand::rngs::StdRng,
}

/// 2026-03-01 00:00:00 UTC, the clock's start.
const CLOCK_START: i64 = 1_772_323_200_000_000_000;

impl Default for ScalingoState {
    fn default() -> Self {
        ScalingoState {
            config: SimConfig::default(),
            lines: Vec::new(),
            clock: CLOCK_START,
            tokens: Tokens::default(),
            jwts: Vec::new(),
            signed: BTreeMap::new(),
            api_limit: RateLimit::default(),
            rng: rand::rngs::StdRng::seed_from_u64(3),
        }
    }
}

sim_server::simulator!(
    /// A running simulator (see [`Server`] for `url` — of every host —, `config`,
    /// `set_config`); stops when dropped.
    ScalingoSim(ScalingoState) {
        "/v1/tokens/exchange" => post(exchange),
        "/v1/apps/{app}/logs" => get(logs_url),
        "/apps/{app_id}/logs" => get(logs),
    }
);

impl ScalingoSim {
    /// Publishes `messages` from `container`, one line each on the clock; returns
    /// the lines as served.
    pub fn publish<S: AsRef<str>>(
        &self,
        container: &str,
        messages: impl IntoIterator<Item = S>,
    ) -> Vec<String> {
        self.sim.update(|s| {
            let mut published = Vec::new();
            for message in messages {
                s.clock += s.config.step;
                let time = s.clock;
                published.push(s.push_line(time, container, message.as_ref()));
            }
            published
        })
    }

    /// Publishes one line at `time` (Unix ns), the clock left as it is.
    pub fn publish_at(&self, time: i64, container: &str, message: &str) -> String {
        self.sim.update(|s| s.push_line(time, container, message))
    }

    /// The clock (Unix ns of the last line published on it).
    pub fn clock(&self) -> i64 {
        self.sim.lock().clock
    }

    /// Every JWT issued so far stops working.
    pub fn expire_tokens(&self) {
        self.sim.lock().tokens.expire_all();
    }

    /// Every signed logs URL issued so far stops working.
    pub fn expire_urls(&self) {
        self.sim.lock().signed.clear();
    }

    /// The secrets the simulator handed out: the API token, every JWT and every
    /// signed-URL token.
    pub fn secrets(&self) -> Vec<String> {
        let state = self.sim.lock();
        let mut secrets = vec![state.config.api_token.clone()];
        secrets.extend(state.jwts.iter().cloned());
        secrets.extend(self.sim.requests_as(|seen| seen.param("token")));
        secrets.sort();
        secrets.dedup();
        secrets
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen<Kind>> {
        self.sim.requests_by_kind()
    }
}

impl ScalingoState {
    fn push_line(&mut self, time: i64, container: &str, message: &str) -> String {
        assert!(!message.contains('\n'), "one line at a time");
        let text = format!("{} [{container}] {message}", go_time(time));
        self.lines.push(LogLine {
            container: container.to_string(),
            text: text.clone(),
        });
        text
    }

    fn sign(&mut self, base: &str) -> String {
        let token: String = (0..32)
            .map(|_| char::from(b"0123456789abcdef"[self.rng.random_range(0..16)]))
            .collect();
        let timestamp = sim_server::unix_now();
        self.signed.insert(
            token.clone(),
            (timestamp, Instant::now() + self.config.url_ttl),
        );
        format!(
            "{base}/apps/{}/logs?timestamp={timestamp}&token={token}",
            self.config.app_id
        )
    }

    fn signed_valid(&self, token: Option<&str>, timestamp: Option<&str>) -> bool {
        let (Some(token), Some(timestamp)) = (token, timestamp) else {
            return false;
        };
        self.signed.get(token).is_some_and(|(issued, expiry)| {
            issued.to_string() == timestamp && Instant::now() < *expiry
        })
    }

    /// The JSON of a stream event of type `kind`.
    fn event(&self, kind: &str, mut body: serde_json::Value) -> String {
        match self.config.event_key {
            EventKey::Event => body["event"] = kind.into(),
            EventKey::Name => body["name"] = kind.into(),
            EventKey::Both => {
                body["event"] = kind.into();
                body["name"] = kind.into();
            }
        }
        body["timestamp"] = Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            .into();
        body.to_string()
    }
}

/// Go's `time.Time.String()` of `time` (Unix ns) in UTC: the fraction trimmed.
pub fn go_time(time: i64) -> String {
    let t: DateTime<Utc> = DateTime::from_timestamp_nanos(time);
    let seconds = t.format("%Y-%m-%d %H:%M:%S");
    format!("{seconds}{} +0000 UTC", sim_server::go_fraction(time))
}

/// Whether `container` passes `filter`: its name or its type matches one of the
/// alternatives whole.
fn filter_matcher(filter: Option<&str>) -> Result<Option<regex::Regex>, ()> {
    filter
        .map(|f| regex::Regex::new(&format!("^(?:{f})$")).map_err(|_| ()))
        .transpose()
}

fn passes(filter: &Option<regex::Regex>, container: &str) -> bool {
    let Some(filter) = filter else {
        return true;
    };
    let kind = match container.rsplit_once('-') {
        Some((kind, n)) if !kind.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => kind,
        _ => container,
    };
    filter.is_match(container) || filter.is_match(kind)
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, serde_json::json!({ "error": message }))
}

/// The queued or random fault's answer, if it is a status.
fn fault_answer(fault: Option<&Fault>) -> Option<Response> {
    fault?.answer(|status| {
        if status == StatusCode::TOO_MANY_REQUESTS {
            text(status, "Retry later")
        } else {
            error(status, "the server failed, try again")
        }
    })
}

async fn exchange(Call { sim, headers, .. }: Call) -> Response {
    let fault = sim.next_fault();
    if let Some(response) = fault_answer(fault.as_ref()) {
        return response;
    }
    let mut state = sim.lock();
    match sim_server::basic(&headers) {
        Some((user, token)) if user.is_empty() && token == state.config.api_token => {
            let ttl = state.config.token_ttl;
            let jwt = state.tokens.issue("ferry", Some(ttl));
            state.jwts.push(jwt.clone());
            json(StatusCode::OK, serde_json::json!({ "token": jwt }))
        }
        Some((_, token)) => error(
            StatusCode::UNAUTHORIZED,
            &format!("invalid API token {token}"),
        ),
        None => error(StatusCode::UNAUTHORIZED, "no API token given"),
    }
}

async fn logs_url(Call { sim, headers, .. }: Call, Path(app): Path<String>) -> Response {
    let fault = sim.next_fault();
    let mut state = sim.lock();
    state.api_limit.max = state.config.api_limit;
    state.api_limit.window = state.config.api_window;
    if state.api_limit.check().is_err() {
        text(StatusCode::TOO_MANY_REQUESTS, "Retry later")
    } else if let Some(response) = fault_answer(fault.as_ref()) {
        response
    } else {
        match sim_server::bearer(&headers) {
            Some(jwt) if state.tokens.valid(jwt) => {
                if app != state.config.app && app != state.config.app_id {
                    json(
                        StatusCode::NOT_FOUND,
                        serde_json::json!({ "resource": "app", "error": "not found" }),
                    )
                } else {
                    let base = format!(
                        "http://{}",
                        sim_server::header_str(&headers, "host").unwrap_or("127.0.0.1")
                    );
                    let logs_url = state.sign(&base);
                    json(
                        StatusCode::OK,
                        serde_json::json!({
                            "app": { "id": state.config.app_id, "name": state.config.app },
                            "logs_url": logs_url,
                        }),
                    )
                }
            }
            Some(jwt) => error(
                StatusCode::UNAUTHORIZED,
                &format!("token {jwt} is invalid or expired"),
            ),
            None => error(StatusCode::UNAUTHORIZED, "authentication required"),
        }
    }
}

async fn logs(
    Call { sim, uri, .. }: Call,
    Path(app_id): Path<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let param = |name: &str| sim_server::query_param(&uri, name);
    let mut state = sim.lock();
    if app_id != state.config.app_id {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    }
    if !state.signed_valid(param("token").as_deref(), param("timestamp").as_deref()) {
        let token = param("token").unwrap_or_default();
        return text(
            StatusCode::UNAUTHORIZED,
            &format!("invalid or expired token {token}"),
        );
    }
    let Ok(filter) = filter_matcher(param("filter").as_deref()) else {
        return error(StatusCode::BAD_REQUEST, "invalid filter");
    };
    let n: usize = match param("n").map(|n| n.parse()) {
        None => 20,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return error(StatusCode::BAD_REQUEST, "invalid n");
        }
    };
    let fault = sim.next_fault().or_else(|| {
        let drops = state.config.drops?;
        Some(Fault::DropAfter(state.rng.random_range(1..=drops.max(1))))
    });
    if let Some(response) = fault_answer(fault.as_ref()) {
        return response;
    }
    let history: Vec<usize> = {
        let mut matching: Vec<usize> = (0..state.lines.len())
            .rev()
            .filter(|&i| passes(&filter, &state.lines[i].container))
            .take(n)
            .collect();
        matching.reverse();
        matching
    };
    if param("stream").as_deref() != Some("true") {
        let body: String = history
            .iter()
            .map(|&i| format!("{}\n", state.lines[i].text))
            .collect();
        drop(state);
        if body.is_empty() {
            return Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(axum::body::Body::empty())
                .unwrap();
        }
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/plain; charset=utf-8")
            .body(axum::body::Body::from(body))
            .unwrap();
    }
    // A stream: the last `n` lines, then every line published from now on.
    let upgrade = upgrade.ok().filter(|_| state.config.websocket);
    let sse = upgrade.is_none();
    let mut pending = history;
    let mut next = state.lines.len();
    let per_event = state.config.lines_per_event.max(1);
    let ping = state.event("ping", serde_json::json!({}));
    let every = state.config.ping_every;
    drop(state);
    let mut spec = StreamSpec::new(fault);
    let ping = if sse {
        format!("data: {ping}\n\n")
    } else {
        ping
    };
    spec.keepalive = Some((every, Box::new(move || Bytes::from(ping.clone()))));
    let mut sent = 0;
    let feed = move |state: &ScalingoState, frames: &mut Frames| {
        pending.extend(
            (next..state.lines.len()).filter(|&i| passes(&filter, &state.lines[i].container)),
        );
        next = state.lines.len();
        while sent < pending.len() && !frames.is_full() {
            let chunk = &pending[sent..pending.len().min(sent + per_event)];
            sent += chunk.len();
            let mut log = String::new();
            for &i in chunk {
                log.push_str(&state.lines[i].text);
                log.push('\n');
            }
            let message = state.event("log", serde_json::json!({ "log": log }));
            if sse {
                frames.push(format!("data: {message}\n\n").as_bytes());
            } else {
                frames.push(message.as_bytes());
            }
        }
        if sent == pending.len() {
            pending.clear();
            sent = 0;
        }
        Flow::More
    };
    match upgrade {
        Some(upgrade) => sim_server::ws_stream(upgrade, sim, spec, feed),
        None => sim_server::stream_body(sim, "text/event-stream", spec, feed),
    }
}

/// The `n`th test message of `container`, padded with `x` to `len` bytes.
pub fn message(container: &str, n: usize, len: usize) -> String {
    let mut message = format!("{container} message {n:07} ");
    while message.len() < len {
        message.push('x');
    }
    message
}

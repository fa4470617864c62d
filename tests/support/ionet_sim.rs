//! A local model of the io.net CaaS logs API (seed 000 and providers.md §1), for
//! ferry's tests, benchmarks and demos.
//!
//! Routes, under `/enterprise/v1/io-cloud/caas`, all requiring `X-API-KEY`:
//! - `GET /deployment/{deployment_id}/containers` → `{"data":{"total":N,"workers":[WorkerData]}}`
//!   with each container's `status`, `device_id` and `container_events`;
//! - `GET /deployment/{deployment_id}/log/{container_id}?stream=stdout|stderr&offset=N`
//!   → a chunked `text/event-stream`: `id: <end byte offset>\ndata: <line>\n\n` per
//!   line of that container's stream "file", `: keepalive` comments when idle, and
//!   optionally a `retry:` field. [`Framing::Bare`] sends the lines as plain text
//!   and [`SimConfig::ids`] `= false` leaves ids out, so clients' fallbacks get
//!   exercised. `offset` is a byte offset: lines starting before it are skipped
//!   (or ignored entirely with [`SimConfig::honour_offset`] `= false`).
//!
//! Errors as FastAPI gives them: 422 `{"detail":[{"loc":…,"msg":…,"type":…}]}` for a
//! deployment id that is not a UUID, a bad `stream` or `offset`, or a missing
//! `X-API-KEY`; 401 `{"detail":…}` for a wrong or expired key (the detail echoes the
//! key, as careless servers do, so clients must scrub it); 404 `{"detail":"Not Found"}`
//! for an unknown deployment or container.
//!
//! Faults, queued with [`IonetSim::push_fault`] and consumed one per log request:
//! drop the connection in the middle of an event, stall without a byte, answer a
//! status (429 with `Retry-After`, 5xx).
//!
//! Run it by hand: `cargo run --example ionet_sim -- [LINES]` prints its URL, API key
//! and deployment id, then serves two containers until Ctrl-C.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{Notify, mpsc};

pub const PREFIX: &str = "/enterprise/v1/io-cloud/caas";

/// How log lines are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `data: <line>` events (with `id:` when [`SimConfig::ids`]).
    Sse,
    /// The lines as they are, `\n`-terminated.
    Bare,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub api_key: String,
    pub deployment_id: String,
    pub framing: Framing,
    pub ids: bool,
    pub honour_offset: bool,
    /// Keep the stream open at the end of the data (waiting for more) instead of
    /// ending the response.
    pub follow: bool,
    /// Idle time before a `: keepalive` comment.
    pub keepalive: Duration,
    /// A `retry:` value (ms) sent at the start of every stream.
    pub retry_ms: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_key: "io-test-key-5f2b".into(),
            deployment_id: "6f1c2a4e-93b7-4d0e-8a55-1c9e2f7b3d10".into(),
            framing: Framing::Sse,
            ids: true,
            honour_offset: true,
            follow: true,
            keepalive: Duration::from_secs(15),
            retry_ms: None,
        }
    }
}

/// One injected misbehaviour, used by the next log request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Send this many events, then half of the next one, then reset the connection.
    DropAfter(usize),
    /// Send the headers, then nothing at all for this long.
    Stall(Duration),
    /// Answer with this status, an optional `Retry-After` and a `{"detail"}` body.
    Status(u16, Option<String>),
}

/// A log request as the simulator saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub container: String,
    pub stream: String,
    pub offset: Option<u64>,
    pub status: u16,
}

#[derive(Debug, Default)]
struct LogFile {
    bytes: Vec<u8>,
    /// (start offset, length without `\n`) of every line.
    lines: Vec<(u64, u32)>,
}

#[derive(Debug)]
struct Container {
    status: String,
    device_id: String,
    events: Vec<(String, String)>,
    stdout: LogFile,
    stderr: LogFile,
}

struct Inner {
    config: SimConfig,
    key_expired: bool,
    containers: BTreeMap<String, Container>,
    faults: VecDeque<Fault>,
    requests: Vec<Request>,
    list_requests: usize,
}

pub struct Sim {
    inner: Mutex<Inner>,
    appended: Notify,
}

/// A running simulator; stops when dropped.
pub struct IonetSim {
    pub addr: SocketAddr,
    pub sim: Arc<Sim>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for IonetSim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl IonetSim {
    pub async fn start(config: SimConfig) -> IonetSim {
        let sim = Arc::new(Sim {
            inner: Mutex::new(Inner {
                config,
                key_expired: false,
                containers: BTreeMap::new(),
                faults: VecDeque::new(),
                requests: Vec::new(),
                list_requests: 0,
            }),
            appended: Notify::new(),
        });
        let app = Router::new()
            .route(
                &format!("{PREFIX}/deployment/{{deployment_id}}/containers"),
                get(containers),
            )
            .route(
                &format!("{PREFIX}/deployment/{{deployment_id}}/log/{{container_id}}"),
                get(logs),
            )
            .with_state(Arc::clone(&sim));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind simulator");
        let addr = listener.local_addr().expect("simulator address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        IonetSim { addr, sim, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> SimConfig {
        self.sim.inner.lock().unwrap().config.clone()
    }

    pub fn set_config(&self, f: impl FnOnce(&mut SimConfig)) {
        f(&mut self.sim.inner.lock().unwrap().config);
    }

    /// Adds (or updates the status of) a container.
    pub fn add_container(&self, id: &str, status: &str, device_id: &str) {
        let mut inner = self.sim.inner.lock().unwrap();
        let container = inner
            .containers
            .entry(id.to_string())
            .or_insert_with(|| Container {
                status: String::new(),
                device_id: device_id.to_string(),
                events: Vec::new(),
                stdout: LogFile::default(),
                stderr: LogFile::default(),
            });
        container.status = status.to_string();
    }

    pub fn remove_container(&self, id: &str) {
        self.sim.inner.lock().unwrap().containers.remove(id);
        self.sim.appended.notify_waiters();
    }

    /// Adds a lifecycle event (`time` RFC 3339).
    pub fn add_event(&self, container: &str, time: &str, message: &str) {
        let mut inner = self.sim.inner.lock().unwrap();
        if let Some(c) = inner.containers.get_mut(container) {
            c.events.push((time.to_string(), message.to_string()));
        }
    }

    /// Appends lines to a container's stream (`stdout` or `stderr`).
    pub fn append<S: AsRef<str>>(
        &self,
        container: &str,
        stream: &str,
        lines: impl IntoIterator<Item = S>,
    ) {
        {
            let mut inner = self.sim.inner.lock().unwrap();
            let c = inner
                .containers
                .get_mut(container)
                .expect("unknown container");
            let file = if stream == "stderr" {
                &mut c.stderr
            } else {
                &mut c.stdout
            };
            for line in lines {
                let line = line.as_ref();
                assert!(!line.contains('\n'), "one line at a time");
                file.lines
                    .push((file.bytes.len() as u64, line.len() as u32));
                file.bytes.extend_from_slice(line.as_bytes());
                file.bytes.push(b'\n');
            }
        }
        self.sim.appended.notify_waiters();
    }

    pub fn push_fault(&self, fault: Fault) {
        self.sim.inner.lock().unwrap().faults.push_back(fault);
    }

    /// Makes the API key expire (401 on every request) or valid again.
    pub fn expire_key(&self, expired: bool) {
        self.sim.inner.lock().unwrap().key_expired = expired;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.sim.inner.lock().unwrap().requests.clone()
    }

    pub fn list_requests(&self) -> usize {
        self.sim.inner.lock().unwrap().list_requests
    }
}

fn detail(status: StatusCode, message: &str) -> Response {
    json_response(status, serde_json::json!({ "detail": message }))
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn validation(loc: &[&str], msg: &str, kind: &str) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        serde_json::json!({ "detail": [{ "loc": loc, "msg": msg, "type": kind }] }),
    )
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Checks the key and the deployment id; the error response if they fail.
fn check(inner: &Inner, headers: &HeaderMap, deployment_id: &str) -> Option<Response> {
    let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) else {
        return Some(validation(
            &["header", "x-api-key"],
            "field required",
            "value_error.missing",
        ));
    };
    if key != inner.config.api_key {
        return Some(detail(
            StatusCode::UNAUTHORIZED,
            &format!("Invalid API key {key}"),
        ));
    }
    if inner.key_expired {
        return Some(detail(
            StatusCode::UNAUTHORIZED,
            &format!("API key {key} has expired"),
        ));
    }
    if !is_uuid(deployment_id) {
        return Some(validation(
            &["path", "deployment_id"],
            "value is not a valid uuid",
            "type_error.uuid",
        ));
    }
    if deployment_id != inner.config.deployment_id {
        return Some(detail(StatusCode::NOT_FOUND, "Not Found"));
    }
    None
}

async fn containers(
    State(sim): State<Arc<Sim>>,
    Path(deployment_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut inner = sim.inner.lock().unwrap();
    inner.list_requests += 1;
    if let Some(error) = check(&inner, &headers, &deployment_id) {
        return error;
    }
    let workers: Vec<serde_json::Value> = inner
        .containers
        .iter()
        .map(|(id, c)| {
            serde_json::json!({
                "device_id": c.device_id,
                "container_id": id,
                "hardware": "NVIDIA A100-SXM4-80GB",
                "brand_name": "NVIDIA",
                "created_at": "2026-11-20T09:00:00Z",
                "uptime_percent": 100,
                "gpus_per_container": 1,
                "status": c.status,
                "container_events": c.events.iter().map(|(time, message)| serde_json::json!({"time": time, "message": message})).collect::<Vec<_>>(),
                "public_url": null,
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        serde_json::json!({ "data": { "total": workers.len(), "workers": workers } }),
    )
}

async fn logs(
    State(sim): State<Arc<Sim>>,
    Path((deployment_id, container_id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let mut stream = "stdout".to_string();
    let mut offset_param = None;
    for (name, value) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match &*name {
            "stream" => stream = value.into_owned(),
            "offset" => offset_param = Some(value.into_owned()),
            _ => {}
        }
    }
    let mut inner = sim.inner.lock().unwrap();
    let offset = offset_param.as_deref().map(str::parse::<u64>);
    let record = |inner: &mut Inner, status: u16| {
        inner.requests.push(Request {
            at: Instant::now(),
            container: container_id.clone(),
            stream: stream.clone(),
            offset: offset.clone().and_then(Result::ok),
            status,
        })
    };
    let error = check(&inner, &headers, &deployment_id)
        .or_else(|| {
            (stream != "stdout" && stream != "stderr").then(|| {
                validation(
                    &["query", "stream"],
                    "value is not a valid enumeration member; permitted: 'stdout', 'stderr'",
                    "type_error.enum",
                )
            })
        })
        .or_else(|| {
            matches!(offset, Some(Err(_))).then(|| {
                validation(
                    &["query", "offset"],
                    "value is not a valid integer",
                    "type_error.integer",
                )
            })
        })
        .or_else(|| {
            (!inner.containers.contains_key(&container_id))
                .then(|| detail(StatusCode::NOT_FOUND, "Not Found"))
        });
    if let Some(error) = error {
        record(&mut inner, error.status().as_u16());
        return error;
    }
    let fault = inner.faults.pop_front();
    if let Some(Fault::Status(code, retry_after)) = &fault {
        let status = StatusCode::from_u16(*code).unwrap();
        record(&mut inner, *code);
        let mut response = detail(status, "Too many requests, slow down");
        if let Some(value) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, value.parse().unwrap());
        }
        return response;
    }
    record(&mut inner, 200);
    let start = match offset {
        Some(Ok(offset)) if inner.config.honour_offset => offset,
        _ => 0,
    };
    let config = inner.config.clone();
    drop(inner);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::spawn(write_stream(
        sim,
        container_id,
        stream,
        start,
        config,
        fault,
        tx,
    ));
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap()
}

/// Most bytes sent in one chunk.
const CHUNK: usize = 32 * 1024;

async fn write_stream(
    sim: Arc<Sim>,
    container: String,
    stream: String,
    start: u64,
    config: SimConfig,
    fault: Option<Fault>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    if let Some(Fault::Stall(duration)) = fault {
        tokio::time::sleep(duration).await;
    }
    let mut drop_after = match fault {
        Some(Fault::DropAfter(n)) => Some(n),
        _ => None,
    };
    if let Some(retry) = config.retry_ms
        && tx
            .send(Ok(Bytes::from(format!("retry: {retry}\n\n"))))
            .await
            .is_err()
    {
        return;
    }
    let mut next_line = None;
    loop {
        let notified = sim.appended.notified();
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut cut = false;
        {
            let inner = sim.inner.lock().unwrap();
            let Some(c) = inner.containers.get(&container) else {
                return;
            };
            let file = if stream == "stderr" {
                &c.stderr
            } else {
                &c.stdout
            };
            let mut index =
                *next_line.get_or_insert_with(|| file.lines.partition_point(|(s, _)| *s < start));
            while index < file.lines.len() && chunk.len() < CHUNK {
                let (line_start, len) = file.lines[index];
                let line = &file.bytes[line_start as usize..line_start as usize + len as usize];
                let frame_start = chunk.len();
                match config.framing {
                    Framing::Bare => {
                        chunk.extend_from_slice(line);
                        chunk.push(b'\n');
                    }
                    Framing::Sse => {
                        if config.ids {
                            chunk.extend_from_slice(
                                format!("id: {}\n", line_start + len as u64 + 1).as_bytes(),
                            );
                        }
                        chunk.extend_from_slice(b"data: ");
                        chunk.extend_from_slice(line);
                        chunk.extend_from_slice(b"\n\n");
                    }
                }
                if let Some(left) = drop_after.as_mut() {
                    if *left == 0 {
                        let half = frame_start + (chunk.len() - frame_start) / 2;
                        chunk.truncate(half.max(frame_start + 1));
                        cut = true;
                        break;
                    }
                    *left -= 1;
                }
                index += 1;
            }
            next_line = Some(index);
        }
        if !chunk.is_empty() {
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
            if cut {
                // Let the server flush what was sent before the connection is reset.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "fault: dropped mid-event",
                    )))
                    .await;
                return;
            }
            continue;
        }
        if !config.follow {
            return;
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(config.keepalive) => {
                if tx.send(Ok(Bytes::from_static(b": keepalive\n\n"))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The `n`th test line of a stream, padded with `x` to `len` bytes.
pub fn line(stream: &str, n: usize, len: usize) -> String {
    let mut line = format!("{stream} line {n:07} ");
    while line.len() < len {
        line.push('x');
    }
    line
}

//! A local model of the io.net CaaS logs API (seed 000 and providers.md §1), for
//! ferry's tests, benchmarks and demos, on the shared `sim_server`.
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
//! Faults ([`Fault`]), queued with `push_fault` (of `sim_server::Sim`) and taken one per log
//! request.
//!
//! Run it by hand: `cargo run --example ionet_sim -- [LINES]` prints its URL, API key
//! and deployment id, then serves two containers until Ctrl-C.

#![allow(dead_code)]

#[path = "sim_server.rs"]
mod sim_server;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

#[allow(unused_imports)] // for the tests; the benchmark queues no fault
pub use sim_server::Fault;
use sim_server::{
    Configured, Flow, Frames, HasStdFiles, Seen, Server, Sim, StdFiles, StreamSpec, header_str,
    json,
};

pub const PREFIX: &str = "/enterprise/v1/io-cloud/caas";

/// How log lines are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `data: <line>` events (with `id:` when [`SimConfig::ids`]).
    Sse,
    /// The lines as they are, `\n`-terminated.
    Bare,
}

sim_server::sim_config! {
    pub api_key: String = "io-test-key-5f2b".into(),
    pub deployment_id: String = "6f1c2a4e-93b7-4d0e-8a55-1c9e2f7b3d10".into(),
    pub framing: Framing = Framing::Sse,
    pub ids: bool = true,
    pub honour_offset: bool = true,
    /// Keep the stream open at the end of the data (waiting for more) instead of
    /// ending the response.
    pub follow: bool = true,
    /// Idle time before a `: keepalive` comment.
    pub keepalive: Duration = Duration::from_secs(15),
    /// A `retry:` value (ms) sent at the start of every stream.
    pub retry_ms: Option<u64> = None,
}

/// A log request as the simulator saw it.
pub type Request = Seen<LogRequest>;

/// What a log request asked for.
#[derive(Debug, Clone)]
pub struct LogRequest {
    pub container: String,
    pub stream: String,
    pub offset: Option<u64>,
}

#[derive(Debug)]
struct Container {
    status: String,
    device_id: String,
    events: Vec<(String, String)>,
    files: StdFiles,
}

#[derive(Default)]
pub struct IonetState {
    config: SimConfig,
    key_expired: bool,
    containers: BTreeMap<String, Container>,
}

/// Lines are appended to a container's stream (`stdout` or `stderr`) with
/// `append` (of `sim_server::Server`).
impl HasStdFiles for IonetState {
    fn std_files(&mut self, container: &str) -> &mut StdFiles {
        &mut self
            .containers
            .get_mut(container)
            .expect("unknown container")
            .files
    }
}

const CONTAINERS_ROUTE: &str = "/containers";
const LOG_ROUTE: &str = "/log/";

sim_server::simulator!(
    /// A running simulator (see [`Server`] for `url`, `config`, `set_config`);
    /// stops when dropped.
    IonetSim(IonetState) {
        &format!("{PREFIX}/deployment/{{deployment_id}}{CONTAINERS_ROUTE}") => get(containers),
        &format!("{PREFIX}/deployment/{{deployment_id}}{LOG_ROUTE}{{container_id}}") => get(logs),
    }
);

impl IonetSim {
    /// Adds (or updates the status of) a container.
    pub fn add_container(&self, id: &str, status: &str, device_id: &str) {
        self.sim.update(|s| {
            let container = s
                .containers
                .entry(id.to_string())
                .or_insert_with(|| Container {
                    status: String::new(),
                    device_id: device_id.to_string(),
                    events: Vec::new(),
                    files: StdFiles::default(),
                });
            container.status = status.to_string();
        });
    }

    pub fn remove_container(&self, id: &str) {
        self.sim.update(|s| s.containers.remove(id));
    }

    /// Adds a lifecycle event (`time` RFC 3339).
    pub fn add_event(&self, container: &str, time: &str, message: &str) {
        if let Some(c) = self.sim.lock().containers.get_mut(container) {
            c.events.push((time.to_string(), message.to_string()));
        }
    }

    /// Makes the API key expire (401 on every request) or valid again.
    pub fn expire_key(&self, expired: bool) {
        self.sim.lock().key_expired = expired;
    }

    /// The log requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.sim.requests_as(|seen| {
            let view = seen.path.contains(LOG_ROUTE).then(|| LogRequest {
                container: seen.path.rsplit('/').next().unwrap_or("").to_string(),
                stream: seen.param("stream").unwrap_or_else(|| "stdout".into()),
                offset: seen.param("offset").and_then(|o| o.parse().ok()),
            })?;
            Some(seen.with(view))
        })
    }

    /// Requests of the containers list so far.
    pub fn list_requests(&self) -> usize {
        self.sim
            .count_requests(|seen| seen.path.ends_with(CONTAINERS_ROUTE))
    }
}

fn detail(status: StatusCode, message: &str) -> Response {
    json(status, serde_json::json!({ "detail": message }))
}

fn validation(loc: &[&str], msg: &str, kind: &str) -> Response {
    json(
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
fn check(state: &IonetState, headers: &HeaderMap, deployment_id: &str) -> Option<Response> {
    let Some(key) = header_str(headers, "x-api-key") else {
        return Some(validation(
            &["header", "x-api-key"],
            "field required",
            "value_error.missing",
        ));
    };
    if key != state.config.api_key {
        return Some(detail(
            StatusCode::UNAUTHORIZED,
            &format!("Invalid API key {key}"),
        ));
    }
    if state.key_expired {
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
    if deployment_id != state.config.deployment_id {
        return Some(detail(StatusCode::NOT_FOUND, "Not Found"));
    }
    None
}

async fn containers(
    Call { sim, headers, .. }: Call,
    Path(deployment_id): Path<String>,
) -> Response {
    let state = sim.lock();
    if let Some(error) = check(&state, &headers, &deployment_id) {
        return error;
    }
    let workers: Vec<serde_json::Value> = state
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
    json(
        StatusCode::OK,
        serde_json::json!({ "data": { "total": workers.len(), "workers": workers } }),
    )
}

async fn logs(
    Call { sim, uri, headers }: Call,
    Path((deployment_id, container_id)): Path<(String, String)>,
) -> Response {
    let param = |name: &str| sim_server::query_param(&uri, name);
    let stream = param("stream").unwrap_or_else(|| "stdout".into());
    let offset = param("offset").map(|o| o.parse::<u64>());
    let state = sim.lock();
    let error = check(&state, &headers, &deployment_id)
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
            (!state.containers.contains_key(&container_id))
                .then(|| detail(StatusCode::NOT_FOUND, "Not Found"))
        });
    if let Some(error) = error {
        return error;
    }
    let fault = sim.next_fault();
    if let Some(response) = fault
        .as_ref()
        .and_then(|f| f.answer(|status| detail(status, "Too many requests, slow down")))
    {
        return response;
    }
    let start = match offset {
        Some(Ok(offset)) if state.config.honour_offset => offset,
        _ => 0,
    };
    let config = state.config.clone();
    drop(state);
    let mut spec = StreamSpec::new(fault).keepalive(config.keepalive, b": keepalive\n\n");
    spec.preamble = config
        .retry_ms
        .map(|retry| Bytes::from(format!("retry: {retry}\n\n")));
    let mut next_line = None;
    let feed = move |state: &IonetState, frames: &mut Frames| {
        let Some(c) = state.containers.get(&container_id) else {
            return Flow::End;
        };
        let file = c.files.file(&stream);
        let (bytes, lines) = (file.bytes(), file.lines());
        let mut index =
            *next_line.get_or_insert_with(|| lines.partition_point(|(s, _)| *s < start));
        while index < lines.len() && !frames.is_full() {
            let (line_start, len) = lines[index];
            let line = &bytes[line_start as usize..line_start as usize + len as usize];
            frames.with(|chunk| match config.framing {
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
            });
            index += 1;
        }
        next_line = Some(index);
        if config.follow || index < lines.len() {
            Flow::More
        } else {
            Flow::End
        }
    };
    sim_server::stream_body(sim, "text/event-stream", spec, feed)
}

/// The `n`th test line of a stream, padded with `x` to `len` bytes.
pub fn line(stream: &str, n: usize, len: usize) -> String {
    let mut line = format!("{stream} line {n:07} ");
    while line.len() < len {
        line.push('x');
    }
    line
}

//! A local model of the DC/OS Logging API v2 (seed 004 and providers.md §5), for
//! ferry's tests and demos, on the shared `sim_server`.
//!
//! - `POST /acs/api/v1/auth/login`: `{"uid","password"}` or `{"uid","token"}` (an
//!   RS256 JWT signed with a registered service account key) → `{"token"}`, a JWT
//!   whose `exp` is [`SimConfig::token_ttl`] away (none by default).
//! - Every other route wants `Authorization: token=<token>` (the static token or one
//!   from a login): 401 otherwise, as Admin Router answers.
//! - `GET /system/v1/logs/v2/component[/{unit}]`: a journal model (ordered entries,
//!   synthetic cursors `s=…;i=<seq>;b=…;m=…;t=<realtime>;x=…`), matching `UNIT` or
//!   `_SYSTEMD_UNIT`; `cursor` (exclusive, `BEG`, `END`), `skip`, `limit`, repeatable
//!   `filter=KEY:value` (400 on a bad one), `Last-Event-ID` overriding `cursor`, an
//!   unknown cursor → 500 "unable to open journald" (or 400, by config); by
//!   `Accept`: SSE following
//!   forever with `: ping` keepalives, NDJSON (204 when nothing matches), or text.
//! - `GET /system/v1/logs/v2/task/{id}[/file/{file}]` → 303 to the agent route
//!   `/system/v1/agent/{agent}/logs/v2/task/frameworks/{fw}/executors/{ex}/runs/{container}/{file}`
//!   which serves a growing byte file: SSE lines with `id` = the byte offset of the
//!   line's end (none for the line at offset 0), no keepalive, `Last-Event-ID` (a
//!   byte offset) overriding `cursor`/`skip`; any other `Accept` gets the raw text.
//!   A file can be truncated ([`DcosSim::truncate_task_file`]); a reader past its
//!   end waits, as dcos-log's does.
//! - `GET /system/v1/logs/v2/task/{id}/browse` → 303 to the agent's
//!   `…/runs/{container}/files/browse`: the sandbox listing (Mesos `/files/browse`
//!   entries with `path` and `size`).
//! - `GET /mesos/master/state`: frameworks with their `tasks` and `completed_tasks`.
//!
//! Faults ([`Fault`]), queued with `push_fault` (of `sim_server::Sim`) and taken one per SSE
//! request. Also [`DcosSim::expire_tokens`] and [`DcosSim::rotate_journal`] (every
//! saved cursor becomes unknown).
//!
//! Run it by hand: `cargo run --example dcos_sim` prints its URL and token, then
//! serves a journal and a task that grow every second until Ctrl-C.

#![allow(dead_code)]

#[path = "sim_server.rs"]
mod sim_server;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use sim_server::Fault;
use sim_server::{
    Configured, Flow, Frames, HasStdFiles, Seen, Server, Sim, StdFiles, StreamSpec, Tokens,
    accepts, header_str, json, query, text,
};

sim_server::sim_config! {
    /// A token accepted on every route (as if obtained earlier).
    pub token: String = "eyJhbGciOiJSUzI1NiJ9.static.sig".into(),
    /// Local users: uid → password.
    pub users: BTreeMap<String, String> =
        BTreeMap::from([("ferry".to_string(), "hunter2-dcos".to_string())]),
    /// Service accounts: uid → public key (DER, PKCS#1 RSAPublicKey).
    pub service_accounts: BTreeMap<String, Vec<u8>> = BTreeMap::new(),
    /// Lifetime of the tokens a login issues (`None`: until expired by hand).
    pub token_ttl: Option<Duration> = None,
    /// Idle time before a `: ping` on component streams.
    pub keepalive: Duration = Duration::from_secs(15),
    pub hostname: String = "master-1.cluster.local".into(),
    /// The status an unknown cursor gets: 500 as dcos-log answers, or 400 (a bad
    /// `cursor`, as providers.md also lists).
    pub refused_cursor_status: StatusCode = StatusCode::INTERNAL_SERVER_ERROR,
}

/// A request to a log route, as the simulator saw it.
pub type Request = Seen<LogRequest>;

/// How a log request asked to resume.
#[derive(Debug, Clone)]
pub struct LogRequest {
    pub last_event_id: Option<String>,
}

#[derive(Debug, Clone)]
struct JournalEntry {
    realtime: u64,
    monotonic: u64,
    fields: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Task {
    agent: String,
    framework: String,
    executor: String,
    container: String,
    state: String,
    files: StdFiles,
}

impl HasStdFiles for DcosState {
    fn std_files(&mut self, id: &str) -> &mut StdFiles {
        &mut self.tasks.get_mut(id).expect("unknown task").files
    }
}

impl Task {
    fn agent_route(&self) -> String {
        format!(
            "/system/v1/agent/{}/logs/v2/task/frameworks/{}/executors/{}/runs/{}",
            self.agent, self.framework, self.executor, self.container
        )
    }
}

#[derive(Default)]
pub struct DcosState {
    config: SimConfig,
    journal: Vec<JournalEntry>,
    generation: u32,
    tasks: BTreeMap<String, Task>,
    tokens: Tokens,
    static_expired: bool,
}

const LOGIN_ROUTE: &str = "/acs/api/v1/auth/login";
const BOOT: &str = "637573ba91ae4008b58eaa9505a11f86";
const REALTIME_START: u64 = 1_763_600_000_000_000;
const AGENT_ROUTE: &str =
    "/system/v1/agent/{agent}/logs/v2/task/frameworks/{fw}/executors/{ex}/runs/{container}";

sim_server::simulator!(
    /// A running simulator (see [`Server`] for `url`, `config`, `set_config`);
    /// stops when dropped.
    DcosSim(DcosState) {
        LOGIN_ROUTE => post(login),
        "/mesos/master/state" => get(mesos_state),
        "/system/v1/logs/v2/component" => get(component),
        "/system/v1/logs/v2/component/{name}" => get(component),
        "/system/v1/logs/v2/task/{task}" => redirect(Some("stdout")),
        "/system/v1/logs/v2/task/{task}/file/{file}" => redirect(None),
        "/system/v1/logs/v2/task/{task}/browse" => redirect(Some("files/browse")),
        &format!("{AGENT_ROUTE}/files/browse") => get(agent_browse),
        &format!("{AGENT_ROUTE}/{{file}}") => get(agent_file),
    }
);

impl DcosSim {
    /// Appends journal entries for `unit`: (PRIORITY, MESSAGE) pairs.
    pub fn journal<S: AsRef<str>>(&self, unit: &str, entries: impl IntoIterator<Item = (u8, S)>) {
        self.sim.update(|s| {
            let hostname = s.config.hostname.clone();
            for (priority, message) in entries {
                let seq = s.journal.len() as u64;
                let fields = BTreeMap::from([
                    ("MESSAGE".to_string(), message.as_ref().to_string()),
                    ("PRIORITY".to_string(), priority.to_string()),
                    (
                        "SYSLOG_IDENTIFIER".to_string(),
                        unit.trim_end_matches(".service").to_string(),
                    ),
                    ("UNIT".to_string(), unit.to_string()),
                    ("_SYSTEMD_UNIT".to_string(), unit.to_string()),
                    ("_HOSTNAME".to_string(), hostname.clone()),
                    ("_PID".to_string(), (1000 + seq % 7).to_string()),
                    ("_TRANSPORT".to_string(), "journal".to_string()),
                    ("_BOOT_ID".to_string(), BOOT.to_string()),
                ]);
                s.journal.push(JournalEntry {
                    realtime: REALTIME_START + seq * 1000,
                    monotonic: 29_993_006_955 + seq * 1000,
                    fields,
                });
            }
        });
    }

    /// Adds a running task; its files start empty.
    pub fn add_task(&self, id: &str, agent: &str) {
        self.sim.update(|s| {
            s.tasks.insert(
                id.to_string(),
                Task {
                    agent: agent.to_string(),
                    framework: "4f4d0e2b-5c1e-4c8f-9d8e-2a4b5c6d7e8f-0001".to_string(),
                    executor: id.to_string(),
                    container: format!("c1f5-{}", id.len()),
                    state: "TASK_RUNNING".to_string(),
                    files: StdFiles::default(),
                },
            )
        });
    }

    /// Sets a task's Mesos state (`TASK_FINISHED`, …); terminal tasks are listed
    /// under `completed_tasks`.
    pub fn set_task_state(&self, id: &str, state: &str) {
        if let Some(task) = self.sim.lock().tasks.get_mut(id) {
            task.state = state.to_string();
        }
    }

    /// Appends lines to a task's `stdout` or `stderr`.
    pub fn task_lines<S: AsRef<str>>(
        &self,
        id: &str,
        file: &str,
        lines: impl IntoIterator<Item = S>,
    ) {
        self.append(id, file, lines);
    }

    /// Empties a task's file, as logrotate's copytruncate does.
    pub fn truncate_task_file(&self, id: &str, file: &str) {
        self.sim
            .update(|s| s.std_files(id).file_mut(file).truncate());
    }

    /// Every token issued so far, and the static one, stop working.
    pub fn expire_tokens(&self) {
        let mut state = self.sim.lock();
        state.tokens.expire_all();
        state.static_expired = true;
    }

    /// The journal's cursors all change (as after a vacuum or a new machine id).
    pub fn rotate_journal(&self) {
        self.sim.lock().generation += 1;
    }

    /// The requests to log routes so far (sandbox listings aside).
    pub fn requests(&self) -> Vec<Request> {
        self.sim.requests_as(|seen| {
            let log = seen.path.contains("/logs/v2/") && !seen.path.ends_with("/browse");
            let view = log.then(|| LogRequest {
                last_event_id: seen.header("last-event-id").map(str::to_string),
            })?;
            Some(seen.with(view))
        })
    }

    /// Sandbox listings (`…/browse`) asked for so far.
    pub fn browse_requests(&self) -> usize {
        self.sim
            .count_requests(|seen| seen.path.ends_with("/browse"))
    }

    /// Requests to `/mesos/master/state` refused (401) so far.
    pub fn state_requests_refused(&self) -> usize {
        self.sim
            .count_requests(|seen| seen.path == "/mesos/master/state" && seen.status == 401)
    }

    /// Requests to `/mesos/master/state` so far.
    pub fn state_requests(&self) -> usize {
        self.sim
            .count_requests(|seen| seen.path == "/mesos/master/state")
    }

    /// Logins answered so far.
    pub fn logins(&self) -> usize {
        self.sim
            .count_requests(|seen| seen.path == LOGIN_ROUTE && seen.status == 200)
    }
}

fn unauthorized() -> Response {
    json(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({"title": "Unauthorized", "description": "The authentication token is missing, invalid or expired.", "code": "ERR_INVALID_TOKEN"}),
    )
}

impl DcosState {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) =
            header_str(headers, "authorization").and_then(|v| v.strip_prefix("token="))
        else {
            return false;
        };
        (token == self.config.token && !self.static_expired) || self.tokens.valid(token)
    }

    fn cursor(&self, index: usize) -> String {
        let entry = &self.journal[index];
        format!(
            "s=f78aeb5184144e2a94963a42b0ca{:04x};i={:x};b={BOOT};m={:x};t={:x};x={:016x}",
            self.generation,
            index + 1,
            entry.monotonic,
            entry.realtime,
            (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        )
    }

    fn entry_json(&self, index: usize) -> String {
        let entry = &self.journal[index];
        serde_json::json!({
            "fields": entry.fields,
            "cursor": self.cursor(index),
            "monotonic_timestamp": entry.monotonic,
            "realtime_timestamp": entry.realtime,
        })
        .to_string()
    }
}

/// The fault an SSE request takes, or the answer of a status fault.
fn take_fault(sim: &Shared) -> (Option<Fault>, Option<Response>) {
    let fault = sim.next_fault();
    let answer = fault
        .as_ref()
        .and_then(|f| f.answer(|status| text(status, "Service temporarily unavailable")));
    (fault, answer)
}

async fn login(Call { sim, .. }: Call, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"title": "Bad Request", "description": "Request has bad JSON", "code": "ERR_MALFORMED_DATA"}),
        );
    };
    let uid = request["uid"].as_str().unwrap_or_default().to_string();
    let mut state = sim.lock();
    let ok = match (request["password"].as_str(), request["token"].as_str()) {
        (Some(password), _) => state.config.users.get(&uid).is_some_and(|p| p == password),
        (None, Some(jwt)) => state
            .config
            .service_accounts
            .get(&uid)
            .is_some_and(|key| verify_service_jwt(jwt, &uid, key)),
        (None, None) => false,
    };
    if !ok {
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"title": "Unauthorized", "description": "Login failed: wrong uid or credentials", "code": "ERR_INVALID_CREDENTIALS"}),
        );
    }
    let ttl = state.config.token_ttl;
    let token = state.tokens.issue(&uid, ttl);
    json(StatusCode::OK, serde_json::json!({ "token": token }))
}

fn verify_service_jwt(jwt: &str, uid: &str, public_key: &[u8]) -> bool {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    let Ok(signature) = URL_SAFE_NO_PAD.decode(parts[2]) else {
        return false;
    };
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    );
    if key
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .is_err()
    {
        return false;
    }
    let Ok(claims) = URL_SAFE_NO_PAD.decode(parts[1]) else {
        return false;
    };
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap_or_default();
    claims["uid"] == uid
        && claims["exp"]
            .as_u64()
            .is_some_and(|exp| exp > sim_server::unix_now())
}

async fn mesos_state(Call { sim, headers, .. }: Call) -> Response {
    let state = sim.lock();
    if !state.authorized(&headers) {
        return unauthorized();
    }
    let mut frameworks: BTreeMap<String, (Vec<serde_json::Value>, Vec<serde_json::Value>)> =
        BTreeMap::new();
    for (id, task) in &state.tasks {
        let (active, completed) = frameworks.entry(task.framework.clone()).or_default();
        let list = if task.state == "TASK_RUNNING" || task.state == "TASK_STAGING" {
            active
        } else {
            completed
        };
        list.push(serde_json::json!({
            "id": id, "name": id, "state": task.state, "slave_id": task.agent,
            "framework_id": task.framework, "executor_id": task.executor,
            "statuses": [{"state": task.state, "container_status": {"container_id": {"value": task.container}}}],
        }));
    }
    drop(state);
    let frameworks: Vec<_> = frameworks
        .into_iter()
        .map(|(id, (tasks, completed))| serde_json::json!({"id": id, "name": "marathon", "tasks": tasks, "completed_tasks": completed}))
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({ "frameworks": frameworks }),
    )
}

/// The journal: of the unit `name`, or all of it.
async fn component(
    Call { sim, uri, headers }: Call,
    Path(mut params): Path<HashMap<String, String>>,
) -> Response {
    let unit = params.remove("name");
    let state = sim.lock();
    if !state.authorized(&headers) {
        return unauthorized();
    }
    let mut cursor = None;
    let mut skip: i64 = 0;
    let mut limit: Option<u64> = None;
    let mut filters = Vec::new();
    for (name, value) in query(&uri) {
        match name.as_str() {
            "cursor" => cursor = Some(value),
            "skip" => match value.parse() {
                Ok(v) => skip = v,
                Err(_) => {
                    return text(StatusCode::BAD_REQUEST, "unable to parse skip parameter");
                }
            },
            "limit" => match value.parse() {
                Ok(v) => limit = Some(v),
                Err(_) => {
                    return text(StatusCode::BAD_REQUEST, "unable to parse limit parameter");
                }
            },
            "filter" => match value.split_once(':') {
                Some((key, v)) if !key.is_empty() => {
                    filters.push((key.to_ascii_uppercase(), v.to_string()))
                }
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "incorrect filter parameter format, must be ?filter=key:value. Got {value}"
                        ),
                    );
                }
            },
            _ => {}
        }
    }
    if let Some(id) = header_str(&headers, "last-event-id") {
        cursor = Some(id.to_string());
    }
    let matches = move |entry: &JournalEntry| {
        let unit_ok = unit.as_ref().is_none_or(|u| {
            entry.fields.get("UNIT") == Some(u) || entry.fields.get("_SYSTEMD_UNIT") == Some(u)
        });
        unit_ok && filters.iter().all(|(k, v)| entry.fields.get(k) == Some(v))
    };
    let matching: Vec<usize> = (0..state.journal.len())
        .filter(|i| matches(&state.journal[*i]))
        .collect();
    let mut position: i64 = match cursor.as_deref() {
        // Without a cursor, a negative skip counts back from the end ("the last N").
        None if skip < 0 => matching.len() as i64,
        None | Some("BEG") => 0,
        Some("END") => matching.len() as i64 - 1,
        Some(cursor) => match (0..state.journal.len()).find(|i| state.cursor(*i) == cursor) {
            Some(index) => matching.iter().filter(|m| **m <= index).count() as i64,
            None => {
                return text(
                    state.config.refused_cursor_status,
                    &format!("unable to open journald: cannot seek to cursor {cursor}"),
                );
            }
        },
    };
    position = (position + skip).clamp(0, matching.len() as i64);
    let start = matching
        .get(position as usize)
        .copied()
        .unwrap_or(state.journal.len());
    if !accepts(&headers, "text/event-stream") {
        let wanted: Vec<usize> = matching[position as usize..]
            .iter()
            .copied()
            .take(limit.map_or(usize::MAX, |l| l as usize))
            .collect();
        if accepts(&headers, "application/json") {
            if wanted.is_empty() {
                return text(StatusCode::NO_CONTENT, "No match found");
            }
            let body: String = wanted.iter().map(|i| state.entry_json(*i) + "\n").collect();
            return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        let body: String = wanted
            .iter()
            .map(|i| {
                let entry = &state.journal[*i];
                let time = chrono::DateTime::from_timestamp_micros(entry.realtime as i64).unwrap();
                format!(
                    "{}: {}\n",
                    time.format("%Y-%m-%d %H:%M:%S"),
                    entry.fields["MESSAGE"]
                )
            })
            .collect();
        return ([(header::CONTENT_TYPE, "text/plain")], body).into_response();
    }
    let (fault, refused) = take_fault(&sim);
    if let Some(response) = refused {
        return response;
    }
    let spec = StreamSpec::new(fault).keepalive(state.config.keepalive, b": ping\n\n");
    drop(state);
    let mut next = start;
    let feed = move |state: &DcosState, frames: &mut Frames| {
        while next < state.journal.len() && !frames.is_full() {
            if matches(&state.journal[next]) {
                frames.push(
                    format!(
                        "id: {}\ndata: {}\n\n",
                        state.cursor(next),
                        state.entry_json(next)
                    )
                    .as_bytes(),
                );
            }
            next += 1;
        }
        Flow::More
    };
    sim_server::stream_body(sim, "text/event-stream", spec, feed)
}

/// A task discovery route: 303 to the task's agent route + `rest`, or + the
/// route's `file`.
fn redirect(rest: Option<&'static str>) -> MethodRouter<Shared> {
    get(
        move |Call { sim, uri, headers }: Call, Path(params): Path<HashMap<String, String>>| async move {
            let rest = rest
                .or(params.get("file").map(String::as_str))
                .unwrap_or_default();
            to_agent(&sim, &params["task"], rest, &headers, &uri)
        },
    )
}

/// The discovery route: 303 to the task's agent route + `rest`, keeping the query.
fn to_agent(sim: &Shared, task_id: &str, rest: &str, headers: &HeaderMap, uri: &Uri) -> Response {
    let state = sim.lock();
    if !state.authorized(headers) {
        unauthorized()
    } else if let Some(task) = state.tasks.get(task_id) {
        let mut location = format!("{}/{rest}", task.agent_route());
        if let Some(query) = uri.query() {
            location.push('?');
            location.push_str(query);
        }
        Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, location)
            .body(Body::empty())
            .unwrap()
    } else {
        text(StatusCode::NOT_FOUND, &format!("Task {task_id} not found"))
    }
}

/// The task an agent route names, if it exists.
fn agent_task<'a>(
    state: &'a DcosState,
    (agent, fw, ex, container): (&str, &str, &str, &str),
) -> Option<(&'a String, &'a Task)> {
    state.tasks.iter().find(|(_, t)| {
        t.agent == agent && t.framework == fw && t.executor == ex && t.container == container
    })
}

async fn agent_browse(
    Call { sim, headers, .. }: Call,
    Path((agent, fw, ex, container)): Path<(String, String, String, String)>,
) -> Response {
    let state = sim.lock();
    if !state.authorized(&headers) {
        unauthorized()
    } else if let Some((_, task)) = agent_task(&state, (&agent, &fw, &ex, &container)) {
        let sandbox = format!(
            "/var/lib/mesos/slave/slaves/{agent}/frameworks/{fw}/executors/{ex}/runs/{container}"
        );
        let files: Vec<serde_json::Value> = ["stderr", "stdout"]
            .iter()
            .map(|name| {
                serde_json::json!({
                    "gid": "root", "mode": "-rw-r--r--", "mtime": 1_763_600_000, "nlink": 1,
                    "path": format!("{sandbox}/{name}"), "size": task.files.file(name).bytes().len(), "uid": "root",
                })
            })
            .collect();
        json(StatusCode::OK, serde_json::Value::Array(files))
    } else {
        text(StatusCode::NOT_FOUND, "task not found")
    }
}

async fn agent_file(
    Call { sim, uri, headers }: Call,
    Path((agent, fw, ex, container, file)): Path<(String, String, String, String, String)>,
) -> Response {
    let state = sim.lock();
    if !state.authorized(&headers) {
        return unauthorized();
    }
    let Some((task_id, task)) = agent_task(&state, (&agent, &fw, &ex, &container)) else {
        return text(StatusCode::NOT_FOUND, "task not found");
    };
    if file != "stdout" && file != "stderr" {
        return text(StatusCode::NO_CONTENT, "File not found");
    }
    let task_id = task_id.clone();
    let bytes = task.files.file(&file).bytes();
    let size = bytes.len() as u64;
    let mut start: u64 = 0;
    let mut skip: i64 = 0;
    for (name, value) in query(&uri) {
        match name.as_str() {
            "cursor" => {
                start = match value.as_str() {
                    "BEG" => 0,
                    "END" => size,
                    v => match v.parse() {
                        Ok(offset) => offset,
                        Err(_) => {
                            return text(
                                StatusCode::BAD_REQUEST,
                                "unable to parse cursor parameter",
                            );
                        }
                    },
                }
            }
            "skip" => skip = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    if skip < 0 {
        let mut lines_back = skip.unsigned_abs();
        let mut at = start.min(size) as usize;
        while lines_back > 0 && at > 0 {
            at -= 1;
            while at > 0 && bytes[at - 1] != b'\n' {
                at -= 1;
            }
            lines_back -= 1;
        }
        start = at as u64;
    }
    if let Some(id) = header_str(&headers, "last-event-id") {
        match id.parse() {
            Ok(offset) => start = offset,
            Err(_) => {
                return text(StatusCode::BAD_REQUEST, "unable to parse Last-Event-ID");
            }
        }
    }
    if !accepts(&headers, "text/event-stream") {
        let body = bytes[(start as usize).min(bytes.len())..].to_vec();
        return ([(header::CONTENT_TYPE, "text/plain")], body).into_response();
    }
    let (fault, refused) = take_fault(&sim);
    if let Some(response) = refused {
        return response;
    }
    drop(state);
    let mut offset = start;
    let feed = move |state: &DcosState, frames: &mut Frames| {
        let Some(t) = state.tasks.get(&task_id) else {
            return Flow::Reset;
        };
        let bytes = t.files.file(&file).bytes();
        while (offset as usize) < bytes.len() && !frames.is_full() {
            let from = offset as usize;
            let Some(len) = bytes[from..].iter().position(|b| *b == b'\n') else {
                break;
            };
            offset += len as u64 + 1;
            if len == 0 {
                continue;
            }
            let message = String::from_utf8_lossy(&bytes[from..from + len]);
            let data = serde_json::json!({"fields": {
                "AGENT_ID": t.agent, "CONTAINER_ID": t.container, "EXECUTOR_ID": t.executor,
                "FILE": file, "FRAMEWORK_ID": t.framework, "MESSAGE": message,
            }});
            let frame = if from == 0 {
                format!("data: {data}\n\n")
            } else {
                format!("id: {}\ndata: {data}\n\n", from + len)
            };
            frames.push(frame.as_bytes());
        }
        Flow::More
    };
    sim_server::stream_body(sim, "text/event-stream", StreamSpec::new(fault), feed)
}

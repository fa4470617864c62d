//! A local model of the DC/OS Logging API v2 (seed 004 and providers.md §5), for
//! ferry's tests and demos.
//!
//! - `POST /acs/api/v1/auth/login`: `{"uid","password"}` or `{"uid","token"}` (an
//!   RS256 JWT signed with a registered service account key) → `{"token"}`.
//! - Every log route wants `Authorization: token=<token>` (the static token or one
//!   from a login): 401 otherwise, as Admin Router answers.
//! - `GET /system/v1/logs/v2/component[/{unit}]`: a journal model (ordered entries,
//!   synthetic cursors `s=…;i=<seq>;b=…;m=…;t=<realtime>;x=…`), matching `UNIT` or
//!   `_SYSTEMD_UNIT`; `cursor` (exclusive, `BEG`, `END`), `skip`, `limit`, repeatable
//!   `filter=KEY:value` (400 on a bad one), `Last-Event-ID` overriding `cursor`, an
//!   unknown cursor → 500 "unable to open journald"; by `Accept`: SSE following
//!   forever with `: ping` keepalives, NDJSON (204 when nothing matches), or text.
//! - `GET /system/v1/logs/v2/task/{id}[/file/{file}]` → 303 to the agent route
//!   `/system/v1/agent/{agent}/logs/v2/task/frameworks/{fw}/executors/{ex}/runs/{container}/{file}`
//!   which serves a growing byte file: SSE lines with `id` = the byte offset of the
//!   line's end (none for the line at offset 0), no keepalive, `Last-Event-ID` (a
//!   byte offset) overriding `cursor`/`skip`; any other `Accept` gets the raw text.
//! - `GET /mesos/master/state`: frameworks and their tasks, for discovery.
//!
//! Faults, queued with [`DcosSim::push_fault`] and consumed one per SSE request:
//! drop mid-event, stall, a status with optional `Retry-After`. Also
//! [`DcosSim::expire_tokens`] and [`DcosSim::rotate_journal`] (every saved cursor
//! becomes unknown).
//!
//! Run it by hand: `cargo run --example dcos_sim` prints its URL and token, then
//! serves a journal and a task that grow every second until Ctrl-C.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::{Notify, mpsc};

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// A token accepted on every route (as if obtained earlier).
    pub token: String,
    /// Local users: uid → password.
    pub users: BTreeMap<String, String>,
    /// Service accounts: uid → public key (DER, PKCS#1 RSAPublicKey).
    pub service_accounts: BTreeMap<String, Vec<u8>>,
    /// Idle time before a `: ping` on component streams.
    pub keepalive: Duration,
    pub hostname: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            token: "eyJhbGciOiJSUzI1NiJ9.static.sig".into(),
            users: BTreeMap::from([("ferry".to_string(), "hunter2-dcos".to_string())]),
            service_accounts: BTreeMap::new(),
            keepalive: Duration::from_secs(15),
            hostname: "master-1.cluster.local".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// Send this many events, then half of the next one, then reset the connection.
    DropAfter(usize),
    /// Send the headers, then nothing for this long.
    Stall(Duration),
    /// Answer with this status and an optional `Retry-After`.
    Status(u16, Option<String>),
}

/// A request to a log route, as the simulator saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub path: String,
    pub query: String,
    pub last_event_id: Option<String>,
    pub status: u16,
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
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

struct Inner {
    config: SimConfig,
    journal: Vec<JournalEntry>,
    generation: u32,
    tasks: BTreeMap<String, Task>,
    issued: BTreeSet<String>,
    static_expired: bool,
    faults: VecDeque<Fault>,
    requests: Vec<Request>,
    logins: usize,
    /// Bumped to cut every open stream.
    epoch: u64,
}

pub struct Sim {
    inner: Mutex<Inner>,
    appended: Notify,
    /// SSE responses still being written.
    open_streams: std::sync::atomic::AtomicUsize,
}

/// Counts an SSE response as open while it lives.
struct OpenStream(Arc<Sim>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0
            .open_streams
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A running simulator; stops when dropped.
pub struct DcosSim {
    pub addr: SocketAddr,
    pub sim: Arc<Sim>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for DcosSim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const BOOT: &str = "637573ba91ae4008b58eaa9505a11f86";
const REALTIME_START: u64 = 1_763_600_000_000_000;

impl DcosSim {
    pub async fn start(config: SimConfig) -> DcosSim {
        let sim = Arc::new(Sim {
            inner: Mutex::new(Inner {
                config,
                journal: Vec::new(),
                generation: 0,
                tasks: BTreeMap::new(),
                issued: BTreeSet::new(),
                static_expired: false,
                faults: VecDeque::new(),
                requests: Vec::new(),
                logins: 0,
                epoch: 0,
            }),
            appended: Notify::new(),
            open_streams: std::sync::atomic::AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/acs/api/v1/auth/login", post(login))
            .route("/mesos/master/state", get(state))
            .route("/system/v1/logs/v2/component", get(component_all))
            .route("/system/v1/logs/v2/component/{name}", get(component_one))
            .route("/system/v1/logs/v2/task/{task}", get(task_discovery_stdout))
            .route("/system/v1/logs/v2/task/{task}/file/{file}", get(task_discovery))
            .route(
                "/system/v1/agent/{agent}/logs/v2/task/frameworks/{fw}/executors/{ex}/runs/{container}/{file}",
                get(agent_file),
            )
            .with_state(Arc::clone(&sim));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind simulator");
        let addr = listener.local_addr().expect("simulator address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        DcosSim { addr, sim, server }
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

    /// Appends journal entries for `unit`: (PRIORITY, MESSAGE) pairs.
    pub fn journal<S: AsRef<str>>(&self, unit: &str, entries: impl IntoIterator<Item = (u8, S)>) {
        {
            let mut inner = self.sim.inner.lock().unwrap();
            let hostname = inner.config.hostname.clone();
            for (priority, message) in entries {
                let seq = inner.journal.len() as u64;
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
                inner.journal.push(JournalEntry {
                    realtime: REALTIME_START + seq * 1000,
                    monotonic: 29_993_006_955 + seq * 1000,
                    fields,
                });
            }
        }
        self.sim.appended.notify_waiters();
    }

    /// Adds a running task; its files start empty.
    pub fn add_task(&self, id: &str, agent: &str) {
        let mut inner = self.sim.inner.lock().unwrap();
        inner.tasks.insert(
            id.to_string(),
            Task {
                agent: agent.to_string(),
                framework: "4f4d0e2b-5c1e-4c8f-9d8e-2a4b5c6d7e8f-0001".to_string(),
                executor: id.to_string(),
                container: format!("c1f5-{}", id.len()),
                state: "TASK_RUNNING".to_string(),
                stdout: Vec::new(),
                stderr: Vec::new(),
            },
        );
    }

    /// Sets a task's Mesos state (`TASK_FINISHED`, …); terminal tasks are listed
    /// under `completed_tasks`.
    pub fn set_task_state(&self, id: &str, state: &str) {
        if let Some(task) = self.sim.inner.lock().unwrap().tasks.get_mut(id) {
            task.state = state.to_string();
        }
    }

    /// SSE responses still open.
    pub fn open_streams(&self) -> usize {
        self.sim
            .open_streams
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Appends lines to a task's `stdout` or `stderr`.
    pub fn task_lines<S: AsRef<str>>(
        &self,
        id: &str,
        file: &str,
        lines: impl IntoIterator<Item = S>,
    ) {
        {
            let mut inner = self.sim.inner.lock().unwrap();
            let task = inner.tasks.get_mut(id).expect("unknown task");
            let bytes = if file == "stderr" {
                &mut task.stderr
            } else {
                &mut task.stdout
            };
            for line in lines {
                bytes.extend_from_slice(line.as_ref().as_bytes());
                bytes.push(b'\n');
            }
        }
        self.sim.appended.notify_waiters();
    }

    pub fn push_fault(&self, fault: Fault) {
        self.sim.inner.lock().unwrap().faults.push_back(fault);
    }

    /// Every token issued so far, and the static one, stop working.
    pub fn expire_tokens(&self) {
        let mut inner = self.sim.inner.lock().unwrap();
        inner.issued.clear();
        inner.static_expired = true;
    }

    /// The journal's cursors all change (as after a vacuum or a new machine id).
    pub fn rotate_journal(&self) {
        self.sim.inner.lock().unwrap().generation += 1;
    }

    /// Resets every open stream (as a restarted Admin Router would).
    pub fn disconnect_all(&self) {
        self.sim.inner.lock().unwrap().epoch += 1;
        self.sim.appended.notify_waiters();
    }

    pub fn requests(&self) -> Vec<Request> {
        self.sim.inner.lock().unwrap().requests.clone()
    }

    pub fn logins(&self) -> usize {
        self.sim.inner.lock().unwrap().logins
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{body}\n"),
    )
        .into_response()
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn unauthorized() -> Response {
    json(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({"title": "Unauthorized", "description": "The authentication token is missing, invalid or expired.", "code": "ERR_INVALID_TOKEN"}),
    )
}

impl Inner {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("token="))
        else {
            return false;
        };
        (token == self.config.token && !self.static_expired) || self.issued.contains(token)
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

    fn record(&mut self, uri: &Uri, headers: &HeaderMap, status: u16) {
        self.requests.push(Request {
            at: Instant::now(),
            path: uri.path().to_string(),
            query: uri.query().unwrap_or("").to_string(),
            last_event_id: headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            status,
        });
    }
}

fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn query(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn login(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"title": "Bad Request", "description": "Request has bad JSON", "code": "ERR_MALFORMED_DATA"}),
        );
    };
    let uid = request["uid"].as_str().unwrap_or_default().to_string();
    let mut inner = sim.inner.lock().unwrap();
    let ok = match (request["password"].as_str(), request["token"].as_str()) {
        (Some(password), _) => inner.config.users.get(&uid).is_some_and(|p| p == password),
        (None, Some(jwt)) => inner
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
    inner.logins += 1;
    let token = format!("eyJhbGciOiJSUzI1NiJ9.login-{}-{uid}.sig", inner.logins);
    inner.issued.insert(token.clone());
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims["uid"] == uid && claims["exp"].as_u64().is_some_and(|exp| exp > now)
}

async fn state(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let inner = sim.inner.lock().unwrap();
    if !inner.authorized(&headers) {
        return unauthorized();
    }
    let mut frameworks: BTreeMap<String, (Vec<serde_json::Value>, Vec<serde_json::Value>)> =
        BTreeMap::new();
    for (id, task) in &inner.tasks {
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
    let frameworks: Vec<_> = frameworks
        .into_iter()
        .map(|(id, (tasks, completed))| serde_json::json!({"id": id, "name": "marathon", "tasks": tasks, "completed_tasks": completed}))
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({ "frameworks": frameworks }),
    )
}

async fn component_all(State(sim): State<Arc<Sim>>, headers: HeaderMap, uri: Uri) -> Response {
    component(sim, None, headers, uri).await
}

async fn component_one(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    component(sim, Some(name), headers, uri).await
}

async fn component(sim: Arc<Sim>, unit: Option<String>, headers: HeaderMap, uri: Uri) -> Response {
    let mut inner = sim.inner.lock().unwrap();
    let refuse = |inner: &mut Inner, response: Response| {
        inner.record(&uri, &headers, response.status().as_u16());
        response
    };
    if !inner.authorized(&headers) {
        return refuse(&mut inner, unauthorized());
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
                    return refuse(
                        &mut inner,
                        text(StatusCode::BAD_REQUEST, "unable to parse skip parameter"),
                    );
                }
            },
            "limit" => match value.parse() {
                Ok(v) => limit = Some(v),
                Err(_) => {
                    return refuse(
                        &mut inner,
                        text(StatusCode::BAD_REQUEST, "unable to parse limit parameter"),
                    );
                }
            },
            "filter" => match value.split_once(':') {
                Some((key, v)) if !key.is_empty() => {
                    filters.push((key.to_ascii_uppercase(), v.to_string()))
                }
                _ => {
                    return refuse(
                        &mut inner,
                        text(
                            StatusCode::BAD_REQUEST,
                            &format!(
                                "incorrect filter parameter format, must be ?filter=key:value. Got {value}"
                            ),
                        ),
                    );
                }
            },
            _ => {}
        }
    }
    if let Some(id) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        cursor = Some(id.to_string());
    }
    let matches = {
        let unit = unit.clone();
        let filters = filters.clone();
        move |entry: &JournalEntry| {
            let unit_ok = unit.as_ref().is_none_or(|u| {
                entry.fields.get("UNIT") == Some(u) || entry.fields.get("_SYSTEMD_UNIT") == Some(u)
            });
            unit_ok && filters.iter().all(|(k, v)| entry.fields.get(k) == Some(v))
        }
    };
    let matching: Vec<usize> = (0..inner.journal.len())
        .filter(|i| matches(&inner.journal[*i]))
        .collect();
    let mut position: i64 = match cursor.as_deref() {
        // Without a cursor, a negative skip counts back from the end ("the last N").
        None if skip < 0 => matching.len() as i64,
        None | Some("BEG") => 0,
        Some("END") => matching.len() as i64 - 1,
        Some(cursor) => match (0..inner.journal.len()).find(|i| inner.cursor(*i) == cursor) {
            Some(index) => matching.iter().filter(|m| **m <= index).count() as i64,
            None => {
                return refuse(
                    &mut inner,
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("unable to open journald: cannot seek to cursor {cursor}"),
                    ),
                );
            }
        },
    };
    position = (position + skip).clamp(0, matching.len() as i64);
    let start = matching
        .get(position as usize)
        .copied()
        .unwrap_or(inner.journal.len());
    if !wants_sse(&headers) {
        let wanted: Vec<usize> = matching[position as usize..]
            .iter()
            .copied()
            .take(limit.map_or(usize::MAX, |l| l as usize))
            .collect();
        if wants_json(&headers) {
            if wanted.is_empty() {
                return refuse(&mut inner, text(StatusCode::NO_CONTENT, "No match found"));
            }
            let body: String = wanted.iter().map(|i| inner.entry_json(*i) + "\n").collect();
            inner.record(&uri, &headers, 200);
            return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        let body: String = wanted
            .iter()
            .map(|i| {
                let entry = &inner.journal[*i];
                let time = chrono::DateTime::from_timestamp_micros(entry.realtime as i64).unwrap();
                format!(
                    "{}: {}\n",
                    time.format("%Y-%m-%d %H:%M:%S"),
                    entry.fields["MESSAGE"]
                )
            })
            .collect();
        inner.record(&uri, &headers, 200);
        return ([(header::CONTENT_TYPE, "text/plain")], body).into_response();
    }
    let fault = inner.faults.pop_front();
    if let Some(Fault::Status(code, retry_after)) = fault {
        let mut response = text(
            StatusCode::from_u16(code).unwrap(),
            "Service temporarily unavailable",
        );
        if let Some(value) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, value.parse().unwrap());
        }
        return refuse(&mut inner, response);
    }
    inner.record(&uri, &headers, 200);
    let keepalive = inner.config.keepalive;
    drop(inner);
    let feed = Feed::Journal {
        next: start,
        matches: Box::new(matches),
    };
    sse_response(sim, feed, fault, Some(keepalive))
}

async fn task_discovery_stdout(
    State(sim): State<Arc<Sim>>,
    Path(task): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    redirect(sim, task, "stdout".into(), headers, uri)
}

async fn task_discovery(
    State(sim): State<Arc<Sim>>,
    Path((task, file)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    redirect(sim, task, file, headers, uri)
}

fn redirect(
    sim: Arc<Sim>,
    task_id: String,
    file: String,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let mut inner = sim.inner.lock().unwrap();
    let response = if !inner.authorized(&headers) {
        unauthorized()
    } else if let Some(task) = inner.tasks.get(&task_id) {
        let mut location = format!(
            "/system/v1/agent/{}/logs/v2/task/frameworks/{}/executors/{}/runs/{}/{file}",
            task.agent, task.framework, task.executor, task.container
        );
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
    };
    inner.record(&uri, &headers, response.status().as_u16());
    response
}

async fn agent_file(
    State(sim): State<Arc<Sim>>,
    Path((agent, fw, ex, container, file)): Path<(String, String, String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let mut inner = sim.inner.lock().unwrap();
    if !inner.authorized(&headers) {
        let response = unauthorized();
        inner.record(&uri, &headers, 401);
        return response;
    }
    let task = inner.tasks.iter().find(|(_, t)| {
        t.agent == agent && t.framework == fw && t.executor == ex && t.container == container
    });
    let Some((task_id, task)) = task else {
        inner.record(&uri, &headers, 404);
        return text(StatusCode::NOT_FOUND, "task not found");
    };
    if file != "stdout" && file != "stderr" {
        inner.record(&uri, &headers, 204);
        return text(StatusCode::NO_CONTENT, "File not found");
    }
    let task_id = task_id.clone();
    let bytes = if file == "stderr" {
        &task.stderr
    } else {
        &task.stdout
    };
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
                            inner.record(&uri, &headers, 400);
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
    if let Some(id) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        match id.parse() {
            Ok(offset) => start = offset,
            Err(_) => {
                inner.record(&uri, &headers, 400);
                return text(StatusCode::BAD_REQUEST, "unable to parse Last-Event-ID");
            }
        }
    }
    if !wants_sse(&headers) {
        let body = bytes[(start as usize).min(bytes.len())..].to_vec();
        inner.record(&uri, &headers, 200);
        return ([(header::CONTENT_TYPE, "text/plain")], body).into_response();
    }
    let fault = inner.faults.pop_front();
    if let Some(Fault::Status(code, retry_after)) = fault {
        let mut response = text(
            StatusCode::from_u16(code).unwrap(),
            "Service temporarily unavailable",
        );
        if let Some(value) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, value.parse().unwrap());
        }
        inner.record(&uri, &headers, code);
        return response;
    }
    inner.record(&uri, &headers, 200);
    drop(inner);
    let feed = Feed::Task {
        task: task_id,
        file,
        offset: start,
    };
    sse_response(sim, feed, fault, None)
}

/// What an SSE response reads from.
enum Feed {
    Journal {
        next: usize,
        matches: Box<dyn Fn(&JournalEntry) -> bool + Send>,
    },
    Task {
        task: String,
        file: String,
        offset: u64,
    },
}

impl Feed {
    /// The next frames (at most ~32 KiB); `None` if the task is gone.
    fn frames(&mut self, inner: &Inner) -> Option<Vec<Vec<u8>>> {
        let mut frames = Vec::new();
        let mut size = 0;
        match self {
            Feed::Journal { next, matches } => {
                while *next < inner.journal.len() && size < 32 * 1024 {
                    if matches(&inner.journal[*next]) {
                        let frame = format!(
                            "id: {}\ndata: {}\n\n",
                            inner.cursor(*next),
                            inner.entry_json(*next)
                        )
                        .into_bytes();
                        size += frame.len();
                        frames.push(frame);
                    }
                    *next += 1;
                }
            }
            Feed::Task { task, file, offset } => {
                let t = inner.tasks.get(task)?;
                let bytes = if file == "stderr" {
                    &t.stderr
                } else {
                    &t.stdout
                };
                while (*offset as usize) < bytes.len() && size < 32 * 1024 {
                    let from = *offset as usize;
                    let Some(len) = bytes[from..].iter().position(|b| *b == b'\n') else {
                        break;
                    };
                    *offset += len as u64 + 1;
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
                    size += frame.len();
                    frames.push(frame.into_bytes());
                }
            }
        }
        Some(frames)
    }
}

fn sse_response(
    sim: Arc<Sim>,
    feed: Feed,
    fault: Option<Fault>,
    keepalive: Option<Duration>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::spawn(write_stream(sim, feed, fault, keepalive, tx));
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(body)
        .unwrap()
}

async fn write_stream(
    sim: Arc<Sim>,
    mut feed: Feed,
    fault: Option<Fault>,
    keepalive: Option<Duration>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    sim.open_streams
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _open = OpenStream(Arc::clone(&sim));
    if let Some(Fault::Stall(duration)) = fault {
        tokio::time::sleep(duration).await;
    }
    let mut drop_after = match fault {
        Some(Fault::DropAfter(n)) => Some(n),
        _ => None,
    };
    let epoch = sim.inner.lock().unwrap().epoch;
    loop {
        let notified = sim.appended.notified();
        let frames = {
            let inner = sim.inner.lock().unwrap();
            if inner.epoch == epoch {
                feed.frames(&inner)
            } else {
                None
            }
        };
        let Some(frames) = frames else {
            let _ = tx
                .send(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "disconnected",
                )))
                .await;
            return;
        };
        if !frames.is_empty() {
            let mut chunk = Vec::new();
            let mut cut = false;
            for frame in frames {
                if drop_after == Some(0) {
                    chunk.extend_from_slice(&frame[..frame.len() / 2]);
                    cut = true;
                    break;
                }
                if let Some(left) = drop_after.as_mut() {
                    *left -= 1;
                }
                chunk.extend_from_slice(&frame);
            }
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
            if cut {
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
        match keepalive {
            Some(every) => tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(every) => {
                    if tx.send(Ok(Bytes::from_static(b": ping\n\n"))).await.is_err() {
                        return;
                    }
                }
            },
            None => tokio::select! {
                () = notified => {}
                () = tx.closed() => return,
            },
        }
    }
}

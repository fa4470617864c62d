//! A local model of ByteNite's jobs API (seed 002 and providers.md §3), for
//! ferry's tests, benchmarks and demos, on the shared `sim_server`.
//!
//! - `POST /v1/auth/access_token` `{"apiKey"}` → `{"token","expiresIn","scope"}`;
//!   the token stops working after [`SimConfig::token_ttl`], and `expiresIn` is
//!   its lifetime in seconds as a JSON string (proto3's int64), or a number with
//!   [`SimConfig::expires_in_number`]. A wrong key → 401 `rpcStatus` echoing it
//!   (clients must scrub it).
//! - Every other route wants `Authorization: <token>`, raw: a `Bearer ` prefix is
//!   refused with 401 (unless [`SimConfig::accept_bearer`]), as is an expired or
//!   unknown token.
//! - `GET /v1/customer/jobs?pagination.limit&pagination.offset` → `{"pagination":
//!   {"total","offset","hasPrevious","hasNext"},"data":[job…]}`, newest job first;
//!   `GET /v1/customer/jobs/{id}` → `{"job":{…},"templateInfo":{…}}`. A job's
//!   `state` goes `JOB_STATE_NEW` → `JOB_STATE_RUNNING` → `JOB_STATE_COMPLETE`,
//!   gaining `startedAt` and `endedAt` on the way.
//! - `POST /v1/customer/logs` `{"jobId","taskIds","levels","services"}` (enum
//!   names or numbers; 400 on an unknown one or a missing `jobId`, 404 on an
//!   unknown job) → every matching line so far: `partitioner`, `assembler`, and
//!   `taskrunner` by task id; newest first ([`SimConfig::newest_first`]); empty
//!   arrays, empty strings and `UNKNOWN` levels left out as grpc-gateway does
//!   ([`SimConfig::omit_empty`]); levels as names or numbers
//!   ([`SimConfig::level_numbers`]); timestamps with the fractional digits of
//!   [`SimConfig::fraction_digits`], in turn. Lines may be appended after the job
//!   has ended (ingestion lag). Answers may wait [`SimConfig::answer_delay`]
//!   before their first byte; [`ByteniteSim::most_logs_in_flight`] is the most
//!   answers open at once.
//!
//! Faults ([`Fault`]) are taken one per logs request: a status (with
//! `Retry-After`), an answer cut after N lines (`DropAfter`: reset; `CloseAfter`:
//! the body ends early), a stall. `set_error_rate` (of `sim_server::Sim`) answers a share
//! of logs requests with a random 5xx.
//!
//! Run it by hand: `cargo run --example bytenite_sim` prints its URL and API key,
//! then serves a job whose tasks log every second until Ctrl-C.

#![allow(dead_code)]

#[path = "sim_server.rs"]
mod sim_server;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat};
use serde::Deserialize;
use serde_json::{Value, json};

#[allow(unused_imports)] // for the tests; the benchmark queues no fault
pub use sim_server::Fault;
use sim_server::{Configured, Flow, Frames, Seen, Server, Sim, StreamSpec, Tokens, header_str};

/// `logsLogLevel`, in enum order.
pub const LEVELS: [&str; 8] = [
    "UNKNOWN", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "PANIC",
];
/// `logsLogService`, in enum order.
pub const SERVICES: [&str; 3] = ["PARTITIONER", "ASSEMBLER", "TASKRUNNER"];

sim_server::sim_config! {
    pub api_key: String = "bn-key-eyJjcnYiOiJQLTM4NCIs-7f3a".into(),
    /// Lifetime of the access tokens issued.
    pub token_ttl: Duration = Duration::from_secs(3600),
    /// `expiresIn` as a JSON number rather than proto3's string.
    pub expires_in_number: bool = false,
    /// Accept `Authorization: Bearer <token>` as well.
    pub accept_bearer: bool = false,
    /// List lines newest first (ByteNite's order) rather than oldest first.
    pub newest_first: bool = true,
    /// Leave out empty arrays and strings and `UNKNOWN` levels.
    pub omit_empty: bool = true,
    /// Write levels as enum numbers.
    pub level_numbers: bool = false,
    /// Fractional digits of the timestamps, used in turn line after line.
    pub fraction_digits: Vec<u8> = vec![9],
    /// Wait this long before answering a logs request, as a busy server would
    /// (so that polls of several jobs overlap).
    pub answer_delay: Duration = Duration::ZERO,
}

/// One log line as ByteNite stores it.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub log: String,
    /// Unix ns.
    pub time: i64,
    /// Index into [`LEVELS`].
    pub level: usize,
    pub container: String,
}

impl LogLine {
    pub fn new(log: impl Into<String>, time: i64, level: &str, container: &str) -> LogLine {
        LogLine {
            log: log.into(),
            time,
            level: LEVELS
                .iter()
                .position(|l| *l == level)
                .expect("a level name"),
            container: container.into(),
        }
    }
}

/// Where a line comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    Partitioner,
    Assembler,
    Task(String),
}

impl Origin {
    fn service(&self) -> usize {
        match self {
            Origin::Partitioner => 0,
            Origin::Assembler => 1,
            Origin::Task(_) => 2,
        }
    }
}

#[derive(Debug)]
struct Job {
    template_id: String,
    state: String,
    created_at: String,
    started_at: Option<String>,
    ended_at: Option<String>,
    /// Creation order (the list shows the newest first).
    order: u64,
    logs: BTreeMap<Origin, Vec<LogLine>>,
}

/// A logs request as the simulator saw it.
pub type LogsRequest = Seen<LogsQuery>;

/// What a logs request asked for, as sent (enum values as names or numbers), and
/// the `Authorization` it came with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LogsQuery {
    pub job_id: Option<String>,
    pub task_ids: Vec<String>,
    pub levels: Vec<Value>,
    pub services: Vec<Value>,
    #[serde(skip)]
    pub authorization: Option<String>,
}

#[derive(Default)]
pub struct ByteniteState {
    config: SimConfig,
    tokens: Tokens,
    jobs: BTreeMap<String, Job>,
    created: u64,
}

const TOKEN_ROUTE: &str = "/v1/auth/access_token";
const JOBS_ROUTE: &str = "/v1/customer/jobs";
const LOGS_ROUTE: &str = "/v1/customer/logs";

sim_server::simulator!(
    /// A running simulator (see [`Server`] for `url`, `config`, `set_config`,
    /// `requests`, faults); stops when dropped.
    ByteniteSim(ByteniteState) {
        TOKEN_ROUTE => post(access_token),
        JOBS_ROUTE => get(list_jobs),
        &format!("{JOBS_ROUTE}/{{id}}") => get(get_job),
        LOGS_ROUTE => post(logs),
    }
);

impl ByteniteSim {
    /// Adds a job in `JOB_STATE_NEW`.
    pub fn add_job(&self, id: &str, template_id: &str) {
        self.sim.update(|s| {
            s.created += 1;
            s.jobs.insert(
                id.to_string(),
                Job {
                    template_id: template_id.to_string(),
                    state: "JOB_STATE_NEW".into(),
                    created_at: rfc3339(now_nanos(), 6),
                    started_at: None,
                    ended_at: None,
                    order: s.created,
                    logs: BTreeMap::new(),
                },
            );
        });
    }

    /// The job runs: `JOB_STATE_RUNNING`, with a `startedAt`.
    pub fn start_job(&self, id: &str) {
        self.sim.update(|s| {
            let job = s.jobs.get_mut(id).expect("unknown job");
            job.state = "JOB_STATE_RUNNING".into();
            job.started_at = Some(rfc3339(now_nanos(), 6));
        });
    }

    /// The job ends now: `JOB_STATE_COMPLETE` (or `state`), with an `endedAt`.
    pub fn end_job(&self, id: &str, state: &str) {
        self.sim.update(|s| {
            let job = s.jobs.get_mut(id).expect("unknown job");
            job.state = state.into();
            job.ended_at = Some(rfc3339(now_nanos(), 6));
        });
    }

    pub fn remove_job(&self, id: &str) {
        self.sim.update(|s| s.jobs.remove(id));
    }

    /// Appends lines of `origin` to a job.
    pub fn append(&self, job: &str, origin: Origin, lines: impl IntoIterator<Item = LogLine>) {
        self.sim.update(|s| {
            let job = s.jobs.get_mut(job).expect("unknown job");
            job.logs.entry(origin).or_default().extend(lines);
        });
    }

    /// Every token issued so far stops working.
    pub fn expire_tokens(&self) {
        self.sim.lock().tokens.expire_all();
    }

    /// Token exchanges answered so far.
    pub fn exchanges(&self) -> usize {
        self.sim
            .count_requests(|seen| seen.path == TOKEN_ROUTE && seen.status == 200)
    }

    /// Requests refused (401) so far for a wrong API key or a bad token.
    pub fn refused(&self) -> usize {
        self.sim.count_requests(|seen| seen.status == 401)
    }

    /// Requests to the jobs routes so far.
    pub fn job_requests(&self) -> usize {
        self.sim
            .count_requests(|seen| seen.path.starts_with(JOBS_ROUTE))
    }

    /// The logs requests so far.
    pub fn logs_requests(&self) -> Vec<LogsRequest> {
        self.sim.requests_as(|seen| {
            (seen.path == LOGS_ROUTE).then(|| {
                let query = LogsQuery {
                    authorization: seen.header("authorization").map(str::to_string),
                    ..serde_json::from_slice(&seen.body).unwrap_or_default()
                };
                seen.with(query)
            })
        })
    }

    /// The most logs answers that were open at once so far (from the start of
    /// the answer, its [`SimConfig::answer_delay`] included, to its last byte).
    pub fn most_logs_in_flight(&self) -> usize {
        self.sim.most_open_streams()
    }
}

/// Unix ns now.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

/// `nanos` as RFC 3339 UTC with `digits` (0, 3, 6 or 9) fractional digits.
pub fn rfc3339(nanos: i64, digits: u8) -> String {
    let format = match digits {
        0 => SecondsFormat::Secs,
        3 => SecondsFormat::Millis,
        6 => SecondsFormat::Micros,
        _ => SecondsFormat::Nanos,
    };
    DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(format, true)
}

/// An `rpcStatus` error body.
fn status(code: StatusCode, grpc_code: u16, message: &str) -> Response {
    sim_server::json(
        code,
        json!({ "code": grpc_code, "message": message, "details": [] }),
    )
}

/// Checks the token of a request: the 401 to answer if it is not good.
fn authorize(state: &ByteniteState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(value) = header_str(headers, "authorization") else {
        return Err(Box::new(status(
            StatusCode::UNAUTHORIZED,
            16,
            "missing access token",
        )));
    };
    let token = match value.strip_prefix("Bearer ") {
        Some(token) if state.config.accept_bearer => token,
        Some(_) => {
            return Err(Box::new(status(
                StatusCode::UNAUTHORIZED,
                16,
                "invalid access token: send the raw token, without Bearer",
            )));
        }
        None => value,
    };
    if state.tokens.valid(token) {
        Ok(())
    } else {
        Err(Box::new(status(
            StatusCode::UNAUTHORIZED,
            16,
            "invalid or expired access token",
        )))
    }
}

async fn access_token(Call { sim, .. }: Call, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let key = request["apiKey"].as_str().unwrap_or_default();
    let mut state = sim.lock();
    if key != state.config.api_key {
        return status(
            StatusCode::UNAUTHORIZED,
            16,
            &format!("invalid API key {key}"),
        );
    }
    let ttl = state.config.token_ttl;
    let token = state.tokens.issue("customer", Some(ttl));
    let seconds = ttl.as_secs().max(1);
    let expires_in = if state.config.expires_in_number {
        json!(seconds)
    } else {
        json!(seconds.to_string())
    };
    sim_server::json(
        StatusCode::OK,
        json!({ "token": token, "expiresIn": expires_in, "scope": "customer" }),
    )
}

fn job_json(id: &str, job: &Job, omit_empty: bool) -> Value {
    let mut value = json!({
        "id": id,
        "templateId": job.template_id,
        "name": format!("job {id}"),
        "state": job.state,
        "createdAt": job.created_at,
        "startedAt": job.started_at,
        "endedAt": job.ended_at,
        "numChunks": job.logs.keys().filter(|o| matches!(o, Origin::Task(_))).count().to_string(),
    });
    if omit_empty && let Some(fields) = value.as_object_mut() {
        fields.retain(|_, v| !v.is_null());
    }
    value
}

async fn list_jobs(Call { sim, uri, headers }: Call) -> Response {
    let state = sim.lock();
    if let Err(refused) = authorize(&state, &headers) {
        return *refused;
    }
    let param = |name: &str, default: usize| {
        sim_server::query_param(&uri, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (limit, offset) = (param("pagination.limit", 10), param("pagination.offset", 0));
    let mut jobs: Vec<(&String, &Job)> = state.jobs.iter().collect();
    jobs.sort_by_key(|(_, job)| std::cmp::Reverse(job.order));
    let total = jobs.len();
    let page: Vec<Value> = jobs
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(id, job)| job_json(id, job, state.config.omit_empty))
        .collect();
    sim_server::json(
        StatusCode::OK,
        json!({
            "pagination": {
                "total": total.to_string(),
                "offset": offset.to_string(),
                "hasPrevious": offset > 0,
                "hasNext": offset + limit < total,
            },
            "data": page,
        }),
    )
}

async fn get_job(Call { sim, headers, .. }: Call, Path(id): Path<String>) -> Response {
    let state = sim.lock();
    if let Err(refused) = authorize(&state, &headers) {
        return *refused;
    }
    match state.jobs.get(&id) {
        Some(job) => sim_server::json(
            StatusCode::OK,
            json!({
                "job": job_json(&id, job, state.config.omit_empty),
                "templateInfo": { "id": job.template_id },
            }),
        ),
        None => status(StatusCode::NOT_FOUND, 5, "job not found"),
    }
}

/// An enum value of a request (name or number) as an index into `names`.
fn enum_index(value: &Value, names: &[&str]) -> Option<usize> {
    match value {
        Value::String(name) => names.iter().position(|n| n == name),
        Value::Number(n) => n.as_u64().map(|n| n as usize).filter(|n| *n < names.len()),
        _ => None,
    }
}

/// The filters of a logs request, or the 400 to answer.
struct Filters {
    job_id: String,
    task_ids: Vec<String>,
    levels: Vec<usize>,
    services: Vec<usize>,
}

fn filters(request: &Value) -> Result<Filters, Box<Response>> {
    let list = |name: &str| request[name].as_array().cloned().unwrap_or_default();
    let bad = |message: String| Err(Box::new(status(StatusCode::BAD_REQUEST, 3, &message)));
    let job_id = request["jobId"].as_str().unwrap_or_default().to_string();
    if job_id.is_empty() {
        return bad("jobId is required".into());
    }
    // An enum list of the request as indexes into `names`; a 400 on an unknown value.
    let enums = |name: &str, names: &[&str], type_name: &str| {
        list(name)
            .iter()
            .map(|value| {
                enum_index(value, names).ok_or_else(|| {
                    let message = format!("invalid value for enum type {type_name}: {value}");
                    Box::new(status(StatusCode::BAD_REQUEST, 3, &message))
                })
            })
            .collect::<Result<Vec<usize>, _>>()
    };
    let levels = enums("levels", &LEVELS, "logs.LogLevel")?;
    let services = enums("services", &SERVICES, "logs.LogService")?;
    let task_ids = list("taskIds")
        .iter()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    Ok(Filters {
        job_id,
        task_ids,
        levels,
        services,
    })
}

/// A piece of an answer: JSON punctuation, or the lines of one origin up to
/// `len` (the count when the request came).
enum Part {
    Text(String),
    Lines { origin: Origin, len: usize },
}

/// The parts of the answer to `filters` (see the module doc for what is left out).
fn parts(job: &Job, filters: &Filters, omit_empty: bool) -> Vec<Part> {
    let matching = |origin: &Origin| {
        job.logs.get(origin).map_or(0, |lines| {
            lines
                .iter()
                .filter(|l| filters.levels.is_empty() || filters.levels.contains(&l.level))
                .count()
        })
    };
    let wanted = |origin: &Origin| {
        let service = filters.services.is_empty() || filters.services.contains(&origin.service());
        let task = match origin {
            Origin::Task(task) => filters.task_ids.is_empty() || filters.task_ids.contains(task),
            _ => true,
        };
        service && task && (matching(origin) > 0 || !omit_empty)
    };
    let lines = |origin: &Origin| Part::Lines {
        origin: origin.clone(),
        len: job.logs.get(origin).map_or(0, Vec::len),
    };
    let mut parts = vec![Part::Text("{".into())];
    let mut members = 0;
    let mut member = |name: &str| {
        members += 1;
        let comma = if members > 1 { "," } else { "" };
        format!("{comma}\"{name}\":")
    };
    for (name, origin) in [
        ("partitioner", Origin::Partitioner),
        ("assembler", Origin::Assembler),
    ] {
        if wanted(&origin) {
            parts.push(Part::Text(format!("{}[", member(name))));
            parts.push(lines(&origin));
            parts.push(Part::Text("]".into()));
        }
    }
    let tasks: Vec<&Origin> = job
        .logs
        .keys()
        .filter(|o| matches!(o, Origin::Task(_)) && wanted(o))
        .collect();
    let runner = filters.services.is_empty() || filters.services.contains(&2);
    if !tasks.is_empty() || (!omit_empty && runner) {
        parts.push(Part::Text(format!("{}{{", member("taskrunner"))));
        for (n, origin) in tasks.into_iter().enumerate() {
            let Origin::Task(task) = origin else { continue };
            let comma = if n > 0 { "," } else { "" };
            parts.push(Part::Text(format!("{comma}{}:{{\"logs\":[", json!(task))));
            parts.push(lines(origin));
            parts.push(Part::Text("]}".into()));
        }
        parts.push(Part::Text("}".into()));
    }
    parts.push(Part::Text("}".into()));
    parts
}

async fn logs(Call { sim, headers, .. }: Call, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let state = sim.lock();
    let checked = authorize(&state, &headers)
        .and_then(|()| filters(&request))
        .and_then(|filters| match state.jobs.contains_key(&filters.job_id) {
            true => Ok(filters),
            false => Err(Box::new(status(StatusCode::NOT_FOUND, 5, "job not found"))),
        });
    let filters = match checked {
        Ok(filters) => filters,
        Err(refused) => return *refused,
    };
    let fault = sim.next_fault();
    if let Some(refused) = fault
        .as_ref()
        .and_then(|f| f.answer(|code| status(code, 14, "the service is unavailable, retry later")))
    {
        return refused;
    }
    let delay = state.config.answer_delay;
    let parts = parts(
        &state.jobs[&filters.job_id],
        &filters,
        state.config.omit_empty,
    );
    drop(state);
    let mut answer = Answer {
        job: filters.job_id,
        levels: filters.levels,
        parts,
        part: 0,
        line: 0,
        written: 0,
    };
    sim_server::stream_body(
        sim,
        "application/json",
        StreamSpec::new(fault).delayed(delay),
        move |state, frames| answer.fill(state, frames),
    )
}

/// A logs answer being written, a frame per line (so that a fault can cut it
/// between or inside lines).
struct Answer {
    job: String,
    levels: Vec<usize>,
    parts: Vec<Part>,
    /// The part being written, and how far into its lines (in the answer's order).
    part: usize,
    line: usize,
    /// Lines of the part written so far.
    written: usize,
}

impl Answer {
    fn fill(&mut self, state: &ByteniteState, frames: &mut Frames) -> Flow {
        let Some(job) = state.jobs.get(&self.job) else {
            return Flow::Reset;
        };
        let config = &state.config;
        let mut text = Vec::new();
        while !frames.is_full() {
            match self.parts.get(self.part) {
                None => {
                    if !text.is_empty() {
                        frames.push(&text);
                    }
                    return if frames.is_empty() {
                        Flow::End
                    } else {
                        Flow::More
                    };
                }
                Some(Part::Text(punctuation)) => {
                    text.extend_from_slice(punctuation.as_bytes());
                    self.part += 1;
                }
                Some(Part::Lines { origin, len }) => {
                    let Some(index) = (self.line < *len).then(|| {
                        if config.newest_first {
                            len - 1 - self.line
                        } else {
                            self.line
                        }
                    }) else {
                        (self.part, self.line, self.written) = (self.part + 1, 0, 0);
                        continue;
                    };
                    self.line += 1;
                    let line = &job.logs[origin][index];
                    if !self.levels.is_empty() && !self.levels.contains(&line.level) {
                        continue;
                    }
                    if self.written > 0 {
                        text.push(b',');
                    }
                    self.written += 1;
                    write_line(&mut text, line, index, config);
                    frames.push(&text);
                    text.clear();
                }
            }
        }
        if !text.is_empty() {
            frames.push(&text);
        }
        Flow::More
    }
}

/// One line's JSON.
fn write_line(text: &mut Vec<u8>, line: &LogLine, index: usize, config: &SimConfig) {
    let digits = config.fraction_digits[index % config.fraction_digits.len()];
    let mut entry = serde_json::Map::new();
    if !line.log.is_empty() || !config.omit_empty {
        entry.insert("log".into(), json!(line.log));
    }
    entry.insert("timestamp".into(), json!(rfc3339(line.time, digits)));
    if line.level != 0 || !config.omit_empty {
        let level = if config.level_numbers {
            json!(line.level)
        } else {
            json!(LEVELS[line.level])
        };
        entry.insert("level".into(), level);
    }
    if !line.container.is_empty() || !config.omit_empty {
        entry.insert("container".into(), json!(line.container));
    }
    serde_json::to_writer(&mut *text, &Value::Object(entry)).unwrap();
}

//! A local model of DigitalOcean App Platform's logs API (seed 001 and
//! providers.md §2), for ferry's tests, benchmarks and demos, on the shared
//! `sim_server`.
//!
//! REST, every route wanting `Authorization: Bearer <token>` (401
//! `{"id":"unauthorized","message":"Unable to authenticate you."}` otherwise),
//! each answer carrying `ratelimit-limit`, `ratelimit-remaining` and
//! `ratelimit-reset` (Unix seconds when the oldest counted request leaves the
//! sliding window), and 429 `{"id":"too_many_requests",…}` with `retry-after` past
//! the budget:
//! - `GET /v2/apps` and `GET /v2/apps/{app_id}`: the app, its
//!   `active_deployment` and `in_progress_deployment`, its components under
//!   `spec.services`; `GET /v2/apps/{app_id}/deployments`;
//! - the log-URL routes: `/v2/apps/{app}/deployments/{d}/logs` (all components, or
//!   `?component_name=`), `/v2/apps/{app}/deployments/{d}/components/{c}/logs`,
//!   `/v2/apps/{app}/logs` and `/v2/apps/{app}/components/{c}/logs` (the active
//!   deployment), with `type` (400 on an unknown one), `follow`, `tail_lines`;
//!   404 for an unknown app, deployment or component; 400 "not available yet"
//!   for a phase not reached (RUN while building, BUILD of an image-based
//!   deployment, RUN_RESTARTED without restarts). A phase in progress answers
//!   `{"live_url": "ws://…/live/{d}?token=…", "historic_urls": []}`, a phase over
//!   `{"historic_urls": ["http://…/archive/{d}/{TYPE}/{n}.log?token=…"]}`
//!   ([`SimConfig::doc_example_fields`] answers with the API reference example's
//!   names, `url` and `historic_logs`, instead; [`LiveScheme::Http`] gives an
//!   `http://` live URL the client must turn into `ws://`). The job-invocation and
//!   autoscale-event routes validate their `type` and answer 404: no jobs or events
//!   are modelled.
//!
//! The live socket checks its URL token (403 echoing it when unknown or expired,
//! [`SimConfig::url_token_ttl`]), replays the last `tail_lines` lines (all for -1)
//! as `{"data":"<component> <RFC3339Nano> <message>\n"}` messages
//! ([`SimConfig::lines_per_message`] lines each), then follows; with `follow=false`
//! it closes after the replay. A live request without `Upgrade` (or any, with
//! [`SimConfig::live_plain`]) gets the same lines as chunked `text/plain`, the
//! documented plain-HTTP mode. A phase that ends closes its sockets (close 1000); a
//! superseded deployment's RUN sockets close too when
//! [`SimConfig::close_on_redeploy`], else stay open and silent (doctl #1614).
//! Archive files are plain text, oldest first.
//!
//! Faults ([`Fault`]): [`DigitalOceanSim::push_api_fault`] for REST answers,
//! [`DigitalOceanSim::push_stream_fault`] for live sockets (drop, clean close,
//! stall, or a status before the upgrade), and a random 5xx share on every route
//! (`set_error_rate` of `sim_server::Sim`).
//!
//! Run it by hand: `cargo run --example digitalocean_sim` prints its URL, token and
//! app id, then serves an app that logs every second until Ctrl-C.

#![allow(dead_code)]

#[path = "sim_server.rs"]
mod sim_server;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::Path;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde_json::{Value, json};

pub use sim_server::Fault;
use sim_server::{
    Configured, Flow, Frames, RateLimit, RequestKind, Seen, Server, Sim, StreamSpec, bearer,
    query_param,
};

/// The log types the routes accept (`AUTOSCALE_EVENT` only on the events route).
pub const LOG_TYPES: &[&str] = &["BUILD", "DEPLOY", "RUN", "RUN_RESTARTED"];

/// The scheme of the `live_url`s handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveScheme {
    Ws,
    Http,
}

sim_server::sim_config! {
    /// The personal access token the API accepts.
    pub token: String =
        "dop_v1_5f2b9c7e1d3a8f60b4e2c9d7a1f3e5b8c0d2f4a6b8c0e2d4f6a8b0c2d4e6f8a0".into(),
    pub app_id: String = "4f6c71e2-1e90-4762-9fee-6cc4a0a9f2cf".into(),
    pub live_scheme: LiveScheme = LiveScheme::Ws,
    /// Log lines per websocket message.
    pub lines_per_message: usize = 1,
    /// How long a live or archive URL's token works (`None`: until
    /// [`DigitalOceanSim::expire_urls`]).
    pub url_token_ttl: Option<Duration> = None,
    /// Live URLs answer even a websocket upgrade with chunked `text/plain` lines
    /// (the documented plain-HTTP mode, which a request without `Upgrade` always
    /// gets).
    pub live_plain: bool = false,
    /// Close the live sockets of a deployment when a redeploy supersedes it.
    pub close_on_redeploy: bool = false,
    /// Answer with the API reference example's names (`url`, `historic_logs`).
    pub doc_example_fields: bool = false,
    /// Archive files per finished log.
    pub archive_files: usize = 2,
    /// REST requests allowed per sliding window.
    pub rate_limit: usize = 250,
    pub rate_window: Duration = Duration::from_secs(60),
}

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Building,
    Deploying,
    Active,
    /// A newer deployment became active.
    Superseded,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Building => "BUILDING",
            Phase::Deploying => "DEPLOYING",
            Phase::Active => "ACTIVE",
            Phase::Superseded => "SUPERSEDED",
        }
    }
}

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Api,
    Live,
    Archive,
}

impl RequestKind for Kind {
    /// What `request` was, by the first segment of its path.
    fn of(request: &Seen) -> Kind {
        match request.path.split('/').nth(1) {
            Some("live") => Kind::Live,
            Some("archive") => Kind::Archive,
            _ => Kind::Api,
        }
    }
}

struct Line {
    component: String,
    time: i64,
    /// `<component> <RFC3339Nano> <message>`.
    text: String,
    /// `text` + `\n` as a JSON string, without its quotes.
    escaped: String,
}

struct Deployment {
    phase: Phase,
    /// No build phase (the app runs an image): BUILD logs never exist.
    image_based: bool,
    /// Lines per log type, in time order.
    logs: BTreeMap<String, Vec<Line>>,
}

impl Deployment {
    fn lines(&self, log_type: &str) -> &[Line] {
        self.logs.get(log_type).map_or(&[], Vec::as_slice)
    }

    /// Whether `log_type` is live now, over (archived), or not reached.
    fn availability(&self, log_type: &str) -> Availability {
        let has_lines = !self.lines(log_type).is_empty();
        match (log_type, self.phase) {
            ("BUILD", _) if self.image_based => Availability::NotYet,
            ("BUILD", Phase::Building) => Availability::Live,
            ("BUILD", _) => Availability::Archived,
            ("DEPLOY", Phase::Building) => Availability::NotYet,
            ("DEPLOY", Phase::Deploying) => Availability::Live,
            ("DEPLOY", _) => Availability::Archived,
            ("RUN", Phase::Active) => Availability::Live,
            ("RUN", Phase::Superseded) => Availability::Archived,
            ("RUN_RESTARTED", Phase::Active | Phase::Superseded) if has_lines => {
                Availability::Archived
            }
            _ => Availability::NotYet,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Availability {
    Live,
    Archived,
    NotYet,
}

/// What a URL token grants.
#[derive(Debug, Clone)]
struct Grant {
    deployment: String,
    log_type: String,
    component: Option<String>,
    tail: i64,
    follow: bool,
    expires: Option<Instant>,
}

#[derive(Default)]
pub struct DoState {
    config: SimConfig,
    revoked: bool,
    components: Vec<String>,
    deployments: BTreeMap<String, Deployment>,
    /// Deployment ids in creation order.
    order: Vec<String>,
    grants: BTreeMap<String, Grant>,
    grant_count: u64,
    rate: RateLimit,
    api_faults: VecDeque<Fault>,
    stream_faults: VecDeque<Fault>,
    last_time: i64,
}

impl DoState {
    fn active(&self) -> Option<&str> {
        self.order
            .iter()
            .find(|id| self.deployments[*id].phase == Phase::Active)
            .map(String::as_str)
    }

    fn in_progress(&self) -> Option<&str> {
        self.order
            .iter()
            .rev()
            .find(|id| self.deployments[*id].phase < Phase::Active)
            .map(String::as_str)
    }

    /// A fresh URL token for `grant`.
    fn grant(&mut self, mut grant: Grant) -> String {
        self.grant_count += 1;
        let token = format!(
            "{:08x}-{:04x}-live-{}",
            self.grant_count.wrapping_mul(2_654_435_761),
            self.grant_count,
            self.grant_count
        );
        grant.expires = self.config.url_token_ttl.map(|ttl| Instant::now() + ttl);
        self.grants.insert(token.clone(), grant);
        token
    }

    fn valid_grant(&self, token: &str) -> Option<&Grant> {
        self.grants
            .get(token)
            .filter(|g| g.expires.is_none_or(|at| Instant::now() < at))
    }

    /// The next line time: now, and always after the previous line.
    fn next_time(&mut self) -> i64 {
        self.last_time = unix_nanos().max(self.last_time + 1_000);
        self.last_time
    }
}

sim_server::simulator!(
    /// A running simulator (see [`Server`] for `url`, `config`, `set_config`);
    /// stops when dropped.
    DigitalOceanSim(DoState) {
        "/v2/apps" => get(apps),
        "/v2/apps/{app_id}" => app_route(app),
        "/v2/apps/{app_id}/deployments" => app_route(deployments),
        "/v2/apps/{app_id}/logs" => app_route(logs_answer),
        "/v2/apps/{app_id}/components/{component}/logs" => app_route(logs_answer),
        "/v2/apps/{app_id}/deployments/{deployment_id}/logs" => app_route(logs_answer),
        "/v2/apps/{app_id}/deployments/{deployment_id}/components/{component}/logs" =>
            app_route(logs_answer),
        "/v2/apps/{app_id}/jobs/{job}/invocations/{invocation}/logs" =>
            app_route(|_, asked| unmodelled(&asked.uri, "JOB_INVOCATION")),
        "/v2/apps/{app_id}/events/{event}/logs" =>
            app_route(|_, asked| unmodelled(&asked.uri, "AUTOSCALE_EVENT")),
        "/live/{deployment_id}" => get(live),
        "/archive/{deployment_id}/{log_type}/{file}" => get(archive),
    }
);

impl DigitalOceanSim {
    /// Adds a component to the app's spec.
    pub fn add_component(&self, name: &str) {
        self.sim.update(|s| {
            if !s.components.iter().any(|c| c == name) {
                s.components.push(name.to_string());
            }
        });
    }

    /// Adds a deployment in `phase` (an `Active` one supersedes the active one).
    pub fn add_deployment(&self, id: &str, phase: Phase) {
        self.sim.update(|s| {
            s.order.push(id.to_string());
            s.deployments.insert(
                id.to_string(),
                Deployment {
                    phase: Phase::Building,
                    image_based: false,
                    logs: BTreeMap::new(),
                },
            );
        });
        self.set_phase(id, phase);
    }

    /// The deployment runs an image: it has no BUILD logs.
    pub fn set_image_based(&self, id: &str) {
        self.sim.update(|s| {
            if let Some(d) = s.deployments.get_mut(id) {
                d.image_based = true;
            }
        });
    }

    /// Moves a deployment on; making one `Active` supersedes the active one.
    pub fn set_phase(&self, id: &str, phase: Phase) {
        self.sim.update(|s| {
            if phase == Phase::Active {
                for (other, d) in s.deployments.iter_mut() {
                    if other != id && d.phase == Phase::Active {
                        d.phase = Phase::Superseded;
                    }
                }
            }
            s.deployments.get_mut(id).expect("unknown deployment").phase = phase;
        });
    }

    /// A redeploy: `new` becomes the active deployment at once.
    pub fn redeploy(&self, new: &str) {
        self.add_deployment(new, Phase::Active);
    }

    /// Appends lines (messages) of `component` to a deployment's log of `log_type`,
    /// each at the next time.
    pub fn append<S: AsRef<str>>(
        &self,
        deployment: &str,
        log_type: &str,
        component: &str,
        messages: impl IntoIterator<Item = S>,
    ) {
        self.append_lines(deployment, log_type, component, None, messages);
    }

    /// Appends lines all at `time` (Unix ns).
    pub fn append_at<S: AsRef<str>>(
        &self,
        deployment: &str,
        log_type: &str,
        component: &str,
        time: i64,
        messages: impl IntoIterator<Item = S>,
    ) {
        self.append_lines(deployment, log_type, component, Some(time), messages);
    }

    fn append_lines<S: AsRef<str>>(
        &self,
        deployment: &str,
        log_type: &str,
        component: &str,
        time: Option<i64>,
        messages: impl IntoIterator<Item = S>,
    ) {
        self.add_component(component);
        self.sim.update(|s| {
            let mut lines = Vec::new();
            for message in messages {
                let message = message.as_ref();
                assert!(!message.contains('\n'), "one line at a time");
                let time = match time {
                    Some(time) => {
                        s.last_time = s.last_time.max(time);
                        time
                    }
                    None => s.next_time(),
                };
                let text = format!("{component} {} {message}", rfc3339_nano(time));
                let quoted = serde_json::to_string(&format!("{text}\n")).unwrap();
                lines.push(Line {
                    component: component.to_string(),
                    time,
                    text,
                    escaped: quoted[1..quoted.len() - 1].to_string(),
                });
            }
            s.deployments
                .get_mut(deployment)
                .expect("unknown deployment")
                .logs
                .entry(log_type.to_string())
                .or_default()
                .extend(lines);
        });
    }

    /// The log lines of a deployment's log, as the provider writes them.
    pub fn lines(&self, deployment: &str, log_type: &str) -> Vec<String> {
        let state = self.sim.lock();
        state.deployments[deployment]
            .lines(log_type)
            .iter()
            .map(|l| l.text.clone())
            .collect()
    }

    pub fn push_api_fault(&self, fault: Fault) {
        self.sim.lock().api_faults.push_back(fault);
    }

    pub fn push_stream_fault(&self, fault: Fault) {
        self.sim.lock().stream_faults.push_back(fault);
    }

    /// Makes the access token refused (401) or accepted again.
    pub fn revoke_token(&self, revoked: bool) {
        self.sim.lock().revoked = revoked;
    }

    /// Every live and archive URL handed out so far stops working.
    pub fn expire_urls(&self) {
        self.sim.lock().grants.clear();
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen<Kind>> {
        self.sim.requests_by_kind()
    }
}

/// Now, in Unix nanoseconds.
pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Go's `time.RFC3339Nano` in UTC: the fraction without trailing zeros.
pub fn rfc3339_nano(nanos: i64) -> String {
    let time = chrono::DateTime::from_timestamp_nanos(nanos);
    let seconds = time.format("%Y-%m-%dT%H:%M:%S");
    format!("{seconds}{}Z", sim_server::go_fraction(nanos))
}

fn error(status: StatusCode, id: &str, message: &str) -> Response {
    sim_server::json(
        status,
        json!({ "id": id, "message": message, "request_id": "4b9a1c2e-sim" }),
    )
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "The resource you requested could not be found.",
    )
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// The checks every REST route makes: the token, the rate limit, queued and
/// random faults. `Err` is the answer (boxed, as a `Response` is large); `Ok`
/// holds the rate-limit headers to add.
fn admit(
    sim: &Shared,
    state: &mut DoState,
    headers: &HeaderMap,
) -> Result<HeaderMap, Box<Response>> {
    if state.rate.max != state.config.rate_limit || state.rate.window != state.config.rate_window {
        state.rate = RateLimit::new(state.config.rate_limit, state.config.rate_window);
    }
    if state.revoked || bearer(headers) != Some(state.config.token.as_str()) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unable to authenticate you.",
        )
        .into());
    }
    let checked = state.rate.check();
    let mut limits = HeaderMap::new();
    let number = |n: u64| HeaderValue::from_str(&n.to_string()).unwrap();
    limits.insert("ratelimit-limit", number(state.rate.max as u64));
    limits.insert("ratelimit-remaining", number(checked.unwrap_or(0) as u64));
    limits.insert("ratelimit-reset", number(state.rate.reset()));
    if let Err(wait) = checked {
        let mut answer = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "API Rate limit exceeded.",
        );
        answer.headers_mut().extend(limits);
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, number(wait));
        return Err(answer.into());
    }
    let fault = state.api_faults.pop_front().or_else(|| sim.next_fault());
    if let Some(mut answer) = fault.as_ref().and_then(|f| {
        f.answer(|status| match status {
            StatusCode::TOO_MANY_REQUESTS => {
                error(status, "too_many_requests", "API Rate limit exceeded.")
            }
            _ => error(status, "server_error", "Unexpected server-side error"),
        })
    }) {
        answer.headers_mut().extend(limits);
        return Err(answer.into());
    }
    Ok(limits)
}

/// Runs `answer` behind [`admit`].
fn rest(
    sim: &Shared,
    headers: &HeaderMap,
    answer: impl FnOnce(&mut DoState) -> Response,
) -> Response {
    let mut state = sim.lock();
    match admit(sim, &mut state, headers) {
        Err(response) => *response,
        Ok(limits) => {
            let mut response = answer(&mut state);
            response.headers_mut().extend(limits);
            response
        }
    }
}

fn deployment_json(state: &DoState, id: &str) -> Value {
    let d = &state.deployments[id];
    json!({
        "id": id,
        "phase": d.phase.name(),
        "cause": "manual",
        "services": state.components.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(),
        "created_at": "2026-11-20T09:00:00Z",
    })
}

fn app_json(state: &DoState) -> Value {
    let mut app = json!({
        "id": state.config.app_id,
        "owner_uuid": "ff3b8a5e-0e5c-4d2b-9c3f-6b1e2a7d9c40",
        "spec": {
            "name": "sample-app",
            "region": "ams",
            "services": state.components.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(),
        },
        "default_ingress": "https://sample-app-x7k2q.ondigitalocean.app",
        "created_at": "2026-11-20T08:59:00Z",
        "region": {"slug": "ams"},
    });
    if let Some(id) = state.active() {
        app["active_deployment"] = deployment_json(state, id);
    }
    if let Some(id) = state.in_progress() {
        app["in_progress_deployment"] = deployment_json(state, id);
    }
    app
}

async fn apps(Call { sim, headers, .. }: Call) -> Response {
    rest(&sim, &headers, |state| {
        sim_server::json(
            StatusCode::OK,
            json!({ "apps": [app_json(state)], "links": {}, "meta": {"total": 1} }),
        )
    })
}

/// What an app route was asked: the route's path parameters (`app_id`, and
/// `deployment_id`, `component` where the route has them), its URI, and where the
/// simulator serves (for the URLs it hands out).
struct AppRequest<'a> {
    params: HashMap<String, String>,
    uri: Uri,
    base: &'a str,
}

/// What the app's routes are given: the state and the request.
type AppAnswer = fn(&mut DoState, &AppRequest) -> Response;

/// A REST route under `/v2/apps/{app_id}`: once the token and the rate limit are
/// checked, and the app is this one, `answer` answers.
fn app_route(answer: AppAnswer) -> MethodRouter<Shared> {
    get(
        move |Call { sim, uri, headers }: Call, Path(params): Path<HashMap<String, String>>| async move {
            let asked = AppRequest {
                params,
                uri,
                base: sim.url(),
            };
            rest(&sim, &headers, |state| {
                if asked.params.get("app_id") != Some(&state.config.app_id) {
                    return not_found();
                }
                answer(state, &asked)
            })
        },
    )
}

fn app(state: &mut DoState, _: &AppRequest) -> Response {
    sim_server::json(StatusCode::OK, json!({ "app": app_json(state) }))
}

fn deployments(state: &mut DoState, _: &AppRequest) -> Response {
    let list: Vec<Value> = state
        .order
        .iter()
        .rev()
        .map(|id| deployment_json(state, id))
        .collect();
    let total = list.len();
    sim_server::json(
        StatusCode::OK,
        json!({ "deployments": list, "links": {}, "meta": {"total": total} }),
    )
}

/// The answer of the log-URL routes for the route's `deployment_id` (none: the
/// active deployment) and `component` (none: all, or the `component_name` query).
fn logs_answer(state: &mut DoState, asked: &AppRequest) -> Response {
    let deployment = asked.params.get("deployment_id").cloned();
    let component = asked.params.get("component").cloned();
    let param = |name: &str| query_param(&asked.uri, name);
    let log_type = param("type").unwrap_or_else(|| "UNSPECIFIED".into());
    if !LOG_TYPES.contains(&log_type.as_str()) {
        return bad_request(&format!(
            "invalid log type {log_type:?}: must be one of BUILD, DEPLOY, RUN, RUN_RESTARTED"
        ));
    }
    let tail = match param("tail_lines").map(|t| t.parse::<i64>()) {
        None => -1,
        Some(Ok(tail)) => tail,
        Some(Err(_)) => return bad_request("tail_lines must be an integer"),
    };
    let follow = param("follow").is_some_and(|f| f == "true");
    let component = component.or_else(|| param("component_name"));
    let Some(deployment) = deployment.or_else(|| state.active().map(str::to_string)) else {
        return not_found();
    };
    let Some(d) = state.deployments.get(&deployment) else {
        return not_found();
    };
    if component
        .as_ref()
        .is_some_and(|c| !state.components.contains(c))
    {
        return not_found();
    }
    let availability = d.availability(&log_type);
    let grant = Grant {
        deployment: deployment.clone(),
        log_type: log_type.clone(),
        component,
        tail,
        follow,
        expires: None,
    };
    let (live, archives) = match availability {
        Availability::NotYet => {
            return bad_request(&format!(
                "{log_type} logs for deployment {deployment} are not available yet"
            ));
        }
        Availability::Live => {
            let token = state.grant(grant);
            let scheme = match state.config.live_scheme {
                LiveScheme::Ws => "ws",
                LiveScheme::Http => "http",
            };
            let host = asked.base.trim_start_matches("http://");
            (
                Some(format!("{scheme}://{host}/live/{deployment}?token={token}")),
                Vec::new(),
            )
        }
        Availability::Archived => {
            let files = state.config.archive_files.max(1);
            let urls = (0..files)
                .map(|n| {
                    let token = state.grant(grant.clone());
                    format!(
                        "{}/archive/{deployment}/{log_type}/{n}.log?token={token}",
                        asked.base
                    )
                })
                .collect();
            (None, urls)
        }
    };
    let body = if state.config.doc_example_fields {
        let mut body = json!({ "historic_logs": archives });
        if let Some(first) = live.clone().or_else(|| archives.first().cloned()) {
            body["url"] = first.into();
        }
        if let Some(live) = live {
            body["live_url"] = live.into();
        }
        body
    } else {
        match live {
            Some(live) => json!({ "live_url": live, "historic_urls": archives }),
            None => json!({ "historic_urls": archives }),
        }
    };
    sim_server::json(StatusCode::OK, body)
}

/// Routes whose logs are not modelled: the type is checked, then nothing is found.
fn unmodelled(uri: &Uri, expected: &str) -> Response {
    let log_type = query_param(uri, "type");
    if log_type.as_deref() != Some(expected) {
        return bad_request(&format!("type must be {expected}"));
    }
    not_found()
}

/// The URL token's grant, or the 403 a pre-signed URL gets (echoing the token, as
/// careless servers do, so clients must hide it).
fn url_grant(state: &DoState, uri: &Uri, deployment: &str) -> Result<Grant, Box<Response>> {
    let token = query_param(uri, "token").unwrap_or_default();
    match state.valid_grant(&token) {
        Some(grant) if grant.deployment == deployment => Ok(grant.clone()),
        _ => Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("invalid or expired token {token}"),
        )
        .into()),
    }
}

/// Whether a live socket of `grant` is over: its phase ended, or its deployment
/// was superseded and such sockets close.
fn live_over(state: &DoState, grant: &Grant) -> bool {
    let Some(d) = state.deployments.get(&grant.deployment) else {
        return true;
    };
    match d.availability(&grant.log_type) {
        Availability::Live => false,
        _ if grant.log_type == "RUN" && d.phase == Phase::Superseded => {
            state.config.close_on_redeploy
        }
        _ => true,
    }
}

async fn live(
    Call { sim, uri, .. }: Call,
    Path(deployment): Path<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let mut state = sim.lock();
    let upgrade = upgrade.ok().filter(|_| !state.config.live_plain);
    let plain = upgrade.is_none();
    let grant = match url_grant(&state, &uri, &deployment) {
        Ok(grant) => grant,
        Err(response) => return *response,
    };
    let fault = state.stream_faults.pop_front().or_else(|| sim.next_fault());
    if let Some(response) = fault.as_ref().and_then(|f| {
        f.answer(|status| error(status, "server_error", "Unexpected server-side error"))
    }) {
        return response;
    }
    let per_message = state.config.lines_per_message.max(1);
    let lines = state.deployments[&deployment].lines(&grant.log_type);
    let matches = |line: &Line| {
        grant
            .component
            .as_ref()
            .is_none_or(|c| *c == line.component)
    };
    // The replay starts `tail` matching lines before the end.
    let mut start = lines.len();
    let mut counted = 0;
    if grant.tail < 0 {
        start = 0;
    } else {
        while start > 0 && counted < grant.tail {
            start -= 1;
            if matches(&lines[start]) {
                counted += 1;
            }
        }
    }
    drop(state);
    let mut next = start;
    let mut replayed = false;
    let feed = move |state: &DoState, frames: &mut Frames| {
        let Some(d) = state.deployments.get(&grant.deployment) else {
            return Flow::End;
        };
        let lines = d.lines(&grant.log_type);
        while next < lines.len() && !frames.is_full() {
            let mut batch = Vec::with_capacity(per_message);
            while next < lines.len() && batch.len() < per_message {
                if grant
                    .component
                    .as_ref()
                    .is_none_or(|c| *c == lines[next].component)
                {
                    batch.push(&lines[next]);
                }
                next += 1;
            }
            if !batch.is_empty() {
                frames.with(|out| {
                    if plain {
                        for line in batch {
                            out.extend_from_slice(line.text.as_bytes());
                            out.push(b'\n');
                        }
                        return;
                    }
                    out.extend_from_slice(b"{\"data\":\"");
                    for line in batch {
                        out.extend_from_slice(line.escaped.as_bytes());
                    }
                    out.extend_from_slice(b"\"}");
                });
            }
        }
        if next < lines.len() {
            return Flow::More;
        }
        if !replayed {
            replayed = true;
            if !grant.follow {
                return Flow::End;
            }
        }
        if live_over(state, &grant) {
            Flow::End
        } else {
            Flow::More
        }
    };
    match upgrade {
        Some(upgrade) => sim_server::ws_stream(upgrade, sim, StreamSpec::new(fault), feed),
        None => sim_server::stream_body(
            sim,
            "text/plain; charset=utf-8",
            StreamSpec::new(fault),
            feed,
        ),
    }
}

async fn archive(
    Call { sim, uri, .. }: Call,
    Path((deployment, log_type, file)): Path<(String, String, String)>,
) -> Response {
    let state = sim.lock();
    let answer: Result<Response, Box<Response>> = (|| {
        let grant = url_grant(&state, &uri, &deployment)?;
        let d = state.deployments.get(&deployment).ok_or_else(not_found)?;
        let n: usize = file
            .strip_suffix(".log")
            .and_then(|n| n.parse().ok())
            .ok_or_else(not_found)?;
        if grant.log_type != log_type {
            return Err(not_found().into());
        }
        if let Some(response) = sim.next_fault().as_ref().and_then(|f| {
            f.answer(|status| error(status, "server_error", "Unexpected server-side error"))
        }) {
            return Err(response.into());
        }
        let lines: Vec<&Line> = d
            .lines(&log_type)
            .iter()
            .filter(|l| grant.component.as_ref().is_none_or(|c| *c == l.component))
            .collect();
        let files = state.config.archive_files.max(1);
        let range = lines.len() * n / files..lines.len() * (n + 1) / files;
        let mut body = String::new();
        for line in &lines[range] {
            body.push_str(&line.text);
            body.push('\n');
        }
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response())
    })();
    answer.unwrap_or_else(|response| *response)
}

/// A test message `n` of about `len` bytes (padded with `x`).
pub fn message(tag: &str, n: usize, len: usize) -> String {
    let mut message = format!("{tag} line {n:07} ");
    while message.len() < len {
        message.push('x');
    }
    message
}

//! ferry's own observability: tracing setup, the Prometheus metrics recorder, the
//! shared health state, and the HTTP API that serves `/metrics`, `/health`, live
//! taps (`/tap/COMPONENT`) and reloads (`POST /reload`).

pub mod catalog;
mod liveness;
mod tap;
mod throughput;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use liveness::Liveness;
pub use tap::{TapError, TapPoint, TapRequest, Taps};
pub use throughput::{Sample, Throughput};

/// The running agent's shared state: problems that make ferry unhealthy, by
/// component (e.g. a checkpoint that cannot be committed; none means healthy), the
/// last reload, and what the watchdog, the `STATUS=` line and taps read from the
/// pipeline's tasks.
#[derive(Default)]
pub struct Health {
    problems: Mutex<BTreeMap<String, String>>,
    last_reload: Mutex<Option<ReloadReport>>,
    pub liveness: Liveness,
    pub throughput: Throughput,
    pub taps: Taps,
}

/// How a reload ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    /// RFC 3339, UTC.
    pub at: String,
    /// `ok`, or `rejected` (the running pipeline was kept).
    pub result: &'static str,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A reload asked for over the API, and where to send how it went.
pub type ReloadRequest = oneshot::Sender<ReloadReport>;

impl Health {
    pub fn set(&self, component: &str, problem: String) {
        if let Ok(mut problems) = self.problems.lock() {
            problems.insert(component.to_string(), problem);
        }
    }

    pub fn clear(&self, component: &str) {
        if let Ok(mut problems) = self.problems.lock()
            && !problems.is_empty()
        {
            problems.remove(component);
        }
    }

    pub fn problems(&self) -> BTreeMap<String, String> {
        self.problems.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Records how a reload ended: in `/health`, `ferry_reloads_total{result}`,
    /// `ferry_last_reload_timestamp_seconds` and `ferry_last_reload_successful`.
    pub fn record_reload(&self, error: Option<String>) -> ReloadReport {
        let now = chrono::Utc::now();
        let report = ReloadReport {
            at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            result: if error.is_none() { "ok" } else { "rejected" },
            error,
        };
        metrics::counter!("ferry_reloads_total", "result" => report.result).increment(1);
        metrics::gauge!("ferry_last_reload_timestamp_seconds").set(now.timestamp() as f64);
        metrics::gauge!("ferry_last_reload_successful")
            .set(f64::from(u8::from(report.error.is_none())));
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Some(report.clone());
        }
        report
    }

    pub fn last_reload(&self) -> Option<ReloadReport> {
        self.last_reload.lock().ok().and_then(|last| last.clone())
    }
}

/// Sets up `tracing` to stderr. `RUST_LOG`-style filters come from `FERRY_LOG`
/// (default `info`); `json` switches to one JSON object per line.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // Already initialised (tests): keep the first subscriber.
    drop(result);
}

/// Installs the global Prometheus recorder once (with every metric described and
/// the histograms' buckets, see [`catalog`]) and returns its handle.
pub fn metrics_handle() -> Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = catalog::with_buckets(PrometheusBuilder::new())
        .context("invalid histogram buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    catalog::describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Sets `process_resident_memory_bytes` from `/proc/self/status` (Linux).
fn record_resident_memory() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        });
    if let Some(kib) = kib {
        metrics::gauge!(catalog::RESIDENT_MEMORY).set(kib * 1024.0);
    }
}

#[derive(Clone)]
struct ApiState {
    metrics: PrometheusHandle,
    health: Arc<Health>,
    reloads: mpsc::Sender<ReloadRequest>,
}

/// Binds the API listener now (so a bad address fails at start) and serves it until
/// `shutdown` fires. `POST /reload` hands its request to `reloads`.
pub async fn serve_api(
    address: SocketAddr,
    metrics: PrometheusHandle,
    health: Arc<Health>,
    reloads: mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on api.address {address}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving /metrics and /health");
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/health", get(render_health))
        .route("/tap/{component}", get(tap))
        .route("/reload", axum::routing::post(reload))
        .with_state(ApiState {
            metrics,
            health,
            reloads,
        });
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "api server stopped");
        }
    }))
}

async fn render_metrics(State(state): State<ApiState>) -> impl IntoResponse {
    record_resident_memory();
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn render_health(State(state): State<ApiState>) -> impl IntoResponse {
    let problems = state.health.problems();
    let body = serde_json::json!({
        "status": if problems.is_empty() { "ok" } else { "unhealthy" },
        "problems": problems,
        "last_reload": state.health.last_reload(),
    });
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
}

/// `GET /tap/COMPONENT?limit=N&rate=R`: a live sample of the events at that
/// component, as JSON lines, until `limit` events were sent or the client leaves.
async fn tap(
    State(state): State<ApiState>,
    axum::extract::Path(component): axum::extract::Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> axum::response::Response {
    let mut request = TapRequest {
        limit: None,
        rate: DEFAULT_TAP_RATE,
    };
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let parsed = match &*key {
            "limit" => value
                .parse()
                .map(|limit| request.limit = Some(limit))
                .is_ok(),
            "rate" => value
                .parse::<f64>()
                .ok()
                .filter(|rate| rate.is_finite() && *rate > 0.0)
                .map(|rate| request.rate = rate)
                .is_some(),
            _ => false,
        };
        if !parsed {
            let message = format!(
                "bad query parameter {key}={value}: expected limit=N and rate=R (a positive number)\n"
            );
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    }
    match state.health.taps.subscribe(&component, request) {
        Ok((name, chunks)) => {
            tracing::info!(component = %name, "tap started");
            let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
                let chunk = chunks.recv().await?;
                Some((Ok::<_, std::convert::Infallible>(chunk), chunks))
            });
            (
                [("content-type", "application/x-ndjson")],
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
        Err(error) => (StatusCode::NOT_FOUND, format!("{error}\n")).into_response(),
    }
}

/// Events a second a tap shows when the client does not say.
pub const DEFAULT_TAP_RATE: f64 = 10.0;

/// `POST /reload`: reloads the config file and answers how it went (200, or 422 with
/// the reason the running pipeline was kept).
async fn reload(State(state): State<ApiState>) -> axum::response::Response {
    let (reply, answer) = oneshot::channel();
    if state.reloads.send(reply).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "ferry is stopping\n").into_response();
    }
    match answer.await {
        Ok(report) => {
            let code = match report.error {
                None => StatusCode::OK,
                Some(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let body = serde_json::to_string(&report).unwrap_or_default();
            (code, [("content-type", "application/json")], body).into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "ferry is stopping\n").into_response(),
    }
}

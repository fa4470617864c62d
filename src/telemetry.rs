//! ferry's own observability: tracing setup, the Prometheus metrics recorder, the
//! shared health state, and the HTTP API that serves `/metrics` and `/health`.

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
use tokio_util::sync::CancellationToken;

/// Problems that make ferry unhealthy, by component (e.g. a checkpoint that cannot
/// be committed). Empty means healthy.
#[derive(Default)]
pub struct Health {
    problems: Mutex<BTreeMap<String, String>>,
}

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
}

/// Sets up `tracing` to stderr. `RUST_LOG`-style filters come from `FERRY_LOG`
/// (default `info`); `json` switches to one JSON object per line.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // Already initialised (tests): keep the first subscriber.
    drop(result);
}

/// Installs the global Prometheus recorder once and returns its handle.
pub fn metrics_handle() -> Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

#[derive(Clone)]
struct ApiState {
    metrics: PrometheusHandle,
    health: Arc<Health>,
}

/// Binds the API listener now (so a bad address fails at start) and serves it until
/// `shutdown` fires.
pub async fn serve_api(
    address: SocketAddr,
    metrics: PrometheusHandle,
    health: Arc<Health>,
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
        .with_state(ApiState { metrics, health });
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
    });
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, [("content-type", "application/json")], body.to_string())
}

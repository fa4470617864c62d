//! The `ferry run` lifecycle: load the config, open the checkpoint store, serve the
//! API, start the pipeline, tell systemd we are ready, apply config changes on
//! SIGHUP or `ferry reload`, and stop cleanly on SIGTERM or SIGINT.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::CheckpointStore;
use crate::notify;
use crate::telemetry::{self, Health, ReloadRequest};
use crate::topology::config::{self, Config};
use crate::topology::{self, Outcome, Pipeline};

/// Reload requests that arrive within this long of each other make one reload.
const RELOAD_SETTLE: Duration = Duration::from_secs(1);

/// Runs the pipeline described by the config at `path` until it ends or is stopped.
pub async fn run(path: &Path) -> Result<Outcome> {
    let config = config::load(path)?;
    for warning in config.warnings() {
        tracing::warn!(config = %path.display(), "{warning}");
    }
    let metrics = telemetry::metrics_handle()?;
    let health = Arc::new(Health::default());
    let store = Arc::new(CheckpointStore::open(&config.data_dir)?);
    let api_stop = CancellationToken::new();
    let (reload_requests, api_reloads) = mpsc::channel(16);
    let api = if config.api.enabled {
        Some(
            telemetry::serve_api(
                config.api.address,
                metrics,
                Arc::clone(&health),
                reload_requests,
                api_stop.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let mut requests = Requests::new(api_reloads)?;
    let mut config = config;
    let mut pipeline = topology::start(&config, Arc::clone(&store), Arc::clone(&health))?;
    tracing::info!(
        config = %path.display(),
        sources = config.sources.len(),
        transforms = config.transforms.len(),
        sinks = config.sinks.len(),
        data_dir = %config.data_dir.display(),
        "ferry started"
    );
    notify::ready();
    tokio::task::spawn_blocking(|| {
        let released = crate::resident::release_startup_pages();
        tracing::debug!(bytes = released, "startup pages handed back");
    });
    let supervisor = notify::spawn_supervisor(Arc::clone(&health), api_stop.clone());
    let outcome = loop {
        let Some(Request::Reload(first)) = pipeline.run_until(requests.next()).await else {
            break pipeline.shutdown(config.shutdown_timeout).await;
        };
        let Some(replies) = requests.settle(first).await else {
            break pipeline.shutdown(config.shutdown_timeout).await;
        };
        notify::reloading();
        let error = match reload(path, &config, &mut pipeline).await {
            Ok(new) => {
                config = new;
                None
            }
            Err(error) => Some(error),
        };
        let report = health.record_reload(error);
        notify::ready();
        for reply in replies.into_iter().flatten() {
            let _ = reply.send(report.clone());
        }
    };
    notify::stopping();
    api_stop.cancel();
    if let Some(supervisor) = supervisor {
        let _ = supervisor.await;
    }
    if let Some(api) = api {
        let _ = api.await;
    }
    tracing::info!(?outcome, "ferry stopped");
    Ok(outcome)
}

/// Validates the config at `path` and applies it to `pipeline`; on any error the
/// running pipeline is kept as it was and the error says why.
async fn reload(path: &Path, current: &Config, pipeline: &mut Pipeline) -> Result<Config, String> {
    let new = match config::load(path) {
        Ok(new) => new,
        Err(error) => {
            tracing::error!("reload: the config is invalid; keeping the running pipeline: {error}");
            return Err(error.to_string());
        }
    };
    if new.data_dir != current.data_dir
        || new.api.address != current.api.address
        || new.api.enabled != current.api.enabled
    {
        tracing::warn!("data_dir and [api] changes take effect only after a restart");
    }
    match pipeline.reload(&new).await {
        Ok(changes) => {
            tracing::info!(
                config = %path.display(),
                kept = %changes.kept.join(","),
                started = %changes.started.join(","),
                restarted = %changes.restarted.join(","),
                removed = %changes.removed.join(","),
                "reloaded"
            );
            Ok(new)
        }
        Err(error) => {
            tracing::error!("reload failed; keeping the running pipeline: {error:#}");
            Err(format!("{error:#}"))
        }
    }
}

/// What a signal or an API call asks of the running pipeline.
enum Request {
    Stop,
    /// SIGHUP (no one to answer) or `POST /reload` (answered with the result).
    Reload(Option<ReloadRequest>),
}

/// The signals ferry acts on, and reloads asked for over the API.
struct Requests {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
    api: mpsc::Receiver<ReloadRequest>,
    api_open: bool,
}

impl Requests {
    fn new(api: mpsc::Receiver<ReloadRequest>) -> Result<Requests> {
        Ok(Requests {
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            hangup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
            api,
            api_open: true,
        })
    }

    async fn next(&mut self) -> Request {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => {
                    tracing::info!("SIGTERM received");
                    return Request::Stop;
                }
                _ = self.interrupt.recv() => {
                    tracing::info!("SIGINT received");
                    return Request::Stop;
                }
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP received; reloading");
                    return Request::Reload(None);
                }
                reply = self.api.recv(), if self.api_open => match reply {
                    Some(reply) => {
                        tracing::info!("reload requested over the API");
                        return Request::Reload(Some(reply));
                    }
                    None => self.api_open = false,
                },
            }
        }
    }

    /// Gathers the reload requests that follow `first` until none has come for
    /// [`RELOAD_SETTLE`], so a burst of them makes one reload; `None` if a stop
    /// came meanwhile.
    async fn settle(&mut self, first: Option<ReloadRequest>) -> Option<Vec<Option<ReloadRequest>>> {
        let mut replies = vec![first];
        loop {
            match tokio::time::timeout(RELOAD_SETTLE, self.next()).await {
                Err(_) => return Some(replies),
                Ok(Request::Reload(reply)) => replies.push(reply),
                Ok(Request::Stop) => return None,
            }
        }
    }
}

/// Opens the store named by the config at `path`, for the `checkpoints` commands.
pub fn open_store(path: &Path) -> Result<CheckpointStore> {
    let config = config::load(path)?;
    CheckpointStore::open(&config.data_dir)
}

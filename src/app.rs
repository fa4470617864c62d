//! The `ferry run` lifecycle: load the config, open the checkpoint store, serve the
//! API, start the pipeline, tell systemd we are ready, reload on SIGHUP, and stop
//! cleanly on SIGTERM or SIGINT.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::CheckpointStore;
use crate::config::{self, Config};
use crate::telemetry::{self, Health};
use crate::topology::{self, Outcome};

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
    let api = if config.api.enabled {
        Some(
            telemetry::serve_api(
                config.api.address,
                metrics,
                Arc::clone(&health),
                api_stop.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let mut signals = Signals::new()?;
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
    notify_systemd(sd_notify::NotifyState::Ready);
    let outcome = loop {
        let (outcome, request) = pipeline
            .run(signals.next(path, &config), config.shutdown_timeout)
            .await;
        let Some(Request::Reload(new)) = request else {
            break outcome;
        };
        if outcome != Outcome::Completed {
            break outcome;
        }
        notify_systemd(sd_notify::NotifyState::Reloading);
        pipeline = match topology::start(&new, Arc::clone(&store), Arc::clone(&health)) {
            Ok(started) => {
                config = *new;
                tracing::info!(config = %path.display(), "reloaded");
                started
            }
            Err(error) => {
                tracing::error!("reload failed, restarting the previous pipeline: {error:#}");
                topology::start(&config, Arc::clone(&store), Arc::clone(&health))?
            }
        };
        notify_systemd(sd_notify::NotifyState::Ready);
    };
    notify_systemd(sd_notify::NotifyState::Stopping);
    api_stop.cancel();
    if let Some(api) = api {
        let _ = api.await;
    }
    tracing::info!(?outcome, "ferry stopped");
    Ok(outcome)
}

/// What a signal asks of the running pipeline.
enum Request {
    Stop,
    /// SIGHUP with a config that validated: drain the running pipeline (committing its
    /// checkpoints), then start the new one.
    Reload(Box<Config>),
}

struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            hangup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        })
    }

    /// Waits for SIGTERM or SIGINT (stop), or for a SIGHUP after which the config at
    /// `path` is valid (reload). An invalid config is reported and the running
    /// pipeline is kept.
    async fn next(&mut self, path: &Path, current: &Config) -> Request {
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
                _ = self.hangup.recv() => match config::load(path) {
                    Ok(new) => {
                        if new.data_dir != current.data_dir || new.api.address != current.api.address || new.api.enabled != current.api.enabled {
                            tracing::warn!("data_dir and [api] changes take effect only after a restart");
                        }
                        tracing::info!("SIGHUP received; reloading");
                        return Request::Reload(Box::new(new));
                    }
                    Err(error) => tracing::error!("SIGHUP received but the config is invalid; keeping the running pipeline: {error}"),
                },
            }
        }
    }
}

fn notify_systemd(state: sd_notify::NotifyState) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(error) = sd_notify::notify(false, &[state])
    {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// Opens the store named by the config at `path`, for the `checkpoints` commands.
pub fn open_store(path: &Path) -> Result<CheckpointStore> {
    let config = config::load(path)?;
    CheckpointStore::open(&config.data_dir)
}

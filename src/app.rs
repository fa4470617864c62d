//! The `ferry run` lifecycle: load the config, open the checkpoint store, serve the
//! API, start the pipeline, tell systemd we are ready, and stop cleanly on SIGTERM or
//! SIGINT.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::CheckpointStore;
use crate::config;
use crate::telemetry::{self, Health};
use crate::topology::{self, Outcome};

/// Runs the pipeline described by the config at `path` until it ends or is stopped.
pub async fn run(path: &Path) -> Result<Outcome> {
    let config = config::load(path)?;
    let metrics = telemetry::metrics_handle()?;
    let health = Arc::new(Health::default());
    let store = Arc::new(CheckpointStore::open(&config.data_dir)?);
    let api_stop = CancellationToken::new();
    let api = if config.api.enabled {
        Some(telemetry::serve_api(config.api.address, metrics, Arc::clone(&health), api_stop.clone()).await?)
    } else {
        None
    };
    let pipeline = topology::start(&config, Arc::clone(&store), health)?;
    tracing::info!(
        config = %path.display(),
        sources = config.sources.len(),
        transforms = config.transforms.len(),
        sinks = config.sinks.len(),
        data_dir = %config.data_dir.display(),
        "ferry started"
    );
    notify_systemd(sd_notify::NotifyState::Ready);
    let outcome = pipeline.run(stop_signal(), config.shutdown_timeout).await;
    notify_systemd(sd_notify::NotifyState::Stopping);
    api_stop.cancel();
    if let Some(api) = api {
        let _ = api.await;
    }
    tracing::info!(?outcome, "ferry stopped");
    Ok(outcome)
}

/// Resolves on the first SIGTERM or SIGINT.
async fn stop_signal() {
    let terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM");
    let interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT");
    match (terminate, interrupt) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
            }
        }
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!("{error:#}; ferry can only be stopped by killing it");
            std::future::pending::<()>().await;
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

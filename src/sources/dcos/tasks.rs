//! Watches `GET /mesos/master/state` for the configured tasks reaching a terminal
//! state (`TASK_FINISHED`, `TASK_FAILED`, `TASK_KILLED`, `TASK_LOST`, …). A task's
//! file streams never end on their own, so once its task is terminal, its
//! followers stop after its files stay silent for `finished_task_grace`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::http::client::{FailureKind, HttpFailure};
use crate::http::stream::{Ended, RETRY_AFTER_CAP, Reconnect, error_chain, sleep_or_cancel};

#[derive(Debug, Deserialize)]
struct State {
    #[serde(default)]
    frameworks: Vec<Framework>,
}

#[derive(Debug, Deserialize)]
struct Framework {
    #[serde(default)]
    tasks: Vec<Task>,
    #[serde(default)]
    completed_tasks: Vec<Task>,
}

#[derive(Debug, Deserialize)]
struct Task {
    id: String,
    #[serde(default)]
    state: String,
}

fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_LOST"
            | "TASK_ERROR"
            | "TASK_DROPPED"
            | "TASK_GONE"
    )
}

/// Cancels `finished[task]` once the task is terminal; returns when all are, or on `stop`.
pub(crate) async fn watch(
    shared: Arc<Shared>,
    mut finished: BTreeMap<String, CancellationToken>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut reconnect = Reconnect::new(
        shared.options.clone(),
        Arc::clone(&shared.source),
        "mesos state",
        shared.auth_report.clone(),
    );
    while !finished.is_empty() {
        let wait = match poll(&shared).await {
            Ok(state) => {
                reconnect.healthy();
                for task in state
                    .frameworks
                    .iter()
                    .flat_map(|f| f.tasks.iter().chain(&f.completed_tasks))
                {
                    if is_terminal(&task.state)
                        && let Some(token) = finished.remove(&task.id)
                    {
                        tracing::info!(source = %shared.source, task = %task.id, state = %task.state, "task ended; following its files until they are quiet");
                        token.cancel();
                    }
                }
                interval
            }
            Err(ended) => reconnect.delay(&ended, None).max(interval),
        };
        if !sleep_or_cancel(wait, &stop).await {
            return;
        }
    }
}

async fn poll(shared: &Shared) -> Result<State, Ended> {
    let header = shared.credentials.header().await?;
    let request = header
        .apply(
            shared
                .client
                .get(format!("{}/mesos/master/state", shared.base)),
        )
        .timeout(shared.request_timeout);
    let scrub = |text: String| shared.credentials.scrub(&header.scrub(&text));
    let response = request
        .send()
        .await
        .map_err(|e| Ended::Lost(scrub(error_chain(&e))))?;
    if !response.status().is_success() {
        let mut failure =
            HttpFailure::from_response(response, Some(&header), RETRY_AFTER_CAP).await;
        failure.detail = scrub(failure.detail);
        if failure.kind == FailureKind::Auth {
            shared.credentials.refused(&header).await;
        }
        return Err(Ended::Failed(failure));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| Ended::Lost(scrub(error_chain(&e))))?;
    serde_json::from_slice(&body).map_err(|e| Ended::Lost(format!("unexpected Mesos state: {e}")))
}

//! Polls `GET …/deployment/{id}/containers` every `discovery_interval` (unless
//! `container_ids` is given and `lifecycle_events` is off): starts
//! followers for new containers, lets followers of gone or terminal containers end
//! with their stream, and ships each container's lifecycle events
//! (`container_events`) once, deduplicated by a cursor
//! `"{deployment}/{container}/system"` = `{"time": ns, "hashes": [...]}` (the latest
//! event time and the hashes of the events at that time).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::{IonetConfig, Manager, cursor_key};
use crate::event::{Event, Level, now_nanos};
use crate::http::client::HttpFailure;
use crate::http::stream::{Ended, RETRY_AFTER_CAP, Reconnect, error_chain, sleep_or_cancel};
use crate::sources::merge::Piece;

#[derive(Debug, Deserialize)]
struct ContainersResponse {
    data: ContainersData,
}

#[derive(Debug, Deserialize)]
struct ContainersData {
    #[serde(default)]
    workers: Vec<Worker>,
}

/// io.net's `WorkerData`, the fields ferry uses.
#[derive(Debug, Deserialize)]
struct Worker {
    container_id: String,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    container_events: Option<Vec<ContainerEvent>>,
}

#[derive(Debug, Deserialize)]
struct ContainerEvent {
    time: String,
    message: String,
}

/// The lifecycle events already shipped for one container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SystemCursor {
    time: i64,
    hashes: Vec<u64>,
}

fn is_terminal(status: &str) -> bool {
    matches!(
        status.to_ascii_lowercase().as_str(),
        "terminated" | "stopped" | "destroyed" | "completed" | "failed" | "exited" | "dead"
    )
}

pub(crate) async fn run(mut manager: Manager, config: IonetConfig) {
    let shared = Arc::clone(&manager.shared);
    let explicit: Option<BTreeSet<String>> = config
        .container_ids
        .as_ref()
        .map(|ids| ids.iter().cloned().collect());
    for id in explicit.iter().flatten() {
        manager.follow(id, None);
    }
    if explicit.is_some() && !config.lifecycle_events {
        // Nothing to learn from the containers list: just wait for the stop.
        manager.stop.cancelled().await;
        manager.shutdown().await;
        return;
    }
    let mut system: BTreeMap<String, SystemCursor> = BTreeMap::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut reconnect = Reconnect::new(
        shared.options.clone(),
        Arc::clone(&shared.source),
        "containers list",
        shared.auth_report.clone(),
    );
    loop {
        let wait = match poll(&manager).await {
            Ok(workers) => {
                reconnect.healthy();
                let listed: BTreeSet<String> =
                    workers.iter().map(|w| w.container_id.clone()).collect();
                for worker in &workers {
                    if explicit
                        .as_ref()
                        .is_some_and(|ids| !ids.contains(&worker.container_id))
                    {
                        continue;
                    }
                    if config.lifecycle_events
                        && !lifecycle(&mut manager, worker, &mut system).await
                    {
                        break;
                    }
                    if explicit.is_some() {
                        continue;
                    }
                    let id = worker.container_id.as_str();
                    let terminal = worker.status.as_deref().is_some_and(is_terminal);
                    if !terminal {
                        done.remove(id);
                        manager.follow(id, worker.device_id.as_deref());
                    } else if !done.contains(id) {
                        manager.follow(id, worker.device_id.as_deref());
                        manager.finish(id);
                        done.insert(id.to_string());
                    }
                }
                if explicit.is_none() {
                    let gone: Vec<String> = manager
                        .followers
                        .keys()
                        .filter(|id| !listed.contains(*id))
                        .cloned()
                        .collect();
                    for id in gone {
                        manager.finish(&id);
                    }
                }
                config.discovery_interval
            }
            Err(ended) => reconnect.delay(&ended, None),
        };
        manager.reap();
        if !sleep_or_cancel(wait, &manager.stop).await {
            break;
        }
    }
    manager.shutdown().await;
}

async fn poll(manager: &Manager) -> Result<Vec<Worker>, Ended> {
    let shared = &manager.shared;
    let url = shared
        .url(&format!("/deployment/{}/containers", shared.deployment))
        .map_err(|e| Ended::Lost(format!("bad URL: {e}")))?;
    let request = shared
        .auth
        .apply(shared.client.get(url))
        .timeout(shared.request_timeout);
    let response = tokio::select! {
        () = manager.stop.cancelled() => return Ok(Vec::new()),
        response = request.send() => response,
    }
    .map_err(|e| Ended::Lost(shared.auth.scrub(&error_chain(&e))))?;
    if !response.status().is_success() {
        return Err(Ended::Failed(
            HttpFailure::from_response(response, Some(&shared.auth), RETRY_AFTER_CAP).await,
        ));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| Ended::Lost(shared.auth.scrub(&error_chain(&e))))?;
    let parsed: ContainersResponse = serde_json::from_slice(&body)
        .map_err(|e| Ended::Lost(format!("unexpected containers list: {e}")))?;
    Ok(parsed.data.workers)
}

/// Ships the new lifecycle events of `worker`; `false` if the source is stopping.
async fn lifecycle(
    manager: &mut Manager,
    worker: &Worker,
    system: &mut BTreeMap<String, SystemCursor>,
) -> bool {
    let shared = Arc::clone(&manager.shared);
    let key = cursor_key(&shared.deployment, &worker.container_id, "system");
    let cursor = system
        .entry(worker.container_id.clone())
        .or_insert_with(|| {
            manager
                .checkpoint
                .get(&key)
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default()
        });
    let mut entries: Vec<(i64, &ContainerEvent)> = worker
        .container_events
        .iter()
        .flatten()
        .map(|e| {
            let time = chrono::DateTime::parse_from_rfc3339(&e.time)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .unwrap_or(0);
            (time, e)
        })
        .collect();
    entries.sort_by_key(|(time, _)| *time);
    let mut events = Vec::new();
    for (time, entry) in entries {
        let hash = xxh3_64(format!("{}\n{}", entry.time, entry.message).as_bytes());
        if time < cursor.time || (time == cursor.time && cursor.hashes.contains(&hash)) {
            continue;
        }
        if time > cursor.time {
            cursor.time = time;
            cursor.hashes.clear();
        }
        cursor.hashes.push(hash);
        let timestamp = if time == 0 { now_nanos() } else { time };
        let mut event = Event::new(
            Arc::clone(&shared.source),
            Arc::clone(&shared.provider),
            entry.message.clone(),
            timestamp,
        );
        event.level = Some(Level::Info);
        event.stream = Some("system".into());
        event.origin.deployment = Some(shared.deployment.clone());
        event.origin.instance = Some(worker.container_id.clone());
        event.origin.host.clone_from(&worker.device_id);
        events.push(event);
    }
    if events.is_empty() {
        return true;
    }
    let value = serde_json::to_value(&*cursor).ok().map(|v| (key, v));
    tokio::select! {
        () = manager.stop.cancelled() => false,
        sent = manager.pieces.send(Piece { events, cursor: value }) => sent.is_ok(),
    }
}

//! Polls `GET …/deployment/{id}/containers` every `discovery_interval` (unless
//! `container_ids` is given and `lifecycle_events` is off): starts
//! followers for new containers, lets followers of gone or terminal containers end
//! with their stream, and ships each container's lifecycle events
//! (`container_events`) once, deduplicated by a cursor
//! `"{deployment}/{container}/system"` = `{"time": ns, "hashes": [...]}` (the latest
//! event time and the hashes of the events at that time).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;

use super::{Deployment, IonetConfig, container_streams, cursor_key};
use crate::event::{Level, now_nanos};
use crate::http::stream::Ended;
use crate::sources::provider::{Context, DedupeCursor, Feed, Followers};

#[derive(Debug, Deserialize)]
struct ContainersResponse {
    data: ContainersData,
}

#[derive(Debug, Deserialize)]
struct ContainersData {
    /// Missing or null: none.
    #[serde(default)]
    workers: Option<Vec<Worker>>,
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

/// A lifecycle event; a missing or null field reads as empty rather than failing
/// the whole containers list (one without a message is not shipped).
#[derive(Debug, Deserialize)]
struct ContainerEvent {
    #[serde(default, deserialize_with = "null_as_empty")]
    time: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    message: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_terminal(status: &str) -> bool {
    matches!(
        status.to_ascii_lowercase().as_str(),
        "terminated" | "stopped" | "destroyed" | "completed" | "failed" | "exited" | "dead"
    )
}

pub(crate) async fn run(ctx: Arc<Context>, config: IonetConfig) {
    let deployment = Arc::new(Deployment::new(&config.endpoint, &config.deployment_id));
    let mut followers = Followers::new(Arc::clone(&ctx));
    let follow = |followers: &mut Followers, id: &str, host: Option<&str>| {
        followers.follow(id, || {
            container_streams(&ctx, &deployment, &config.streams, id, host)
        });
    };
    let explicit: Option<BTreeSet<String>> = config
        .container_ids
        .as_ref()
        .map(|ids| ids.iter().cloned().collect());
    for id in explicit.iter().flatten() {
        follow(&mut followers, id, None);
    }
    if explicit.is_some() && !config.lifecycle_events {
        // Nothing to learn from the containers list: just wait for the stop.
        ctx.stop.cancelled().await;
        followers.shutdown().await;
        return;
    }
    let mut lifecycle = Lifecycle {
        cursors: BTreeMap::new(),
        deployment: Arc::clone(&deployment),
    };
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut reconnect = ctx.reconnect("containers list");
    loop {
        let wait = match poll(&ctx, &deployment).await {
            Ok(workers) => {
                reconnect.healthy();
                let listed: BTreeSet<&str> =
                    workers.iter().map(|w| w.container_id.as_str()).collect();
                for worker in &workers {
                    let id = worker.container_id.as_str();
                    if explicit.as_ref().is_some_and(|ids| !ids.contains(id)) {
                        continue;
                    }
                    if config.lifecycle_events && !lifecycle.ship(&ctx, worker).await {
                        break;
                    }
                    if explicit.is_some() {
                        continue;
                    }
                    let host = worker.device_id.as_deref();
                    if !worker.status.as_deref().is_some_and(is_terminal) {
                        done.remove(id);
                        follow(&mut followers, id, host);
                    } else if !done.contains(id) {
                        follow(&mut followers, id, host);
                        followers.finish(id);
                        done.insert(id.to_string());
                    }
                }
                if explicit.is_none() {
                    let gone: Vec<String> = followers
                        .groups()
                        .filter(|id| !listed.contains(id))
                        .map(str::to_string)
                        .collect();
                    for id in gone {
                        followers.finish(&id);
                    }
                }
                config.discovery_interval
            }
            Err(ended) => reconnect.delay(&ended, None),
        };
        followers.reap();
        if !ctx.sleep(wait).await {
            break;
        }
    }
    followers.shutdown().await;
}

async fn poll(ctx: &Context, deployment: &Deployment) -> Result<Vec<Worker>, Ended> {
    let url = deployment.url("/containers")?;
    let timeout = ctx.options.request_timeout;
    let list: ContainersResponse = tokio::select! {
        () = ctx.stop.cancelled() => return Ok(Vec::new()),
        list = ctx.api.json(|client| client.get(url.clone()).timeout(timeout)) => list?,
    };
    Ok(list.data.workers.unwrap_or_default())
}

/// Ships each container's lifecycle events once, deduplicated by a cursor
/// `"{deployment}/{container}/system"` per container.
struct Lifecycle {
    cursors: BTreeMap<String, DedupeCursor>,
    deployment: Arc<Deployment>,
}

impl Lifecycle {
    /// Ships the new lifecycle events of `worker`; `false` if the source is stopping.
    async fn ship(&mut self, ctx: &Context, worker: &Worker) -> bool {
        let key = cursor_key(&self.deployment.id, &worker.container_id, "system");
        let cursor = self
            .cursors
            .entry(worker.container_id.clone())
            .or_insert_with(|| ctx.saved(&key).unwrap_or_default());
        let mut entries: Vec<(i64, &ContainerEvent)> = worker
            .container_events
            .iter()
            .flatten()
            .filter(|e| !e.message.is_empty())
            .map(|e| {
                let time = chrono::DateTime::parse_from_rfc3339(&e.time)
                    .ok()
                    .and_then(|t| t.timestamp_nanos_opt())
                    .unwrap_or(0);
                (time, e)
            })
            .collect();
        crate::sources::provider::sort_by_time(&mut entries, |(time, _)| *time);
        let mut feed = Feed::new();
        let mut out = ctx.emitter();
        for (time, entry) in entries {
            let line = format!("{}\n{}", entry.time, entry.message);
            if !cursor.admit(&mut feed, time, line.as_bytes()) {
                continue;
            }
            let timestamp = if time == 0 { now_nanos() } else { time };
            let mut event = ctx.event(entry.message.clone(), timestamp);
            event.level = Some(Level::Info);
            event.stream = Some("system".into());
            event.origin.deployment = Some(self.deployment.id.clone());
            event.origin.instance = Some(worker.container_id.clone());
            event.origin.host.clone_from(&worker.device_id);
            out.push(event);
        }
        if out.is_empty() {
            return true;
        }
        let value = serde_json::to_value(&*cursor).ok().map(|v| (key, v));
        out.send(value).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::ContainersResponse;

    #[test]
    fn null_workers_and_null_event_fields_do_not_fail_the_list() {
        let none: ContainersResponse =
            serde_json::from_str(r#"{"data":{"total":0,"workers":null}}"#).unwrap();
        assert!(none.data.workers.unwrap_or_default().is_empty());
        let list: ContainersResponse = serde_json::from_str(
            r#"{"data":{"total":1,"workers":[{"container_id":"c1","device_id":null,
                "container_events":[{"time":null,"message":"pulled"},{"time":"2024-05-01T12:00:00Z"}]}]}}"#,
        )
        .unwrap();
        let workers = list.data.workers.unwrap();
        let events = workers[0].container_events.as_ref().unwrap();
        assert_eq!(
            (events[0].time.as_str(), events[0].message.as_str()),
            ("", "pulled")
        );
        assert_eq!(events[1].message, "");
    }
}

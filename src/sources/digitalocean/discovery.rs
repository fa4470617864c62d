//! The `digitalocean` source's driver: which deployment to follow.
//!
//! With `deployment_id`, that one. Otherwise `GET /v2/apps/{app_id}` is read every
//! `discovery_interval`, and soon after any live socket ends (the socket does not
//! follow a redeploy): the app's active deployment, else its in-progress one, is
//! followed. When that changes, the new deployment's streams start (they read it
//! from its start) and the old deployment's group is finished: its live sockets
//! are read until quiet for `finished_deployment_grace`, then its archives once
//! more, through the same cursors, so nothing logged before the switch is missed.
//! Deployments a previous run was reading and had not finished are read to their
//! end the same way.
//!
//! A deployment's group is its id; its streams are one per log type (times one per
//! configured component).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Notify;

use super::follow::{Deployment, LogStream, Shared, unfinished_deployment};
use super::{App, DigitalOceanConfig};
use crate::http::stream::Ended;
use crate::sources::provider::{Context, Follow, Followers};

/// Fewest time between two reads of the app that a live socket's end asks for.
const MIN_APP_READ_SPACING: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
struct AppAnswer {
    app: AppState,
}

#[derive(Debug, Default, Deserialize)]
struct AppState {
    #[serde(default)]
    active_deployment: Option<DeploymentRef>,
    #[serde(default)]
    in_progress_deployment: Option<DeploymentRef>,
}

#[derive(Debug, Deserialize)]
struct DeploymentRef {
    #[serde(default)]
    id: String,
}

impl AppState {
    /// doctl's choice: the active deployment, else the in-progress one.
    fn current(&self) -> Option<&str> {
        [&self.active_deployment, &self.in_progress_deployment]
            .into_iter()
            .flatten()
            .map(|d| d.id.as_str())
            .find(|id| !id.is_empty())
    }
}

/// Starts and finishes the groups of deployments.
struct Groups {
    ctx: Arc<Context>,
    shared: Arc<Shared>,
    config: DigitalOceanConfig,
    followers: Followers,
    /// Deployments started in this run (a group is never started twice).
    started: BTreeMap<String, Arc<Deployment>>,
    /// `tail_lines` for the next deployment without a cursor: the configured one
    /// until the first deployment is followed on a first start, then all.
    first_tail: i64,
}

impl Groups {
    fn start(&mut self, id: &str, finished: bool) {
        if self.started.contains_key(id) {
            return;
        }
        let deployment = Arc::new(Deployment::new(id, self.first_tail));
        self.started.insert(id.to_string(), Arc::clone(&deployment));
        self.first_tail = -1;
        if finished {
            deployment.finish();
        }
        let (ctx, shared, config) = (&self.ctx, &self.shared, &self.config);
        self.followers.follow(id, || {
            let components: Vec<Option<String>> = if config.components.is_empty() {
                vec![None]
            } else {
                config.components.iter().cloned().map(Some).collect()
            };
            let mut streams: Vec<Box<dyn Follow>> = Vec::new();
            for &log_type in &config.types {
                for component in &components {
                    streams.push(Box::new(LogStream::new(
                        ctx,
                        Arc::clone(shared),
                        Arc::clone(&deployment),
                        log_type,
                        component.clone(),
                    )));
                }
            }
            streams
        });
        if finished {
            self.followers.finish(id);
        }
    }

    /// The deployment was superseded: its streams read what they can, then leave.
    fn finish(&mut self, id: &str) {
        if let Some(deployment) = self.started.get(id) {
            deployment.finish();
        }
        self.followers.finish(id);
    }
}

pub(crate) async fn run(ctx: Arc<Context>, config: DigitalOceanConfig) {
    let app = match App::new(&config.endpoint, &config.app_id) {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(source = %ctx.source, "{error}");
            return;
        }
    };
    let shared = Arc::new(Shared {
        app,
        poll_interval: config.discovery_interval,
        finished_grace: config.finished_deployment_grace,
        app_changed: Notify::new(),
    });
    let mut groups = Groups {
        first_tail: if ctx.checkpoint.is_empty() {
            config.tail_lines
        } else {
            -1
        },
        followers: Followers::new(Arc::clone(&ctx)),
        started: BTreeMap::new(),
        ctx: Arc::clone(&ctx),
        shared: Arc::clone(&shared),
        config,
    };
    if let Some(id) = groups.config.deployment_id.clone() {
        groups.start(&id, false);
        ctx.stop.cancelled().await;
        groups.followers.shutdown().await;
        return;
    }
    let mut unfinished: BTreeSet<String> = ctx
        .checkpoint
        .iter()
        .filter_map(|(key, value)| unfinished_deployment(key, value))
        .map(str::to_string)
        .collect();
    let mut current: Option<String> = None;
    let mut reconnect = ctx.reconnect("app");
    let mut reported_none = false;
    loop {
        let read_at = Instant::now();
        let wait = match read_app(&ctx, &shared).await {
            Ok(state) => {
                reconnect.healthy();
                let found = state.current().map(str::to_string);
                if found != current {
                    if let Some(old) = current.take() {
                        tracing::info!(source = %ctx.source, deployment = %old, new = ?found, "the app's deployment changed; reading the old one to its end");
                        groups.finish(&old);
                    }
                    if let Some(id) = &found {
                        groups.start(id, false);
                        reported_none = false;
                    } else if !reported_none {
                        tracing::warn!(source = %ctx.source, "the app has no active or in-progress deployment; waiting for one");
                        reported_none = true;
                    }
                    current = found;
                }
                for old in std::mem::take(&mut unfinished) {
                    if current.as_deref() != Some(old.as_str()) {
                        groups.start(&old, true);
                    }
                }
                groups.config.discovery_interval
            }
            Err(ended) => reconnect.delay(&ended, None),
        };
        groups.followers.reap();
        let spacing = MIN_APP_READ_SPACING.min(wait);
        let woken = tokio::select! {
            () = ctx.stop.cancelled() => break,
            () = tokio::time::sleep(wait) => false,
            () = shared.app_changed.notified() => true,
        };
        if woken && !ctx.sleep(spacing.saturating_sub(read_at.elapsed())).await {
            break;
        }
    }
    groups.followers.shutdown().await;
}

async fn read_app(ctx: &Context, shared: &Shared) -> Result<AppState, Ended> {
    let url = shared.app.url();
    let timeout = ctx.options.request_timeout;
    let answer: AppAnswer = ctx
        .api
        .json(|client| client.get(url.clone()).timeout(timeout))
        .await?;
    Ok(answer.app)
}

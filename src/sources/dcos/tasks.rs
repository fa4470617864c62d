//! The `dcos` source's driver: follows the journal and the configured units from
//! the start, and the tasks — the configured ones, or those discovered in
//! `GET /mesos/master/state` (through Admin Router) when `tasks` is empty. Mesos
//! state is read every `task_poll_interval`:
//!
//! - a discovered task is followed once it is `TASK_RUNNING`, or once it shows up
//!   already ended after ferry started (a task shorter than the poll interval);
//!   tasks that had ended before ferry's first look are left alone, unless a
//!   saved cursor says ferry was reading them (then their rest is read);
//! - a followed task whose state turns terminal (`TASK_FINISHED`, `TASK_FAILED`,
//!   `TASK_KILLED`, `TASK_LOST`, …), or that leaves the state, is finished: its
//!   files are followed until they stay quiet for `finished_task_grace`.
//!
//! A task's group is its id; its streams are one per configured file.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Deserialize;

use super::DcosConfig;
use super::follow::{Cluster, Stream, Target};
use crate::sources::provider::{Context, Follow, Followers};

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
            | "TASK_GONE_BY_OPERATOR"
    )
}

pub(crate) async fn run(ctx: Arc<Context>, config: DcosConfig) {
    let endpoint = config.endpoint.trim_end_matches('/');
    let cluster = Arc::new(Cluster {
        source: Arc::clone(&ctx.source),
        logs: format!("{endpoint}/system/v1/logs/v2"),
        finished_task_grace: config.finished_task_grace,
        fallback_entries: config.fallback_entries,
    });
    let state_url = format!("{endpoint}/mesos/master/state");
    let mut followers = Followers::new(Arc::clone(&ctx));
    let mut units: Vec<Target> = config
        .components
        .iter()
        .cloned()
        .map(Target::Component)
        .collect();
    if config.journal {
        units.insert(0, Target::Journal);
    }
    for target in units {
        followers.follow(&target.key(), || {
            vec![
                Box::new(Stream::new(&ctx, Arc::clone(&cluster), target.clone()))
                    as Box<dyn Follow>,
            ]
        });
    }
    let mut tasks = Tasks {
        ctx: Arc::clone(&ctx),
        cluster,
        files: config.files.clone(),
        discover: config.tasks.is_empty() && config.discover_tasks,
        pending: config.tasks.iter().cloned().collect(),
        known: None,
    };
    for id in &config.tasks {
        tasks.follow(&mut followers, id);
    }
    let mut reconnect = ctx.reconnect("mesos state");
    while tasks.discover || !tasks.pending.is_empty() {
        let timeout = ctx.options.request_timeout;
        let polled = tokio::select! {
            () = ctx.stop.cancelled() => break,
            state = ctx.api.json::<State>(|client| client.get(&state_url).timeout(timeout)) => state,
        };
        let wait = match polled {
            Ok(state) => {
                reconnect.healthy();
                tasks.update(&mut followers, &state);
                config.task_poll_interval
            }
            Err(ended) => reconnect.delay(&ended, None).max(config.task_poll_interval),
        };
        followers.reap();
        if !ctx.sleep(wait).await {
            break;
        }
    }
    ctx.stop.cancelled().await;
    followers.shutdown().await;
}

/// The tasks followed, and what is known of the others.
struct Tasks {
    ctx: Arc<Context>,
    cluster: Arc<Cluster>,
    files: Vec<String>,
    discover: bool,
    /// Configured tasks not yet seen ending.
    pending: BTreeSet<String>,
    /// Ended tasks already dealt with (or left alone); `None` before the first look.
    known: Option<BTreeSet<String>>,
}

impl Tasks {
    /// Follows the files of task `id` (group `task/{id}`) unless they are followed.
    fn follow(&self, followers: &mut Followers, id: &str) {
        followers.follow(&group(id), || {
            self.files
                .iter()
                .map(|file| {
                    let target = Target::Task {
                        id: id.to_string(),
                        file: file.clone(),
                    };
                    Box::new(Stream::new(&self.ctx, Arc::clone(&self.cluster), target))
                        as Box<dyn Follow>
                })
                .collect()
        });
    }

    fn has_cursor(&self, id: &str) -> bool {
        self.files.iter().any(|file| {
            self.ctx
                .checkpoint
                .contains_key(&format!("task/{id}/{file}"))
        })
    }

    fn update(&mut self, followers: &mut Followers, state: &State) {
        let listed: Vec<&Task> = state
            .frameworks
            .iter()
            .flat_map(|f| f.tasks.iter().chain(&f.completed_tasks))
            .collect();
        for task in &listed {
            if is_terminal(&task.state) && self.pending.remove(&task.id) {
                tracing::info!(source = %self.ctx.source, task = %task.id, state = %task.state, "task ended");
                followers.finish(&group(&task.id));
            }
        }
        if !self.discover {
            return;
        }
        let first_look = self.known.is_none();
        let known = self.known.take().unwrap_or_default();
        let mut ended = BTreeSet::new();
        for task in &listed {
            let id = task.id.as_str();
            if task.state == "TASK_RUNNING" {
                self.follow(followers, id);
            } else if is_terminal(&task.state) {
                ended.insert(id.to_string());
                if known.contains(id) {
                    continue;
                }
                let followed = followers.groups().any(|g| g == group(id));
                if followed || !first_look || self.has_cursor(id) {
                    self.follow(followers, id);
                    followers.finish(&group(id));
                }
            }
        }
        let listed_groups: BTreeSet<String> = listed.iter().map(|t| group(&t.id)).collect();
        let gone: Vec<String> = followers
            .groups()
            .filter(|g| g.starts_with(TASK_GROUP) && !listed_groups.contains(*g))
            .map(str::to_string)
            .collect();
        for group in gone {
            followers.finish(&group);
        }
        self.known = Some(ended);
    }
}

/// Task groups are named `task/{id}` (units are `journal` and `component/{name}`).
const TASK_GROUP: &str = "task/";

fn group(task: &str) -> String {
    format!("{TASK_GROUP}{task}")
}

//! The running sub-streams of a provider source, in named groups that start and
//! finish together: a container's stdout and stderr, a task's files, a job, a
//! deployment's components. A driver (discovery) starts a group when its thing
//! appears, finishes it when the thing is gone or terminal — its streams are then
//! read to their end, or until quiet for their grace — and may start it again if
//! it comes back once those streams have ended.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Context, Follow, follow};

/// See the module doc.
pub struct Followers {
    ctx: Arc<Context>,
    groups: BTreeMap<String, Group>,
}

struct Group {
    /// Fired when the group's thing has finished.
    finish: CancellationToken,
    tasks: JoinSet<()>,
}

impl Group {
    /// Whether any of the group's streams still runs (collecting those that ended).
    fn running(&mut self) -> bool {
        while self.tasks.try_join_next().is_some() {}
        !self.tasks.is_empty()
    }
}

impl Followers {
    pub fn new(ctx: Arc<Context>) -> Self {
        Followers {
            ctx,
            groups: BTreeMap::new(),
        }
    }

    /// Follows the streams `streams` makes as group `group`, unless that group
    /// still has a stream running. `true` if it started them.
    pub fn follow(&mut self, group: &str, streams: impl FnOnce() -> Vec<Box<dyn Follow>>) -> bool {
        if self.is_following(group) {
            return false;
        }
        let finish = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for stream in streams() {
            tasks.spawn(follow::run(Arc::clone(&self.ctx), stream, finish.clone()));
        }
        tracing::info!(source = %self.ctx.source, group, "following");
        self.groups
            .insert(group.to_string(), Group { finish, tasks });
        true
    }

    /// Whether `group` has a stream still running.
    pub fn is_following(&mut self, group: &str) -> bool {
        self.groups.get_mut(group).is_some_and(Group::running)
    }

    /// The group's thing is gone or terminal: its streams end with their stream
    /// (or after their grace of silence).
    pub fn finish(&mut self, group: &str) {
        if let Some(g) = self.groups.get(group)
            && !g.finish.is_cancelled()
        {
            tracing::info!(source = %self.ctx.source, group, "finished; following its streams to their end");
            g.finish.cancel();
        }
    }

    /// The groups started and not yet reaped.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// Forgets the groups whose streams have all ended.
    pub fn reap(&mut self) {
        self.groups.retain(|_, group| group.running());
    }

    /// Waits for every stream to end (they end when the source stops).
    pub async fn shutdown(self) {
        for (_, mut group) in self.groups {
            while group.tasks.join_next().await.is_some() {}
        }
    }
}

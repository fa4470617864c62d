//! The `bytenite` source's driver: which jobs to poll, and until when.
//!
//! With `job_ids`, those jobs are followed from the start and their state is read
//! from `GET /v1/customer/jobs/{id}` every `poll_interval`. Without, the account's
//! jobs are listed (`GET /v1/customer/jobs`, page by page) every `poll_interval`:
//!
//! - a job that runs (not ended, and past `JOB_STATE_NEW`) is followed;
//! - a job that ended is followed until `finished_job_grace` after its `endedAt`,
//!   then polled once more and left — if ferry followed it, or it started and
//!   ended between two looks, or a saved cursor says ferry was reading it before
//!   a restart; jobs that had ended before ferry's first look are left alone;
//! - a followed job that leaves the list is polled once more and left.
//!
//! A job counts as ended once it has an `endedAt` (or the older `completedAt`), or
//! a terminal state (completed, failed, cancelled…) without one. A job's group in
//! [`Followers`] is its id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::Settings;
use super::follow::JobLogs;
use super::wire::parse_timestamp;
use crate::event::now_nanos;
use crate::http::stream::Ended;
use crate::sources::provider::{Context, Follow, Followers};

/// Jobs asked for per page of the list.
const PAGE_SIZE: usize = 100;
/// Most pages of the list read per look (the newest jobs come first).
const MAX_PAGES: usize = 20;

/// A job as `GET /v1/customer/jobs[/{id}]` describes it (the fields ferry uses).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Job {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "templateId", default)]
    pub template_id: Option<String>,
    /// `jobJobState`: an enum name or number.
    #[serde(default)]
    pub state: Value,
    #[serde(rename = "endedAt", default)]
    pub ended_at: Option<String>,
    #[serde(rename = "completedAt", default)]
    pub completed_at: Option<String>,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Created, not started (`JOB_STATE_NEW`): no logs yet.
    Waiting,
    Running,
    /// Ended, at this time (Unix ns) if the job says.
    Ended(Option<i64>),
}

impl Job {
    pub fn phase(&self) -> Phase {
        for time in [&self.ended_at, &self.completed_at].into_iter().flatten() {
            let time = time.trim();
            // Unset: empty, or Go's zero time.
            if time.is_empty() || time.starts_with("0001-01-01") {
                continue;
            }
            return Phase::Ended(parse_timestamp(time));
        }
        let state = match &self.state {
            Value::String(name) => name.to_ascii_uppercase(),
            _ => return Phase::Running,
        };
        let state = state.strip_prefix("JOB_STATE_").unwrap_or(&state);
        if [
            "COMPLETE", "SUCCE", "FAIL", "CANCEL", "ERROR", "ABORT", "TERMINAT", "DONE",
        ]
        .iter()
        .any(|terminal| state.starts_with(terminal))
        {
            Phase::Ended(None)
        } else if matches!(state, "NEW" | "UNSPECIFIED" | "DRAFT" | "CREATED") {
            Phase::Waiting
        } else {
            Phase::Running
        }
    }
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default, alias = "jobs")]
    data: Vec<Job>,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Debug, Deserialize)]
struct Pagination {
    #[serde(rename = "hasNext", default)]
    has_next: Option<bool>,
}

pub(crate) async fn run(ctx: Arc<Context>, settings: Arc<Settings>, job_ids: Vec<String>) {
    let mut jobs = Jobs {
        ctx: Arc::clone(&ctx),
        settings: Arc::clone(&settings),
        followers: Followers::new(Arc::clone(&ctx)),
        explicit: job_ids,
        deadlines: BTreeMap::new(),
        done: BTreeSet::new(),
        ended_before: None,
    };
    let mut reconnect = ctx.reconnect("jobs");
    let mut first = true;
    loop {
        let looked = tokio::select! {
            () = ctx.stop.cancelled() => break,
            looked = jobs.look() => looked,
        };
        let wait = match looked {
            Ok(listed) => {
                reconnect.healthy();
                jobs.update(&listed);
                settings.poll_interval
            }
            Err(ended) => {
                if first && !jobs.explicit.is_empty() {
                    // Follow the configured jobs even if their state cannot be read.
                    jobs.update(&[]);
                }
                reconnect.delay(&ended, None).max(settings.poll_interval)
            }
        };
        first = false;
        jobs.finish_due();
        jobs.followers.reap();
        if jobs.all_done() {
            ctx.stop.cancelled().await;
            break;
        }
        if !ctx.sleep(wait).await {
            break;
        }
    }
    jobs.followers.shutdown().await;
}

struct Jobs {
    ctx: Arc<Context>,
    settings: Arc<Settings>,
    followers: Followers,
    /// The configured jobs; empty: discover.
    explicit: Vec<String>,
    /// Followed jobs that ended: when to stop.
    deadlines: BTreeMap<String, Instant>,
    /// Jobs followed to their end (not to be followed again unless they run).
    done: BTreeSet<String>,
    /// Discovery: the jobs seen ended at the previous look; `None` before the first.
    ended_before: Option<BTreeSet<String>>,
}

impl Jobs {
    /// The jobs' states: the configured ones, or the account's.
    async fn look(&self) -> Result<Vec<Job>, Ended> {
        if self.explicit.is_empty() {
            return self.list().await;
        }
        let mut found = Vec::new();
        let mut failed = None;
        for id in self.explicit.iter().filter(|id| !self.done.contains(*id)) {
            match self.get(id).await {
                Ok(job) => found.push(job),
                Err(ended) => failed = Some(ended),
            }
        }
        match failed {
            Some(ended) if found.is_empty() => Err(ended),
            _ => Ok(found),
        }
    }

    async fn get(&self, id: &str) -> Result<Job, Ended> {
        let mut url = url::Url::parse(&self.settings.jobs_url)
            .map_err(|e| Ended::Lost(format!("bad URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| Ended::Lost("the endpoint cannot be a base URL".into()))?
            .push(id);
        let timeout = self.settings.request_timeout;
        let answer: Value = self
            .ctx
            .api
            .json(|client| client.get(url.clone()).timeout(timeout))
            .await?;
        // `{"job": {…}, "templateInfo": {…}}`, or the job itself.
        let job = answer.get("job").unwrap_or(&answer);
        Job::deserialize(job).map_err(|e| Ended::Lost(format!("unexpected job from ByteNite: {e}")))
    }

    async fn list(&self) -> Result<Vec<Job>, Ended> {
        let timeout = self.settings.request_timeout;
        let mut jobs = Vec::new();
        for page in 0..MAX_PAGES {
            let mut url = url::Url::parse(&self.settings.jobs_url)
                .map_err(|e| Ended::Lost(format!("bad URL: {e}")))?;
            url.query_pairs_mut()
                .append_pair("pagination.limit", &PAGE_SIZE.to_string())
                .append_pair("pagination.offset", &(page * PAGE_SIZE).to_string());
            let answer: Page = self
                .ctx
                .api
                .json(|client| client.get(url.clone()).timeout(timeout))
                .await?;
            let count = answer.data.len();
            jobs.extend(answer.data.into_iter().filter(|job| !job.id.is_empty()));
            let next = answer
                .pagination
                .and_then(|p| p.has_next)
                .unwrap_or(count >= PAGE_SIZE);
            if !next || count == 0 {
                return Ok(jobs);
            }
        }
        tracing::warn!(source = %self.ctx.source, "the account lists more than {} jobs; only the first {} pages are looked at", MAX_PAGES * PAGE_SIZE, MAX_PAGES);
        Ok(jobs)
    }

    fn follow(&mut self, id: &str, job: Option<&Job>) {
        let template = job.and_then(|j| j.template_id.clone());
        let (ctx, settings) = (&self.ctx, &self.settings);
        self.followers.follow(id, || {
            vec![Box::new(JobLogs::new(ctx, Arc::clone(settings), id, template)) as Box<dyn Follow>]
        });
    }

    /// Whether the checkpoint holds cursors of job `id` (ferry read it before).
    fn has_cursor(&self, id: &str) -> bool {
        let prefix = format!("{id}/");
        self.ctx
            .checkpoint
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(key, _)| key.starts_with(&prefix))
    }

    /// When to stop following a job that ended at `time`: `finished_job_grace`
    /// after it (counted from now if the job does not say, and never later).
    fn deadline(&self, time: Option<i64>) -> Instant {
        let grace = self.settings.finished_job_grace;
        let left = match time {
            Some(time) => {
                let since = now_nanos().saturating_sub(time).max(0) as u64;
                grace.saturating_sub(Duration::from_nanos(since))
            }
            None => grace,
        };
        Instant::now() + left
    }

    fn ended(&mut self, id: &str, time: Option<i64>) {
        if !self.deadlines.contains_key(id) && !self.done.contains(id) {
            tracing::info!(source = %self.ctx.source, job = id, "job ended; following its logs for finished_job_grace more");
            let deadline = self.deadline(time);
            self.deadlines.insert(id.to_string(), deadline);
        }
    }

    fn update(&mut self, listed: &[Job]) {
        if self.explicit.is_empty() {
            self.discovered(listed);
            return;
        }
        let by_id: HashMap<&str, &Job> = listed.iter().map(|j| (j.id.as_str(), j)).collect();
        for id in self.explicit.clone() {
            if self.done.contains(&id) {
                continue;
            }
            let job = by_id.get(id.as_str()).copied();
            self.follow(&id, job);
            if let Some(Phase::Ended(time)) = job.map(Job::phase) {
                self.ended(&id, time);
            }
        }
    }

    fn discovered(&mut self, listed: &[Job]) {
        let first_look = self.ended_before.is_none();
        let ended_before = self.ended_before.take().unwrap_or_default();
        let mut ended_now = BTreeSet::new();
        for job in listed {
            let id = job.id.as_str();
            match job.phase() {
                Phase::Waiting => {}
                Phase::Running => {
                    self.done.remove(id);
                    self.follow(id, Some(job));
                }
                Phase::Ended(time) => {
                    ended_now.insert(id.to_string());
                    if self.done.contains(id) || self.deadlines.contains_key(id) {
                        continue;
                    }
                    let followed = self.followers.is_following(id);
                    let new = !first_look && !ended_before.contains(id);
                    if followed || new || self.has_cursor(id) {
                        self.follow(id, Some(job));
                        self.ended(id, time);
                    }
                }
            }
        }
        let listed_ids: BTreeSet<&str> = listed.iter().map(|j| j.id.as_str()).collect();
        let gone: Vec<String> = self
            .followers
            .groups()
            .filter(|id| !listed_ids.contains(id) && !self.deadlines.contains_key(*id))
            .map(str::to_string)
            .collect();
        for id in gone {
            tracing::info!(source = %self.ctx.source, job = %id, "job no longer listed; polling it once more");
            self.deadlines.insert(id, Instant::now());
        }
        self.done.retain(|id| listed_ids.contains(id.as_str()));
        self.ended_before = Some(ended_now);
    }

    /// Finishes the jobs whose grace is over: each is polled once more, then left.
    fn finish_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .deadlines
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.deadlines.remove(&id);
            self.followers.finish(&id);
            self.done.insert(id);
        }
    }

    /// Every configured job has been followed to its end.
    fn all_done(&self) -> bool {
        !self.explicit.is_empty() && self.explicit.iter().all(|id| self.done.contains(id))
    }
}

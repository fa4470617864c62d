//! The `bytenite` source: logs of ByteNite jobs — their partitioner, assembler
//! and task runners — polled from `POST /v1/customer/logs`.
//!
//! The API key is exchanged for an access token sent raw in `Authorization`
//! (`auth.rs`). Jobs are the configured `job_ids`, or else the account's running
//! jobs, found in `GET /v1/customer/jobs`; each is polled every `poll_interval`
//! until `finished_job_grace` after its `endedAt` (`jobs.rs`). ByteNite has no
//! cursor and every answer repeats all the job's lines so far, newest first: the
//! answer is decoded as it arrives, keeping only what may be new (`answer.rs`),
//! and deduplicated per sub-stream — job, service, task, container — by a
//! [`DedupeCursor`](super::provider::DedupeCursor) under the checkpoint key
//! `"{job}/{service}/{task}/{container}"` (`follow.rs`).

pub mod answer;
mod auth;
mod follow;
mod jobs;
mod wire;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use self::answer::Selection;
use self::auth::AccessToken;
pub use self::wire::{LogLevel, Service};
use super::provider::{Context, Provider};
use crate::config::defaults::secs;
use crate::http::api::Api;
use crate::http::auth::Credentials;
use crate::http::stream::StreamOptions;

/// ByteNite's API host.
pub const DEFAULT_ENDPOINT: &str = "https://api.bytenite.com";

super::provider::options! {
    /// API base URL; `/v1/customer/…` and `/v1/auth/…` are added to it (a
    /// trailing `/v1/customer` or `/v1` is taken off). Default
    /// `https://api.bytenite.com`.
    endpoint: DEFAULT_ENDPOINT,
    /// The API key, exchanged for access tokens; usually `"${BYTENITE_API_KEY}"`.
    secret: api_key / api_key_file ("the API key", "${BYTENITE_API_KEY}"),
    pub struct ByteniteConfig {
        /// The jobs to follow. Default empty: every running job of the account, and
        /// each one that starts later.
        #[serde(default)]
        pub job_ids: Vec<String>,
        /// Services to ship: `partitioner`, `assembler`, `taskrunner`. Default empty:
        /// all.
        #[serde(default)]
        pub services: Vec<Service>,
        /// Levels to ship: `unknown`, `trace`, `debug`, `info`, `warn`, `error`,
        /// `fatal`, `panic`. Default empty: all.
        #[serde(default)]
        pub levels: Vec<LogLevel>,
        /// Task ids whose task-runner lines to ship. Default empty: all tasks.
        #[serde(default)]
        pub task_ids: Vec<String>,
        /// How often to ask for each job's logs, and for the jobs' states. Default 5 s.
        #[serde(default = "secs::<5>", with = "humantime_serde")]
        pub poll_interval: Duration,
        /// Keep polling a job this long after its `endedAt` (lines keep arriving
        /// for a while), then poll it once more and stop. Default 2 min.
        #[serde(default = "secs::<120>", with = "humantime_serde")]
        pub finished_job_grace: Duration,
        /// Most bytes of new lines taken from one answer (text plus 80 bytes per
        /// line); the rest are taken by the next poll, at once. Default 32 MiB.
        #[serde(default = "default_max_poll_bytes")]
        pub max_poll_bytes: usize,
    }
}

fn default_max_poll_bytes() -> usize {
    32 << 20
}

/// Of the shared stream options, `request_timeout` bounds a poll with its whole
/// answer, the jobs list or a token exchange.
impl Provider for ByteniteConfig {
    const NAME: &'static str = "bytenite";

    fn validate(&self) -> Result<(), String> {
        if self.job_ids.iter().any(|id| id.trim().is_empty()) {
            return Err("`job_ids` holds an empty id".into());
        }
        if self.task_ids.iter().any(|id| id.trim().is_empty()) {
            return Err("`task_ids` holds an empty id".into());
        }
        if self.poll_interval.is_zero() {
            return Err("`poll_interval` must be more than zero".into());
        }
        if self.max_poll_bytes == 0 {
            return Err("`max_poll_bytes` must be at least 1".into());
        }
        Ok(())
    }

    fn api(&self, stream: &StreamOptions) -> anyhow::Result<Api> {
        let credentials = Credentials::exchanged(AccessToken {
            url: format!("{}/v1/auth/access_token", api_base(&self.endpoint)),
            api_key: self.secret()?,
            timeout: stream.request_timeout,
        });
        Api::connect(stream, credentials)
    }

    fn drive(self, ctx: Arc<Context>) -> impl Future<Output = ()> + Send + 'static {
        let settings = Arc::new(Settings::new(&self, &ctx.options));
        jobs::run(ctx, settings, self.job_ids)
    }
}

/// What the source's tasks share: routes, intervals, and what to keep.
pub(crate) struct Settings {
    /// `{base}/v1/customer/logs`.
    pub logs_url: String,
    /// `{base}/v1/customer/jobs`.
    pub jobs_url: String,
    pub poll_interval: Duration,
    pub finished_job_grace: Duration,
    pub request_timeout: Duration,
    /// Filters and budget; the marks are each job's own.
    pub selection: Selection,
    /// Permits to poll: each job holds one from its request until its lines are
    /// shipped, so the source's memory is [`POLLS_AT_ONCE`] answers' budgets
    /// whatever the number of jobs it follows.
    pub polls: Arc<tokio::sync::Semaphore>,
}

/// Jobs whose answers are read and shipped at once.
const POLLS_AT_ONCE: usize = 2;

impl Settings {
    fn new(config: &ByteniteConfig, stream: &StreamOptions) -> Self {
        let base = api_base(&config.endpoint);
        Settings {
            logs_url: format!("{base}/v1/customer/logs"),
            jobs_url: format!("{base}/v1/customer/jobs"),
            poll_interval: config.poll_interval,
            finished_job_grace: config.finished_job_grace,
            request_timeout: stream.request_timeout,
            selection: Selection {
                marks: Default::default(),
                budget: config.max_poll_bytes,
                max_line_bytes: stream.max_event_bytes,
                services: config.services.clone(),
                task_ids: config.task_ids.iter().cloned().collect::<HashSet<_>>(),
                levels: config.levels.clone(),
            },
            polls: Arc::new(tokio::sync::Semaphore::new(POLLS_AT_ONCE)),
        }
    }

    /// The filters of a `logsGetLogsRequest`, by enum name (empty ones left out).
    pub fn request(&self, job: &str) -> serde_json::Value {
        let selection = &self.selection;
        let mut body = serde_json::json!({ "jobId": job });
        if !selection.task_ids.is_empty() {
            let mut tasks: Vec<&String> = selection.task_ids.iter().collect();
            tasks.sort();
            body["taskIds"] = serde_json::json!(tasks);
        }
        if !selection.levels.is_empty() {
            let levels: Vec<&str> = selection.levels.iter().map(|l| l.wire_name()).collect();
            body["levels"] = serde_json::json!(levels);
        }
        if !selection.services.is_empty() {
            let services: Vec<&str> = selection.services.iter().map(|s| s.wire_name()).collect();
            body["services"] = serde_json::json!(services);
        }
        body
    }
}

/// The host part of `endpoint`: a trailing `/`, `/v1/customer` or `/v1` taken off.
fn api_base(endpoint: &str) -> &str {
    let base = endpoint.trim_end_matches('/');
    let base = base.strip_suffix("/v1/customer").unwrap_or(base);
    base.strip_suffix("/v1").unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::provider::{assert_refused, config, parse_source};

    #[test]
    fn defaults_and_errors_are_clear() {
        let config =
            config::<ByteniteConfig>("type = \"bytenite\"\napi_key = \"${BYTENITE_API_KEY}\"");
        assert!(config.job_ids.is_empty() && config.services.is_empty());
        assert_eq!(config.poll_interval, Duration::from_secs(5));
        assert_eq!(config.finished_job_grace, Duration::from_secs(120));
        assert_eq!(config.max_poll_bytes, 32 << 20);

        let missing = parse_source("type = \"bytenite\"").unwrap_err();
        assert!(
            missing.contains("ferry.toml:1:1") && missing.contains("api_key"),
            "{missing}"
        );
        assert_refused(
            "type = \"bytenite\"\napi_key = \"k\"",
            &[
                ("api_key_file = \"/k\"", "not both"),
                ("services = [\"scheduler\"]", "unknown service `scheduler`"),
                ("levels = [\"loud\"]", "unknown level `loud`"),
                ("job = \"j\"", ".job: unknown option"),
                ("poll_interval = \"0s\"", "poll_interval"),
            ],
        );
    }

    #[test]
    fn filters_go_into_the_request_by_enum_name() {
        let filtered = config::<ByteniteConfig>(
            "type = \"bytenite\"\napi_key = \"k\"\nservices = [\"taskrunner\", \"PARTITIONER\"]\nlevels = [\"error\", \"panic\"]\ntask_ids = [\"t2\", \"t1\"]",
        );
        let settings = Settings::new(&filtered, &filtered.stream);
        assert_eq!(
            settings.request("j1"),
            serde_json::json!({
                "jobId": "j1",
                "taskIds": ["t1", "t2"],
                "levels": ["ERROR", "PANIC"],
                "services": ["TASKRUNNER", "PARTITIONER"],
            })
        );
        let plain = config::<ByteniteConfig>("type = \"bytenite\"\napi_key = \"k\"");
        let plain = Settings::new(&plain, &plain.stream);
        assert_eq!(plain.request("j1"), serde_json::json!({ "jobId": "j1" }));
        assert_eq!(plain.logs_url, "https://api.bytenite.com/v1/customer/logs");
    }

    #[test]
    fn the_endpoint_may_name_the_api_version() {
        for endpoint in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080/v1",
            "http://127.0.0.1:8080/v1/customer/",
        ] {
            assert_eq!(api_base(endpoint), "http://127.0.0.1:8080", "{endpoint}");
        }
    }
}

//! The `dcos` source: DC/OS Logging API v2 over SSE (`Accept: text/event-stream`).
//!
//! Targets: journald units (`GET /system/v1/logs/v2/component/{name}`), the whole
//! journal (`…/component`), and Mesos task files
//! (`GET /system/v1/logs/v2/task/{id}/file/{file}`, which answers 303 to the agent
//! route; the redirect is followed on the same host, keeping the auth header). Auth
//! is `Authorization: token=…`, from a static token or a login with uid and
//! password or service key (`POST /acs/api/v1/auth/login`, repeated when the token
//! expires).
//!
//! Tasks are followed until `/mesos/master/state` shows them ended and their files
//! have gone quiet (see `tasks.rs`).
//!
//! Resume is exact: each target reconnects with `Last-Event-ID` = the committed
//! journald cursor or task-file byte offset (see `follow.rs`).

mod auth;
mod entry;
mod follow;
mod tasks;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::merge;
use super::{Source, SourceContext};
use crate::config::{Secret, resolve_secret};
use crate::http::client::{build_client, validate_endpoint};
use crate::http::stream::default_request_timeout;
use crate::http::stream::{AuthReport, StreamOptions};

use self::auth::{Credentials, LoginSecret};
use self::follow::{Follower, Target};

/// Admin Router on the leading master, as seen from inside a DC/OS cluster.
pub const DEFAULT_ENDPOINT: &str = "https://leader.mesos";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DcosConfig {
    /// Cluster URL (Admin Router). Default `https://leader.mesos`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// A DC/OS auth token, sent as `Authorization: token=…`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// A file holding only the token (instead of `token`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Log in as this user or service account instead of giving a token.
    #[serde(default)]
    pub uid: Option<String>,
    /// The password of `uid`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding only the password of `uid`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The RSA private key (PEM) of service account `uid`, for service login.
    #[serde(default)]
    pub service_key: Option<Secret>,
    /// A file holding the service account's PEM private key.
    #[serde(default)]
    pub service_key_file: Option<PathBuf>,
    /// journald units to follow (exact unit names, e.g. `dcos-mesos-master.service`).
    #[serde(default)]
    pub components: Vec<String>,
    /// Follow the node's whole journal. Default false.
    #[serde(default)]
    pub journal: bool,
    /// Mesos task ids whose sandbox files to follow.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Task files to follow. Default `["stdout", "stderr"]`.
    #[serde(default = "default_files")]
    pub files: Vec<String>,
    /// How often to check `/mesos/master/state` for tasks that have ended.
    /// Default 30 s.
    #[serde(default = "default_task_poll_interval", with = "humantime_serde")]
    pub task_poll_interval: Duration,
    /// Once a task has ended, stop following its files after they stay silent this
    /// long. Default 30 s.
    #[serde(default = "default_finished_task_grace", with = "humantime_serde")]
    pub finished_task_grace: Duration,
    /// When the server refuses a saved journald cursor (it no longer exists), read
    /// this many entries back from the end (`skip=-N`) and skip those already
    /// shipped. Default 1000.
    #[serde(default = "default_fallback_entries")]
    pub fallback_entries: u64,
    /// Timeout of a login request. Default 30 s.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The shared stream options (`idle_timeout`, `connect_timeout`, backoff,
    /// `auth_retry_interval`, `max_event_bytes`), set by the config layer.
    #[serde(skip)]
    pub stream: StreamOptions,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.into()
}
fn default_files() -> Vec<String> {
    vec!["stdout".into(), "stderr".into()]
}
fn default_task_poll_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_finished_task_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_fallback_entries() -> u64 {
    1000
}

impl DcosConfig {
    pub fn validate(&self) -> Result<(), String> {
        validate_endpoint(&self.endpoint)?;
        let token = self.token.is_some() || self.token_file.is_some();
        let password = self.password.is_some() || self.password_file.is_some();
        let key = self.service_key.is_some() || self.service_key_file.is_some();
        match (token, self.uid.is_some(), password, key) {
            (true, false, false, false) => {}
            (false, true, true, false) | (false, true, false, true) => {}
            (false, false, false, false) => {
                return Err("no credentials: give `token` (or `token_file`), or `uid` with `password` or `service_key` (or their `_file` forms)".into());
            }
            _ => {
                return Err("give either `token`/`token_file`, or `uid` with one of `password`/`password_file`/`service_key`/`service_key_file`".into());
            }
        }
        if self.components.is_empty() && !self.journal && self.tasks.is_empty() {
            return Err("nothing to follow: set `components`, `journal = true` or `tasks`".into());
        }
        if !self.tasks.is_empty() && self.files.is_empty() {
            return Err("`files` is empty; use [\"stdout\", \"stderr\"] or one of them".into());
        }
        if self.task_poll_interval.is_zero() || self.finished_task_grace.is_zero() {
            return Err(
                "`task_poll_interval` and `finished_task_grace` must be more than zero".into(),
            );
        }
        if self.fallback_entries == 0 {
            return Err("`fallback_entries` must be at least 1".into());
        }
        self.stream.validate()
    }

    fn credentials(&self, client: &reqwest::Client, base: &str) -> anyhow::Result<Credentials> {
        let secret = |name: &str, inline: &Option<Secret>, file: &Option<PathBuf>| {
            resolve_secret(name, inline.as_ref(), file.as_deref()).map_err(anyhow::Error::msg)
        };
        if let Some(token) = secret("token", &self.token, &self.token_file)? {
            return Credentials::token(&token);
        }
        let uid = self
            .uid
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no credentials: give `token` or `uid`"))?;
        let login = if let Some(password) = secret("password", &self.password, &self.password_file)?
        {
            LoginSecret::Password(password)
        } else if let Some(key) = secret("service_key", &self.service_key, &self.service_key_file)?
        {
            LoginSecret::service_key(&key)?
        } else {
            anyhow::bail!("`uid` needs `password` or `service_key`");
        };
        Ok(Credentials::login(
            client.clone(),
            base,
            uid,
            login,
            self.request_timeout,
        ))
    }
}

/// What every follower of one source shares.
pub(crate) struct Shared {
    pub source: Arc<str>,
    /// `"dcos"`, shared by every event.
    pub provider: Arc<str>,
    pub client: reqwest::Client,
    pub credentials: Credentials,
    pub auth_report: AuthReport,
    pub base: String,
    pub options: StreamOptions,
    pub request_timeout: Duration,
    pub finished_task_grace: Duration,
    pub fallback_entries: u64,
    pub max_events: usize,
    pub max_bytes: usize,
}

pub struct DcosSource {
    config: DcosConfig,
    client: reqwest::Client,
    credentials: Credentials,
}

impl DcosSource {
    pub fn new(config: DcosConfig) -> anyhow::Result<Self> {
        let client = build_client(config.stream.connect_timeout)?;
        let base = config.endpoint.trim_end_matches('/').to_string();
        let credentials = config.credentials(&client, &base)?;
        Ok(DcosSource {
            config,
            client,
            credentials,
        })
    }
}

#[async_trait]
impl Source for DcosSource {
    async fn run(self: Box<Self>, mut ctx: SourceContext) -> anyhow::Result<()> {
        let config = self.config;
        let shared = Arc::new(Shared {
            source: Arc::clone(&ctx.id),
            provider: Arc::from("dcos"),
            client: self.client,
            credentials: self.credentials,
            auth_report: AuthReport::default(),
            base: config.endpoint.trim_end_matches('/').to_string(),
            options: config.stream.clone(),
            request_timeout: config.request_timeout,
            finished_task_grace: config.finished_task_grace,
            fallback_entries: config.fallback_entries,
            max_events: ctx.limits.batch_max_events,
            max_bytes: ctx.limits.batch_max_bytes,
        });
        let (tx, mut rx) = merge::channel();
        let stop = ctx.shutdown.child_token();
        let mut tasks = JoinSet::new();
        let mut targets: Vec<(Target, Option<CancellationToken>)> = Vec::new();
        if config.journal {
            targets.push((Target::Journal, None));
        }
        targets.extend(
            config
                .components
                .iter()
                .cloned()
                .map(|c| (Target::Component(c), None)),
        );
        let mut finished = BTreeMap::new();
        for task in &config.tasks {
            let token = finished
                .entry(task.clone())
                .or_insert_with(CancellationToken::new);
            for file in &config.files {
                let target = Target::Task {
                    id: task.clone(),
                    file: file.clone(),
                };
                targets.push((target, Some(token.clone())));
            }
        }
        if !finished.is_empty() {
            tasks.spawn(tasks::watch(
                Arc::clone(&shared),
                finished,
                config.task_poll_interval,
                stop.clone(),
            ));
        }
        for (target, finished) in targets {
            let follower = Follower::new(
                Arc::clone(&shared),
                target,
                &ctx.checkpoint,
                tx.clone(),
                stop.clone(),
                finished,
            );
            tasks.spawn(follower.run());
        }
        // `tx` stays here, so the source runs until ferry stops even if every task ends.
        let result = merge::forward(&mut rx, &mut ctx).await;
        stop.cancel();
        drop(tx);
        drop(rx);
        while tasks.join_next().await.is_some() {}
        result
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn parse(source: &str) -> Result<crate::config::Config, String> {
        let text =
            format!("[sources.d]\n{source}\n[sinks.out]\ntype = \"console\"\ninputs = [\"d\"]\n");
        crate::config::parse(&text, Path::new("ferry.toml"), |_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn credentials_and_targets_are_checked() {
        let config =
            parse("type = \"dcos\"\ntoken = \"t\"\ncomponents = [\"dcos-log.service\"]").unwrap();
        let crate::sources::SourceConfig::Dcos(dcos) = &config.sources["d"].config else {
            panic!("not a dcos source");
        };
        assert_eq!(dcos.endpoint, super::DEFAULT_ENDPOINT);
        assert_eq!(dcos.files, ["stdout", "stderr"]);
        parse("type = \"dcos\"\nuid = \"u\"\npassword = \"p\"\njournal = true").unwrap();

        let none = parse("type = \"dcos\"\njournal = true").unwrap_err();
        assert!(none.contains("no credentials"), "{none}");
        let both =
            parse("type = \"dcos\"\ntoken = \"t\"\nuid = \"u\"\npassword = \"p\"\njournal = true")
                .unwrap_err();
        assert!(both.contains("either"), "{both}");
        let nothing = parse("type = \"dcos\"\ntoken = \"t\"").unwrap_err();
        assert!(nothing.contains("nothing to follow"), "{nothing}");
    }
}

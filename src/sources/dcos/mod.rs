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
//! Tasks are the configured `tasks`, or else the running tasks found in Mesos state
//! (`/mesos/master/state` through Admin Router), including those that start later;
//! each is followed until its state is terminal and its files have gone quiet (see
//! `tasks.rs`).
//!
//! Resume is exact: each target reconnects with `Last-Event-ID` = the committed
//! journald cursor or task-file byte offset (see `follow.rs`); a task file found
//! shorter than its saved offset (truncated) is read again from its start.

mod auth;
mod entry;
mod follow;
mod tasks;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::provider::{Context, Provider};
use crate::config::defaults::{secs, yes};
use crate::http::api::Api;
use crate::http::auth::Credentials;
use crate::http::stream::StreamOptions;
use crate::secret::{Secret, resolve_secret};

use self::auth::{Login, LoginSecret};

/// Admin Router on the leading master, as seen from inside a DC/OS cluster.
pub const DEFAULT_ENDPOINT: &str = "https://leader.mesos";

super::provider::options! {
    /// Cluster URL (Admin Router). Default `https://leader.mesos`.
    endpoint: DEFAULT_ENDPOINT,
    pub struct DcosConfig {
        /// A DC/OS auth token, sent as `Authorization: token=…`.
        pub token: Option<Secret>,
        /// A file holding only the token (instead of `token`).
        pub token_file: Option<PathBuf>,
        /// Log in as this user or service account instead of giving a token.
        pub uid: Option<String>,
        /// The password of `uid`.
        pub password: Option<Secret>,
        /// A file holding only the password of `uid`.
        pub password_file: Option<PathBuf>,
        /// The RSA private key (PEM) of service account `uid`, for service login.
        pub service_key: Option<Secret>,
        /// A file holding the service account's PEM private key.
        pub service_key_file: Option<PathBuf>,
        /// journald units to follow (exact unit names, e.g. `dcos-mesos-master.service`).
        #[serde(default)]
        pub components: Vec<String>,
        /// Follow the node's whole journal. Default false.
        #[serde(default)]
        pub journal: bool,
        /// Mesos task ids whose sandbox files to follow. Left empty: follow every
        /// running task found in Mesos state, and those that start later.
        #[serde(default)]
        pub tasks: Vec<String>,
        /// With `tasks` empty, discover the running tasks. Default true; false follows
        /// only `components` and `journal`.
        #[serde(default = "yes")]
        pub discover_tasks: bool,
        /// Task files to follow. Default `["stdout", "stderr"]`.
        #[serde(default = "default_files")]
        pub files: Vec<String>,
        /// How often to read `/mesos/master/state` for tasks that started or ended.
        /// Default 30 s.
        #[serde(default = "secs::<30>", with = "humantime_serde")]
        pub task_poll_interval: Duration,
        /// Once a task has ended, stop following its files after they stay silent this
        /// long. Default 30 s.
        #[serde(default = "secs::<30>", with = "humantime_serde")]
        pub finished_task_grace: Duration,
        /// When the server refuses a saved journald cursor (it no longer exists), read
        /// this many entries back from the end (`skip=-N`) and skip those already
        /// shipped. Default 1000.
        #[serde(default = "default_fallback_entries")]
        pub fallback_entries: u64,
    }
}

fn default_files() -> Vec<String> {
    vec!["stdout".into(), "stderr".into()]
}
fn default_fallback_entries() -> u64 {
    1000
}

impl Provider for DcosConfig {
    const NAME: &'static str = "dcos";

    fn validate(&self) -> Result<(), String> {
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
        if self.components.is_empty()
            && !self.journal
            && self.tasks.is_empty()
            && !self.discover_tasks
        {
            return Err("nothing to follow: set `components`, `journal = true`, `tasks`, or leave `discover_tasks` on".into());
        }
        if self.follows_tasks() && self.files.is_empty() {
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
        Ok(())
    }

    fn api(&self, stream: &StreamOptions) -> anyhow::Result<Api> {
        let base = self.endpoint.trim_end_matches('/');
        Api::connect(stream, self.credentials(base, stream.request_timeout)?)
    }

    fn drive(self, ctx: Arc<Context>) -> impl Future<Output = ()> + Send + 'static {
        tasks::run(ctx, self)
    }
}

impl DcosConfig {
    /// Whether any task is followed (given, or discovered).
    fn follows_tasks(&self) -> bool {
        !self.tasks.is_empty() || self.discover_tasks
    }

    fn credentials(&self, base: &str, login_timeout: Duration) -> anyhow::Result<Credentials> {
        let secret = |name: &str, inline: &Option<Secret>, file: &Option<PathBuf>| {
            resolve_secret(name, inline.as_ref(), file.as_deref()).map_err(anyhow::Error::msg)
        };
        if let Some(token) = secret("token", &self.token, &self.token_file)? {
            return auth::static_token(&token);
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
        Ok(Credentials::exchanged(Login {
            url: format!("{base}/acs/api/v1/auth/login"),
            uid,
            secret: login,
            timeout: login_timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::provider::{assert_refused, config, parse_source};

    #[test]
    fn credentials_and_targets_are_checked() {
        let dcos = config::<DcosConfig>(
            "type = \"dcos\"\ntoken = \"t\"\ncomponents = [\"dcos-log.service\"]",
        );
        assert_eq!(dcos.files, ["stdout", "stderr"]);
        parse_source("type = \"dcos\"\nuid = \"u\"\npassword = \"p\"\njournal = true").unwrap();
        let discover = config::<DcosConfig>("type = \"dcos\"\ntoken = \"t\"");
        assert!(
            discover.tasks.is_empty() && discover.discover_tasks,
            "discovers tasks"
        );

        assert_refused(
            "type = \"dcos\"",
            &[
                ("journal = true", "no credentials"),
                (
                    "token = \"t\"\nuid = \"u\"\npassword = \"p\"\njournal = true",
                    "either",
                ),
                ("token = \"t\"\ndiscover_tasks = false", "nothing to follow"),
            ],
        );
    }
}

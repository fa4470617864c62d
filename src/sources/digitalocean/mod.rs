//! The `digitalocean` source: App Platform logs. A REST call with the personal
//! access token (`Authorization: Bearer`) answers with URLs, not logs:
//! `GET /v2/apps/{app}/deployments/{deployment}/logs?type=RUN&follow=true&tail_lines=N`
//! (all components; `…/components/{name}/logs` for one) gives a `live_url`, a
//! websocket of `{"data": "<component> <RFC3339Nano> <message>\n"}` messages, and
//! `historic_urls`, archived plain-text files. Both are pre-signed by a token in
//! their query and never see the Bearer token.
//!
//! The deployment is the configured one, or the app's active deployment (else its
//! in-progress one), re-read every `discovery_interval` and whenever a live socket
//! ends, so that a redeploy is followed: the new deployment is read from its start
//! and the old one is read until quiet, then once more from its archive
//! (`discovery.rs`). Every deployment, log type (and component, if configured) is
//! one followed stream; resume is through a dedupe cursor per component
//! (`follow.rs`), as App Platform has no cursor of its own.
//!
//! Requests stay within 80 a minute (DigitalOcean allows 5,000 an hour and 250 a
//! minute per token), pause while `ratelimit-remaining` is 0 until
//! `ratelimit-reset`, and honour a 429's `Retry-After`.

mod discovery;
mod follow;
pub mod frame;
pub mod line;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::provider::{Context, Provider};
use crate::config::defaults::secs;
use crate::http::api::Api;
use crate::http::auth::Credentials;
use crate::http::rate::RateBudget;
use crate::http::stream::{Ended, StreamOptions};

/// The DigitalOcean API, as documented.
pub const DEFAULT_ENDPOINT: &str = "https://api.digitalocean.com";
/// Requests per minute the source allows itself: under DigitalOcean's 5,000 an
/// hour (and far under its 250 a minute).
pub const REQUESTS_PER_MINUTE: u32 = 80;

/// An App Platform log type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum LogType {
    /// Build-time logs.
    #[serde(rename = "BUILD", alias = "build")]
    Build,
    /// Deploy-time logs.
    #[serde(rename = "DEPLOY", alias = "deploy")]
    Deploy,
    /// Live run-time logs.
    #[serde(rename = "RUN", alias = "run")]
    Run,
    /// Logs of crashed or restarted instances.
    #[serde(rename = "RUN_RESTARTED", alias = "run_restarted")]
    RunRestarted,
}

impl LogType {
    pub fn as_str(self) -> &'static str {
        match self {
            LogType::Build => "BUILD",
            LogType::Deploy => "DEPLOY",
            LogType::Run => "RUN",
            LogType::RunRestarted => "RUN_RESTARTED",
        }
    }

    /// A phase that ends while its deployment lives on (its archive is final once
    /// it has no live socket).
    pub fn is_phase(self) -> bool {
        matches!(self, LogType::Build | LogType::Deploy)
    }
}

super::provider::options! {
    /// API base URL. Default `https://api.digitalocean.com`.
    endpoint: DEFAULT_ENDPOINT,
    /// A personal access token (scope `app:read`), sent as `Authorization:
    /// Bearer …`; usually `"${DIGITALOCEAN_TOKEN}"`.
    secret: token / token_file ("the access token", "${DIGITALOCEAN_TOKEN}"),
    pub struct DigitalOceanConfig {
        /// The app whose logs to follow (its id).
        pub app_id: String,
        /// Follow only this deployment. Left out: the app's active deployment, else
        /// its in-progress one, switching to the new one after each redeploy.
        pub deployment_id: Option<String>,
        /// Follow only these components, one connection each. Default: every
        /// component, through the aggregate route (one connection).
        #[serde(default)]
        pub components: Vec<String>,
        /// Log types to follow: `RUN`, `BUILD`, `DEPLOY`, `RUN_RESTARTED`. Default
        /// `["RUN"]`.
        #[serde(default = "default_types")]
        pub types: Vec<LogType>,
        /// Lines of history to ask for when ferry first follows the app (nothing in
        /// its checkpoint yet); -1 asks for all the provider keeps. Default -1.
        /// Deployments that appear later are read from their start, and reconnects ask
        /// for as many lines as cover the outage.
        #[serde(default = "default_tail_lines")]
        pub tail_lines: i64,
        /// How often to read the app for a redeploy (a live socket that ends also
        /// makes ferry read it). Default 60 s.
        #[serde(default = "secs::<60>", with = "humantime_serde")]
        pub discovery_interval: Duration,
        /// After a redeploy, how long the old deployment's live logs may stay silent
        /// before ferry reads its archived logs a last time and leaves it. Default 30 s.
        #[serde(default = "secs::<30>", with = "humantime_serde")]
        pub finished_deployment_grace: Duration,
    }
}

fn default_types() -> Vec<LogType> {
    vec![LogType::Run]
}
fn default_tail_lines() -> i64 {
    -1
}

/// A name that goes into a URL path and a cursor key.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("`{what}` is empty"));
    }
    if name.contains('/') {
        return Err(format!("`{what}` {name:?} must not contain `/`"));
    }
    Ok(())
}

impl Provider for DigitalOceanConfig {
    const NAME: &'static str = "digitalocean";

    fn validate(&self) -> Result<(), String> {
        check_name("app_id", &self.app_id)?;
        if let Some(deployment) = &self.deployment_id {
            check_name("deployment_id", deployment)?;
        }
        for component in &self.components {
            check_name("components", component)?;
        }
        if self.types.is_empty() {
            return Err(
                "`types` is empty; use [\"RUN\"], or add BUILD, DEPLOY, RUN_RESTARTED".into(),
            );
        }
        if self.tail_lines < -1 {
            return Err("`tail_lines` must be -1 (all) or a number of lines".into());
        }
        if self.discovery_interval.is_zero() {
            return Err("`discovery_interval` must be more than zero".into());
        }
        Ok(())
    }

    fn api(&self, stream: &StreamOptions) -> anyhow::Result<Api> {
        let credentials = Credentials::fixed("authorization", "Bearer ", &self.secret()?)?;
        App::new(&self.endpoint, &self.app_id)?;
        let budget = RateBudget::new(REQUESTS_PER_MINUTE, Duration::from_secs(60));
        Ok(Api::connect(stream, credentials)?.with_budget(budget))
    }

    fn drive(self, ctx: Arc<Context>) -> impl Future<Output = ()> + Send + 'static {
        discovery::run(ctx, self)
    }
}

/// The app the source follows, and where its routes are.
pub(crate) struct App {
    pub id: String,
    /// `{endpoint}/v2/apps/{id}`.
    base: url::Url,
}

impl App {
    pub fn new(endpoint: &str, id: &str) -> anyhow::Result<Self> {
        let mut base = url::Url::parse(&format!("{}/", endpoint.trim_end_matches('/')))?;
        base.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("`endpoint` cannot be a base URL"))?
            .pop_if_empty()
            .extend(["v2", "apps", id]);
        Ok(App {
            id: id.to_string(),
            base,
        })
    }

    /// `GET /v2/apps/{id}`.
    pub fn url(&self) -> url::Url {
        self.base.clone()
    }

    /// The log-URL route of `deployment` (all components, or `component`), asking
    /// to follow `log_type` with `tail_lines`.
    pub fn logs_url(
        &self,
        deployment: &str,
        component: Option<&str>,
        log_type: LogType,
        tail_lines: i64,
    ) -> Result<url::Url, Ended> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| Ended::Lost("bad URL".into()))?;
            path.extend(["deployments", deployment]);
            if let Some(component) = component {
                path.extend(["components", component]);
            }
            path.push("logs");
        }
        url.query_pairs_mut()
            .append_pair("type", log_type.as_str())
            .append_pair("follow", "true")
            .append_pair("tail_lines", &tail_lines.to_string());
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::provider::{assert_refused, config};

    #[test]
    fn defaults_and_errors_are_clear() {
        let c = config::<DigitalOceanConfig>(
            "type = \"digitalocean\"\ntoken = \"${DIGITALOCEAN_TOKEN}\"\napp_id = \"4f6c71e2\"",
        );
        assert_eq!(c.types, [LogType::Run]);
        assert_eq!(c.tail_lines, -1);
        assert!(c.components.is_empty() && c.deployment_id.is_none());
        assert_eq!(c.discovery_interval, Duration::from_secs(60));
        assert_eq!(c.finished_deployment_grace, Duration::from_secs(30));
        let types = config::<DigitalOceanConfig>(
            "type = \"digitalocean\"\ntoken = \"t\"\napp_id = \"a\"\ntypes = [\"BUILD\", \"deploy\", \"RUN_RESTARTED\"]",
        );
        assert_eq!(
            types.types,
            [LogType::Build, LogType::Deploy, LogType::RunRestarted]
        );

        assert_refused(
            "type = \"digitalocean\"",
            &[
                ("app_id = \"a\"", "token"),
                ("token = \"t\"", "app_id"),
                ("token = \"t\"\napp_id = \"a\"\ntypes = [\"LIVE\"]", "LIVE"),
                (
                    "token = \"t\"\napp_id = \"a\"\ntypes = []",
                    "`types` is empty",
                ),
                (
                    "token = \"t\"\napp_id = \"a\"\ntail_lines = -2",
                    "tail_lines",
                ),
                ("token = \"t\"\napp_id = \"a/b\"", "must not contain"),
                (
                    "token = \"t\"\napp_id = \"a\"\ncomponents = [\"\"]",
                    "`components` is empty",
                ),
                (
                    "token = \"t\"\ntoken_file = \"/t\"\napp_id = \"a\"",
                    "not both",
                ),
                (
                    "token = \"t\"\napp_id = \"a\"\nendpoint = \"ftp://x\"",
                    "http://",
                ),
                (
                    "token = \"t\"\napp_id = \"a\"\nfollow = true",
                    ".follow: unknown option",
                ),
            ],
        );
    }

    #[test]
    fn routes_are_built_under_the_endpoint() {
        let app = App::new("http://127.0.0.1:9/proxy/", "a1").unwrap();
        assert_eq!(app.url().as_str(), "http://127.0.0.1:9/proxy/v2/apps/a1");
        let all = app.logs_url("d1", None, LogType::Run, -1).unwrap();
        assert_eq!(
            all.as_str(),
            "http://127.0.0.1:9/proxy/v2/apps/a1/deployments/d1/logs?type=RUN&follow=true&tail_lines=-1"
        );
        let web = app
            .logs_url("d1", Some("web api"), LogType::Build, 200)
            .unwrap();
        assert_eq!(
            web.as_str(),
            "http://127.0.0.1:9/proxy/v2/apps/a1/deployments/d1/components/web%20api/logs?type=BUILD&follow=true&tail_lines=200"
        );
    }
}

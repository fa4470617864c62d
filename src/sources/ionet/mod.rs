//! The `ionet` source: container logs of an io.net CaaS deployment, streamed over
//! SSE from `GET /enterprise/v1/io-cloud/caas/deployment/{id}/log/{container}`
//! with `X-API-KEY`, one connection per container and stream (`stdout`, `stderr`).
//!
//! Containers are the configured `container_ids`, or else discovered by polling
//! `GET …/deployment/{id}/containers`: followers start when a container appears and
//! stop once it is gone or terminal and its stream has ended. The containers list
//! also carries lifecycle events (`container_events`), shipped as `stream = "system"`.
//!
//! Resume: see `follow.rs`; cursors are `"{deployment}/{container}/{stream}"`.

mod discovery;
mod follow;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::provider::{Context, Follow, Provider};
use crate::config::defaults::{secs, yes};
use crate::http::api::Api;
use crate::http::auth::Credentials;
use crate::http::stream::StreamOptions;

/// The io.net API, as documented.
pub const DEFAULT_ENDPOINT: &str = "https://api.io.solutions";
/// Every CaaS route is under this prefix.
pub const CAAS_PREFIX: &str = "/enterprise/v1/io-cloud/caas";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

super::provider::options! {
    /// API base URL. Default `https://api.io.solutions`.
    endpoint: DEFAULT_ENDPOINT,
    /// The API key (`X-API-KEY`), usually `"${IONET_API_KEY}"`.
    secret: api_key / api_key_file ("the API key", "${IONET_API_KEY}"),
    pub struct IonetConfig {
        /// The deployment (UUID) whose containers to follow.
        pub deployment_id: String,
        /// Follow exactly these containers. Left out: discover them (and follow new ones).
        pub container_ids: Option<Vec<String>>,
        /// Streams to follow per container. Default both, `["stdout", "stderr"]`.
        #[serde(default = "default_streams")]
        pub streams: Vec<LogStream>,
        /// How often to poll the containers list. Default 30 s.
        #[serde(default = "secs::<30>", with = "humantime_serde")]
        pub discovery_interval: Duration,
        /// Ship container lifecycle events (pull, start, stop) as `stream = "system"`.
        /// Default true.
        #[serde(default = "yes")]
        pub lifecycle_events: bool,
    }
}

fn default_streams() -> Vec<LogStream> {
    vec![LogStream::Stdout, LogStream::Stderr]
}

impl Provider for IonetConfig {
    const NAME: &'static str = "ionet";

    fn validate(&self) -> Result<(), String> {
        if self.deployment_id.trim().is_empty() {
            return Err("`deployment_id` is empty".into());
        }
        if self.streams.is_empty() {
            return Err("`streams` is empty; use [\"stdout\"], [\"stderr\"] or both".into());
        }
        if self.container_ids.as_ref().is_some_and(Vec::is_empty) {
            return Err("`container_ids` is empty; leave it out to discover containers".into());
        }
        if self.discovery_interval.is_zero() {
            return Err("`discovery_interval` must be more than zero".into());
        }
        Ok(())
    }

    fn api(&self, stream: &StreamOptions) -> anyhow::Result<Api> {
        Api::connect(
            stream,
            Credentials::fixed("x-api-key", "", &self.secret()?)?,
        )
    }

    fn drive(self, ctx: Arc<Context>) -> impl Future<Output = ()> + Send + 'static {
        discovery::run(ctx, self)
    }
}

/// The deployment every request of the source is about, and where its routes are.
pub(crate) struct Deployment {
    /// `{endpoint}/enterprise/v1/io-cloud/caas`.
    base: String,
    pub id: String,
}

impl Deployment {
    pub fn new(endpoint: &str, id: &str) -> Self {
        Deployment {
            base: format!("{}{CAAS_PREFIX}", endpoint.trim_end_matches('/')),
            id: id.to_string(),
        }
    }

    /// The URL of `path` under `/deployment/{id}`.
    pub fn url(&self, path: &str) -> Result<url::Url, crate::http::stream::Ended> {
        url::Url::parse(&format!("{}/deployment/{}{path}", self.base, self.id))
            .map_err(|e| crate::http::stream::Ended::Lost(format!("bad URL: {e}")))
    }
}

/// The streams of one container, each resuming from its committed position.
pub(crate) fn container_streams(
    ctx: &Context,
    deployment: &Arc<Deployment>,
    streams: &[LogStream],
    container: &str,
    host: Option<&str>,
) -> Vec<Box<dyn Follow>> {
    streams
        .iter()
        .map(|&stream| {
            let key = cursor_key(&deployment.id, container, stream.as_str());
            let position = ctx.saved(&key).unwrap_or_default();
            Box::new(follow::ContainerStream::new(
                Arc::clone(deployment),
                container,
                host,
                stream,
                key,
                position,
            )) as Box<dyn Follow>
        })
        .collect()
}

pub(crate) fn cursor_key(deployment: &str, container: &str, stream: &str) -> String {
    format!("{deployment}/{container}/{stream}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::provider::{assert_refused, config, parse_source};

    #[test]
    fn defaults_and_errors_are_clear() {
        let ionet = config::<IonetConfig>(
            "type = \"ionet\"\napi_key = \"${IONET_API_KEY}\"\ndeployment_id = \"d\"",
        );
        assert_eq!(ionet.streams, [LogStream::Stdout, LogStream::Stderr]);

        let missing = parse_source("type = \"ionet\"\ndeployment_id = \"d\"").unwrap_err();
        assert!(
            missing.contains("ferry.toml:1:1") && missing.contains("api_key"),
            "{missing}"
        );
        let base = "type = \"ionet\"\napi_key = \"k\"\ndeployment_id = \"d\"";
        assert_refused(
            base,
            &[
                ("stream = \"stdout\"", ":5:"),
                ("stream = \"stdout\"", ".stream: unknown option"),
                ("streams = [\"stdin\"]", "stdin"),
                ("endpoint = \"ftp://x\"", "http://"),
            ],
        );
    }
}

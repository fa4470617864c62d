//! The `scalingo` source: an app's logs from Scalingo, as its CLI reads them.
//!
//! The API token is exchanged at the auth service for a one-hour JWT
//! (`POST {auth_endpoint}/v1/tokens/exchange`, Basic with an empty user; see
//! `auth.rs`), renewed before its `exp` and when refused. With it,
//! `GET {endpoint}/v1/apps/{app}/logs` gives a signed `logs_url` on the logs host,
//! which takes no credentials of its own: `?n=N` dumps the last lines as text,
//! `?stream=true` streams new ones over a websocket (see `follow.rs`). The signed
//! URL is fetched again only when the logs host refuses it.
//!
//! The stream sends only lines published after it opened and Scalingo gives no
//! cursor, so every connection opens the socket first, then dumps history and
//! merges both through the dedupe cursor (`cursor.rs`): on the first start the last
//! `history_lines`, after a reconnect or a restart the last `resume_lines`.
//!
//! Scalingo allows 60 API requests a minute per account: every request of the
//! source — token exchange, logs URL, websocket, dump — waits for the source's
//! [`RateBudget`](crate::http::rate::RateBudget), so a reconnect loop stays within it.

mod auth;
mod cursor;
mod follow;
pub mod frames;
pub mod line;

use std::sync::Arc;
use std::time::Duration;

use self::follow::{AppLogs, Settings};
use super::provider::{Context, Follow, Followers, Provider};
use crate::config::defaults::secs;
use crate::http::api::Api;
use crate::http::auth::Credentials;
use crate::http::client::validate_endpoint;
use crate::http::rate::RateBudget;
use crate::http::stream::StreamOptions;

/// Scalingo's first region; the CLI's default too.
pub const DEFAULT_REGION: &str = "osc-fr1";
/// The auth service that exchanges API tokens, shared by every region.
pub const DEFAULT_AUTH_ENDPOINT: &str = "https://auth.scalingo.com";

/// The API of `region`: `https://api.{region}.scalingo.com`.
pub fn region_endpoint(region: &str) -> String {
    format!("https://api.{region}.scalingo.com")
}

super::provider::options! {
    /// The API token (`tk-us-…`), usually `"${SCALINGO_API_TOKEN}"`; `token` (and
    /// `token_file`) are accepted too, as the design's example config spells them.
    #[serde(alias = "token")]
    secret: api_token / #[serde(alias = "token_file")] api_token_file
        ("the API token", "${SCALINGO_API_TOKEN}"),
    pub struct ScalingoConfig {
        /// The region whose API to use (`osc-fr1`, `osc-secnum-fr1`, …). Default
        /// `osc-fr1`, unless `endpoint` is given.
        pub region: Option<String>,
        /// The API base URL, instead of `region`. Default
        /// `https://api.{region}.scalingo.com`.
        pub endpoint: Option<String>,
        /// Where API tokens are exchanged. Default `https://auth.scalingo.com`.
        #[serde(default = "default_auth_endpoint")]
        pub auth_endpoint: String,
        /// The app (name or id).
        pub app: String,
        /// Only these containers: a name (`web-1`), a type (`web`) or an alternation
        /// (`web|worker`), as the logs host reads it. Default all.
        pub filter: Option<String>,
        /// Lines of history shipped on the first start (no saved cursor); 0 starts
        /// with the live stream. Default 1000.
        #[serde(default = "default_history_lines")]
        pub history_lines: u32,
        /// Lines of history read after a reconnect or a restart, merged with what was
        /// shipped so that lines logged while disconnected are not lost: it should
        /// cover the app's lines of the longest outage. Default 10000.
        #[serde(default = "default_resume_lines")]
        pub resume_lines: u32,
        /// Most requests of the source (API, auth and logs host together) in any
        /// `rate_limit_window`. Default 60, Scalingo's limit per account.
        #[serde(default = "default_rate_limit")]
        pub rate_limit: u32,
        /// The sliding window of `rate_limit` (advanced: for a proxy with another
        /// limit, or tests). Default 60 s.
        #[serde(default = "secs::<60>", with = "humantime_serde")]
        pub rate_limit_window: Duration,
    }
}

fn default_auth_endpoint() -> String {
    DEFAULT_AUTH_ENDPOINT.into()
}
fn default_history_lines() -> u32 {
    1000
}
fn default_resume_lines() -> u32 {
    10_000
}
fn default_rate_limit() -> u32 {
    60
}

impl ScalingoConfig {
    /// The API base URL, from `endpoint` or `region`.
    pub fn api_endpoint(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_string(),
            None => region_endpoint(self.region.as_deref().unwrap_or(DEFAULT_REGION)),
        }
    }
}

/// Of the shared stream options, `request_timeout` bounds a token exchange, a
/// logs URL or a history request.
impl Provider for ScalingoConfig {
    const NAME: &'static str = "scalingo";

    fn validate(&self) -> Result<(), String> {
        if let Some(region) = &self.region {
            if self.endpoint.is_some() {
                return Err("give either `region` or `endpoint`, not both".into());
            }
            let valid = !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(format!(
                    "`region` {region:?} is not a region name such as \"osc-fr1\""
                ));
            }
        }
        if let Some(endpoint) = &self.endpoint {
            validate_endpoint(endpoint)?;
        }
        validate_endpoint(&self.auth_endpoint)
            .map_err(|e| e.replace("`endpoint`", "`auth_endpoint`"))?;
        if self.app.trim().is_empty() {
            return Err("`app` is empty".into());
        }
        if self.filter.as_deref().is_some_and(|f| f.trim().is_empty()) {
            return Err("`filter` is empty; leave it out to read every container".into());
        }
        if self.resume_lines == 0 {
            return Err(
                "`resume_lines` must be at least 1: lines logged during a reconnect would be lost"
                    .into(),
            );
        }
        if self.rate_limit == 0 || self.rate_limit_window.is_zero() {
            return Err("`rate_limit` and `rate_limit_window` must be more than zero".into());
        }
        Ok(())
    }

    fn api(&self, stream: &StreamOptions) -> anyhow::Result<Api> {
        let token = self.secret()?;
        Settings::new(self)?;
        let exchange = auth::Exchange::new(&self.auth_endpoint, token, stream.request_timeout);
        let budget = RateBudget::new(self.rate_limit, self.rate_limit_window);
        Ok(Api::connect(stream, Credentials::exchanged(exchange))?.with_budget(budget))
    }

    async fn drive(self, ctx: Arc<Context>) {
        let settings = match Settings::new(&self) {
            Ok(settings) => Arc::new(settings),
            Err(error) => {
                tracing::error!(source = %ctx.source, "{error}");
                return;
            }
        };
        let mut followers = Followers::new(Arc::clone(&ctx));
        let group = settings.key.clone();
        followers.follow(&group, || {
            vec![Box::new(AppLogs::new(&ctx, settings)) as Box<dyn Follow>]
        });
        ctx.stop.cancelled().await;
        followers.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ScalingoConfig;
    use crate::sources::provider::{assert_refused, config, parse_source as parse};

    #[test]
    fn defaults_follow_the_public_service() {
        let public = config::<ScalingoConfig>(
            "type = \"scalingo\"\napi_token = \"${SCALINGO_API_TOKEN}\"\napp = \"my-app\"",
        );
        assert_eq!(public.api_endpoint(), "https://api.osc-fr1.scalingo.com");
        assert_eq!(public.auth_endpoint, super::DEFAULT_AUTH_ENDPOINT);
        assert_eq!(public.filter, None);
        assert_eq!((public.history_lines, public.resume_lines), (1000, 10_000));
        assert_eq!(public.rate_limit, 60);
        assert_eq!(public.rate_limit_window, Duration::from_secs(60));

        let secnum = config::<ScalingoConfig>(
            "type = \"scalingo\"\napi_token = \"t\"\napp = \"a\"\nregion = \"osc-secnum-fr1\"",
        );
        assert_eq!(
            secnum.api_endpoint(),
            "https://api.osc-secnum-fr1.scalingo.com"
        );
        let explicit = config::<ScalingoConfig>(
            "type = \"scalingo\"\napi_token = \"t\"\napp = \"a\"\nendpoint = \"http://127.0.0.1:9/\"\nidle_timeout = \"5s\"",
        );
        assert_eq!(explicit.api_endpoint(), "http://127.0.0.1:9");
        assert_eq!(explicit.stream.idle_timeout, Duration::from_secs(5));
    }

    #[test]
    fn mistakes_are_clear_errors() {
        let base = "type = \"scalingo\"\napp = \"a\"";
        let none = parse(base).unwrap_err();
        assert!(none.contains("api_token"), "{none}");
        let with_token = format!("{base}\napi_token = \"t\"");
        assert_refused(
            &with_token,
            &[
                ("region = \"osc-fr1\"\nendpoint = \"http://x\"", "not both"),
                ("region = \"OSC FR1\"", "region name"),
                ("endpoint = \"ftp://x\"", "http://"),
                ("auth_endpoint = \"nope\"", "`auth_endpoint`"),
                ("filter = \" \"", "`filter` is empty"),
                ("resume_lines = 0", "resume_lines"),
                ("rate_limit = 0", "rate_limit"),
                ("api_key = \"t\"", ".api_key: unknown option"),
                ("api_token_file = \"/etc/t\"", "not both"),
            ],
        );
        let blank_app = parse("type = \"scalingo\"\napi_token = \"t\"\napp = \"\"").unwrap_err();
        assert!(blank_app.contains("`app` is empty"), "{blank_app}");
        let spelled_token =
            config::<ScalingoConfig>("type = \"scalingo\"\napp = \"a\"\ntoken = \"t\"");
        assert!(spelled_token.api_token.is_some());
    }
}

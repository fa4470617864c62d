//! Following a long-lived stream across connections: the options every streaming
//! source shares, how a connection ended ([`Ended`]), and the reconnect policy
//! between connections: exponential backoff with jitter, the server's `retry:` after
//! a dropped stream, `Retry-After` on 429/503, a slow retry with a single clear
//! error line for bad credentials, and the provider's error body for 404/422.
//! Reading one connection is `connection.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::client::{FailureKind, HttpFailure};
use super::retry::backoff;
use crate::telemetry::catalog;

/// Longest `Retry-After` honoured; a server asking for more is retried after this.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(600);

/// Options every streaming source shares. They are written as plain keys of the
/// source's table; the config layer takes them out (`KEYS`) for the source types that
/// stream (`[streaming]` in `source_types!`) and hands them to the source, so each source's
/// own config struct declares only its own options. Defaults are the `Default` below.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamOptions {
    /// A connection that delivers nothing (not even a keepalive) for this long is
    /// closed and reopened from the last position. Default 120 s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest wait for a TCP/TLS connection. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// First wait before reconnecting after a failure (grows exponentially,
    /// jittered). Default 1 s.
    #[serde(with = "humantime_serde")]
    pub retry_min_backoff: Duration,
    /// Longest wait between reconnects (a server's `Retry-After` is honoured up to
    /// 10 min). Default 60 s.
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// Wait between attempts while the provider refuses the credentials (401/403).
    /// Default 60 s.
    #[serde(with = "humantime_serde")]
    pub auth_retry_interval: Duration,
    /// Longest line or event kept in memory; longer ones are cut (and counted).
    /// Default 1 MiB.
    pub max_event_bytes: usize,
    /// Timeout of a request that is not a stream: discovery, login or token
    /// exchange, a poll, a history download. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            idle_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            retry_min_backoff: Duration::from_secs(1),
            retry_max_backoff: Duration::from_secs(60),
            auth_retry_interval: Duration::from_secs(60),
            max_event_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl StreamOptions {
    pub const KEYS: &[&str] = &[
        "idle_timeout",
        "connect_timeout",
        "retry_min_backoff",
        "retry_max_backoff",
        "auth_retry_interval",
        "max_event_bytes",
        "request_timeout",
    ];

    pub fn validate(&self) -> Result<(), String> {
        if self.idle_timeout.is_zero() {
            return Err("`idle_timeout` must be more than zero".into());
        }
        if self.request_timeout.is_zero() {
            return Err("`request_timeout` must be more than zero".into());
        }
        if self.max_event_bytes == 0 {
            return Err("`max_event_bytes` must be at least 1".into());
        }
        if self.retry_min_backoff > self.retry_max_backoff {
            return Err("`retry_min_backoff` is larger than `retry_max_backoff`".into());
        }
        Ok(())
    }
}

/// A reqwest error with its causes, on one line (reqwest's own text is terse).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How a connection (or an attempt at one) ended.
#[derive(Debug)]
pub enum Ended {
    /// The server closed the stream normally.
    Closed,
    /// The connection failed or went silent.
    Lost(String),
    /// The server answered with a failure status.
    Failed(HttpFailure),
}

impl Ended {
    /// This end with the signature and token values of `url`'s query (see
    /// [`super::client::signed_query_values`]), and the query itself, replaced by
    /// `***` in its text: the server of a signed URL may echo them in its error body.
    pub fn hiding_query_of(self, url: &str) -> Ended {
        let Ok(parsed) = url::Url::parse(url) else {
            return self;
        };
        let mut secrets = super::client::signed_query_values(&parsed);
        secrets.extend(parsed.query().map(str::to_string));
        // Longest first, so that a value inside the whole query is not hidden in part.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.map_text(|text| super::client::scrub_all(text, &secrets))
    }

    /// `self` with `what` put first (`"login as ferry: …"`) and `scrub` applied:
    /// for the failures of a token exchange, whose secret the `Api` does not know.
    pub fn context(self, what: &str, scrub: impl Fn(&str) -> String) -> Ended {
        self.map_text(|text| scrub(&format!("{what}: {text}")))
    }

    /// `self` with its reason or failure detail rewritten by `rewrite`.
    fn map_text(self, rewrite: impl Fn(&str) -> String) -> Ended {
        match self {
            Ended::Failed(mut failure) => {
                failure.detail = rewrite(&failure.detail);
                Ended::Failed(failure)
            }
            Ended::Lost(reason) => Ended::Lost(rewrite(&reason)),
            Ended::Closed => Ended::Closed,
        }
    }
}

/// Shared by the streams of one source, so that refused credentials are reported
/// once per source (not once per stream) until some stream works again.
#[derive(Debug, Clone, Default)]
pub struct AuthReport(Arc<AtomicBool>);

/// Decides how long to wait before the next connection, logs what happened (an auth
/// or request error once until the stream is healthy again), and counts it.
pub struct Reconnect {
    options: StreamOptions,
    stream: Arc<str>,
    source: Arc<str>,
    backoff: Box<dyn Iterator<Item = Duration> + Send>,
    failures: u32,
    reported: Option<String>,
    auth: AuthReport,
}

impl Reconnect {
    /// `stream` names the followed stream in logs, `source` labels the metrics.
    pub fn new(
        options: StreamOptions,
        source: Arc<str>,
        stream: impl Into<Arc<str>>,
        auth: AuthReport,
    ) -> Self {
        Reconnect {
            backoff: Box::new(backoff(
                options.retry_min_backoff,
                options.retry_max_backoff,
            )),
            options,
            stream: stream.into(),
            source,
            failures: 0,
            reported: None,
            auth,
        }
    }

    /// A connection was accepted.
    pub fn connected(&self) {
        metrics::counter!("ferry_http_connections_total", "source" => self.source.to_string())
            .increment(1);
    }

    /// The stream delivered events: the next failure starts the backoff over, and a
    /// recurring error will be reported again.
    pub fn healthy(&mut self) {
        if self.failures > 0 || self.reported.is_some() {
            tracing::info!(source = %self.source, stream = %self.stream, "stream is flowing again");
            self.backoff = Box::new(backoff(
                self.options.retry_min_backoff,
                self.options.retry_max_backoff,
            ));
            self.failures = 0;
            self.reported = None;
            self.auth.0.store(false, Ordering::Relaxed);
        }
    }

    /// The wait before reconnecting after `ended`; `sse_retry` is the server's
    /// `retry:` value, if it sent one.
    pub fn delay(&mut self, ended: &Ended, sse_retry: Option<Duration>) -> Duration {
        let first = self.failures == 0;
        self.failures = self.failures.saturating_add(1);
        metrics::counter!("ferry_http_reconnects_total", "source" => self.source.to_string())
            .increment(1);
        let next_backoff = self
            .backoff
            .next()
            .unwrap_or(self.options.retry_max_backoff);
        let after_drop = match sse_retry {
            Some(retry) if first => retry,
            Some(retry) => retry.max(next_backoff),
            None => next_backoff,
        };
        let (source, stream) = (&self.source, &self.stream);
        match ended {
            Ended::Closed => {
                tracing::debug!(%source, %stream, "server closed the stream; reconnecting");
                after_drop
            }
            Ended::Lost(reason) => {
                self.error_counter("network");
                tracing::warn!(%source, %stream, "{reason}; reconnecting in {after_drop:?}");
                after_drop
            }
            Ended::Failed(failure) => {
                self.error_counter(failure.status.as_str());
                self.failure_delay(failure, next_backoff)
            }
        }
    }

    fn failure_delay(&mut self, failure: &HttpFailure, next_backoff: Duration) -> Duration {
        let (source, stream) = (self.source.clone(), self.stream.clone());
        let message = failure.to_string();
        let first_report = self.reported.as_deref() != Some(message.as_str());
        match failure.kind {
            FailureKind::Auth => {
                let wait = self.options.auth_retry_interval;
                if !self.auth.0.swap(true, Ordering::Relaxed) {
                    tracing::error!(%source, %stream, "credentials refused ({message}); check the API key or token; retrying every {wait:?}");
                }
                wait
            }
            FailureKind::NotFound | FailureKind::Rejected => {
                if first_report {
                    tracing::error!(%source, %stream, "request refused ({message}); retrying with backoff");
                }
                self.reported = Some(message);
                next_backoff
            }
            FailureKind::RateLimited => {
                let wait = failure.retry_after.unwrap_or(next_backoff);
                tracing::warn!(%source, %stream, "rate limited ({message}); waiting {wait:?}");
                wait
            }
            FailureKind::Server => {
                let wait = failure.retry_after.unwrap_or(next_backoff);
                tracing::warn!(%source, %stream, "provider error ({message}); retrying in {wait:?}");
                wait
            }
        }
    }

    fn error_counter(&self, status: &str) {
        let specific = metrics::counter!(
            "ferry_http_errors_total",
            "source" => self.source.to_string(),
            "status" => status.to_string()
        );
        catalog::counting_as_errors(specific, "source", &self.source).increment(1);
    }
}

/// Sleeps for `duration` unless `cancel` fires first; `false` if it fired.
pub async fn sleep_or_cancel(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(duration) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn failure(status: u16, retry_after: Option<u64>) -> Ended {
        let status = StatusCode::from_u16(status).unwrap();
        Ended::Failed(HttpFailure {
            status,
            kind: match status.as_u16() {
                401 => FailureKind::Auth,
                429 => FailureKind::RateLimited,
                _ => FailureKind::Server,
            },
            detail: String::new(),
            retry_after: retry_after.map(Duration::from_secs),
        })
    }

    fn reconnect() -> Reconnect {
        let options = StreamOptions {
            retry_min_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(10),
            auth_retry_interval: Duration::from_secs(30),
            ..StreamOptions::default()
        };
        Reconnect::new(options, "src".into(), "s", AuthReport::default())
    }

    #[test]
    fn retry_after_wins_over_backoff() {
        let mut r = reconnect();
        assert_eq!(
            r.delay(&failure(429, Some(2)), None),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn bad_credentials_retry_slowly() {
        let mut r = reconnect();
        assert_eq!(r.delay(&failure(401, None), None), Duration::from_secs(30));
        assert_eq!(r.delay(&failure(401, None), None), Duration::from_secs(30));
    }

    #[test]
    fn sse_retry_sets_the_first_reconnect_then_backoff_grows() {
        let mut r = reconnect();
        let ms = Duration::from_millis;
        assert_eq!(r.delay(&Ended::Lost("x".into()), Some(ms(300))), ms(300));
        let later: Vec<Duration> = (0..8)
            .map(|_| r.delay(&Ended::Closed, Some(ms(300))))
            .collect();
        assert!(later.iter().all(|d| *d >= ms(300)));
        assert!(later.iter().any(|d| *d > ms(300)), "{later:?}");
        r.healthy();
        assert_eq!(r.delay(&Ended::Closed, Some(ms(300))), ms(300));
    }

    #[test]
    fn signed_url_queries_are_hidden_from_errors() {
        let url = "wss://proxy.example/?token=aa-bb-11-cc-33&X-Amz-Signature=5f2b9c";
        let Ended::Failed(failure) = failure(403, None) else {
            unreachable!()
        };
        let echoed = Ended::Failed(HttpFailure {
            detail: "bad token aa-bb-11-cc-33 for ?token=aa-bb-11-cc-33&X-Amz-Signature=5f2b9c"
                .into(),
            ..failure
        });
        let Ended::Failed(hidden) = echoed.hiding_query_of(url) else {
            unreachable!()
        };
        assert_eq!(hidden.detail, "bad token *** for ?***");
        let Ended::Lost(lost) = Ended::Lost("sig 5f2b9c".into()).hiding_query_of(url) else {
            unreachable!()
        };
        assert_eq!(lost, "sig ***");
    }

    #[test]
    fn server_errors_back_off_within_bounds() {
        let mut r = reconnect();
        for _ in 0..20 {
            assert!(r.delay(&failure(500, None), None) <= Duration::from_secs(20));
        }
    }
}

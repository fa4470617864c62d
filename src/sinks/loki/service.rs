//! The HTTP side: one client per sink, the push itself, and the retry policy. 429,
//! 408, 5xx and transport errors are retried without end, with exponential backoff
//! and jitter or the server's `Retry-After`; other 4xx are permanent and handed back
//! with Loki's answer (its body, up to [`BODY_MAX`]). All requests of the sink share one [`Gate`]: after a failure,
//! every request waits out the same pause, and until a push succeeds again only one
//! request at a time probes the endpoint, so parallel requests don't hammer it.
//! When ferry stops while the endpoint is failing, pushes end at once as
//! [`PushOutcome::GivenBack`] instead of waiting out the outage.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::header;
use reqwest::{StatusCode, Url};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::{Credentials, LokiSinkConfig};
use super::request::Body;
use crate::http::retry::{backoff, retry_after};
use crate::sinks::SinkContext;
use crate::telemetry::Health;

/// Longest pause a `Retry-After` can impose.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// Most bytes of an error body read: Loki's list of refused entries is short (10 per
/// stream by default); a longer one is cut, which only makes it name fewer entries.
pub const BODY_MAX: usize = 64 * 1024;

/// Most bytes of an error body quoted in a log line or `/health`.
const SUMMARY_MAX: usize = 512;

/// How a push ended.
#[derive(Debug)]
pub enum PushOutcome {
    /// A 2xx.
    Delivered,
    /// A 4xx other than 408 and 429: the request can never be accepted as it is.
    /// `body` is Loki's answer (lossy UTF-8, at most [`BODY_MAX`] bytes).
    Rejected { status: StatusCode, body: String },
    /// Ferry is stopping and the endpoint is failing: not delivered, not retried.
    GivenBack,
}

/// One failed attempt that will be retried.
struct Retriable {
    what: String,
    retry_after: Option<Duration>,
}

/// Where and how to push: the HTTP client (TLS set up), the URL and credentials.
/// Built when the config is turned into a sink, so bad files fail before start.
pub struct Endpoint {
    client: reqwest::Client,
    url: Url,
    credentials: Option<Credentials>,
}

pub struct LokiService {
    endpoint: Endpoint,
    gate: Gate,
    sink: Arc<str>,
    health: Arc<Health>,
    stopping: CancellationToken,
    /// Failed attempts (each is retried).
    errors: metrics::Counter,
    duration: metrics::Histogram,
    requests: Vec<(&'static str, metrics::Counter)>,
}

impl Endpoint {
    pub fn new(config: &LokiSinkConfig) -> anyhow::Result<Self> {
        let url = config.push_url().map_err(anyhow::Error::msg)?;
        let credentials = config
            .auth
            .as_ref()
            .map(|auth| auth.resolve().map_err(anyhow::Error::msg))
            .transpose()?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60));
        let tls = &config.tls;
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read tls.ca_file {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|certs| !certs.is_empty())
                .with_context(|| {
                    format!(
                        "tls.ca_file {} holds no valid PEM certificate",
                        ca.display()
                    )
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(crt), Some(key)) = (&tls.crt_file, &tls.key_file) {
            let mut pem = std::fs::read(crt)
                .with_context(|| format!("cannot read tls.crt_file {}", crt.display()))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key)
                    .with_context(|| format!("cannot read tls.key_file {}", key.display()))?,
            );
            let identity = reqwest::Identity::from_pem(&pem)
                .context("tls: invalid client certificate or key")?;
            builder = builder.identity(identity);
        }
        builder = builder
            .tls_danger_accept_invalid_certs(!tls.verify_certificate)
            .tls_danger_accept_invalid_hostnames(!tls.verify_hostname);
        let client = builder.build().context("cannot build the HTTP client")?;
        Ok(Endpoint {
            client,
            url,
            credentials,
        })
    }
}

impl LokiService {
    pub fn new(endpoint: Endpoint, config: &LokiSinkConfig, ctx: &SinkContext) -> Self {
        let label = ("sink", ctx.id.to_string());
        let requests = ["2xx", "4xx", "429", "5xx", "error"]
            .into_iter()
            .map(|class| {
                (
                    class,
                    metrics::counter!(
                        "ferry_loki_requests_total",
                        &[label.clone(), ("status", class.to_string())]
                    ),
                )
            })
            .collect();
        LokiService {
            endpoint,
            gate: Gate::new(config.retry_initial_backoff, config.retry_max_backoff),
            errors: ctx.errors(),
            duration: ctx.request_duration(),
            sink: Arc::clone(&ctx.id),
            health: Arc::clone(&ctx.health),
            stopping: ctx.stopping.clone(),
            requests,
        }
    }

    /// Pushes `body` for `tenant` until it is accepted or permanently refused, or
    /// until ferry stops while the endpoint is failing.
    pub async fn push(&self, tenant: &str, body: &Body) -> PushOutcome {
        loop {
            let pass = tokio::select! {
                biased;
                () = self.give_back() => return PushOutcome::GivenBack,
                pass = self.gate.pass() => pass,
            };
            let attempt = tokio::select! {
                biased;
                () = self.give_back() => return PushOutcome::GivenBack,
                attempt = self.timed_attempt(tenant, body) => attempt,
            };
            match attempt {
                Ok(outcome) => {
                    if self.gate.succeeded() {
                        tracing::info!(sink = %self.sink, "Loki accepts pushes again");
                        self.health.clear(&self.health_key());
                    }
                    return outcome;
                }
                Err(failure) => {
                    self.errors.increment(1);
                    if let Some(pause) = self.gate.failed(pass, failure.retry_after) {
                        let message = format!(
                            "Loki push failing ({}); retrying in {:.1?} and until it succeeds",
                            failure.what, pause.delay
                        );
                        if pause.first {
                            tracing::warn!(sink = %self.sink, "{message}");
                        } else {
                            tracing::debug!(sink = %self.sink, "{message}");
                        }
                        self.health.set(&self.health_key(), message);
                    }
                }
            }
        }
    }

    /// Resolves once ferry is stopping while the endpoint is failing (an attempt in
    /// flight then is abandoned too: if Loki took it after all, it is a duplicate).
    async fn give_back(&self) {
        self.stopping.cancelled().await;
        self.gate.until_failing().await;
    }

    fn health_key(&self) -> String {
        format!("sink:{}", self.sink)
    }

    fn count(&self, class: &str) {
        if let Some((_, counter)) = self.requests.iter().find(|(c, _)| *c == class) {
            counter.increment(1);
        }
    }

    async fn timed_attempt(&self, tenant: &str, body: &Body) -> Result<PushOutcome, Retriable> {
        let started = Instant::now();
        let outcome = self.attempt(tenant, body).await;
        self.duration.record(started.elapsed().as_secs_f64());
        outcome
    }

    async fn attempt(&self, tenant: &str, body: &Body) -> Result<PushOutcome, Retriable> {
        let mut request = self
            .endpoint
            .client
            .post(self.endpoint.url.clone())
            .header(header::CONTENT_TYPE, body.content_type)
            .body(body.bytes.clone());
        if let Some(encoding) = body.content_encoding {
            request = request.header(header::CONTENT_ENCODING, encoding);
        }
        request = match &self.endpoint.credentials {
            Some(Credentials::Basic { user, password }) => {
                request.basic_auth(user, Some(password.expose()))
            }
            Some(Credentials::Bearer(token)) => request.bearer_auth(token.expose()),
            None => request,
        };
        if !tenant.is_empty() {
            request = request.header("X-Scope-OrgID", tenant);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                self.count("error");
                // Without the URL: credentials written into `endpoint` must not be logged.
                return Err(Retriable {
                    what: format!("{:#}", anyhow::Error::from(error.without_url())),
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            self.count("2xx");
            return Ok(PushOutcome::Delivered);
        }
        let pause = retry_after(response.headers(), RETRY_AFTER_CAP);
        let body = read_body(response).await;
        let permanent = status.is_client_error()
            && status != StatusCode::TOO_MANY_REQUESTS
            && status != StatusCode::REQUEST_TIMEOUT;
        self.count(match status.as_u16() {
            429 => "429",
            400..=499 => "4xx",
            _ => "5xx",
        });
        if permanent {
            Ok(PushOutcome::Rejected { status, body })
        } else {
            Err(Retriable {
                what: format!("{status}: {}", summary(&body)),
                retry_after: pause,
            })
        }
    }
}

/// Reads up to [`BODY_MAX`] bytes of an error body (the rest is left unread).
async fn read_body(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < BODY_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk[..chunk.len().min(BODY_MAX - body.len())])
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// An error body as one printable line, cut to [`SUMMARY_MAX`] bytes.
pub fn summary(body: &str) -> String {
    let text = body.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    let mut end = text.len().min(SUMMARY_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut line = text[..end].replace(['\n', '\r'], " ");
    if end < text.len() {
        line.push('…');
    }
    line
}

/// The retry state shared by every request to one endpoint.
pub struct Gate {
    state: Mutex<GateState>,
    /// Held by the one request that probes the endpoint while it is failing.
    probe: tokio::sync::Mutex<()>,
    /// Whether the endpoint is failing, for those who wait until it is.
    failing: watch::Sender<bool>,
    min: Duration,
    max: Duration,
}

struct GateState {
    /// No request starts before this.
    paused_until: Option<Instant>,
    /// Bumped by every failure that moved the backoff and by every recovery, so that
    /// requests which failed together advance the backoff once.
    generation: u64,
    failing: bool,
    backoff: Box<dyn Iterator<Item = Duration> + Send>,
}

/// The pause a failure set.
#[derive(Debug, PartialEq, Eq)]
pub struct Pause {
    pub delay: Duration,
    /// The failure began a run of failures.
    pub first: bool,
}

/// Permission to send one attempt, from [`Gate::pass`].
pub struct Pass<'a> {
    generation: u64,
    _probe: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl Gate {
    pub fn new(min: Duration, max: Duration) -> Self {
        Gate {
            state: Mutex::new(GateState {
                paused_until: None,
                generation: 0,
                failing: false,
                backoff: Box::new(backoff(min, max)),
            }),
            probe: tokio::sync::Mutex::new(()),
            failing: watch::Sender::new(false),
            min,
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits out any pause; while the endpoint is failing, also waits to be the only
    /// request in flight.
    pub async fn pass(&self) -> Pass<'_> {
        loop {
            let (until, failing) = {
                let state = self.lock();
                (state.paused_until, state.failing)
            };
            if let Some(until) = until {
                tokio::time::sleep_until(until.into()).await;
            }
            let probe = if failing {
                Some(self.probe.lock().await)
            } else {
                None
            };
            let state = self.lock();
            let paused = state
                .paused_until
                .is_some_and(|until| until > Instant::now());
            if paused || (state.failing && probe.is_none()) {
                continue;
            }
            return Pass {
                generation: state.generation,
                // Recovered while waiting for the probe: no need to go one at a time.
                _probe: if state.failing { probe } else { None },
            };
        }
    }

    /// Resolves while the endpoint is failing (at once if it is now).
    pub async fn until_failing(&self) {
        let mut failing = self.failing.subscribe();
        let _ = failing.wait_for(|failing| *failing).await;
    }

    /// Records a success; true if this ends a run of failures.
    pub fn succeeded(&self) -> bool {
        let mut state = self.lock();
        if !state.failing {
            return false;
        }
        state.failing = false;
        self.failing.send_replace(false);
        state.paused_until = None;
        state.generation += 1;
        state.backoff = Box::new(backoff(self.min, self.max));
        true
    }

    /// Records a failure of the attempt `pass` allowed and sets the pause: the
    /// server's `Retry-After` when given, else the next backoff step. Returns the new
    /// pause when this failure set it (others that failed alongside just wait).
    pub fn failed(&self, pass: Pass<'_>, retry_after: Option<Duration>) -> Option<Pause> {
        let mut state = self.lock();
        let first = !state.failing;
        state.failing = true;
        self.failing.send_replace(true);
        let now = Instant::now();
        if pass.generation == state.generation {
            state.generation += 1;
            let delay = match retry_after {
                Some(delay) => delay,
                None => state.backoff.next().unwrap_or(self.max),
            };
            state.paused_until = Some(now + delay);
            Some(Pause { delay, first })
        } else {
            if let Some(delay) = retry_after {
                let until = now + delay;
                state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_invalid_tls_files_fail_before_start() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("ca.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        for (file, expected) in [
            (dir.path().join("missing.pem"), "cannot read tls.ca_file"),
            (garbage, "no valid PEM certificate"),
        ] {
            let options = format!(
                "endpoint = \"https://loki\"\ntls = {{ ca_file = \"{}\" }}",
                file.display()
            );
            let config: LokiSinkConfig = toml::from_str(&options).unwrap();
            let error = Endpoint::new(&config).err().expect("refused");
            assert!(format!("{error:#}").contains(expected), "{error:#}");
        }
    }

    #[tokio::test]
    async fn failures_together_advance_the_backoff_once_and_retry_after_wins() {
        let gate = Gate::new(Duration::from_millis(10), Duration::from_millis(20));
        let first = gate.pass().await;
        let second = gate.pass().await;
        assert!(gate.failed(first, None).is_some());
        assert_eq!(
            gate.failed(second, None),
            None,
            "a concurrent failure waits, no new step"
        );
        let probe = gate.pass().await;
        let pause = gate.failed(probe, Some(Duration::from_millis(50)));
        assert_eq!(
            pause,
            Some(Pause {
                delay: Duration::from_millis(50),
                first: false
            })
        );
        let started = Instant::now();
        let probe = gate.pass().await;
        assert!(started.elapsed() >= Duration::from_millis(45));
        drop(probe);
        assert!(gate.succeeded());
        assert!(!gate.succeeded());
    }
}

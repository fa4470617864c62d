//! The `loki` sink's options, their defaults, and the checks that refuse a broken
//! config before anything starts (label names, secrets, TLS files, limits).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::labels::is_valid_label_name;
use crate::secret::{Secret, resolve_secret};
use crate::sinks::dead_letter::DeadLetter;
use crate::template::Template;

/// The path Loki serves pushes on, appended to `endpoint`.
pub const PUSH_PATH: &str = "/loki/api/v1/push";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiSinkConfig {
    /// Base URL of Loki (or of a gateway in front of it), e.g. `http://loki:3100`.
    pub endpoint: String,
    #[serde(default)]
    pub encoding: LokiEncoding,
    /// Body compression for `encoding = "json"`; protobuf bodies are always snappy.
    #[serde(default)]
    pub compression: Compression,
    /// Stream labels: label name → template. Default `{ source = "{{ source }}" }`.
    #[serde(default = "default_labels")]
    pub labels: BTreeMap<LabelName, Template>,
    /// Structured metadata attached to each entry: name → template.
    #[serde(default)]
    pub structured_metadata: BTreeMap<LabelName, Template>,
    /// Tenant (`X-Scope-OrgID`), a template; batches are split per tenant.
    #[serde(default)]
    pub tenant_id: Option<Template>,
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub tls: TlsOptions,
    /// Most uncompressed payload bytes in one push request.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// Most entries in one push request.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// Longest an entry waits for its request to fill up.
    #[serde(default = "default_batch_timeout", with = "humantime_serde")]
    pub batch_timeout: Duration,
    /// Push requests in flight at once (retries included).
    #[serde(default = "default_max_in_flight_requests")]
    pub max_in_flight_requests: usize,
    /// Most distinct label sets (streams) active at once, across all tenants.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// A stream not written for this long no longer counts as active.
    #[serde(default = "default_stream_idle_timeout", with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    /// Time limit of one push attempt.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// First wait after a failed push; doubles (with jitter) up to `retry_max_backoff`.
    #[serde(default = "default_retry_initial_backoff", with = "humantime_serde")]
    pub retry_initial_backoff: Duration,
    #[serde(default = "default_retry_max_backoff", with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// Where permanently refused entries go: any sink's options, with its `type`.
    #[serde(default)]
    pub dead_letter: Option<DeadLetter>,
    /// Entries older than this (by their timestamp, when the push is made) are
    /// dead-lettered without being sent, as Loki would refuse them: set it to Loki's
    /// `reject_old_samples_max_age` (168h by default). Unset: everything is sent.
    #[serde(default, with = "humantime_serde")]
    pub reject_older_than: Option<Duration>,
}

fn default_labels() -> BTreeMap<LabelName, Template> {
    Template::parse("{{ source }}")
        .ok()
        .map(|template| (LabelName("source".into()), template))
        .into_iter()
        .collect()
}

fn default_batch_max_bytes() -> usize {
    1 << 20
}

fn default_batch_max_events() -> usize {
    10_000
}

fn default_batch_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_max_in_flight_requests() -> usize {
    4
}

fn default_max_streams() -> usize {
    10_000
}

fn default_stream_idle_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_retry_initial_backoff() -> Duration {
    Duration::from_millis(200)
}

fn default_retry_max_backoff() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LokiEncoding {
    /// Snappy-compressed protobuf `logproto.PushRequest`.
    #[default]
    Protobuf,
    /// Loki's JSON push body.
    Json,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

/// A Loki label (or structured metadata) name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting
/// with the reserved `__`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelName(pub String);

impl<'de> Deserialize<'de> for LabelName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if !is_valid_label_name(&name) {
            return Err(serde::de::Error::custom(format!(
                "invalid Loki label name `{name}`: use letters, digits and `_`, not starting with a digit"
            )));
        }
        if name.starts_with("__") {
            return Err(serde::de::Error::custom(format!(
                "label name `{name}`: names starting with `__` are reserved for Loki's own use"
            )));
        }
        Ok(LabelName(name))
    }
}

/// Credentials sent with every push.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "strategy", rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    /// HTTP basic auth (Grafana Cloud: the user is the stack's numeric id).
    Basic {
        user: String,
        #[serde(default)]
        password: Option<Secret>,
        #[serde(default)]
        password_file: Option<PathBuf>,
    },
    /// `Authorization: Bearer TOKEN`.
    Bearer {
        #[serde(default)]
        token: Option<Secret>,
        #[serde(default)]
        token_file: Option<PathBuf>,
    },
}

/// The `Authorization` header value an [`Auth`] resolves to.
#[derive(Debug, Clone)]
pub enum Credentials {
    Basic { user: String, password: Secret },
    Bearer(Secret),
}

impl Auth {
    /// Reads the secret (inline or from its file).
    pub fn resolve(&self) -> Result<Credentials, String> {
        match self {
            Auth::Basic {
                user,
                password,
                password_file,
            } => {
                let password =
                    resolve_secret("password", password.as_ref(), password_file.as_deref())?
                        .ok_or("auth: basic needs `password` or `password_file`")?;
                Ok(Credentials::Basic {
                    user: user.clone(),
                    password,
                })
            }
            Auth::Bearer { token, token_file } => {
                let token = resolve_secret("token", token.as_ref(), token_file.as_deref())?
                    .ok_or("auth: bearer needs `token` or `token_file`")?;
                Ok(Credentials::Bearer(token))
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsOptions {
    /// Extra CA certificates (PEM) to trust, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `key_file`.
    pub crt_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS; needs `crt_file`.
    pub key_file: Option<PathBuf>,
    /// Check the server's certificate chain. Turn off only for tests.
    pub verify_certificate: bool,
    /// Check that the certificate names the host.
    pub verify_hostname: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            ca_file: None,
            crt_file: None,
            key_file: None,
            verify_certificate: true,
            verify_hostname: true,
        }
    }
}

impl LokiSinkConfig {
    /// The full push URL.
    pub fn push_url(&self) -> Result<reqwest::Url, String> {
        let base = self.endpoint.trim_end_matches('/');
        let url = reqwest::Url::parse(&format!("{base}{PUSH_PATH}"))
            .map_err(|e| format!("endpoint `{}` is not a URL: {e}", self.endpoint))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "endpoint `{}` must be http:// or https://",
                self.endpoint
            ));
        }
        Ok(url)
    }

    /// Checks that need more than one option at a time, or the file system.
    pub fn validate(&self) -> Result<(), String> {
        self.push_url()?;
        if self.encoding == LokiEncoding::Protobuf && self.compression != Compression::None {
            return Err("`compression` applies to `encoding = \"json\"` only; protobuf bodies are always snappy-compressed".into());
        }
        if self.labels.is_empty() {
            return Err("`labels` is empty; Loki needs at least one label per stream".into());
        }
        for (what, value) in [
            ("batch_max_bytes", self.batch_max_bytes),
            ("batch_max_events", self.batch_max_events),
            ("max_in_flight_requests", self.max_in_flight_requests),
            ("max_streams", self.max_streams),
        ] {
            if value == 0 {
                return Err(format!("`{what}` must be at least 1"));
            }
        }
        if self.reject_older_than.is_some_and(|age| age.is_zero()) {
            return Err("`reject_older_than` must be longer than 0s".into());
        }
        if self.retry_initial_backoff > self.retry_max_backoff {
            return Err("`retry_initial_backoff` is longer than `retry_max_backoff`".into());
        }
        if let Some(auth) = &self.auth {
            auth.resolve()?;
        }
        if self.tls.crt_file.is_some() != self.tls.key_file.is_some() {
            return Err("tls: give both `crt_file` and `key_file`, or neither".into());
        }
        if let Some(dead_letter) = &self.dead_letter {
            dead_letter.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::sinks::SinkConfig;
    use crate::topology::config::parse;

    fn sink(options: &str) -> Result<LokiSinkConfig, String> {
        let text = format!(
            "[sources.d]\ntype = \"demo\"\n[sinks.loki]\ntype = \"loki\"\ninputs = [\"d\"]\n{options}\n"
        );
        let mut config =
            parse(&text, Path::new("ferry.toml"), |_| None).map_err(|e| e.to_string())?;
        match config.sinks.remove("loki").map(|s| s.config) {
            Some(SinkConfig::Loki(loki)) => Ok(*loki),
            other => Err(format!("not a loki sink: {other:?}")),
        }
    }

    #[test]
    fn options_parse_with_defaults_auth_and_a_dead_letter_sink() {
        let config = sink(
            r#"endpoint = "http://loki:3100/"
auth = { strategy = "bearer", token = "t0k" }
dead_letter = { type = "file", path = "/tmp/rejected.log" }"#,
        )
        .unwrap();
        assert_eq!(
            config.push_url().unwrap().as_str(),
            "http://loki:3100/loki/api/v1/push"
        );
        assert_eq!(config.encoding, LokiEncoding::Protobuf);
        assert_eq!(config.batch_max_bytes, 1 << 20);
        assert_eq!(config.batch_timeout, Duration::from_secs(1));
        assert_eq!(config.max_streams, 10_000);
        assert_eq!(config.reject_older_than, None);
        assert!(config.labels.contains_key(&LabelName("source".into())));
        assert!(matches!(
            config.dead_letter.as_ref().map(|d| &*d.0),
            Some(SinkConfig::File(_))
        ));
        assert!(matches!(
            config.auth.unwrap().resolve(),
            Ok(Credentials::Bearer(_))
        ));
        assert!(
            !format!(
                "{:?}",
                sink(
                    r#"endpoint = "http://l"
auth = { strategy = "basic", user = "u", password = "hunter2" }"#
                )
                .unwrap()
            )
            .contains("hunter2")
        );
    }

    #[test]
    fn broken_options_are_refused_with_a_position() {
        let error = sink("endpoint = \"http://l\"\nlabels = { \"bad-name\" = \"x\" }").unwrap_err();
        assert!(
            error.contains("ferry.toml:7:12") && error.contains("invalid Loki label name"),
            "{error}"
        );
        let error = sink("endpoint = \"http://l\"\nlabels = { __name__ = \"x\" }").unwrap_err();
        assert!(error.contains("reserved"), "{error}");
        let error = sink("endpoint = \"loki:3100\"").unwrap_err();
        assert!(error.contains("http"), "{error}");
        let error = sink("endpoint = \"http://l\"\ncompression = \"gzip\"").unwrap_err();
        assert!(error.contains("json"), "{error}");
        let error = sink("endpoint = \"http://l\"\nauth = { strategy = \"basic\", user = \"u\" }")
            .unwrap_err();
        assert!(error.contains("password"), "{error}");
        let error = sink(
            "endpoint = \"http://l\"\nauth = { strategy = \"basic\", user = \"u\", pass = \"x\" }",
        )
        .unwrap_err();
        assert!(error.contains("pass"), "{error}");
        let error = sink("endpoint = \"http://l\"\ndead_letter = { type = \"nope\" }").unwrap_err();
        assert!(
            error.contains("dead_letter: type: unknown type `nope`"),
            "{error}"
        );
        let error = sink("endpoint = \"http://l\"\ndead_letter = { type = \"file\" }").unwrap_err();
        assert!(
            error.contains("dead_letter: path: missing required option"),
            "{error}"
        );
        let error =
            sink("endpoint = \"http://l\"\ndead_letter = { type = \"file\", pth = \"/x\" }")
                .unwrap_err();
        assert!(
            error.contains("pth: unknown option; did you mean `path`?"),
            "{error}"
        );
        let error = sink("endpoint = \"http://l\"\nreject_older_than = \"0s\"").unwrap_err();
        assert!(error.contains("reject_older_than"), "{error}");
        let config = sink("endpoint = \"http://l\"\nreject_older_than = \"167h\"").unwrap();
        assert_eq!(
            config.reject_older_than,
            Some(Duration::from_secs(167 * 3600))
        );
    }
}

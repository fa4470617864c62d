//! The HTTP client every provider source builds once: connect timeout, TCP keepalive,
//! TLS verification on (reqwest's default, never turned off), a `ferry/VERSION` user
//! agent, and an auth header made from a secret. The header value is marked sensitive
//! and the secret is scrubbed from every error text, so it never reaches logs,
//! metrics or errors. Failed responses become an [`HttpFailure`] carrying a short
//! summary of the provider's error body (io.net's `{"detail": …}`, DC/OS text).

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderName, HeaderValue};

use crate::secret::Secret;

/// Most bytes of an error body read for its summary.
const ERROR_BODY_LIMIT: usize = 4096;
/// Most characters of an error body summary.
const SUMMARY_LIMIT: usize = 300;

/// A client for one source. Requests have no overall timeout (streams are
/// long-lived); callers set one on requests that should end.
pub fn build_client(connect_timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_keepalive(Duration::from_secs(60))
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// A failed request on one line, its causes included and its URL left out: a
/// pre-signed URL carries a token in its query, so no URL goes into an error text.
pub fn request_error(error: reqwest::Error) -> String {
    super::stream::error_chain(&error.without_url())
}

/// An `endpoint` option must be an absolute http(s) URL.
pub fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| format!("`endpoint` {endpoint:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`endpoint` {endpoint:?} must be an http:// or https:// URL"
        ));
    }
    Ok(())
}

/// An auth header built from a secret.
#[derive(Clone)]
pub struct AuthHeader {
    name: HeaderName,
    value: HeaderValue,
    secret: Secret,
}

impl fmt::Debug for AuthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthHeader({}: ***)", self.name)
    }
}

impl AuthHeader {
    /// `name: prefix + secret`, e.g. (`X-API-KEY`, ``, key) or (`Authorization`, `token=`, token).
    pub fn new(name: &'static str, prefix: &str, secret: &Secret) -> anyhow::Result<Self> {
        let mut value =
            HeaderValue::from_str(&format!("{prefix}{}", secret.expose())).map_err(|_| {
                anyhow::anyhow!(
                    "the secret for the {name} header holds characters a header cannot carry"
                )
            })?;
        value.set_sensitive(true);
        Ok(AuthHeader {
            name: HeaderName::from_static(name),
            value,
            secret: secret.clone(),
        })
    }

    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.header(self.name.clone(), self.value.clone())
    }

    /// `text` with every occurrence of the secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.secret)
    }

    /// Whether both carry the same credential.
    pub fn same_value(&self, other: &AuthHeader) -> bool {
        self.name == other.name && self.value == other.value
    }
}

/// `text` with every occurrence of `secret` replaced by `***`.
pub fn scrub(text: &str, secret: &Secret) -> String {
    let secret = secret.expose();
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "***")
    }
}

/// Query parameters of a pre-signed URL that carry its signature or token, by a
/// part of their name (case-insensitive): `token`, `X-Amz-Signature`, `sig`, `key`…
const SIGNED_QUERY_NAMES: [&str; 6] = ["token", "sig", "key", "secret", "credential", "auth"];

/// The values of `url`'s query parameters that look like a signature or a token
/// (see [`SIGNED_QUERY_NAMES`]), to scrub from error texts.
pub fn signed_query_values(url: &url::Url) -> Vec<String> {
    url.query_pairs()
        .filter(|(name, value)| {
            let name = name.to_ascii_lowercase();
            !value.is_empty() && SIGNED_QUERY_NAMES.iter().any(|part| name.contains(part))
        })
        .map(|(_, value)| value.into_owned())
        .collect()
}

/// `text` with every one of `secrets` replaced by `***`.
pub fn scrub_all(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_string(), |text, secret| {
        if secret.is_empty() {
            text
        } else {
            text.replace(secret.as_str(), "***")
        }
    })
}

/// What a failed status means for whoever retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// 401/403: credentials missing, wrong or expired.
    Auth,
    /// 404: the deployment, container, task or route does not exist (yet).
    NotFound,
    /// 400/422 and other 4xx: the request itself was refused.
    Rejected,
    /// 429, or 503 with `Retry-After`: come back later.
    RateLimited,
    /// 5xx: the provider failed.
    Server,
}

/// A response with a failure status, summarized.
#[derive(Debug, Clone)]
pub struct HttpFailure {
    pub status: StatusCode,
    pub kind: FailureKind,
    /// The provider's explanation, shortened and free of secrets.
    pub detail: String,
    /// The server's `Retry-After`, capped.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for HttpFailure {}

impl HttpFailure {
    /// Reads (a bounded part of) the body of a failed `response`, scrubbing `secret`.
    pub async fn from_response(
        mut response: reqwest::Response,
        secret: Option<&AuthHeader>,
        retry_after_cap: Duration,
    ) -> HttpFailure {
        let status = response.status();
        let retry_after = super::retry::retry_after(response.headers(), retry_after_cap);
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        body.truncate(ERROR_BODY_LIMIT);
        let summary = summarize_body(&body);
        let detail = match secret {
            Some(auth) => auth.scrub(&summary),
            None => summary,
        };
        HttpFailure {
            status,
            kind: classify(status, retry_after.is_some()),
            detail,
            retry_after,
        }
    }
}

fn classify(status: StatusCode, has_retry_after: bool) -> FailureKind {
    match status.as_u16() {
        401 | 403 => FailureKind::Auth,
        404 => FailureKind::NotFound,
        429 => FailureKind::RateLimited,
        503 if has_retry_after => FailureKind::RateLimited,
        500..=599 => FailureKind::Server,
        _ => FailureKind::Rejected,
    }
}

/// A one-line account of an error body: FastAPI's `{"detail": "…"}` or
/// `{"detail": [{"loc": […], "msg": …}]}`, a JSON `message`/`error`, or the text.
pub fn summarize_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let summary = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(json) => json_summary(&json).unwrap_or_else(|| json.to_string()),
        Err(_) => text.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    shorten(summary)
}

fn json_summary(json: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let detail = ["detail", "description", "message", "error", "title"]
        .iter()
        .find_map(|key| json.get(*key))?;
    Some(match detail {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let loc = item
                    .get("loc")
                    .and_then(Value::as_array)
                    .map(|parts| {
                        parts
                            .iter()
                            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                            .collect::<Vec<_>>()
                            .join(".")
                    })
                    .unwrap_or_default();
                let msg = item.get("msg").and_then(Value::as_str).unwrap_or("invalid");
                if loc.is_empty() {
                    msg.to_string()
                } else {
                    format!("{loc}: {msg}")
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    })
}

fn shorten(text: String) -> String {
    if text.chars().count() <= SUMMARY_LIMIT {
        return text;
    }
    let mut short: String = text.chars().take(SUMMARY_LIMIT).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastapi_validation_errors_are_summarized() {
        let body = br#"{"detail":[{"loc":["query","stream"],"msg":"value is not a valid enumeration member; permitted: 'stdout', 'stderr'","type":"type_error.enum"}]}"#;
        assert_eq!(
            summarize_body(body),
            "query.stream: value is not a valid enumeration member; permitted: 'stdout', 'stderr'"
        );
        assert_eq!(summarize_body(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(
            summarize_body(b"unable to open journald:\n bad cursor\n"),
            "unable to open journald: bad cursor"
        );
        assert!(summarize_body(&[b'x'; 5000]).ends_with('…'));
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(StatusCode::UNAUTHORIZED, false), FailureKind::Auth);
        assert_eq!(classify(StatusCode::FORBIDDEN, false), FailureKind::Auth);
        assert_eq!(
            classify(StatusCode::NOT_FOUND, false),
            FailureKind::NotFound
        );
        assert_eq!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, false),
            FailureKind::Rejected
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, false),
            FailureKind::RateLimited
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, true),
            FailureKind::RateLimited
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, false),
            FailureKind::Server
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, false),
            FailureKind::Server
        );
    }

    #[test]
    fn signatures_of_presigned_urls_are_found() {
        let url = url::Url::parse(
            "https://logs.example/apps/a/logs?timestamp=1727183062&token=s1gn&n=10&X-Amz-Signature=abc&stream=true",
        )
        .unwrap();
        let values = signed_query_values(&url);
        assert_eq!(values, ["s1gn", "abc"]);
        assert_eq!(
            scrub_all("bad token s1gn (abc) for 10 lines", &values),
            "bad token *** (***) for 10 lines"
        );
    }

    #[test]
    fn secrets_are_scrubbed_and_never_printed() {
        let auth = AuthHeader::new("x-api-key", "", &Secret::new("k3y")).unwrap();
        assert_eq!(auth.scrub("bad key k3y"), "bad key ***");
        assert!(!format!("{auth:?}").contains("k3y"));
    }
}

//! A provider source's credentials: none (pre-signed URLs), a fixed header (an API
//! key, a personal access token, a static token), or a short-lived token that a
//! [`TokenSource`] obtains by exchanging a long-lived secret (DC/OS login, Scalingo
//! API token → JWT, ByteNite API key → access token). An exchanged token is cached,
//! renewed shortly before it expires (a quarter of its lifetime, at most five
//! minutes, ahead) and whenever the provider refuses it; concurrent requests share
//! one renewal. If a renewal fails while the old token is still valid, the old one
//! keeps serving. Every secret — configured or obtained — is scrubbed from error
//! texts by [`Credentials::scrub`].

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::api::Api;
use super::client::AuthHeader;
use super::stream::Ended;
use crate::secret::Secret;

/// Renew a token at most this long before it expires.
const RENEW_AHEAD_MAX: Duration = Duration::from_secs(300);

/// A token obtained from a [`TokenSource`], as the header that carries it.
#[derive(Debug, Clone)]
pub struct Token {
    header: AuthHeader,
    /// When to fetch a fresh one.
    renew_at: Option<Instant>,
    /// When this one stops working.
    expires_at: Option<Instant>,
}

impl Token {
    /// A token valid for `lifetime` from now (`None`: until the provider refuses it).
    pub fn new(header: AuthHeader, lifetime: Option<Duration>) -> Token {
        let now = Instant::now();
        Token {
            header,
            renew_at: lifetime.map(|l| now + l - (l / 4).min(RENEW_AHEAD_MAX)),
            expires_at: lifetime.map(|l| now + l),
        }
    }

    fn fresh(&self, now: Instant) -> bool {
        self.renew_at.is_none_or(|at| now < at)
    }

    fn valid(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// The answer of a token exchange that gives a JWT as `{"token": "<JWT>"}`.
#[derive(serde::Deserialize)]
pub struct JwtAnswer {
    token: String,
}

impl JwtAnswer {
    /// The JWT as a [`Token`] sent as `Authorization: {prefix}<JWT>`, renewed
    /// before its `exp`.
    pub fn token(self, prefix: &str) -> Result<Token, Ended> {
        let lifetime = jwt_lifetime(&self.token);
        let header = AuthHeader::new("authorization", prefix, &Secret::new(self.token))
            .map_err(|e| Ended::Lost(e.to_string()))?;
        Ok(Token::new(header, lifetime))
    }
}

/// Exchanges a source's long-lived secret for a token.
#[async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// A fresh token. Requests go through `api` (its rate budget, its error
    /// mapping) without credentials: `api.send_anonymous(…)`. A refused secret is
    /// an `Ended::Failed` with `FailureKind::Auth`, which the caller reports once
    /// and retries slowly.
    async fn fetch(&self, api: &Api) -> Result<Token, Ended>;

    /// `text` with every configured secret replaced by `***`.
    fn scrub(&self, text: &str) -> String;
}

/// How a source authenticates (see the module doc).
pub struct Credentials(Kind);

enum Kind {
    Anonymous,
    Fixed(AuthHeader),
    Exchanged(Exchanged),
}

struct Exchanged {
    source: Box<dyn TokenSource>,
    /// The current token, and the one before it (scrubbed too: a server may echo it).
    tokens: Mutex<(Option<Token>, Option<AuthHeader>)>,
    /// Held while fetching, so concurrent callers share one exchange.
    renewing: tokio::sync::Mutex<()>,
}

impl Credentials {
    /// No credentials: the URLs carry their own.
    pub fn anonymous() -> Self {
        Credentials(Kind::Anonymous)
    }

    /// The same header on every request: `name: prefix + secret` (see
    /// [`AuthHeader::new`]).
    pub fn fixed(name: &'static str, prefix: &str, secret: &Secret) -> anyhow::Result<Self> {
        Ok(Credentials(Kind::Fixed(AuthHeader::new(
            name, prefix, secret,
        )?)))
    }

    /// Tokens from `source`, renewed as the module doc says.
    pub fn exchanged(source: impl TokenSource) -> Self {
        Credentials(Kind::Exchanged(Exchanged {
            source: Box::new(source),
            tokens: Mutex::new((None, None)),
            renewing: tokio::sync::Mutex::new(()),
        }))
    }

    /// The header to send (none when anonymous), fetching a token first when there
    /// is none or it is due for renewal.
    pub async fn header(&self, api: &Api) -> Result<Option<AuthHeader>, Ended> {
        let exchanged = match &self.0 {
            Kind::Anonymous => return Ok(None),
            Kind::Fixed(header) => return Ok(Some(header.clone())),
            Kind::Exchanged(exchanged) => exchanged,
        };
        if let Some(token) = exchanged.current(Instant::now()) {
            return Ok(Some(token.header));
        }
        let _renewing = exchanged.renewing.lock().await;
        let now = Instant::now();
        if let Some(token) = exchanged.current(now) {
            return Ok(Some(token.header));
        }
        match exchanged.source.fetch(api).await {
            Ok(token) => {
                let header = token.header.clone();
                let mut tokens = exchanged.lock();
                let old = tokens.0.replace(token).map(|t| t.header);
                if old.is_some() {
                    tokens.1 = old;
                }
                Ok(Some(header))
            }
            Err(ended) => {
                let mut tokens = exchanged.lock();
                match tokens.0.as_mut().filter(|t| t.valid(now)) {
                    Some(old) => {
                        tracing::warn!(
                            "renewing the access token failed ({}); the current one is still valid",
                            error_text(&ended)
                        );
                        // Try again halfway to its expiry.
                        old.renew_at = old.expires_at.map(|at| now + (at - now) / 2);
                        Ok(Some(old.header.clone()))
                    }
                    None => Err(ended),
                }
            }
        }
    }

    /// A request made with `used` was refused (401/403). Forgets that token and
    /// tells whether asking again may help: only an exchanged token can be renewed.
    pub fn refused(&self, used: &AuthHeader) -> bool {
        let Kind::Exchanged(exchanged) = &self.0 else {
            return false;
        };
        let mut tokens = exchanged.lock();
        if tokens.0.as_ref().is_some_and(|t| t.header.same_value(used)) {
            tokens.1 = tokens.0.take().map(|t| t.header);
        }
        true
    }

    /// `text` with every secret (configured or obtained) replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        match &self.0 {
            Kind::Anonymous => text.to_string(),
            Kind::Fixed(header) => header.scrub(text),
            Kind::Exchanged(exchanged) => {
                let mut text = exchanged.source.scrub(text);
                let tokens = exchanged.lock();
                for header in tokens.0.iter().map(|t| &t.header).chain(&tokens.1) {
                    text = header.scrub(&text);
                }
                text
            }
        }
    }
}

impl Exchanged {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<Token>, Option<AuthHeader>)> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self, now: Instant) -> Option<Token> {
        self.lock().0.as_ref().filter(|t| t.fresh(now)).cloned()
    }
}

fn error_text(ended: &Ended) -> String {
    match ended {
        Ended::Closed => "the server closed the connection".into(),
        Ended::Lost(reason) => reason.clone(),
        Ended::Failed(failure) => failure.to_string(),
    }
}

/// How long a JWT has left, from its `exp` claim (Unix seconds); `None` if `jwt`
/// is not a JWT with one. Nothing is verified: this only schedules the renewal.
pub fn jwt_lifetime(jwt: &str) -> Option<Duration> {
    jwt_lifetime_at(jwt, SystemTime::now())
}

fn jwt_lifetime_at(jwt: &str, now: SystemTime) -> Option<Duration> {
    let payload = jwt.split('.').nth(1)?;
    let json = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    if !exp.is_finite() || exp < 0.0 {
        return None;
    }
    let expires = UNIX_EPOCH + Duration::from_secs_f64(exp.min(1e12));
    Some(expires.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn jwt_expiry_is_read_from_exp() {
        let claims = URL_SAFE_NO_PAD.encode(br#"{"uid":"ferry","exp":1000}"#);
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{claims}.sig");
        let now = UNIX_EPOCH + Duration::from_secs(400);
        assert_eq!(jwt_lifetime_at(&jwt, now), Some(Duration::from_secs(600)));
        let later = UNIX_EPOCH + Duration::from_secs(2000);
        assert_eq!(jwt_lifetime_at(&jwt, later), Some(Duration::ZERO));
        assert_eq!(jwt_lifetime_at("not-a-jwt", now), None);
        assert_eq!(jwt_lifetime_at("a.!!!.c", now), None);
        let no_exp = URL_SAFE_NO_PAD.encode(br#"{"uid":"ferry"}"#);
        assert_eq!(jwt_lifetime_at(&format!("a.{no_exp}.c"), now), None);
    }

    #[test]
    fn tokens_are_renewed_ahead_of_expiry() {
        let header = AuthHeader::new("authorization", "Bearer ", &Secret::new("t")).unwrap();
        let hour = Token::new(header.clone(), Some(Duration::from_secs(3600)));
        let now = Instant::now();
        assert!(hour.fresh(now));
        assert!(!hour.fresh(now + Duration::from_secs(3301)), "5 min ahead");
        let short = Token::new(header.clone(), Some(Duration::from_secs(8)));
        assert!(short.fresh(now + Duration::from_secs(5)));
        assert!(
            !short.fresh(now + Duration::from_secs(7)),
            "a quarter ahead"
        );
        assert!(short.valid(now + Duration::from_secs(7)));
        let forever = Token::new(header, None);
        assert!(forever.fresh(now + Duration::from_secs(1 << 30)));
    }
}

//! ByteNite credentials: the API key is exchanged for an access token
//! (`POST /v1/auth/access_token` with `{"apiKey": …}` → `{"token": …,
//! "expiresIn": "3600"}`), which goes raw in `Authorization` — no `Bearer `. The
//! token is renewed before `expiresIn` runs out and whenever a request is refused
//! (see `crate::http::auth`); `expiresIn` is an int64, which proto3 JSON writes as
//! a string, so both a string and a number are read.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Deserializer};

use crate::http::api::Api;
use crate::http::auth::{Token, TokenSource, jwt_lifetime};
use crate::http::client::{AuthHeader, scrub};
use crate::http::stream::Ended;
use crate::secret::Secret;

/// The API key, exchanged whenever a fresh token is needed.
pub(crate) struct AccessToken {
    pub url: String,
    pub api_key: Secret,
    pub timeout: Duration,
}

#[derive(Deserialize)]
struct Exchanged {
    token: String,
    #[serde(rename = "expiresIn", default, deserialize_with = "seconds")]
    expires_in: Option<u64>,
}

/// Seconds as a number, a string (`"3600"`) or a protobuf duration (`"3600s"`).
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(f64),
        Text(String),
    }
    Ok(match Option::<Seconds>::deserialize(deserializer)? {
        Some(Seconds::Number(n)) => (n.is_finite() && n >= 1.0).then_some(n as u64),
        Some(Seconds::Text(text)) => text
            .trim()
            .trim_end_matches('s')
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 1.0)
            .map(|n| n as u64),
        None => None,
    })
}

#[async_trait]
impl TokenSource for AccessToken {
    async fn fetch(&self, api: &Api) -> Result<Token, Ended> {
        let body = serde_json::json!({ "apiKey": self.api_key.expose() });
        let response = api
            .send_anonymous(|client| client.post(&self.url).json(&body).timeout(self.timeout))
            .await
            .map_err(|ended| ended.context("access token exchange", |t| self.scrub(t)))?;
        let answer: Exchanged = api.read_json(response).await?;
        // Without `expiresIn`, a JWT's own `exp`; else until refused.
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .or_else(|| jwt_lifetime(&answer.token));
        let header = AuthHeader::new("authorization", "", &Secret::new(answer.token))
            .map_err(|e| Ended::Lost(e.to_string()))?;
        Ok(Token::new(header, lifetime))
    }

    fn scrub(&self, text: &str) -> String {
        scrub(text, &self.api_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expires(json: &str) -> Option<u64> {
        serde_json::from_str::<Exchanged>(json).unwrap().expires_in
    }

    #[test]
    fn expires_in_is_a_string_or_a_number() {
        assert_eq!(expires(r#"{"token":"t","expiresIn":"3600"}"#), Some(3600));
        assert_eq!(expires(r#"{"token":"t","expiresIn":3600}"#), Some(3600));
        assert_eq!(expires(r#"{"token":"t","expiresIn":"90s"}"#), Some(90));
        assert_eq!(expires(r#"{"token":"t","expiresIn":"0"}"#), None);
        assert_eq!(expires(r#"{"token":"t","expiresIn":"soon"}"#), None);
        assert_eq!(expires(r#"{"token":"t","expiresIn":null}"#), None);
        assert_eq!(expires(r#"{"token":"t","scope":"all"}"#), None);
    }
}

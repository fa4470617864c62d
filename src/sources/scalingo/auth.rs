//! Scalingo's token exchange: `POST {auth}/v1/tokens/exchange` with
//! `Authorization: Basic base64(":<api token>")` (an empty user) answers
//! `{"token": "<JWT>"}`, a bearer token for the API valid about an hour. It is a
//! [`TokenSource`], so the JWT is renewed before its `exp` and when the API refuses
//! it (`crate::http::auth`).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::http::api::Api;
use crate::http::auth::{Token, TokenSource, jwt_lifetime};
use crate::http::client::{AuthHeader, scrub};
use crate::http::stream::Ended;
use crate::secret::Secret;

pub(crate) struct Exchange {
    url: String,
    api_token: Secret,
    timeout: Duration,
}

impl Exchange {
    pub fn new(auth_endpoint: &str, api_token: Secret, timeout: Duration) -> Self {
        Exchange {
            url: format!("{}/v1/tokens/exchange", auth_endpoint.trim_end_matches('/')),
            api_token,
            timeout,
        }
    }
}

#[derive(Deserialize)]
struct Exchanged {
    token: String,
}

#[async_trait]
impl TokenSource for Exchange {
    async fn fetch(&self, api: &Api) -> Result<Token, Ended> {
        let response = api
            .send_anonymous(|client| {
                client
                    .post(&self.url)
                    .basic_auth("", Some(self.api_token.expose()))
                    .header(reqwest::header::ACCEPT, "application/json")
                    .timeout(self.timeout)
            })
            .await
            .map_err(|ended| match ended {
                Ended::Failed(mut failure) => {
                    failure.detail = format!("token exchange: {}", failure.detail);
                    Ended::Failed(failure)
                }
                other => other,
            })?;
        let answer: Exchanged = api.read_json(response).await?;
        let lifetime = jwt_lifetime(&answer.token);
        let header = AuthHeader::new("authorization", "Bearer ", &Secret::new(answer.token))
            .map_err(|e| Ended::Lost(e.to_string()))?;
        Ok(Token::new(header, lifetime))
    }

    fn scrub(&self, text: &str) -> String {
        scrub(text, &self.api_token)
    }
}

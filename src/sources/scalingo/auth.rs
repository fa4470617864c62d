//! Scalingo's token exchange: `POST {auth}/v1/tokens/exchange` with
//! `Authorization: Basic base64(":<api token>")` (an empty user) answers
//! `{"token": "<JWT>"}`, a bearer token for the API valid about an hour. It is a
//! [`TokenSource`], so the JWT is renewed before its `exp` and when the API refuses
//! it (`crate::http::auth`).

use std::time::Duration;

use async_trait::async_trait;

use crate::http::api::Api;
use crate::http::auth::{JwtAnswer, Token, TokenSource};
use crate::http::client::scrub;
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
        api.read_json::<JwtAnswer>(response).await?.token("Bearer ")
    }

    fn scrub(&self, text: &str) -> String {
        scrub(text, &self.api_token)
    }
}

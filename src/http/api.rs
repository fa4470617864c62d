//! A provider's HTTP API as one source sees it: the client, the [`Credentials`] and
//! the optional [`RateBudget`], applied to every request the source makes. A
//! request waits for the budget, carries the auth header (unless it goes to a
//! pre-signed URL), and comes back as a success or as an [`Ended`]: a failure
//! status with the provider's error body summarized, a network error without its
//! URL, every secret scrubbed — the source's credentials, and the signature a
//! pre-signed URL carries in its query (a server may echo it in an error body). A
//! 401/403 on an exchanged token renews it and tries once more; a 429 with
//! `Retry-After` pauses the whole budget.

use std::io::{BufRead, BufReader, Read};

use futures_util::TryStreamExt;
use serde::de::DeserializeOwned;
use tokio_util::io::{StreamReader, SyncIoBridge};
use tokio_util::sync::CancellationToken;

use super::auth::Credentials;
use super::client::{
    AuthHeader, FailureKind, HttpFailure, build_client, request_error, scrub_all,
    signed_query_values,
};
use super::rate::RateBudget;
use super::stream::{Ended, RETRY_AFTER_CAP, StreamOptions};

/// Most bytes of a JSON answer read into memory ([`Api::json`]).
pub const MAX_JSON_BYTES: usize = 32 << 20;
/// Read buffer of [`Api::decode_blocking`].
const DECODE_BUFFER: usize = 64 << 10;

/// See the module doc.
pub struct Api {
    client: reqwest::Client,
    credentials: Credentials,
    budget: Option<RateBudget>,
}

impl Api {
    pub fn new(client: reqwest::Client, credentials: Credentials) -> Self {
        Api {
            client,
            credentials,
            budget: None,
        }
    }

    /// The API of a source that streams with `options`: a new client (with the
    /// options' connect timeout) sending `credentials`.
    pub fn connect(options: &StreamOptions, credentials: Credentials) -> anyhow::Result<Self> {
        Ok(Api::new(
            build_client(options.connect_timeout)?,
            credentials,
        ))
    }

    /// Counts every request of this source against `budget`.
    pub fn with_budget(mut self, budget: RateBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// `text` without any secret of this source.
    pub fn scrub(&self, text: &str) -> String {
        self.credentials.scrub(text)
    }

    /// Sends the request `build` makes, with the auth header. `build` may be called
    /// twice (once more after renewing a refused token).
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Ended> {
        let header = self.credentials.header(self).await?;
        let result = self.attempt(build(&self.client), header.as_ref()).await;
        match (&result, &header) {
            (Err(Ended::Failed(failure)), Some(used))
                if failure.kind == FailureKind::Auth && self.credentials.refused(used) =>
            {
                tracing::info!("token refused ({failure}); getting a new one");
                let header = self.credentials.header(self).await?;
                self.attempt(build(&self.client), header.as_ref()).await
            }
            _ => result,
        }
    }

    /// Sends the request `build` makes without credentials: for pre-signed URLs
    /// (which must never see the API token) and for token exchanges.
    pub async fn send_anonymous(
        &self,
        build: impl FnOnce(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Ended> {
        self.attempt(build(&self.client), None).await
    }

    /// [`send`](Api::send), then the body as JSON (at most [`MAX_JSON_BYTES`]).
    pub async fn json<T: DeserializeOwned>(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<T, Ended> {
        let response = self.send(build).await?;
        self.read_json(response).await
    }

    /// The body of `response` as JSON (at most [`MAX_JSON_BYTES`]).
    pub async fn read_json<T: DeserializeOwned>(
        &self,
        mut response: reqwest::Response,
    ) -> Result<T, Ended> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Ended::Lost(self.scrub(&request_error(e))))?
        {
            if body.len() + chunk.len() > MAX_JSON_BYTES {
                return Err(Ended::Lost(format!(
                    "answer larger than {MAX_JSON_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body)
            .map_err(|e| Ended::Lost(format!("unexpected answer from the provider: {e}")))
    }

    /// Hands the body of `response` to `decode` as a blocking reader on a thread
    /// of the blocking pool, so that a large answer is decoded as it arrives rather
    /// than held whole: memory is one network chunk, a read buffer, and what
    /// `decode` keeps. Reads fail (an `io::Error` `decode` sees) once `stop` fires,
    /// so a long answer does not hold up shutdown. A network error reaches `decode`
    /// as an `io::Error` without the URL; pass any text made of it through
    /// [`scrub`](Api::scrub).
    pub async fn decode_blocking<T: Send + 'static>(
        &self,
        response: reqwest::Response,
        stop: CancellationToken,
        decode: impl FnOnce(&mut dyn BufRead) -> T + Send + 'static,
    ) -> Result<T, Ended> {
        let body = response
            .bytes_stream()
            .map_err(|e| std::io::Error::other(request_error(e)));
        let reader = SyncIoBridge::new(StreamReader::new(body));
        let mut reader = BufReader::with_capacity(DECODE_BUFFER, Stoppable { reader, stop });
        tokio::task::spawn_blocking(move || decode(&mut reader))
            .await
            .map_err(|e| Ended::Lost(format!("decoding the answer failed: {e}")))
    }

    async fn attempt(
        &self,
        mut request: reqwest::RequestBuilder,
        header: Option<&AuthHeader>,
    ) -> Result<reqwest::Response, Ended> {
        if let Some(header) = header {
            request = header.apply(request);
        }
        let (client, request) = request.build_split();
        let request = request.map_err(|e| Ended::Lost(self.scrub(&request_error(e))))?;
        let signed = signed_query_values(request.url());
        let permit = match &self.budget {
            Some(budget) => Some(budget.acquire().await),
            None => None,
        };
        let sent = client.execute(request).await;
        if let (Some(budget), Some(permit)) = (&self.budget, permit) {
            budget.answered(permit);
        }
        let response = sent.map_err(|e| Ended::Lost(self.scrub(&request_error(e))))?;
        if let Some(budget) = &self.budget {
            budget.observe(response.headers());
        }
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response);
        }
        let mut failure = HttpFailure::from_response(response, header, RETRY_AFTER_CAP).await;
        failure.detail = scrub_all(&self.scrub(&failure.detail), &signed);
        if let (Some(budget), Some(wait)) = (&self.budget, failure.retry_after)
            && failure.kind == FailureKind::RateLimited
        {
            budget.pause(wait);
        }
        Err(Ended::Failed(failure))
    }
}

/// A blocking reader that fails once `stop` fires.
struct Stoppable<R> {
    reader: R,
    stop: CancellationToken,
}

impl<R: Read> Read for Stoppable<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.is_cancelled() {
            return Err(std::io::Error::other("the source is stopping"));
        }
        self.reader.read(buf)
    }
}

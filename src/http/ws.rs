//! Opening a websocket stream (DigitalOcean's `live_url`, Scalingo's
//! `stream=true`). The upgrade is an ordinary request through the source's
//! [`Api`] — same client, same rustls, same connect timeout, same rate budget and
//! error mapping (a 401/404/429 before the upgrade is an [`Ended::Failed`] with the
//! provider's body) — whose connection `tokio-tungstenite` then frames. The
//! result is a [`Connection`] like an SSE one: text messages as frames, the idle
//! timeout, a close frame as the normal end, pings answered by tungstenite.
//!
//! A server that answers the upgrade with a `text/event-stream` body instead
//! (Scalingo's fallback without `Upgrade`) gives an SSE connection; one that
//! answers with any other successful body (DigitalOcean's `live_url` read as
//! chunked `text/plain`, as doctl once did) gives its lines. `ws://` and
//! `wss://` URLs are requested as `http://` and `https://`. No credentials are sent
//! and no URL appears in an error: these URLs carry their own token, which is also
//! hidden from an error body that echoes it.

use reqwest::header::{CONNECTION, CONTENT_TYPE, UPGRADE};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::api::Api;
use super::client::request_error;
use super::connection::Connection;
use super::stream::{Ended, StreamOptions};

/// Smallest websocket message size accepted, whatever `max_event_bytes` says.
const MIN_MESSAGE_BYTES: usize = 64 << 10;

/// The http(s) URL to request for a ws(s), http(s) URL.
pub fn http_url(url: &str) -> Result<url::Url, String> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let scheme = match parsed.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        other => return Err(format!("`{other}` is not a websocket or http URL scheme")),
    };
    parsed
        .set_scheme(scheme)
        .map_err(|()| "cannot use this URL".to_string())?;
    Ok(parsed)
}

/// Opens `url` as a websocket (see the module doc); `extra` adds headers such as
/// `Origin`. A message may hold up to four times `max_event_bytes` (at least
/// 64 KiB); a longer one ends the connection with an error.
pub async fn connect(
    api: &Api,
    url: &str,
    extra: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    options: &StreamOptions,
) -> Result<Connection, Ended> {
    upgrade(api, url, extra, options)
        .await
        .map_err(|ended| ended.hiding_query_of(url))
}

async fn upgrade(
    api: &Api,
    url: &str,
    extra: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    options: &StreamOptions,
) -> Result<Connection, Ended> {
    let url = http_url(url).map_err(|e| Ended::Lost(format!("bad websocket URL: {e}")))?;
    let key = generate_key();
    let response = api
        .send_anonymous(|client| {
            extra(
                client
                    .get(url)
                    .header(CONNECTION, "Upgrade")
                    .header(UPGRADE, "websocket")
                    .header("sec-websocket-version", "13")
                    .header("sec-websocket-key", &key),
            )
        })
        .await?;
    if response.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
        let content_type = response.headers().get(CONTENT_TYPE);
        let content_type = content_type.and_then(|v| v.to_str().ok()).unwrap_or("");
        if content_type.starts_with("text/event-stream") {
            return Ok(Connection::sse(response, options));
        }
        if response.status().is_success() {
            return Ok(Connection::lines(response, options));
        }
        return Err(Ended::Lost(format!(
            "the server did not switch to a websocket (HTTP {}, content type {content_type:?})",
            response.status(),
        )));
    }
    let accept = derive_accept_key(key.as_bytes());
    if response
        .headers()
        .get("sec-websocket-accept")
        .is_none_or(|v| v.as_bytes() != accept.as_bytes())
    {
        return Err(Ended::Lost(
            "the server's websocket handshake is invalid (Sec-WebSocket-Accept)".into(),
        ));
    }
    let upgraded = response
        .upgrade()
        .await
        .map_err(|e| Ended::Lost(api.scrub(&request_error(e))))?;
    let limit = options
        .max_event_bytes
        .saturating_mul(4)
        .max(MIN_MESSAGE_BYTES);
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let socket = WebSocketStream::from_raw_socket(upgraded, Role::Client, Some(config)).await;
    Ok(Connection::websocket(socket, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_schemes_map_to_http() {
        let url = |u: &str| http_url(u).map(|u| u.to_string());
        assert_eq!(
            url("wss://logs.example/apps/a/logs?token=x").unwrap(),
            "https://logs.example/apps/a/logs?token=x"
        );
        assert_eq!(
            url("ws://127.0.0.1:9/live").unwrap(),
            "http://127.0.0.1:9/live"
        );
        assert_eq!(url("https://a.example/").unwrap(), "https://a.example/");
        assert!(url("ftp://a.example/").is_err());
        assert!(url("not a url").is_err());
    }
}

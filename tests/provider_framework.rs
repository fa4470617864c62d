//! The provider framework's HTTP pieces against the shared simulator server, over
//! real HTTP and websocket framing: websocket streams (frames, close, drop, idle,
//! refused upgrade, SSE fallback), plain-text line bodies, token exchange renewed
//! before expiry and after a refusal, and the rate budget.

#[path = "support/sim_server.rs"]
mod sim_server;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferry::http::api::Api;
use ferry::http::auth::{Credentials, Token, TokenSource, jwt_lifetime};
use ferry::http::client::{AuthHeader, FailureKind};
use ferry::http::connection::{Connection, ReadError};
use ferry::http::rate::RateBudget;
use ferry::http::stream::{Ended, StreamOptions};
use ferry::http::ws;
use ferry::secret::Secret;
use sim_server::{Fault, Flow, Frames, Server, Sim, StreamSpec, Tokens};

const API_TOKEN: &str = "tk-us-secret-7781";

/// What the test server knows: the messages of its live stream and its tokens.
#[derive(Default)]
struct Live {
    messages: Vec<String>,
    tokens: Tokens,
    token_ttl: Option<Duration>,
    /// Answer every request with 429 this many times first.
    throttle: usize,
}

type Shared = Arc<Sim<Live>>;

async fn live(upgrade: WebSocketUpgrade, State(sim): State<Shared>) -> Response {
    let mut next = 0;
    let spec = StreamSpec::new(sim.next_fault());
    sim_server::ws_stream(
        upgrade,
        Arc::clone(&sim),
        spec,
        move |live: &Live, frames: &mut Frames| {
            while next < live.messages.len() {
                frames.push(live.messages[next].as_bytes());
                next += 1;
            }
            Flow::More
        },
    )
}

async fn refused() -> Response {
    sim_server::json(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({"id": "unauthorized", "message": "Unable to authenticate you."}),
    )
}

async fn events(State(sim): State<Shared>) -> Response {
    let spec = StreamSpec::new(None);
    let mut sent = false;
    sim_server::stream_body(
        sim,
        "text/event-stream",
        spec,
        move |_: &Live, frames: &mut Frames| {
            if !sent {
                frames.push(b"data: one\n\n");
                frames.push(b"data: two\n\n");
                sent = true;
            }
            Flow::End
        },
    )
}

async fn dump() -> Response {
    (
        [("content-type", "text/plain")],
        "first\r\n\nsecond\nlast without end",
    )
        .into_response()
}

async fn exchange(State(sim): State<Shared>, headers: HeaderMap) -> Response {
    let ok = sim_server::basic(&headers)
        .is_some_and(|(user, pass)| user.is_empty() && pass == API_TOKEN);
    if !ok {
        return sim_server::text(StatusCode::UNAUTHORIZED, "bad token");
    }
    let token = sim.update(|live| {
        let ttl = live.token_ttl;
        live.tokens.issue("ferry", ttl)
    });
    sim_server::json(StatusCode::OK, serde_json::json!({ "token": token }))
}

async fn api(State(sim): State<Shared>, headers: HeaderMap) -> Response {
    let mut live = sim.lock();
    if live.throttle > 0 {
        live.throttle -= 1;
        sim_server::with_retry_after(
            sim_server::text(StatusCode::TOO_MANY_REQUESTS, "Retry later"),
            Some("1"),
        )
    } else if sim_server::bearer(&headers).is_some_and(|t| live.tokens.valid(t)) {
        sim_server::json(StatusCode::OK, serde_json::json!({ "ok": true }))
    } else {
        sim_server::text(StatusCode::UNAUTHORIZED, "token expired")
    }
}

async fn start() -> Server<Live> {
    Server::start(Live::default(), |router| {
        router
            .route("/live", get(live))
            .route("/refused", get(refused))
            .route("/events", get(events))
            .route("/dump", get(dump))
            .route("/v1/tokens/exchange", post(exchange))
            .route("/v1/apps", get(api))
    })
    .await
}

fn options() -> StreamOptions {
    StreamOptions {
        idle_timeout: Duration::from_millis(300),
        ..StreamOptions::default()
    }
}

fn anonymous() -> Api {
    Api::new(reqwest::Client::new(), Credentials::anonymous())
}

/// Every frame until the end, or the read error that stopped it.
async fn drain(connection: &mut Connection) -> (Vec<String>, Option<ReadError>) {
    let mut frames = Vec::new();
    loop {
        while let Some(frame) = connection.next_frame() {
            frames.push(frame.data);
        }
        match connection.fill().await {
            Ok(true) => {}
            Ok(false) => return (frames, None),
            Err(error) => return (frames, Some(error)),
        }
    }
}

#[tokio::test]
async fn a_websocket_gives_its_text_messages_until_the_close() {
    let server = start().await;
    // More than one read's worth (`WS_BATCH`), all waiting at once.
    server.sim.update(|live| {
        live.messages = (0..500).map(|n| format!("{{\"data\":\"m{n}\"}}")).collect()
    });
    server.sim.push_fault(Fault::CloseAfter(500));
    let url = format!("ws://{}/live?token=signed-url-token", server.addr);
    let mut connection = ws::connect(
        &anonymous(),
        &url,
        |r| r.header("origin", "http://ferry"),
        &options(),
    )
    .await
    .expect("websocket opens");
    // Let every message arrive before the first read.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (frames, error) = drain(&mut connection).await;
    assert!(error.is_none(), "a close frame is a normal end: {error:?}");
    let expected: Vec<String> = (0..500).map(|n| format!("{{\"data\":\"m{n}\"}}")).collect();
    let missing: Vec<&String> = expected.iter().filter(|m| !frames.contains(m)).collect();
    assert!(missing.is_empty(), "messages lost: {missing:?}");
    assert_eq!(frames, expected, "in order");
    let request = &server.sim.requests()[0];
    assert_eq!(request.header("origin"), Some("http://ferry"));
    assert_eq!(
        request.header("authorization"),
        None,
        "no credentials on a signed URL"
    );
    assert_eq!(request.param("token").as_deref(), Some("signed-url-token"));
}

#[tokio::test]
async fn a_dropped_or_silent_websocket_is_an_error() {
    let server = start().await;
    server
        .sim
        .update(|live| live.messages = vec!["a".into(), "b".into(), "c".into()]);
    server.sim.push_fault(Fault::DropAfter(2));
    server.sim.push_fault(Fault::Stall(Duration::from_secs(5)));
    let url = format!("ws://{}/live", server.addr);
    let mut dropped = ws::connect(&anonymous(), &url, |r| r, &options())
        .await
        .unwrap();
    let (frames, error) = drain(&mut dropped).await;
    assert_eq!(frames, ["a", "b"]);
    assert!(matches!(error, Some(ReadError::Network(_))), "{error:?}");
    let mut silent = ws::connect(&anonymous(), &url, |r| r, &options())
        .await
        .unwrap();
    let (frames, error) = drain(&mut silent).await;
    assert!(frames.is_empty());
    assert!(matches!(error, Some(ReadError::Idle(_))), "{error:?}");
}

#[tokio::test]
async fn a_refused_upgrade_carries_the_providers_error_without_the_url() {
    let server = start().await;
    let url = format!("ws://{}/refused?token=signed-url-token", server.addr);
    let error = ws::connect(&anonymous(), &url, |r| r, &options())
        .await
        .err()
        .unwrap();
    let Ended::Failed(failure) = error else {
        panic!("not a failure: {error:?}");
    };
    assert_eq!(failure.kind, FailureKind::Auth);
    assert_eq!(failure.detail, "Unable to authenticate you.");
    let unreachable = ws::connect(
        &anonymous(),
        "ws://127.0.0.1:1/live?token=signed-url-token",
        |r| r,
        &options(),
    )
    .await
    .err()
    .unwrap();
    assert!(
        !format!("{unreachable:?}").contains("signed-url-token"),
        "{unreachable:?}"
    );
}

/// A server that answers the upgrade with SSE (Scalingo's fallback) or with plain
/// text (DigitalOcean's `live_url` read as chunked text) is read as such.
#[tokio::test]
async fn a_server_answering_a_websocket_with_sse_or_plain_text_is_read_as_such() {
    let server = start().await;
    let answers: [(&str, &[&str]); 2] = [
        ("ws://{}/events", &["one", "two"]),
        ("http://{}/dump", &["first", "second", "last without end"]),
    ];
    for (url, expected) in answers {
        let url = url.replace("{}", &server.addr.to_string());
        let mut connection = ws::connect(&anonymous(), &url, |r| r, &options())
            .await
            .unwrap();
        let (frames, error) = drain(&mut connection).await;
        assert!(error.is_none(), "{url}: {error:?}");
        assert_eq!(frames, expected, "{url}");
    }
}

#[tokio::test]
async fn a_plain_text_body_gives_its_lines_and_the_unterminated_last_one() {
    let server = start().await;
    let api = anonymous();
    let response = api
        .send_anonymous(|client| client.get(format!("{}/dump", server.url())))
        .await
        .unwrap();
    let mut connection = Connection::lines(response, &options());
    let (frames, error) = drain(&mut connection).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(frames, ["first", "second", "last without end"]);
}

/// Scalingo-style: the API token as the password of Basic auth with an empty user.
struct Exchange {
    url: String,
    secret: Secret,
}

#[async_trait]
impl TokenSource for Exchange {
    async fn fetch(&self, api: &Api) -> Result<Token, Ended> {
        #[derive(serde::Deserialize)]
        struct Answer {
            token: String,
        }
        let response = api
            .send_anonymous(|client| {
                client
                    .post(&self.url)
                    .basic_auth("", Some(self.secret.expose()))
            })
            .await?;
        let answer: Answer = api.read_json(response).await?;
        let lifetime = jwt_lifetime(&answer.token);
        let header =
            AuthHeader::new("authorization", "Bearer ", &Secret::new(answer.token)).unwrap();
        Ok(Token::new(header, lifetime))
    }

    fn scrub(&self, text: &str) -> String {
        ferry::http::client::scrub(text, &self.secret)
    }
}

fn exchanged(server: &Server<Live>, secret: &str) -> Api {
    Api::new(
        reqwest::Client::new(),
        Credentials::exchanged(Exchange {
            url: format!("{}/v1/tokens/exchange", server.url()),
            secret: Secret::new(secret),
        }),
    )
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires_and_after_a_refusal() {
    let server = start().await;
    server
        .sim
        .update(|live| live.token_ttl = Some(Duration::from_secs(4)));
    let api = exchanged(&server, API_TOKEN);
    let apps = format!("{}/v1/apps", server.url());
    let get = || api.json::<serde_json::Value>(|client| client.get(&apps));
    get().await.unwrap();
    get().await.unwrap();
    assert_eq!(
        server.sim.lock().tokens.count(),
        1,
        "one exchange while fresh"
    );
    // Renewal is due a quarter of the lifetime ahead of expiry.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    get().await.unwrap();
    assert_eq!(server.sim.lock().tokens.count(), 2, "renewed before expiry");
    server.sim.update(|live| live.tokens.expire_all());
    get().await.unwrap();
    assert_eq!(
        server.sim.lock().tokens.count(),
        3,
        "renewed after a refusal"
    );
    let refused: Vec<u16> = server
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/apps")
        .map(|r| r.status)
        .collect();
    assert_eq!(refused, [200, 200, 200, 401, 200]);
}

#[tokio::test]
async fn a_refused_api_token_fails_without_leaking_it() {
    let server = start().await;
    let api = exchanged(&server, "tk-us-wrong-0000");
    let error = api
        .json::<serde_json::Value>(|client| client.get(format!("{}/v1/apps", server.url())))
        .await
        .err()
        .unwrap();
    let Ended::Failed(failure) = &error else {
        panic!("not a failure: {error:?}");
    };
    assert_eq!(failure.kind, FailureKind::Auth);
    assert!(!format!("{error:?}").contains("tk-us-wrong-0000"));
}

#[tokio::test]
async fn the_rate_budget_spaces_every_request_and_honours_retry_after() {
    let server = start().await;
    let api = Api::new(reqwest::Client::new(), Credentials::anonymous())
        .with_budget(RateBudget::new(3, Duration::from_millis(600)));
    let apps = format!("{}/v1/apps", server.url());
    server.sim.update(|live| live.throttle = 1);
    let throttled = api
        .send_anonymous(|client| client.get(&apps))
        .await
        .err()
        .unwrap();
    assert!(matches!(&throttled, Ended::Failed(f) if f.kind == FailureKind::RateLimited));
    for _ in 0..6 {
        let _ = api.send_anonymous(|client| client.get(&apps)).await;
    }
    let times: Vec<_> = server.sim.requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 7);
    assert!(
        times[1].duration_since(times[0]) >= Duration::from_millis(950),
        "Retry-After: 1 held the next request"
    );
    for window in times[1..].windows(4) {
        assert!(
            window[3].duration_since(window[0]) >= Duration::from_millis(590),
            "at most 3 requests in any 600 ms"
        );
    }
}

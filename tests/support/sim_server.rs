//! What every provider simulator shares, so that a simulator module holds only its
//! provider's wire facts (routes, auth scheme, bodies, framing details):
//!
//! - [`Server`]: an axum router on `127.0.0.1:0` over a shared [`Sim`] state,
//!   stopped when dropped;
//! - [`Sim`]: the provider's state behind a lock, a wake-up for streams when it
//!   changes, every request recorded ([`Seen`], with what the simulator reads from
//!   it: `Seen<ItsView>`, or its [`RequestKind`]), queued [`Fault`]s and a random
//!   5xx rate (seeded, so a run can be replayed), the count of open streams (and
//!   the most open at once), and [`Sim::disconnect_all`] to cut every stream at
//!   once;
//! - [`simulator!`] and [`sim_config!`]: a provider simulator's type, `start`
//!   from its route table, and its `SimConfig` with each option's default;
//! - [`stream_body`] and [`ws_stream`]: a streaming response (SSE or plain text
//!   chunks) or a websocket fed by a provider closure, with keepalives and the
//!   faults (drop mid-frame, clean close after N frames, stall);
//! - helpers for auth ([`bearer`], [`basic`], [`Tokens`] with expiry, [`jwt`]),
//!   rate limits ([`RateLimit`]), queries and JSON/text answers, and the
//!   `stdout`/`stderr` files of a container or task ([`StdFiles`]).

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, mpsc};

/// Most bytes of stream data sent in one chunk.
pub const CHUNK: usize = 32 * 1024;

/// One injected misbehaviour, used by the next request that takes a fault.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Send this many frames, then half of the next one, then reset the connection.
    DropAfter(usize),
    /// Send this many frames, then end the stream cleanly (end of body, or a
    /// websocket close frame 1000).
    CloseAfter(usize),
    /// Send the headers (or the upgrade), then nothing at all for this long.
    Stall(Duration),
    /// Answer with this status and an optional `Retry-After`.
    Status(u16, Option<String>),
}

impl Fault {
    /// The answer to a request that took a [`Fault::Status`]: `body(status)` with
    /// the fault's `Retry-After`. Other faults act on the stream instead.
    pub fn answer(&self, body: impl FnOnce(StatusCode) -> Response) -> Option<Response> {
        let Fault::Status(code, retry_after) = self else {
            return None;
        };
        let status = StatusCode::from_u16(*code).expect("a valid status");
        Some(with_retry_after(body(status), retry_after.as_deref()))
    }
}

/// A request as the simulator saw it, with what the simulator reads from it
/// (`view`): a simulator's own kind of request is a `Seen<ItsView>`, whose view's
/// fields read as the request's own (through `Deref`).
#[derive(Debug, Clone)]
pub struct Seen<V = ()> {
    /// When it came.
    pub at: Instant,
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status it was answered with.
    pub status: u16,
    pub view: V,
}

impl Seen {
    /// A request that came `at`, not answered yet (status 0).
    pub fn new(at: Instant, method: Method, uri: &Uri, headers: HeaderMap, body: Bytes) -> Seen {
        Seen {
            at,
            method,
            path: uri.path().to_string(),
            query: uri.query().unwrap_or("").to_string(),
            headers,
            body,
            status: 0,
            view: (),
        }
    }

    /// The request, with what a simulator reads from it.
    pub fn with<V>(self, view: V) -> Seen<V> {
        Seen {
            at: self.at,
            method: self.method,
            path: self.path,
            query: self.query,
            headers: self.headers,
            body: self.body,
            status: self.status,
            view,
        }
    }
}

impl<V> Deref for Seen<V> {
    type Target = V;

    fn deref(&self) -> &V {
        &self.view
    }
}

impl<V> DerefMut for Seen<V> {
    fn deref_mut(&mut self) -> &mut V {
        &mut self.view
    }
}

impl<V> Seen<V> {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_str(&self.headers, name)
    }

    /// The value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<String> {
        param_of(&self.query, name)
    }
}

/// A simulator's own kinds of request (the routes or modes its documents name),
/// told apart by what was asked.
pub trait RequestKind {
    /// What `request` was.
    fn of(request: &Seen) -> Self;
}

struct Book {
    requests: Vec<Seen>,
    faults: VecDeque<Fault>,
    /// Per-mille of fault-taking requests answered with a random 5xx.
    error_rate: u32,
    rng: rand::rngs::StdRng,
}

/// A simulator's state and bookkeeping (see the module doc).
pub struct Sim<T> {
    /// `http://127.0.0.1:{port}`.
    url: String,
    state: Mutex<T>,
    changed: Notify,
    book: Mutex<Book>,
    open_streams: AtomicUsize,
    most_open_streams: AtomicUsize,
    epoch: AtomicU64,
}

impl<T> Sim<T> {
    fn new(url: String, state: T) -> Self {
        Sim {
            url,
            state: Mutex::new(state),
            changed: Notify::new(),
            book: Mutex::new(Book {
                requests: Vec::new(),
                faults: VecDeque::new(),
                error_rate: 0,
                rng: rand::rngs::StdRng::seed_from_u64(7),
            }),
            open_streams: AtomicUsize::new(0),
            most_open_streams: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
        }
    }

    /// Where the simulator serves, for answers that point back to it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The state, locked.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and wakes every stream to look at it.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let result = f(&mut self.lock());
        self.changed.notify_waiters();
        result
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request recorded so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.book().requests.clone()
    }

    /// The requests recorded so far that `view` keeps, as it shows them (a
    /// simulator's own kind of request).
    pub fn requests_as<R>(&self, view: impl FnMut(Seen) -> Option<R>) -> Vec<R> {
        self.requests().into_iter().filter_map(view).collect()
    }

    /// Every request recorded so far, with its kind (a simulator's own) as its view.
    pub fn requests_by_kind<K: RequestKind>(&self) -> Vec<Seen<K>> {
        self.requests_as(|seen| {
            let kind = K::of(&seen);
            Some(seen.with(kind))
        })
    }

    /// How many requests recorded so far `matches`.
    pub fn count_requests(&self, matches: impl Fn(&Seen) -> bool) -> usize {
        self.book()
            .requests
            .iter()
            .filter(|seen| matches(seen))
            .count()
    }

    pub fn push_fault(&self, fault: Fault) {
        self.book().faults.push_back(fault);
    }

    /// Answers this share (in per-mille) of the fault-taking requests with a 5xx.
    pub fn set_error_rate(&self, per_mille: u32, seed: u64) {
        let mut book = self.book();
        book.error_rate = per_mille;
        book.rng = rand::rngs::StdRng::seed_from_u64(seed);
    }

    /// The next queued fault, else possibly a random 5xx.
    pub fn next_fault(&self) -> Option<Fault> {
        let mut book = self.book();
        if let Some(fault) = book.faults.pop_front() {
            return Some(fault);
        }
        let rate = book.error_rate;
        if rate > 0 && book.rng.random_range(0..1000) < rate {
            let status = [500, 502, 503][book.rng.random_range(0..3)];
            return Some(Fault::Status(status, None));
        }
        None
    }

    /// Cuts every open stream (as a restarted proxy would).
    pub fn disconnect_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Streaming responses and websockets still open.
    pub fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::SeqCst)
    }

    /// The most streams that were open at once so far.
    pub fn most_open_streams(&self) -> usize {
        self.most_open_streams.load(Ordering::SeqCst)
    }
}

/// Records a request a route answered, with its body and the status of its answer.
async fn record_answered<T>(
    State(sim): State<Arc<Sim<T>>>,
    request: Request,
    next: Next,
) -> Response {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let seen = Seen::new(
        at,
        parts.method.clone(),
        &parts.uri,
        parts.headers.clone(),
        body.clone(),
    );
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let status = response.status().as_u16();
    sim.book().requests.push(Seen { status, ..seen });
    response
}

/// What a handler is given besides its path parameters and body: the simulator,
/// and the request's URI and headers.
pub struct Call<T> {
    pub sim: Arc<Sim<T>>,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl<T: Send + 'static> FromRequestParts<Arc<Sim<T>>> for Call<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        sim: &Arc<Sim<T>>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Call {
            sim: Arc::clone(sim),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }
}

/// A simulator state holding a config that tests read and change.
pub trait Configured {
    type Config: Clone;
    fn config_mut(&mut self) -> &mut Self::Config;
}

/// A running simulator; stops when dropped. A provider simulator derefs to it, and
/// it to its [`Sim`], so `url()`, `config()`, `set_config()`, `push_fault()`,
/// `set_error_rate()`, `disconnect_all()` and `open_streams()` come from here.
pub struct Server<T> {
    pub addr: SocketAddr,
    pub sim: Arc<Sim<T>>,
    task: tokio::task::JoinHandle<()>,
}

impl<T> std::ops::Deref for Server<T> {
    type Target = Sim<T>;

    fn deref(&self) -> &Sim<T> {
        &self.sim
    }
}

impl<T> Drop for Server<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T: Send + 'static> Server<T> {
    /// Serves `routes` (handlers take `State<Arc<Sim<T>>>` or a [`Call`]) over
    /// `state`, recording every request a route answers.
    pub async fn start(
        state: T,
        routes: impl FnOnce(Router<Arc<Sim<T>>>) -> Router<Arc<Sim<T>>>,
    ) -> Server<T> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind simulator");
        let addr = listener.local_addr().expect("simulator address");
        let sim = Arc::new(Sim::new(format!("http://{addr}"), state));
        let app = routes(Router::new())
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&sim),
                record_answered::<T>,
            ))
            .with_state(Arc::clone(&sim));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { addr, sim, task }
    }

    pub fn url(&self) -> String {
        self.sim.url().to_string()
    }
}

/// Declares a provider simulator `$name`, a [`Server`] over `$state` (which holds
/// its `config: SimConfig` and is otherwise its `Default`), dereferencing to the
/// server; `$name::start(config)` serves the routes (path `=>` method router),
/// recording every request they answer. A handler takes `Call` (the simulator,
/// the request's URI and headers); `Shared` is its `Arc<Sim<$state>>`. `Server`,
/// `Sim`, `Configured` and `SimConfig` must be in scope.
#[allow(unused_macros)]
macro_rules! simulator {
    (
        $(#[$doc:meta])*
        $name:ident($state:ty) {
            $($path:expr => $route:expr),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        pub struct $name(Server<$state>);

        type Shared = std::sync::Arc<Sim<$state>>;
        type Call = sim_server::Call<$state>;

        impl $name {
            pub async fn start(config: SimConfig) -> $name {
                $name(Server::configured(config, |router| router$(.route($path, $route))+).await)
            }
        }

        impl std::ops::Deref for $name {
            type Target = Server<$state>;

            fn deref(&self) -> &Server<$state> {
                &self.0
            }
        }

        impl Configured for $state {
            type Config = SimConfig;

            fn config_mut(&mut self) -> &mut SimConfig {
                &mut self.config
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use simulator;

/// Declares a simulator's `SimConfig` (what [`simulator!`] starts it with): each
/// option with its default (`pub name: Type = default,`), and `Default` from those.
#[allow(unused_macros)]
macro_rules! sim_config {
    ($($(#[$doc:meta])* pub $option:ident: $type:ty = $default:expr),+ $(,)?) => {
        /// The simulator's behaviour, which tests may change while it runs.
        #[derive(Debug, Clone)]
        pub struct SimConfig {
            $($(#[$doc])* pub $option: $type,)+
        }

        impl Default for SimConfig {
            fn default() -> Self {
                SimConfig {
                    $($option: $default,)+
                }
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use sim_config;

impl<T: Configured + Default + Send + 'static> Server<T> {
    /// [`Server::start`] over the default state holding `config`.
    pub async fn configured(
        config: T::Config,
        routes: impl FnOnce(Router<Arc<Sim<T>>>) -> Router<Arc<Sim<T>>>,
    ) -> Server<T> {
        let mut state = T::default();
        *state.config_mut() = config;
        Server::start(state, routes).await
    }
}

impl<T: Configured> Server<T> {
    pub fn config(&self) -> T::Config {
        self.sim.lock().config_mut().clone()
    }

    pub fn set_config(&self, f: impl FnOnce(&mut T::Config)) {
        f(self.sim.lock().config_mut());
    }
}

/// What a stream's feed says after filling a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// More may come: send what was filled, or wait for a change.
    More,
    /// The stream is over: send what was filled, then end it cleanly.
    End,
    /// Reset the connection (the thing streamed is gone).
    Reset,
}

/// What fills a stream's frames: called under the state's lock after every change.
pub trait Feed<T>: FnMut(&T, &mut Frames) -> Flow + Send + 'static {}

impl<T, F: FnMut(&T, &mut Frames) -> Flow + Send + 'static> Feed<T> for F {}

/// Frames filled by a feed: their bytes, one after another.
#[derive(Debug, Default)]
pub struct Frames {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Frames {
    /// Adds one frame (an SSE event with its blank line, a text line with its
    /// `\n`, a websocket message's text).
    pub fn push(&mut self, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
        self.ends.push(self.bytes.len());
    }

    /// Builds one frame in place with `write`.
    pub fn with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.bytes);
        self.ends.push(self.bytes.len());
    }

    /// Enough for one chunk.
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= CHUNK
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// How a stream behaves besides its frames.
pub struct StreamSpec {
    /// Sent once at the start (e.g. an SSE `retry:`).
    pub preamble: Option<Bytes>,
    /// After this long without frames, send this (`: keepalive\n\n`, a ping event).
    pub keepalive: Option<(Duration, Box<dyn Fn() -> Bytes + Send + Sync>)>,
    /// The fault this connection took, if any.
    pub fault: Option<Fault>,
    /// Wait this long before the first frame (the stream counts as open), as a
    /// slow server would.
    pub delay: Duration,
}

impl StreamSpec {
    pub fn new(fault: Option<Fault>) -> Self {
        StreamSpec {
            preamble: None,
            keepalive: None,
            fault,
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(mut self, by: Duration) -> Self {
        self.delay = by;
        self
    }

    pub fn keepalive(mut self, every: Duration, bytes: &'static [u8]) -> Self {
        self.keepalive = Some((every, Box::new(move || Bytes::from_static(bytes))));
        self
    }
}

/// Counts a stream as open while it lives.
struct Open<T>(Arc<Sim<T>>);

impl<T> Open<T> {
    fn new(sim: &Arc<Sim<T>>) -> Self {
        let open = sim.open_streams.fetch_add(1, Ordering::SeqCst) + 1;
        sim.most_open_streams.fetch_max(open, Ordering::SeqCst);
        Open(Arc::clone(sim))
    }
}

impl<T> Drop for Open<T> {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the shared loop of both stream kinds sends next.
enum Out {
    /// Whole frames: their bytes and where each ends.
    Data(Bytes, Vec<usize>),
    Keepalive(Bytes),
    /// Part of a frame, then a reset.
    Cut(Bytes),
    End,
    Reset,
}

/// The loop behind [`stream_body`] and [`ws_stream`]: calls `feed` under the
/// state's lock whenever the state changed, applies the fault, and hands each
/// piece to `send` (`false` when the client is gone). Ends when `gone` resolves
/// (the client went away) while waiting.
async fn drive<T, F, S, Fut>(
    sim: Arc<Sim<T>>,
    mut spec: StreamSpec,
    mut feed: F,
    mut send: S,
    gone: impl std::future::Future<Output = ()>,
) where
    F: FnMut(&T, &mut Frames) -> Flow,
    S: FnMut(Out) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::pin!(gone);
    let _open = Open::new(&sim);
    let epoch = sim.epoch.load(Ordering::SeqCst);
    if let Some(Fault::Stall(duration)) = spec.fault {
        tokio::time::sleep(duration).await;
    }
    tokio::time::sleep(spec.delay).await;
    let (mut drop_after, mut close_after) = match spec.fault {
        Some(Fault::DropAfter(n)) => (Some(n), None),
        Some(Fault::CloseAfter(n)) => (None, Some(n)),
        _ => (None, None),
    };
    if let Some(preamble) = spec.preamble.take()
        && !send(Out::Data(preamble.clone(), vec![preamble.len()])).await
    {
        return;
    }
    let mut frames = Frames::default();
    loop {
        let notified = sim.changed.notified();
        frames.clear();
        let flow = if sim.epoch.load(Ordering::SeqCst) == epoch {
            feed(&sim.lock(), &mut frames)
        } else {
            Flow::Reset
        };
        if flow == Flow::Reset {
            let _ = send(Out::Reset).await;
            return;
        }
        if !frames.is_empty() {
            let mut start = 0;
            let mut taken = 0;
            let mut last = None;
            for end in &frames.ends {
                if drop_after == Some(taken) {
                    let half = start + (end - start) / 2;
                    last = Some(Out::Cut(Bytes::copy_from_slice(
                        &frames.bytes[start..half.max(start + 1)],
                    )));
                    break;
                }
                if close_after == Some(taken) {
                    last = Some(Out::End);
                    break;
                }
                start = *end;
                taken += 1;
            }
            if let Some(n) = drop_after.as_mut() {
                *n -= taken.min(*n);
            }
            if let Some(n) = close_after.as_mut() {
                *n -= taken.min(*n);
            }
            let whole = Bytes::copy_from_slice(&frames.bytes[..start]);
            if (last.is_none() || !whole.is_empty())
                && !send(Out::Data(whole, frames.ends[..taken].to_vec())).await
            {
                return;
            }
            if let Some(last) = last {
                let _ = send(last).await;
                return;
            }
            if flow == Flow::End {
                let _ = send(Out::End).await;
                return;
            }
            continue;
        }
        if flow == Flow::End || close_after == Some(0) {
            let _ = send(Out::End).await;
            return;
        }
        let keepalive = async {
            match &spec.keepalive {
                Some((every, keepalive)) => {
                    tokio::time::sleep(*every).await;
                    keepalive()
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = notified => {}
            () = &mut gone => return,
            bytes = keepalive => {
                if !send(Out::Keepalive(bytes)).await {
                    return;
                }
            }
        }
    }
}

/// A streaming HTTP body (`content_type`: `text/event-stream`, `text/plain`)
/// whose frames `feed` fills; the connection is reset after a cut or on
/// [`Flow::Reset`], ended cleanly on [`Flow::End`].
pub fn stream_body<T: Send + 'static>(
    sim: Arc<Sim<T>>,
    content_type: &'static str,
    spec: StreamSpec,
    feed: impl Feed<T>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::spawn(async move {
        let send = |out: Out| {
            let tx = tx.clone();
            async move {
                let reset = || {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "simulated reset",
                    ))
                };
                match out {
                    Out::Data(bytes, _) | Out::Keepalive(bytes) => tx.send(Ok(bytes)).await.is_ok(),
                    Out::Cut(bytes) => {
                        let _ = tx.send(Ok(bytes)).await;
                        // Let the server flush what was sent before the reset.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = tx.send(reset()).await;
                        false
                    }
                    Out::Reset => {
                        let _ = tx.send(reset()).await;
                        false
                    }
                    Out::End => false,
                }
            }
        };
        let gone = tx.clone();
        drive(sim, spec, feed, send, async move { gone.closed().await }).await;
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(body)
        .unwrap()
}

/// Accepts a websocket and sends the frames `feed` fills, one text message each;
/// a cut drops the TCP connection without a close frame, [`Flow::End`] and
/// [`Fault::CloseAfter`] send a close frame 1000. Messages from the client are
/// read and ignored (pings are answered).
pub fn ws_stream<T: Send + 'static>(
    upgrade: WebSocketUpgrade,
    sim: Arc<Sim<T>>,
    spec: StreamSpec,
    feed: impl Feed<T>,
) -> Response {
    upgrade.on_upgrade(move |socket| ws_drive(socket, sim, spec, feed))
}

async fn ws_drive<T>(socket: WebSocket, sim: Arc<Sim<T>>, spec: StreamSpec, feed: impl Feed<T>) {
    use futures_util::{SinkExt, StreamExt};
    let (sink, mut incoming) = socket.split();
    let (closed, gone) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(_)) = incoming.next().await {}
        drop(closed);
    });
    let sink = Arc::new(tokio::sync::Mutex::new(sink));
    let send = |out: Out| {
        let sink = Arc::clone(&sink);
        async move {
            let mut sink = sink.lock().await;
            match out {
                Out::Data(bytes, ends) => {
                    let mut start = 0;
                    for end in ends {
                        let text = String::from_utf8_lossy(&bytes[start..end]).into_owned();
                        start = end;
                        if sink.send(Message::text(text)).await.is_err() {
                            return false;
                        }
                    }
                    true
                }
                Out::Keepalive(bytes) => sink
                    .send(Message::text(String::from_utf8_lossy(&bytes).into_owned()))
                    .await
                    .is_ok(),
                Out::Cut(_) | Out::Reset => false,
                Out::End => {
                    let _ = sink.close().await;
                    false
                }
            }
        }
    };
    drive(sim, spec, feed, send, async move {
        let _ = gone.await;
    })
    .await;
    reader.abort();
}

/// A growing file of lines, as a provider serves a container's or a task's output.
#[derive(Debug, Default)]
pub struct LogFile {
    bytes: Vec<u8>,
    /// (start offset, length without `\n`) of every line.
    lines: Vec<(u64, u32)>,
}

impl LogFile {
    /// Appends `lines`, each with its `\n`.
    pub fn append<S: AsRef<str>>(&mut self, lines: impl IntoIterator<Item = S>) {
        for line in lines {
            let line = line.as_ref();
            assert!(!line.contains('\n'), "one line at a time");
            self.lines
                .push((self.bytes.len() as u64, line.len() as u32));
            self.bytes.extend_from_slice(line.as_bytes());
            self.bytes.push(b'\n');
        }
    }

    /// Empties the file, as logrotate's copytruncate does.
    pub fn truncate(&mut self) {
        self.bytes.clear();
        self.lines.clear();
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// (start offset, length without `\n`) of every line.
    pub fn lines(&self) -> &[(u64, u32)] {
        &self.lines
    }
}

/// The `stdout` and `stderr` of a container or a task.
#[derive(Debug, Default)]
pub struct StdFiles {
    stdout: LogFile,
    stderr: LogFile,
}

impl StdFiles {
    /// The file `name`: `stderr`, else `stdout`.
    pub fn file(&self, name: &str) -> &LogFile {
        if name == "stderr" {
            &self.stderr
        } else {
            &self.stdout
        }
    }

    pub fn file_mut(&mut self, name: &str) -> &mut LogFile {
        if name == "stderr" {
            &mut self.stderr
        } else {
            &mut self.stdout
        }
    }
}

/// A simulator state whose containers or tasks have a `stdout` and a `stderr`.
pub trait HasStdFiles {
    /// The files of `owner` (a container, a task), which must exist.
    fn std_files(&mut self, owner: &str) -> &mut StdFiles;
}

impl<T: HasStdFiles> Server<T> {
    /// Appends lines to the file `file` (`stdout` or `stderr`) of `owner`.
    pub fn append<S: AsRef<str>>(
        &self,
        owner: &str,
        file: &str,
        lines: impl IntoIterator<Item = S>,
    ) {
        self.sim
            .update(|s| s.std_files(owner).file_mut(file).append(lines));
    }
}

/// The value of header `name`, if it is text.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, "authorization")?.strip_prefix("Bearer ")
}

/// The user and password of `Authorization: Basic …`.
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = header_str(headers, "authorization")?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The query parameters of `uri`, in order.
pub fn query(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The value of query parameter `name` of `uri`, if it has one.
pub fn query_param(uri: &Uri, name: &str) -> Option<String> {
    param_of(uri.query().unwrap_or(""), name)
}

fn param_of(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The fraction of a second of `nanos` (Unix ns) as Go prints it: `.` and up to
/// nine digits without trailing zeros, or nothing on a whole second.
pub fn go_fraction(nanos: i64) -> String {
    match nanos.rem_euclid(1_000_000_000) {
        0 => String::new(),
        fraction => format!(".{fraction:09}").trim_end_matches('0').to_string(),
    }
}

/// Whether the client asked for `mime` in `Accept`.
pub fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    header_str(headers, "accept").is_some_and(|v| v.contains(mime))
}

pub fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{body}\n"),
    )
        .into_response()
}

/// `response` with a `Retry-After`, if given.
pub fn with_retry_after(mut response: Response, retry_after: Option<&str>) -> Response {
    if let Some(value) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, value.parse().unwrap());
    }
    response
}

/// An unsigned JWT (`alg: none`-shaped, signature `sig`) carrying `claims`.
pub fn jwt(claims: serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{claims}.sig")
}

/// Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Tokens a simulator issued, each valid until its expiry.
#[derive(Debug, Default)]
pub struct Tokens {
    issued: BTreeMap<String, Option<Instant>>,
    count: u64,
}

impl Tokens {
    /// A new JWT-shaped token for `subject`, valid for `ttl` (`None`: until
    /// [`expire_all`](Tokens::expire_all)); its `exp` claim says when it ends.
    pub fn issue(&mut self, subject: &str, ttl: Option<Duration>) -> String {
        self.count += 1;
        let mut claims = serde_json::json!({ "uid": subject, "jti": self.count });
        if let Some(ttl) = ttl {
            claims["exp"] = (unix_now() + ttl.as_secs().max(1)).into();
        }
        let token = jwt(claims);
        self.issued
            .insert(token.clone(), ttl.map(|ttl| Instant::now() + ttl));
        token
    }

    pub fn valid(&self, token: &str) -> bool {
        self.issued
            .get(token)
            .is_some_and(|expiry| expiry.is_none_or(|at| Instant::now() < at))
    }

    /// Every token issued so far stops working.
    pub fn expire_all(&mut self) {
        self.issued.clear();
    }

    /// Tokens issued so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A provider's request limit: at most `max` requests in any sliding `window`.
#[derive(Debug, Default)]
pub struct RateLimit {
    pub max: usize,
    pub window: Duration,
    times: VecDeque<Instant>,
}

impl RateLimit {
    pub fn new(max: usize, window: Duration) -> Self {
        RateLimit {
            max,
            window,
            times: VecDeque::new(),
        }
    }

    /// Counts a request: `Ok(remaining)`, or `Err(wait)` (seconds until a slot
    /// frees, at least 1) when the limit is reached — then it is not counted.
    pub fn check(&mut self) -> Result<usize, u64> {
        let now = Instant::now();
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.times.pop_front();
        }
        if self.times.len() >= self.max {
            let free = self.times[0] + self.window - now;
            return Err(free.as_secs_f64().ceil().max(1.0) as u64);
        }
        self.times.push_back(now);
        Ok(self.max - self.times.len())
    }

    /// Unix seconds when the oldest counted request has left the window (rounded
    /// up: at that second it is gone).
    pub fn reset(&self) -> u64 {
        let now = Instant::now();
        let left = self.times.front().map_or(Duration::ZERO, |t| {
            (*t + self.window).saturating_duration_since(now)
        });
        let at = SystemTime::now() + left;
        at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64().ceil() as u64
    }
}

//! An app's log stream, followed across reconnects. Each connection:
//!
//! 1. gets the signed `logs_url` from `GET {endpoint}/v1/apps/{app}/logs` unless it
//!    has one (it keeps it until the logs host refuses it with 401/403, then fetches
//!    a new one at once — after a backoff if a fresh one was refused too);
//! 2. opens `logs_url&stream=true&n=0` as a websocket (no credentials: the URL
//!    carries its own; a server answering with SSE is read as SSE), which from then
//!    on holds every new line;
//! 3. dumps `logs_url&n=N` as text (204 and 404: nothing logged yet), `N` being
//!    `history_lines` on the first start and `resume_lines` after any outage,
//!    sorted by time a chunk at a time and shipped through the [`AppCursor`];
//! 4. reads the socket, each line through the same cursor, so the lines that both
//!    the dump and the socket hold are shipped once.
//!
//! A line that is not in Scalingo's format is shipped as it is, stamped with the time
//! it was read; having no time, it cannot be recognised again, so a later dump may
//! ship it again (a duplicate, never a loss).

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::ACCEPT;
use serde::Deserialize;
use url::Url;

use super::ScalingoConfig;
use super::cursor::{AppCursor, Feeds};
use super::frames::{self, StreamEvent};
use super::line::{self, Line};
use crate::event::{Event, now_nanos};
use crate::http::client::FailureKind;
use crate::http::connection::{Connection, Frame};
use crate::http::stream::Ended;
use crate::http::ws;
use crate::sources::provider::{Context, Emitter, Follow, Next, sort_by_time};

/// Most bytes of history sorted at once; a longer dump is sorted a chunk at a time
/// (Scalingo serves it in order anyway).
const DUMP_CHUNK_BYTES: usize = 16 << 20;

/// What the stream of one app needs from the config.
pub(crate) struct Settings {
    pub app: String,
    pub filter: Option<String>,
    /// The checkpoint key: the app, and the filter if there is one.
    pub key: String,
    /// `{endpoint}/v1/apps/{app}/logs`.
    logs_url_api: Url,
    history_lines: u32,
    resume_lines: u32,
}

impl Settings {
    pub fn new(config: &ScalingoConfig) -> anyhow::Result<Self> {
        let mut api = Url::parse(&format!("{}/", config.api_endpoint()))?;
        api.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("`endpoint` cannot be a base URL"))?
            .pop_if_empty()
            .extend(["v1", "apps", &config.app, "logs"]);
        Ok(Settings {
            app: config.app.clone(),
            filter: config.filter.clone(),
            key: match &config.filter {
                Some(filter) => format!("{}/{filter}", config.app),
                None => config.app.clone(),
            },
            logs_url_api: api,
            history_lines: config.history_lines,
            resume_lines: config.resume_lines,
        })
    }
}

/// `GET /v1/apps/{app}/logs`.
#[derive(Deserialize)]
struct LogsUrl {
    logs_url: String,
}

pub(crate) struct AppLogs {
    settings: Arc<Settings>,
    cursor: AppCursor,
    /// A cursor was saved, or a connection was made: dumps cover an outage.
    resuming: bool,
    /// The signed URL, until the logs host refuses it.
    logs_url: Option<Url>,
    /// The logs host refused a URL not fetched just before: fetch one at once.
    refetch_now: bool,
    /// The socket's view of the lines.
    live: Feeds,
}

impl AppLogs {
    pub fn new(ctx: &Context, settings: Arc<Settings>) -> Self {
        let saved: Option<AppCursor> = ctx.saved(&settings.key);
        AppLogs {
            resuming: saved.is_some(),
            cursor: saved.unwrap_or_default(),
            settings,
            logs_url: None,
            refetch_now: false,
            live: Feeds::default(),
        }
    }

    /// The signed logs URL, fetched from the API if there is none; and whether it
    /// was fetched just now.
    async fn logs_url(&mut self, ctx: &Context) -> Result<(Url, bool), Ended> {
        if let Some(url) = &self.logs_url {
            return Ok((url.clone(), false));
        }
        let timeout = ctx.options.request_timeout;
        let api = &self.settings.logs_url_api;
        let answer: LogsUrl = ctx
            .api
            .json(|client| {
                client
                    .get(api.clone())
                    .header(ACCEPT, "application/json")
                    .timeout(timeout)
            })
            .await?;
        let url = Url::parse(&answer.logs_url)
            .map_err(|_| Ended::Lost("the API gave a `logs_url` that is not a URL".into()))?;
        self.logs_url = Some(url.clone());
        Ok((url, true))
    }

    /// `url` with the query parameters of one request to the logs host.
    fn logs_request(&self, url: &Url, params: &[(&str, &str)]) -> Url {
        let mut url = url.clone();
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, value);
            }
            if let Some(filter) = &self.settings.filter {
                query.append_pair("filter", filter);
            }
        }
        url
    }

    /// A failure from the logs host: a refused URL is dropped, to be fetched again
    /// at once — or after the backoff if it was just fetched.
    fn logs_host_failure(&mut self, ctx: &Context, ended: Ended, fresh: bool) -> Ended {
        match ended {
            Ended::Failed(failure) if failure.kind == FailureKind::Auth => {
                self.logs_url = None;
                self.refetch_now = !fresh;
                let text = format!(
                    "the logs host refused the signed logs URL ({failure}); getting a new one"
                );
                if self.refetch_now {
                    tracing::info!(source = %ctx.source, stream = %self.settings.key, "{text}");
                }
                Ended::Lost(text)
            }
            other => other,
        }
    }

    /// Ships the last `lines` lines of history, merged through the cursor.
    async fn dump(
        &mut self,
        ctx: &Context,
        out: &mut Emitter,
        url: &Url,
        lines: u32,
        fresh: bool,
    ) -> Result<(), Ended> {
        let request = self.logs_request(url, &[("n", &lines.to_string())]);
        let timeout = ctx.options.request_timeout;
        let response = ctx
            .api
            .send_anonymous(|client| client.get(request).timeout(timeout))
            .await;
        let response = match response {
            Ok(response) if response.status() == reqwest::StatusCode::NO_CONTENT => return Ok(()),
            Ok(response) => response,
            Err(Ended::Failed(failure)) if failure.kind == FailureKind::NotFound => return Ok(()),
            Err(ended) => return Err(self.logs_host_failure(ctx, ended, fresh)),
        };
        let mut body = Connection::lines(response, &ctx.options);
        let mut dump = Dump::new(self.resuming, &self.cursor);
        loop {
            while let Some(frame) = body.next_frame() {
                dump.add(frame);
                if dump.bytes >= DUMP_CHUNK_BYTES {
                    self.ship_dump(&mut dump, ctx, out).await?;
                }
            }
            match body.fill().await {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => return Err(Ended::Lost(format!("reading the history: {error}"))),
            }
        }
        self.ship_dump(&mut dump, ctx, out).await?;
        if dump.read >= lines as usize && dump.resumed_after_gap() {
            tracing::warn!(source = %ctx.source, app = %self.settings.app, lines, "the history read after the outage does not reach back to the lines already shipped: lines logged meanwhile may be missing; raise `resume_lines`");
        }
        Ok(())
    }

    /// Sorts the dump's chunk and ships its new lines.
    async fn ship_dump(
        &mut self,
        dump: &mut Dump,
        ctx: &Context,
        out: &mut Emitter,
    ) -> Result<(), Ended> {
        sort_by_time(&mut dump.chunk, |line| line.time);
        let now = now_nanos();
        for held in std::mem::take(&mut dump.chunk) {
            let new = match line::parse(&held.raw) {
                Ok(line) => {
                    let new = self.cursor.admit(&mut dump.feeds, &line, &held.raw);
                    dump.skipped |= !new;
                    new.then(|| self.event(ctx, &line, held.truncated))
                }
                Err(_) => Some(self.unparsed(ctx, held.raw, held.truncated, now)),
            };
            if let Some(event) = new {
                out.push(event);
                if out.is_full() {
                    out.send(self.cursor()).await?;
                }
            }
        }
        dump.bytes = 0;
        Ok(())
    }

    /// The event of a parsed line.
    fn event(&self, ctx: &Context, line: &Line<'_>, truncated: bool) -> Event {
        let mut event = ctx.event(line.message.to_string(), line.time);
        event.origin.app = Some(self.settings.app.clone());
        event.origin.component = Some(line.component().to_string());
        event.origin.instance = Some(line.container.to_string());
        if truncated {
            event
                .fields
                .insert("truncated".into(), serde_json::Value::Bool(true));
        }
        event
    }

    /// The event of a line not in Scalingo's format: the line itself, at `time`.
    fn unparsed(&self, ctx: &Context, raw: String, truncated: bool, time: i64) -> Event {
        tracing::debug!(source = %ctx.source, "a line not in Scalingo's format; shipped as it is");
        let mut event = ctx.event(raw, time);
        event.origin.app = Some(self.settings.app.clone());
        if truncated {
            event
                .fields
                .insert("truncated".into(), serde_json::Value::Bool(true));
        }
        event
    }

    /// One line from the socket, and its event's `timestamp` (the time of a line
    /// without Scalingo's prefix, if readable, else now). It is no longer than
    /// `max_event_bytes`: the message holding it was cut there, and unescaping only
    /// shortens it.
    fn live_line(
        &mut self,
        ctx: &Context,
        raw: &str,
        truncated: bool,
        timestamp: Option<&str>,
        out: &mut Emitter,
    ) {
        match line::parse(raw) {
            Ok(line) => {
                if self.cursor.admit(&mut self.live, &line, raw) {
                    out.push(self.event(ctx, &line, truncated));
                }
            }
            Err(_) => {
                let time = timestamp.and_then(frames::event_time);
                let time = time.unwrap_or_else(now_nanos);
                out.push(self.unparsed(ctx, raw.to_string(), truncated, time));
            }
        }
    }
}

/// A dump being read: the chunk held for sorting and what was seen of it.
struct Dump {
    chunk: Vec<HeldLine>,
    bytes: usize,
    feeds: Feeds,
    /// Lines read.
    read: usize,
    /// The last parsed time, given to an unparsed line so it keeps its place.
    last_time: i64,
    /// Some line was already shipped: the dump reached back far enough.
    skipped: bool,
    /// The dump follows an outage with something already shipped.
    after_outage: bool,
}

struct HeldLine {
    time: i64,
    raw: String,
    truncated: bool,
}

impl Dump {
    fn new(resuming: bool, cursor: &AppCursor) -> Self {
        Dump {
            chunk: Vec::new(),
            bytes: 0,
            feeds: Feeds::default(),
            read: 0,
            last_time: i64::MIN,
            skipped: false,
            after_outage: resuming && !cursor.is_empty(),
        }
    }

    fn add(&mut self, frame: Frame) {
        self.read += 1;
        if let Ok(line) = line::parse(&frame.data) {
            self.last_time = line.time;
        }
        self.bytes += frame.data.len();
        self.chunk.push(HeldLine {
            time: self.last_time,
            raw: frame.data,
            truncated: frame.truncated,
        });
    }

    fn resumed_after_gap(&self) -> bool {
        self.after_outage && !self.skipped
    }
}

#[async_trait]
impl Follow for AppLogs {
    async fn open(&mut self, ctx: &Context, out: &mut Emitter) -> Result<Connection, Ended> {
        let (url, fresh) = self.logs_url(ctx).await?;
        let stream = self.logs_request(&url, &[("stream", "true"), ("n", "0")]);
        let connection = ws::connect(&ctx.api, stream.as_str(), |r| r, &ctx.options)
            .await
            .map_err(|ended| self.logs_host_failure(ctx, ended, fresh))?;
        self.cursor.forget(&mut self.live);
        let lines = if self.resuming {
            self.settings.resume_lines
        } else {
            self.settings.history_lines
        };
        if lines > 0 {
            self.dump(ctx, out, &url, lines, fresh).await?;
        }
        if !self.resuming {
            // From now on a restart resumes, even if nothing was shipped yet.
            self.resuming = true;
            out.send(self.cursor()).await?;
        }
        self.live = Feeds::default();
        Ok(connection)
    }

    fn frame(&mut self, frame: Frame, ctx: &Context, out: &mut Emitter) {
        let truncated = frame.truncated;
        if let StreamEvent::Log { text, timestamp } =
            frames::decode(&frame.data, frame.event.as_deref())
        {
            for raw in frames::lines(&text) {
                self.live_line(ctx, raw, truncated, timestamp.as_deref(), out);
            }
        }
    }

    fn key(&self) -> &str {
        &self.settings.key
    }

    fn position(&self) -> Option<serde_json::Value> {
        serde_json::to_value(&self.cursor).ok()
    }

    fn ended(&mut self, _ended: &Ended, _finished: bool) -> Next {
        if std::mem::take(&mut self.refetch_now) {
            Next::Now
        } else {
            Next::Backoff
        }
    }
}

//! One followed App Platform log stream: a deployment's logs of one type, for
//! every component (the aggregate route) or for one configured component.
//!
//! Every connection starts with the REST call, since the token in `live_url` may
//! be short-lived. With a `live_url`, the stream reads its websocket (which
//! replays `tail_lines` of history, then follows); without one, it downloads the
//! `historic_urls` (the spec's `historic_logs` too), oldest first, sorted by time
//! in chunks. A finished phase (BUILD, DEPLOY with no live socket left) or a
//! finished deployment (superseded by a redeploy) is downloaded once, then the
//! stream is done; RUN archives of the current deployment are read again each
//! `discovery_interval`. A 400 ("not available yet") is retried with backoff.
//!
//! Resume: App Platform has no cursor, so the checkpoint keeps, per component, a
//! [`DedupeCursor`] (the newest line time delivered and the hashes of the lines at
//! it), all under the stream's key `"{deployment}/{TYPE}"` (or
//! `"{deployment}/{TYPE}/{component}"`) with `done` once the stream is over. A
//! reconnect asks for as many lines as the outage can have produced (the last
//! connection's rate × the outage × 2, at least 100; 1,000 after a restart) and
//! drops what was delivered. If the first line replayed is newer than the last
//! line delivered, the replay did not reach back far enough: the stream leaves
//! that connection before delivering anything from it and asks for all the
//! history (`tail_lines=-1`). A stream's first request asks for `tail_lines` (for
//! the deployment followed when the source first starts) or for everything.
//!
//! The line prefix names the component, not the instance, so the lines of a
//! component's instances may come slightly out of time order. Once a connection
//! has delivered a new line of a component (its replay is over), a line older than
//! the component's mark is new and delivered; only near a reconnect can such a
//! line be taken for one already delivered.
//!
//! Lines that do not parse are delivered as they are, with
//! `fields.digitalocean_parse_error = true` and the time they were read; having no
//! time, they are not deduplicated and may repeat after a reconnect.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use super::frame::{Decoded, decode, lines};
use super::{App, LogType, line};
use crate::event::now_nanos;
use crate::http::client::FailureKind;
use crate::http::connection::{Connection, Frame};
use crate::http::stream::Ended;
use crate::http::ws;
use crate::sources::provider::{Context, DedupeCursor, Emitter, Feed, Follow, Next, sort_by_time};

/// `tail_lines` asking for all the history the provider keeps.
const ALL: i64 = -1;
/// Fewest lines asked for on a reconnect.
const MIN_TAIL: i64 = 100;
/// Lines asked for on the first connection after a restart (no rate known).
const RESUME_TAIL: i64 = 1000;
/// Past this many lines, ask for all of them.
const MAX_TAIL: i64 = 100_000;
/// Most components with a cursor per stream; lines of further components are
/// delivered without one (so a reconnect may repeat them).
const MAX_COMPONENTS: usize = 256;
/// Archived lines sorted by time together.
const ARCHIVE_CHUNK_BYTES: usize = 4 << 20;
/// Failed attempts at reading a finished deployment's logs before leaving it
/// (the cursor is not marked done, so the next start tries again).
const MAX_DRAIN_FAILURES: u32 = 5;

/// A deployment followed by the streams of one group.
pub(crate) struct Deployment {
    pub id: String,
    /// `tail_lines` of a stream's first request when it has no cursor.
    pub first_tail: i64,
    finished: AtomicBool,
}

impl Deployment {
    pub fn new(id: &str, first_tail: i64) -> Self {
        Deployment {
            id: id.to_string(),
            first_tail,
            finished: AtomicBool::new(false),
        }
    }

    /// A redeploy superseded it (or it was already superseded when found).
    pub fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }
}

/// What the streams of one source share.
pub(crate) struct Shared {
    pub app: App,
    pub poll_interval: Duration,
    pub finished_grace: Duration,
    /// Wakes the driver to read the app again (a live socket ended).
    pub app_changed: Notify,
}

/// The committed cursor of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    /// Per component: the newest line time delivered and the lines at it.
    #[serde(default)]
    pub components: BTreeMap<String, DedupeCursor>,
    /// The stream is over (a finished phase or deployment, read to its end).
    #[serde(default, skip_serializing_if = "is_false")]
    pub done: bool,
}

impl Position {
    /// Whether the line is new for its component's cursor, seen through the
    /// component's view of the current connection or archive read (see the module
    /// doc). If it is, it counts as delivered from now on.
    fn admit(&mut self, views: &mut Views, component: &str, time: i64, raw: &str) -> bool {
        if !self.components.contains_key(component) {
            if self.components.len() >= MAX_COMPONENTS {
                return true;
            }
            self.components
                .insert(component.to_string(), DedupeCursor::default());
        }
        let Some(cursor) = self.components.get_mut(component) else {
            return true;
        };
        if !views.contains_key(component) {
            let view = View {
                feed: Feed::new(),
                past: false,
            };
            views.insert(component.to_string(), view);
        }
        let Some(view) = views.get_mut(component) else {
            return true;
        };
        if view.past && time < cursor.time() {
            // Out of time order (another instance's line), after the replay: new.
            return true;
        }
        let new = cursor.admit(&mut view.feed, time, raw.as_bytes());
        view.past |= new;
        new
    }

    /// The newest line time delivered, of any component.
    fn mark(&self) -> Option<i64> {
        self.components
            .values()
            .map(DedupeCursor::time)
            .max()
            .filter(|time| *time > 0)
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The answer of every log-URL route.
#[derive(Debug, Default, Deserialize)]
struct LogUrls {
    #[serde(default)]
    live_url: Option<String>,
    #[serde(default)]
    historic_urls: Option<Vec<String>>,
    /// The name the API reference's example uses.
    #[serde(default)]
    historic_logs: Option<Vec<String>>,
}

impl LogUrls {
    fn live(&self) -> Option<&str> {
        self.live_url
            .as_deref()
            .filter(|url| !url.trim().is_empty())
    }

    fn historic(&self) -> Vec<&str> {
        let mut urls: Vec<&str> = Vec::new();
        for url in self
            .historic_urls
            .iter()
            .chain(&self.historic_logs)
            .flatten()
        {
            if !url.trim().is_empty() && !urls.contains(&url.as_str()) {
                urls.push(url);
            }
        }
        urls
    }
}

/// What the current connection is.
enum Opened {
    /// Nothing to read (an archive read while opening, or no logs yet).
    Nothing,
    Archive,
    Live(Live),
}

struct Live {
    since: Instant,
    last_frame: Option<Instant>,
    lines: u64,
    /// The newest line time delivered: the replay's first line must not be newer.
    check: Option<i64>,
}

/// Per component, its view through the current connection or archive read.
type Views = BTreeMap<String, View>;

/// One component as seen through one connection or archive read.
struct View {
    feed: Feed,
    /// A new line came: what follows is past the replay, and a line older than
    /// the mark (another instance's, out of time order) is new.
    past: bool,
}

pub(crate) struct LogStream {
    shared: Arc<Shared>,
    deployment: Arc<Deployment>,
    log_type: LogType,
    component: Option<String>,
    key: String,
    position: Position,
    feeds: Views,
    opened: Opened,
    /// Lines per second on the last live connection, and when its last frame came.
    rate: Option<(f64, Instant)>,
    /// The next request asks for all the history.
    ask_all: bool,
    /// The current connection is to be left (its replay did not reach back).
    reopen: bool,
    /// Since its deployment finished, the live socket has been read until quiet.
    drained_live: bool,
    drain_failures: u32,
}

impl LogStream {
    pub fn new(
        ctx: &Context,
        shared: Arc<Shared>,
        deployment: Arc<Deployment>,
        log_type: LogType,
        component: Option<String>,
    ) -> Self {
        let key = cursor_key(&deployment.id, log_type, component.as_deref());
        LogStream {
            position: ctx.saved(&key).unwrap_or_default(),
            shared,
            deployment,
            log_type,
            component,
            key,
            feeds: BTreeMap::new(),
            opened: Opened::Nothing,
            rate: None,
            ask_all: false,
            reopen: false,
            drained_live: false,
            drain_failures: 0,
        }
    }

    /// The `tail_lines` to ask for, and the line time the replay must reach back to.
    fn next_tail(&mut self) -> (i64, Option<i64>) {
        if std::mem::take(&mut self.ask_all) {
            return (ALL, None);
        }
        let Some(mark) = self.position.mark() else {
            return (self.deployment.first_tail, None);
        };
        let tail = match self.rate {
            Some((rate, last)) => {
                let outage = last.elapsed().as_secs_f64();
                MIN_TAIL.saturating_add((rate * outage * 2.0).ceil() as i64)
            }
            None => RESUME_TAIL,
        };
        if tail > MAX_TAIL {
            (ALL, None)
        } else {
            (tail, Some(mark))
        }
    }

    /// Marks the stream done and commits that.
    async fn leave(&mut self, ctx: &Context, out: &mut Emitter) -> Result<Connection, Ended> {
        self.position.done = true;
        out.send(self.cursor()).await?;
        Ok(Connection::done(&ctx.options))
    }

    /// Downloads the archived files (without credentials), each line through the
    /// cursors, sorted by time a chunk at a time.
    async fn read_archives(
        &mut self,
        ctx: &Context,
        out: &mut Emitter,
        urls: &[&str],
    ) -> Result<(), Ended> {
        self.feeds.clear();
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for url in urls {
            let request = ctx.api.send_anonymous(|client| client.get(*url));
            let response = tokio::time::timeout(ctx.options.request_timeout, request)
                .await
                .map_err(|_| Ended::Lost("archived logs: no answer (request timeout)".into()))?
                .map_err(|ended| signed_url_refused(ended.hiding_query_of(url)))?;
            let mut body = Connection::lines(response, &ctx.options);
            loop {
                while let Some(frame) = body.next_frame() {
                    bytes += frame.data.len();
                    chunk.push(frame);
                    if bytes >= ARCHIVE_CHUNK_BYTES {
                        self.emit_sorted(&mut chunk, ctx, out).await?;
                        bytes = 0;
                    }
                }
                match body.fill().await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(error) => return Err(Ended::Lost(format!("archived logs: {error}"))),
                }
            }
        }
        self.emit_sorted(&mut chunk, ctx, out).await
    }

    /// Delivers archived lines oldest first (a line without a time keeps its place
    /// after the line before it).
    async fn emit_sorted(
        &mut self,
        chunk: &mut Vec<Frame>,
        ctx: &Context,
        out: &mut Emitter,
    ) -> Result<(), Ended> {
        let mut previous = i64::MIN;
        let mut timed: Vec<(i64, Frame)> = chunk
            .drain(..)
            .map(|frame| {
                if let Ok(line) = line::parse(&frame.data) {
                    previous = line.timestamp;
                }
                (previous, frame)
            })
            .collect();
        sort_by_time(&mut timed, |(time, _)| *time);
        for (_, frame) in timed {
            self.line(&frame.data, frame.truncated, ctx, out);
            if out.is_full() {
                out.send(self.cursor()).await?;
            }
        }
        Ok(())
    }

    /// One line: parsed, checked against the cursor of its component, and
    /// delivered if new.
    fn line(&mut self, text: &str, truncated: bool, ctx: &Context, out: &mut Emitter) {
        let mut event = match line::parse(text) {
            Ok(line) => {
                if let Opened::Live(live) = &mut self.opened {
                    live.lines += 1;
                    if let Some(mark) = live.check.take()
                        && line.timestamp > mark
                    {
                        tracing::info!(source = %ctx.source, stream = %self.name(), "the replayed history does not reach back to the last line delivered; asking for all of it");
                        self.reopen = true;
                        return;
                    }
                }
                if !self
                    .position
                    .admit(&mut self.feeds, line.component, line.timestamp, text)
                {
                    return;
                }
                let mut event = ctx.event(line.message.to_string(), line.timestamp);
                event.origin.component = Some(line.component.to_string());
                event
            }
            Err(_) => {
                let mut event = ctx.event(text.to_string(), now_nanos());
                event
                    .fields
                    .insert("digitalocean_parse_error".into(), Value::Bool(true));
                event
            }
        };
        event.origin.app = Some(self.shared.app.id.clone());
        event.origin.deployment = Some(self.deployment.id.clone());
        event.fields.insert(
            "log_type".into(),
            Value::String(self.log_type.as_str().into()),
        );
        if truncated {
            event.fields.insert("truncated".into(), Value::Bool(true));
        }
        out.push(event);
    }
}

#[async_trait]
impl Follow for LogStream {
    async fn open(&mut self, ctx: &Context, out: &mut Emitter) -> Result<Connection, Ended> {
        self.opened = Opened::Nothing;
        self.reopen = false;
        if self.position.done {
            return Ok(Connection::done(&ctx.options));
        }
        let finished = self.deployment.is_finished();
        let (tail, check) = self.next_tail();
        let url = self.shared.app.logs_url(
            &self.deployment.id,
            self.component.as_deref(),
            self.log_type,
            tail,
        )?;
        let timeout = ctx.options.request_timeout;
        let urls: LogUrls = match ctx
            .api
            .json(|client| client.get(url.clone()).timeout(timeout))
            .await
        {
            Ok(urls) => urls,
            Err(Ended::Failed(failure))
                if finished
                    && matches!(failure.kind, FailureKind::NotFound | FailureKind::Rejected) =>
            {
                tracing::info!(source = %ctx.source, stream = %self.name(), "the finished deployment has no more logs to read ({failure}); leaving it");
                return self.leave(ctx, out).await;
            }
            Err(ended) => return Err(ended),
        };
        if let Some(live) = urls.live()
            && !(finished && self.drained_live)
        {
            let connection = ws::connect(&ctx.api, live, |request| request, &ctx.options)
                .await
                .map_err(signed_url_refused)?;
            self.feeds.clear();
            self.opened = Opened::Live(Live {
                since: Instant::now(),
                last_frame: None,
                lines: 0,
                check,
            });
            return Ok(connection);
        }
        let archives = urls.historic();
        if !archives.is_empty() {
            self.read_archives(ctx, out, &archives).await?;
            if finished || self.log_type.is_phase() {
                return self.leave(ctx, out).await;
            }
            self.opened = Opened::Archive;
            return Ok(Connection::done(&ctx.options));
        }
        if finished {
            return self.leave(ctx, out).await;
        }
        tracing::debug!(source = %ctx.source, stream = %self.name(), "no logs yet");
        Ok(Connection::done(&ctx.options))
    }

    fn frame(&mut self, frame: Frame, ctx: &Context, out: &mut Emitter) {
        if let Opened::Live(live) = &mut self.opened {
            live.last_frame = Some(Instant::now());
        }
        let (text, truncated) = match decode(&frame.data) {
            Decoded::Data(data) => {
                for text in lines(&data) {
                    self.line(text, false, ctx, out);
                    if self.reopen {
                        return;
                    }
                }
                return;
            }
            Decoded::Empty => return,
            Decoded::Text(text) => (text, frame.truncated),
        };
        for text in lines(text) {
            self.line(text, truncated, ctx, out);
            if self.reopen {
                return;
            }
        }
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn position(&self) -> Option<Value> {
        if self.position.components.is_empty() && !self.position.done {
            return None;
        }
        serde_json::to_value(&self.position).ok()
    }

    fn ended(&mut self, ended: &Ended, finished: bool) -> Next {
        if self.position.done {
            return Next::Stop;
        }
        match std::mem::replace(&mut self.opened, Opened::Nothing) {
            Opened::Live(live) => {
                let seconds = live.since.elapsed().as_secs_f64().max(1.0);
                let last = live.last_frame.unwrap_or(live.since);
                self.rate = Some((live.lines as f64 / seconds, last));
                if std::mem::take(&mut self.reopen) {
                    self.ask_all = true;
                    return Next::Now;
                }
                self.shared.app_changed.notify_one();
                if finished {
                    self.drained_live = true;
                    return Next::Now;
                }
                Next::Backoff
            }
            Opened::Archive | Opened::Nothing if matches!(ended, Ended::Closed) => {
                Next::After(self.shared.poll_interval)
            }
            Opened::Archive | Opened::Nothing => {
                if finished {
                    self.drain_failures += 1;
                    if self.drain_failures >= MAX_DRAIN_FAILURES {
                        tracing::warn!(stream = %self.name(), "the finished deployment's logs could not be read; leaving it (the next start tries again)");
                        return Next::Stop;
                    }
                }
                Next::Backoff
            }
        }
    }

    fn finish_grace(&self) -> Option<Duration> {
        Some(self.shared.finished_grace)
    }

    fn reopen(&self) -> bool {
        self.reopen
    }
}

/// A live or archive URL answered 401/403: its own token expired or was revoked,
/// not the API token, so this is no refused credential. The URLs are asked for
/// again after the usual backoff.
fn signed_url_refused(ended: Ended) -> Ended {
    match ended {
        Ended::Failed(failure) if failure.kind == FailureKind::Auth => Ended::Lost(format!(
            "a signed log URL was refused ({failure}); asking for new ones"
        )),
        other => other,
    }
}

/// The checkpoint key of a stream.
pub(crate) fn cursor_key(deployment: &str, log_type: LogType, component: Option<&str>) -> String {
    match component {
        Some(component) => format!("{deployment}/{}/{component}", log_type.as_str()),
        None => format!("{deployment}/{}", log_type.as_str()),
    }
}

/// The deployment a checkpoint key belongs to, if the stream it names is not done.
pub(crate) fn unfinished_deployment<'a>(key: &'a str, value: &Value) -> Option<&'a str> {
    let position: Position = serde_json::from_value(value.clone()).ok()?;
    let (deployment, _) = key.split_once('/')?;
    (!position.done).then_some(deployment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_of_other_instances_out_of_time_order_are_new_after_the_replay() {
        let mut position = Position::default();
        let mut views = Views::new();
        let mut admit = |views: &mut Views, time, raw| position.admit(views, "web", time, raw);
        assert!(admit(&mut views, 10, "web a"));
        assert!(admit(&mut views, 9, "web b (instance 2)"));
        assert!(admit(&mut views, 11, "web c"));
        // A reconnect replays them all, then one more.
        let mut views = Views::new();
        assert!(!admit(&mut views, 10, "web a"));
        assert!(!admit(&mut views, 9, "web b (instance 2)"));
        assert!(!admit(&mut views, 11, "web c"));
        assert!(admit(&mut views, 11, "web d"));
        assert!(admit(&mut views, 10, "web e (instance 2)"));
    }

    proptest! {
        /// Lines of two components, in time order (with runs of equal times and
        /// identical texts), read through connections that each replay from
        /// somewhere at or before the first line not yet delivered (the start of
        /// a run of equal times, as the replay check ensures) and break off
        /// anywhere: each component's lines come out once each, in order.
        #[test]
        fn replays_that_reach_back_deliver_each_line_once(
            lines in proptest::collection::vec((0i64..3, any::<bool>(), 0u8..3), 1..60),
            connections in proptest::collection::vec((any::<u16>(), 1usize..30), 0..12),
        ) {
            let mut time = 1_000;
            let sent: Vec<(i64, &str, String)> = lines
                .iter()
                .map(|(step, web, text)| {
                    time += step;
                    let component = if *web { "web" } else { "api" };
                    (time, component, format!("{component} m{text}"))
                })
                .collect();
            let mut position = Position::default();
            let mut delivered: Vec<(&str, String)> = Vec::new();
            let mut next = 0;
            let read = |position: &mut Position, delivered: &mut Vec<(&str, String)>, from: usize, upto: usize| {
                let mut views = Views::new();
                let mut next = from;
                for (time, component, raw) in &sent[from..upto] {
                    if position.admit(&mut views, component, *time, raw) {
                        delivered.push((component, raw.clone()));
                    }
                    next += 1;
                }
                next
            };
            for (start, length) in connections {
                let mut from = usize::from(start) % (next + 1);
                while from > 0 && from < sent.len() && sent[from - 1].0 == sent[from].0 {
                    from -= 1;
                }
                let upto = (from + length).min(sent.len());
                next = next.max(read(&mut position, &mut delivered, from, upto));
            }
            let mut from = next.min(sent.len().saturating_sub(1));
            while from > 0 && sent[from - 1].0 == sent[from].0 {
                from -= 1;
            }
            read(&mut position, &mut delivered, from, sent.len());
            for component in ["web", "api"] {
                let expected: Vec<&String> = sent.iter().filter(|l| l.1 == component).map(|l| &l.2).collect();
                let got: Vec<&String> = delivered.iter().filter(|l| l.0 == component).map(|l| &l.1).collect();
                prop_assert_eq!(got, expected, "{}", component);
            }
        }
    }

    #[test]
    fn both_names_of_the_archive_list_are_read() {
        let urls: LogUrls = serde_json::from_str(
            r#"{"live_url":"","url":"https://logs/build.log","historic_logs":["https://a/1.log"],"historic_urls":["https://a/1.log","https://a/2.log"]}"#,
        )
        .unwrap();
        assert_eq!(urls.live(), None);
        assert_eq!(urls.historic(), ["https://a/1.log", "https://a/2.log"]);
        let none: LogUrls =
            serde_json::from_str(r#"{"live_url":null,"historic_urls":null}"#).unwrap();
        assert!(none.live().is_none() && none.historic().is_empty());
    }

    #[test]
    fn positions_are_stored_compactly_and_keys_name_their_deployment() {
        let mut position = Position::default();
        let mut feed = Feed::new();
        let cursor = position.components.entry("web".into()).or_default();
        assert!(cursor.admit(&mut feed, 5, b"web line"));
        let value = serde_json::to_value(&position).unwrap();
        assert!(value.get("done").is_none(), "{value}");
        assert_eq!(
            serde_json::from_value::<Position>(value.clone()).unwrap(),
            position
        );
        assert_eq!(unfinished_deployment("d1/RUN", &value), Some("d1"));
        position.done = true;
        let done = serde_json::to_value(&position).unwrap();
        assert_eq!(unfinished_deployment("d1/RUN/web", &done), None);
        assert_eq!(unfinished_deployment("d1/RUN", &Value::Null), None);
        assert_eq!(
            cursor_key("d1", LogType::RunRestarted, Some("web")),
            "d1/RUN_RESTARTED/web"
        );
    }
}

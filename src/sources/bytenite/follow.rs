//! One followed job: every `poll_interval`, `POST /v1/customer/logs` with the
//! job id and the configured filters; the answer is decoded as it arrives
//! (`answer.rs`), what may be new is sorted oldest first, and each line goes
//! through the dedupe cursor of its sub-stream — service, task, container — before
//! it is shipped. Each piece sent carries the cursors of the sub-streams in it,
//! under `"{job}/{service}/{task}/{container}"`, restored from the checkpoint
//! when the job is followed again.
//!
//! Work per poll: the whole answer is read (ByteNite repeats everything, so this
//! grows with the job), but only lines at or past their sub-stream's mark are
//! kept, at most `max_poll_bytes` of them; an answer with more is polled again at
//! once for the rest. Two jobs of a source poll at once, the others wait their
//! turn, so memory does not grow with the number of jobs. An answer that no
//! longer reaches back to a sub-stream's mark (ByteNite kept only its newest
//! lines) is reported: lines between may be lost.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::Settings;
use super::answer::{self, Answer, Line, SubStream};
use super::wire::Service;
use crate::event::{Event, now_nanos};
use crate::http::client::FailureKind;
use crate::http::connection::{Connection, Frame};
use crate::http::stream::Ended;
use crate::sources::provider::{Context, DedupeCursor, Emitter, Feed, Follow, Next, Stopped};

/// The logs of one job.
pub(crate) struct JobLogs {
    settings: Arc<Settings>,
    job: String,
    /// The job's template (the event's `app`), when known.
    template: Option<String>,
    /// The `logsGetLogsRequest`.
    request: Value,
    /// Dedupe cursors by sub-stream key (`{service}/{task}/{container}`).
    cursors: HashMap<String, DedupeCursor>,
    /// The last answer held more than the budget.
    more: bool,
}

impl JobLogs {
    pub fn new(
        ctx: &Context,
        settings: Arc<Settings>,
        job: &str,
        template: Option<String>,
    ) -> Self {
        let prefix = format!("{job}/");
        let cursors = ctx
            .checkpoint
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter_map(|(key, value)| {
                let cursor = serde_json::from_value(value.clone()).ok()?;
                Some((key[prefix.len()..].to_string(), cursor))
            })
            .collect();
        JobLogs {
            request: settings.request(job),
            settings,
            job: job.to_string(),
            template,
            cursors,
            more: false,
        }
    }

    /// Warns about sub-streams whose lines may have been lost: the answer holds
    /// lines of theirs, none of them at or before the last one shipped.
    fn report_gaps(&self, ctx: &Context, answer: &Answer) {
        for stream in answer.streams.iter().filter(|s| s.mark > 0 && !s.reached) {
            tracing::warn!(source = %ctx.source, job = %self.job, stream = %stream.key, "the answer no longer reaches back to the last line shipped: lines in between may be lost (ByteNite answers hold a bounded number of lines; poll more often or narrow with services, task_ids or levels)");
            metrics::counter!("ferry_source_gaps_total", "source" => ctx.source.to_string())
                .increment(1);
        }
    }

    /// Ships what is new in `answer`, a piece at a time, each with the cursors of
    /// the sub-streams it holds.
    async fn ship(
        &mut self,
        ctx: &Context,
        out: &mut Emitter,
        answer: Answer,
    ) -> Result<(), Stopped> {
        let now = now_nanos();
        let mut shipment = Shipment::new(answer, &mut self.cursors);
        while let Some((line, index)) = shipment.next_new() {
            let stream = shipment.stream(index);
            let event = line_event(ctx, &self.job, self.template.as_deref(), stream, line, now);
            out.push(event);
            if out.is_full() {
                out.send(shipment.cursors(&self.job)).await?;
            }
        }
        if !out.is_empty() {
            out.send(shipment.cursors(&self.job)).await?;
        }
        Ok(())
    }
}

/// The event of one line.
fn line_event(
    ctx: &Context,
    job: &str,
    template: Option<&str>,
    stream: &SubStream,
    line: Line,
    now: i64,
) -> Event {
    let mut event = ctx.event(line.log, if line.timed { line.time } else { now });
    event.level = line.level.level();
    event.origin.app = template.map(str::to_string);
    event.origin.deployment = Some(job.to_string());
    event.origin.component = Some(stream.service.as_str().to_string());
    if stream.service == Service::TaskRunner {
        event.origin.instance = Some(stream.task.clone());
    }
    event
        .fields
        .insert("container".into(), Value::String(stream.container.clone()));
    if line.truncated {
        event.fields.insert("truncated".into(), Value::Bool(true));
    }
    event
}

/// The kept lines of an answer, oldest first (the provider's order among equal
/// times), through the dedupe cursors of their sub-streams: each line a cursor
/// admits counts as shipped from then on.
pub(crate) struct Shipment<'c> {
    streams: Vec<SubStream>,
    /// The cursor and the feed of each sub-stream, by index.
    cursors: Vec<(DedupeCursor, Feed)>,
    /// The job's cursors, updated as pieces go out.
    all: &'c mut HashMap<String, DedupeCursor>,
    lines: std::vec::IntoIter<Line>,
    /// The sub-streams with lines in the piece being built.
    touched: Vec<u32>,
    in_piece: Vec<bool>,
}

impl<'c> Shipment<'c> {
    pub fn new(answer: Answer, all: &'c mut HashMap<String, DedupeCursor>) -> Self {
        let Answer {
            streams,
            mut lines,
            newest_first,
            ..
        } = answer;
        if newest_first {
            lines.sort_unstable();
        } else {
            lines.sort_unstable_by_key(|line| (line.time, line.seq));
        }
        let cursors = streams
            .iter()
            .map(|s| (all.get(&s.key).cloned().unwrap_or_default(), Feed::new()))
            .collect();
        Shipment {
            in_piece: vec![false; streams.len()],
            streams,
            cursors,
            all,
            lines: lines.into_iter(),
            touched: Vec::new(),
        }
    }

    /// The next line to ship and the index of its sub-stream.
    pub fn next_new(&mut self) -> Option<(Line, u32)> {
        for line in self.lines.by_ref() {
            let index = line.stream;
            let (cursor, feed) = &mut self.cursors[index as usize];
            if cursor.admit(feed, line.time, line.log.as_bytes()) {
                if !std::mem::replace(&mut self.in_piece[index as usize], true) {
                    self.touched.push(index);
                }
                return Some((line, index));
            }
        }
        None
    }

    pub fn stream(&self, index: u32) -> &SubStream {
        &self.streams[index as usize]
    }

    /// The checkpoint entries (`"{job}/{key}"`) of the sub-streams with lines
    /// since the last call, whose cursors now count as the job's.
    pub fn cursors(&mut self, job: &str) -> Vec<(String, Value)> {
        let mut entries = Vec::with_capacity(self.touched.len());
        for index in self.touched.drain(..) {
            let index = index as usize;
            self.in_piece[index] = false;
            let key = &self.streams[index].key;
            let cursor = &self.cursors[index].0;
            if let Ok(value) = serde_json::to_value(cursor) {
                entries.push((format!("{job}/{key}"), value));
            }
            self.all.insert(key.clone(), cursor.clone());
        }
        entries
    }
}

#[async_trait]
impl Follow for JobLogs {
    fn name(&self) -> String {
        format!("job {}", self.job)
    }

    async fn open(&mut self, ctx: &Context, out: &mut Emitter) -> Result<Connection, Ended> {
        self.more = false;
        let polls = Arc::clone(&self.settings.polls);
        let Ok(_permit) = polls.acquire().await else {
            return Err(Ended::Closed);
        };
        let timeout = self.settings.request_timeout;
        let response = ctx
            .api
            .send(|client| {
                client
                    .post(&self.settings.logs_url)
                    .json(&self.request)
                    .timeout(timeout)
            })
            .await?;
        let mut selection = self.settings.selection.clone();
        selection.marks = self
            .cursors
            .iter()
            .map(|(key, cursor)| (key.clone(), cursor.time()))
            .collect();
        let answer = ctx
            .api
            .decode_blocking(response, ctx.stop.clone(), move |reader| {
                answer::decode(reader, &selection)
            })
            .await?
            .map_err(|e| {
                Ended::Lost(if e.is_io() {
                    ctx.api.scrub(&format!("reading the logs answer: {e}"))
                } else if e.is_eof() {
                    "the logs answer was cut short".to_string()
                } else {
                    format!("unexpected logs answer from ByteNite: {e}")
                })
            })?;
        tracing::debug!(source = %ctx.source, job = %self.job, lines = answer.total, kept = answer.lines.len(), more = answer.more, "polled");
        self.more = answer.more;
        self.report_gaps(ctx, &answer);
        self.ship(ctx, out, answer).await?;
        Ok(Connection::done(&ctx.options))
    }

    /// A poll's answer is read whole in `open`: there are no frames.
    fn frame(&mut self, _frame: Frame, _ctx: &Context, _out: &mut Emitter) {}

    /// The job: its sub-streams' cursors are committed under `{job}/…`.
    fn key(&self) -> &str {
        &self.job
    }

    /// Each poll sends its pieces with the cursors of their sub-streams itself.
    fn position(&self) -> Option<Value> {
        None
    }

    fn ended(&mut self, ended: &Ended, finished: bool) -> Next {
        match ended {
            Ended::Closed if self.more => Next::Now,
            Ended::Closed if finished => Next::Stop,
            Ended::Closed => Next::After(self.settings.poll_interval),
            Ended::Failed(failure) if finished && failure.kind == FailureKind::NotFound => {
                Next::Stop
            }
            _ => Next::Backoff,
        }
    }
}

#[cfg(test)]
mod tests;

//! The run loop: input batches are routed into per-tenant batches; full or timed-out
//! ones are encoded and pushed by up to `max_in_flight_requests` tasks. When Loki
//! refuses a push (400, 413), the `isolate` state machine, reading Loki's answers with
//! `refusal`, re-sends parts of it until exactly the refused entries are known. Those
//! go to the dead-letter sink (each with its input batch's delivery), are counted by
//! reason and logged in one line per push, and their input batches are acknowledged as
//! rejected; the rest was stored. When ferry stops while Loki is failing, what the
//! sink holds is given back unsettled (see [`SinkContext::stopping`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::batch::{Batcher, Limits, Part, Payload, Stream};
use super::config::{Compression, LokiEncoding, LokiSinkConfig};
use super::isolate::{Answer, Isolation};
use super::refusal::{self, Reason};
use super::request::Encoder;
use super::route::Router;
use super::service::{Endpoint, LokiService, PushOutcome, summary};
use crate::checkpoint::BatchStatus;
use crate::event::{Event, now_nanos};
use crate::sinks::dead_letter::{DeadLetterQueue, DeadLetterSink};
use crate::sinks::{Sink, SinkContext};
use crate::topology::BatchReceiver;

/// Most requests spent on one push (the first included) while isolating its refused
/// entries; past it, the entries not settled yet are taken as refused. Loki's own
/// answers settle a push in a few requests; this guards against a gateway that
/// refuses everything with a message that names nothing.
const MAX_ISOLATION_REQUESTS: usize = 1000;

pub struct LokiSink {
    config: LokiSinkConfig,
    endpoint: Endpoint,
    dead_letter: Option<DeadLetterSink>,
}

impl LokiSink {
    /// Sets up the HTTP client (reading TLS files and secrets) and the dead-letter sink.
    pub fn new(config: &LokiSinkConfig) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let endpoint = Endpoint::new(config)?;
        let dead_letter = match &config.dead_letter {
            Some(dead_letter) => Some(dead_letter.build()?),
            None => None,
        };
        Ok(LokiSink {
            config: config.clone(),
            endpoint,
            dead_letter,
        })
    }
}

/// What every push task shares.
struct Shared {
    service: LokiService,
    encoding: LokiEncoding,
    compression: Compression,
    dead_letter: Option<DeadLetterQueue>,
    sink: Arc<str>,
    reject_older_than: Option<Duration>,
    events: metrics::Counter,
    bytes: metrics::Counter,
    dead_lettered: metrics::Counter,
    /// `ferry_loki_refused_entries_total`, one per [`Reason`] in `Reason::ALL` order.
    refused: Vec<metrics::Counter>,
    isolation_requests: metrics::Counter,
    batch_events: metrics::Histogram,
}

#[async_trait]
impl Sink for LokiSink {
    async fn run(
        self: Box<Self>,
        mut input: BatchReceiver,
        ctx: SinkContext,
    ) -> anyhow::Result<()> {
        let LokiSink {
            config,
            endpoint,
            dead_letter,
        } = *self;
        let dead_letter = dead_letter.map(|sink| sink.start(&ctx));
        let label = ("sink", ctx.id.to_string());
        let shared = Arc::new(Shared {
            service: LokiService::new(endpoint, &config, &ctx),
            encoding: config.encoding,
            compression: config.compression,
            dead_letter: dead_letter.as_ref().map(|d| d.queue()),
            sink: Arc::clone(&ctx.id),
            reject_older_than: config.reject_older_than,
            events: ctx.events_out(),
            bytes: metrics::counter!("ferry_sink_bytes_total", std::slice::from_ref(&label)),
            dead_lettered: metrics::counter!(
                "ferry_loki_dead_letter_events_total",
                std::slice::from_ref(&label)
            ),
            refused: Reason::ALL
                .iter()
                .map(|reason| {
                    metrics::counter!(
                        "ferry_loki_refused_entries_total",
                        &[label.clone(), ("reason", reason.as_str().to_string())]
                    )
                })
                .collect(),
            isolation_requests: metrics::counter!("ferry_loki_isolation_requests_total", &[label]),
            batch_events: ctx.batch_events(),
        });
        let mut router = Router::new(&config, &ctx.id);
        let mut batcher = Batcher::new(Limits {
            max_bytes: config.batch_max_bytes,
            max_events: config.batch_max_events,
            timeout: config.batch_timeout,
        });
        let permits = Arc::new(Semaphore::new(config.max_in_flight_requests));
        let mut tasks: JoinSet<anyhow::Result<usize>> = JoinSet::new();
        let mut given_back = 0;
        let mut next_id = 0u64;
        let mut ready = Vec::new();
        loop {
            let deadline = batcher.next_deadline();
            let timeout = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = input.recv() => {
                    let Some(batch) = received else { break };
                    router.route(batch, next_id, &mut batcher, &mut ready);
                    next_id += 1;
                }
                () = timeout => ready.extend(batcher.take_due(Instant::now())),
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    given_back += joined.context("a Loki push task crashed")??;
                }
            }
            for payload in ready.drain(..) {
                dispatch(&shared, &permits, &mut tasks, payload).await;
            }
        }
        for payload in batcher.take_all() {
            dispatch(&shared, &permits, &mut tasks, payload).await;
        }
        while let Some(joined) = tasks.join_next().await {
            given_back += joined.context("a Loki push task crashed")??;
        }
        ctx.report_given_back(given_back);
        drop(shared);
        if let Some(dead_letter) = dead_letter {
            dead_letter.finish().await?;
        }
        Ok(())
    }
}

/// Starts a push task for `payload` once fewer than `max_in_flight_requests` run.
async fn dispatch(
    shared: &Arc<Shared>,
    permits: &Arc<Semaphore>,
    tasks: &mut JoinSet<anyhow::Result<usize>>,
    payload: Payload,
) {
    let permit = Arc::clone(permits).acquire_owned().await.ok();
    let shared = Arc::clone(shared);
    tasks.spawn(async move {
        let result = deliver(&shared, payload).await;
        drop(permit);
        result
    });
}

/// Pushes `payload`, isolating whatever Loki refuses, then dead-letters exactly the
/// refused entries and settles every input batch's share. Returns how many events
/// were given back instead (all of the payload's, or none).
async fn deliver(shared: &Shared, payload: Payload) -> anyhow::Result<usize> {
    shared.batch_events.record(payload.event_count() as f64);
    let (to_send, mut refused) = screen(shared.reject_older_than, &payload);
    let mut isolation = Isolation::new(to_send);
    let mut encoder = Encoder::default();
    let mut pushes = 0usize;
    let mut said: Option<(Option<StatusCode>, String)> = None;
    let mut last_reason = Reason::Other;
    loop {
        if pushes >= MAX_ISOLATION_REQUESTS && !isolation.is_settled() {
            tracing::warn!(
                sink = %shared.sink,
                "gave up isolating Loki's refusals after {pushes} requests; the entries not settled yet are taken as refused (some of them may be stored in Loki too)"
            );
            isolation.give_up(last_reason);
            break;
        }
        let Some(positions) = isolation.next_probe() else {
            break;
        };
        let part = payload.part(positions);
        let body = match encoder.encode(&part, shared.encoding, shared.compression) {
            Ok(body) => body,
            Err(error) => {
                said.get_or_insert((None, error.to_string()));
                isolation.answer(Answer::RefusedAll {
                    reason: Reason::Other,
                });
                continue;
            }
        };
        pushes += 1;
        if pushes > 1 {
            shared.isolation_requests.increment(1);
        }
        let answer = match shared.service.push(&payload.tenant, &body).await {
            PushOutcome::Delivered => {
                shared.bytes.increment(body.bytes.len() as u64);
                Answer::Accepted
            }
            PushOutcome::GivenBack => {
                let events = payload.event_count();
                payload.settle(BatchStatus::GivenBack);
                return Ok(events);
            }
            PushOutcome::Rejected { status, body } => {
                let message = refusal::message(&body);
                tracing::debug!(
                    sink = %shared.sink,
                    %status,
                    entries = part.event_count(),
                    "Loki refused a push; isolating the refused entries: {}",
                    summary(&message)
                );
                let answer = judge(status, &message, &part);
                if let Answer::Refused { reason, .. } = &answer {
                    last_reason = *reason;
                }
                said.get_or_insert((Some(status), summary(&message)));
                answer
            }
        };
        isolation.answer(answer);
    }
    refused.extend(isolation.into_refused());
    settle(shared, payload, refused, pushes, said).await?;
    Ok(0)
}

/// What a refusal with `status` and `message` says about the entries of `part`.
fn judge(status: StatusCode, message: &str, part: &Part<'_>) -> Answer<Reason> {
    match status {
        StatusCode::BAD_REQUEST => refusal::judge(message, part),
        StatusCode::PAYLOAD_TOO_LARGE => Answer::TooLarge {
            reason: Reason::Other,
        },
        _ => Answer::RefusedAll {
            reason: Reason::Other,
        },
    }
}

/// Splits the positions of `payload` into those to send and those refused before
/// sending because they are older than `reject_older_than`.
fn screen(max_age: Option<Duration>, payload: &Payload) -> (Vec<usize>, Vec<(usize, Reason)>) {
    let cutoff = max_age
        .map(|age| now_nanos().saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX)));
    let mut send = Vec::with_capacity(payload.event_count());
    let mut refused = Vec::new();
    let entries = payload.streams.iter().flat_map(|s| &s.entries);
    for (position, entry) in entries.enumerate() {
        if cutoff.is_some_and(|cutoff| entry.event.timestamp < cutoff) {
            refused.push((position, Reason::TooOld));
        } else {
            send.push(position);
        }
    }
    (send, refused)
}

/// Counts, logs (one line) and dead-letters the `refused` entries of `payload`, and
/// settles each input batch's share: rejected where it lost an entry, else delivered.
/// Fails only if the dead-letter sink has stopped.
async fn settle(
    shared: &Shared,
    payload: Payload,
    refused: Vec<(usize, Reason)>,
    pushes: usize,
    said: Option<(Option<StatusCode>, String)>,
) -> anyhow::Result<()> {
    let entries = payload.event_count();
    shared
        .events
        .increment(entries.saturating_sub(refused.len()) as u64);
    if refused.is_empty() {
        payload.settle(BatchStatus::Delivered);
        return Ok(());
    }
    let mut mask = vec![false; entries];
    let mut by_reason = [0usize; Reason::ALL.len()];
    for &(position, reason) in &refused {
        if let Some(slot) = mask.get_mut(position) {
            *slot = true;
        }
        by_reason[reason as usize] += 1;
    }
    let mut counts = Vec::new();
    for (reason, count) in Reason::ALL.iter().zip(by_reason) {
        if count > 0 {
            shared.refused[*reason as usize].increment(count as u64);
            counts.push(format!("{}={count}", reason.as_str()));
        }
    }
    let counts = counts.join(" ");
    let (status, said) = said.unwrap_or((
        None,
        "entries older than `reject_older_than`, not sent".into(),
    ));
    tracing::warn!(
        sink = %shared.sink,
        tenant = %payload.tenant,
        status = status.map_or(0, |s| s.as_u16()),
        refused = refused.len(),
        entries,
        extra_requests = pushes.saturating_sub(1),
        dead_letter = shared.dead_letter.is_some(),
        "Loki refused {} of {entries} entries for good ({counts}): {said}",
        refused.len(),
    );
    let mut offset = 0;
    for stream in payload.streams {
        let Stream {
            entries,
            deliveries,
            ..
        } = stream;
        let count = entries.len();
        let mut lost: HashMap<u64, Vec<Event>> = HashMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            if mask.get(offset + i).copied().unwrap_or(false) {
                lost.entry(entry.batch).or_default().push(entry.event);
            }
        }
        offset += count;
        for (id, delivery) in deliveries {
            let Some(events) = lost.remove(&id) else {
                delivery.settle(BatchStatus::Delivered);
                continue;
            };
            match &shared.dead_letter {
                Some(dead_letter) => {
                    let count = events.len() as u64;
                    dead_letter.reject(events, delivery).await?;
                    shared.dead_lettered.increment(count);
                }
                None => delivery.settle(BatchStatus::Rejected),
            }
        }
    }
    Ok(())
}

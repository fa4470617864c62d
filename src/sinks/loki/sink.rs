//! The run loop: input batches are routed into per-tenant batches; full or timed-out
//! ones are encoded and pushed by up to `max_in_flight_requests` tasks. A push refused
//! with 400 or 413 is split by streams until the refused stream is alone; its entries
//! then go to the dead-letter sink (each with its input batch's delivery), and the
//! refusal is logged once, counted by reason, and acknowledged as rejected.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use async_trait::async_trait;
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::batch::{Batcher, Limits, Payload, Stream};
use super::config::{Compression, LokiEncoding, LokiSinkConfig};
use super::request::Encoder;
use super::route::Router;
use super::service::{Endpoint, LokiService, PushOutcome};
use crate::checkpoint::BatchStatus;
use crate::event::Event;
use crate::sinks::dead_letter::{DeadLetterQueue, DeadLetterSink};
use crate::sinks::{Sink, SinkContext};
use crate::topology::BatchReceiver;

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
    events: metrics::Counter,
    bytes: metrics::Counter,
    dead_lettered: metrics::Counter,
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
            service: LokiService::new(
                endpoint,
                &config,
                Arc::clone(&ctx.id),
                Arc::clone(&ctx.health),
            ),
            encoding: config.encoding,
            compression: config.compression,
            dead_letter: dead_letter.as_ref().map(|d| d.queue()),
            sink: Arc::clone(&ctx.id),
            events: metrics::counter!("ferry_sink_events_total", std::slice::from_ref(&label)),
            bytes: metrics::counter!("ferry_sink_bytes_total", std::slice::from_ref(&label)),
            dead_lettered: metrics::counter!("ferry_loki_dead_letter_events_total", &[label]),
        });
        let mut router = Router::new(&config, &ctx.id);
        let mut batcher = Batcher::new(Limits {
            max_bytes: config.batch_max_bytes,
            max_events: config.batch_max_events,
            timeout: config.batch_timeout,
        });
        let permits = Arc::new(Semaphore::new(config.max_in_flight_requests));
        let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
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
                    joined.context("a Loki push task crashed")??;
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
            joined.context("a Loki push task crashed")??;
        }
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
    tasks: &mut JoinSet<anyhow::Result<()>>,
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

/// Pushes `payload` until every part of it is accepted or dead-lettered.
async fn deliver(shared: &Shared, payload: Payload) -> anyhow::Result<()> {
    let mut encoder = Encoder::default();
    let mut work = vec![payload];
    while let Some(payload) = work.pop() {
        let body = match encoder.encode(&payload, shared.encoding, shared.compression) {
            Ok(body) => body,
            Err(error) => {
                reject(shared, payload, None, &error.to_string()).await?;
                continue;
            }
        };
        match shared.service.push(&payload.tenant, &body).await {
            PushOutcome::Delivered => {
                shared.events.increment(payload.event_count() as u64);
                shared.bytes.increment(body.bytes.len() as u64);
                payload.settle(BatchStatus::Delivered);
            }
            PushOutcome::Rejected { status, reason } => {
                let splittable = matches!(
                    status,
                    StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE
                );
                let payload = if splittable {
                    match payload.split() {
                        Ok((first, second)) => {
                            tracing::debug!(sink = %shared.sink, %status, "Loki refused a push; splitting it by streams to find the refused ones: {reason}");
                            work.push(second);
                            work.push(first);
                            continue;
                        }
                        Err(alone) => alone,
                    }
                } else {
                    payload
                };
                reject(shared, payload, Some(status), &reason).await?;
            }
        }
    }
    Ok(())
}

/// Logs, counts and dead-letters entries Loki will never accept, then settles them as
/// rejected. Fails only if the dead-letter sink has stopped.
async fn reject(
    shared: &Shared,
    payload: Payload,
    status: Option<StatusCode>,
    reason: &str,
) -> anyhow::Result<()> {
    let events = payload.event_count();
    let class = reason_class(status, reason);
    let streams: Vec<&str> = payload.streams.iter().map(|s| s.labels.as_str()).collect();
    tracing::warn!(
        sink = %shared.sink,
        status = status.map_or(0, |s| s.as_u16()),
        tenant = %payload.tenant,
        streams = %streams.join(" "),
        events,
        dead_letter = shared.dead_letter.is_some(),
        "Loki refused entries for good ({class}): {reason}"
    );
    metrics::counter!("ferry_loki_rejected_events_total", "sink" => shared.sink.to_string(), "reason" => class)
        .increment(events as u64);
    let Some(dead_letter) = &shared.dead_letter else {
        payload.settle(BatchStatus::Rejected);
        return Ok(());
    };
    for stream in payload.streams {
        for (events, delivery) in by_input_batch(stream) {
            let count = events.len() as u64;
            dead_letter.reject(events, delivery).await?;
            shared.dead_lettered.increment(count);
        }
    }
    Ok(())
}

/// A stream's events grouped back by the input batch they came from.
fn by_input_batch(stream: Stream) -> Vec<(Vec<Event>, crate::checkpoint::Delivery)> {
    let slots: HashMap<u64, usize> = stream
        .deliveries
        .iter()
        .enumerate()
        .map(|(slot, (id, _))| (*id, slot))
        .collect();
    let mut groups: Vec<Vec<Event>> = vec![Vec::new(); stream.deliveries.len()];
    for entry in stream.entries {
        if let Some(&slot) = slots.get(&entry.batch) {
            groups[slot].push(entry.event);
        }
    }
    groups
        .into_iter()
        .zip(stream.deliveries)
        .map(|(events, (_, delivery))| (events, delivery))
        .collect()
}

/// The `reason` label of the rejection counter.
fn reason_class(status: Option<StatusCode>, reason: &str) -> &'static str {
    let Some(status) = status else {
        return "encoding";
    };
    match status.as_u16() {
        400 => {}
        401 => return "unauthorized",
        403 => return "forbidden",
        404 => return "not_found",
        413 => return "too_large",
        _ => return "other_4xx",
    }
    let reason = reason.to_ascii_lowercase();
    if reason.contains("out of order") {
        "out_of_order"
    } else if reason.contains("too far behind") || reason.contains("too old") {
        "too_far_behind"
    } else if reason.contains("line too long") || reason.contains("max entry size") {
        "line_too_long"
    } else if reason.contains("too many labels") || reason.contains("label names; limit") {
        "too_many_labels"
    } else if reason.contains("label") {
        "invalid_labels"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_classified_by_lokis_reason() {
        let bad = Some(StatusCode::BAD_REQUEST);
        assert_eq!(reason_class(bad, "entry out of order"), "out_of_order");
        assert_eq!(
            reason_class(
                bad,
                "entry with timestamp 2024 ignored, reason: 'entry too far behind, oldest acceptable timestamp is: …'"
            ),
            "too_far_behind"
        );
        assert_eq!(
            reason_class(bad, "Max entry size '262144' bytes exceeded for stream"),
            "line_too_long"
        );
        assert_eq!(
            reason_class(bad, "stream '{a=\"b\"}' has 16 label names; limit 15"),
            "too_many_labels"
        );
        assert_eq!(
            reason_class(bad, "error parsing labels: invalid label name"),
            "invalid_labels"
        );
        assert_eq!(
            reason_class(Some(StatusCode::UNAUTHORIZED), ""),
            "unauthorized"
        );
        assert_eq!(reason_class(None, "snappy"), "encoding");
    }
}

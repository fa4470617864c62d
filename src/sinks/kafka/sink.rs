//! The run loop. Input batches are turned into records and handed to librdkafka in
//! input order (so a partition receives them in order); a task per batch then awaits
//! every record's delivery report, at most `max_in_flight_batches` at once. A batch is
//! acknowledged only when every record's report succeeded. Records that failed
//! (broker unreachable past `message_timeout`, leader changes, a producer that had to
//! be recreated) are produced again with backoff, without limit; each re-send is
//! counted, since the first attempt may have reached the broker after all. Records the
//! broker can never take (too large, invalid) go to the dead-letter sink and make the
//! batch rejected, counted by reason.
//!
//! At a stop, a sink whose records get delivered drains them. One whose records have
//! had no successful report for [`STALLED_AFTER`] (brokers unreachable: librdkafka
//! would hold them until `message_timeout`) purges librdkafka's queues and gives its
//! batches back unsettled, to be read again on the next start.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, PurgeConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::config::KafkaSinkConfig;
use super::record::{RecordBuilder, RecordFormat};
use crate::checkpoint::{BatchStatus, Delivery};
use crate::event::{Batch, Event};
use crate::http::retry::backoff;
use crate::kafka::ClientLog;
use crate::sinks::dead_letter::{DeadLetterQueue, DeadLetterSink};
use crate::sinks::{Sink, SinkContext};
use crate::telemetry::Health;
use crate::topology::BatchReceiver;

/// How long to wait before offering a record again when librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(2);

/// At a stop, records with no successful delivery report for this long mean the
/// brokers cannot be reached: the sink gives its batches back.
const STALLED_AFTER: Duration = Duration::from_secs(2);

/// How often a stopping sink checks whether it is still making progress.
const STALL_CHECK: Duration = Duration::from_millis(250);

pub struct KafkaSink {
    config: KafkaSinkConfig,
    producer_config: ClientConfig,
    dead_letter: Option<DeadLetterSink>,
}

impl KafkaSink {
    /// Checks the options and reads the secret files; the dead-letter sink is built too.
    pub fn new(config: &KafkaSinkConfig) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let producer_config = config.producer_config().map_err(anyhow::Error::msg)?;
        let dead_letter = match &config.dead_letter {
            Some(dead_letter) => Some(dead_letter.build()?),
            None => None,
        };
        Ok(KafkaSink {
            config: config.clone(),
            producer_config,
            dead_letter,
        })
    }
}

/// The producer, replaced by a fresh one when librdkafka reports a fatal error (an
/// idempotent producer can end up fenced; its records are then retried on the new one).
struct ProducerSlot {
    config: ClientConfig,
    sink: Arc<str>,
    current: Mutex<(u64, FutureProducer<ClientLog>)>,
}

impl ProducerSlot {
    fn new(config: ClientConfig, sink: Arc<str>) -> anyhow::Result<Self> {
        let producer = Self::create(&config, &sink)?;
        Ok(ProducerSlot {
            config,
            sink,
            current: Mutex::new((0, producer)),
        })
    }

    fn create(config: &ClientConfig, sink: &str) -> anyhow::Result<FutureProducer<ClientLog>> {
        config
            .create_with_context(ClientLog::new(format!("sinks.{sink}")))
            .map_err(|e| anyhow::anyhow!("cannot create the Kafka producer: {e}"))
    }

    fn get(&self) -> (u64, FutureProducer<ClientLog>) {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (current.0, current.1.clone())
    }

    /// Replaces producer `generation` if it has failed fatally (once, whoever notices).
    fn replace_if_fatal(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.0 != generation {
            return;
        }
        let Some((code, reason)) = current.1.client().fatal_error() else {
            return;
        };
        tracing::error!(sink = %self.sink, "the Kafka producer failed for good ({code}: {reason}); starting a new one and producing its records again");
        match Self::create(&self.config, &self.sink) {
            Ok(producer) => *current = (generation + 1, producer),
            Err(error) => tracing::error!(sink = %self.sink, "{error:#}"),
        }
    }
}

/// What every batch task shares.
struct Shared {
    producers: ProducerSlot,
    format: RecordFormat,
    dead_letter: Option<DeadLetterQueue>,
    sink: Arc<str>,
    health: Arc<Health>,
    retry_initial_backoff: Duration,
    retry_max_backoff: Duration,
    events: metrics::Counter,
    bytes: metrics::Counter,
    errors: metrics::Counter,
    retried: metrics::Counter,
    dead_lettered: metrics::Counter,
    /// From handing a batch's records to librdkafka to their last report.
    duration: metrics::Histogram,
    batch_events: metrics::Histogram,
    stopping: CancellationToken,
    /// When a record was last reported delivered (or the sink started).
    last_delivered: Mutex<Instant>,
    /// Set at a stop once deliveries stalled: nothing more is produced, and what is
    /// held is given back.
    given_up: AtomicBool,
}

impl Shared {
    /// The component `/health` names while deliveries fail.
    fn health_key(&self) -> String {
        format!("sink:{}", self.sink)
    }

    fn delivered_now(&self) {
        *self
            .last_delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// At a stop, gives up once no record was delivered for [`STALLED_AFTER`].
    fn give_up_if_stalled(&self) {
        let stalled = self
            .last_delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            >= STALLED_AFTER;
        if self.stopping.is_cancelled() && stalled {
            self.give_up();
        }
    }

    fn given_up(&self) -> bool {
        self.given_up.load(Ordering::Acquire)
    }

    /// Stops delivering: librdkafka's queued and in-flight records are purged, so
    /// their reports come back at once and their batches are given back.
    fn give_up(&self) {
        if !self.given_up.swap(true, Ordering::AcqRel) {
            self.producers
                .get()
                .1
                .purge(PurgeConfig::default().queue().inflight());
        }
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn run(
        self: Box<Self>,
        mut input: BatchReceiver,
        ctx: SinkContext,
    ) -> anyhow::Result<()> {
        let KafkaSink {
            config,
            producer_config,
            dead_letter,
        } = *self;
        let dead_letter = dead_letter.map(|sink| sink.start(&ctx));
        let label = ("sink", ctx.id.to_string());
        let counter = |name: &'static str| metrics::counter!(name, std::slice::from_ref(&label));
        let shared = Arc::new(Shared {
            producers: ProducerSlot::new(producer_config, Arc::clone(&ctx.id))?,
            format: RecordFormat::new(&config),
            dead_letter: dead_letter.as_ref().map(|d| d.queue()),
            sink: Arc::clone(&ctx.id),
            health: Arc::clone(&ctx.health),
            retry_initial_backoff: config.retry_initial_backoff,
            retry_max_backoff: config.retry_max_backoff,
            events: ctx.events_out(),
            bytes: counter("ferry_sink_bytes_total"),
            errors: ctx.errors(),
            duration: ctx.request_duration(),
            batch_events: ctx.batch_events(),
            retried: counter("ferry_kafka_retried_events_total"),
            dead_lettered: counter("ferry_kafka_dead_letter_events_total"),
            stopping: ctx.stopping.clone(),
            last_delivered: Mutex::new(Instant::now()),
            given_up: AtomicBool::new(false),
        });
        let window = Arc::new(Semaphore::new(config.max_in_flight_batches));
        let mut builder = RecordBuilder::default();
        let mut tasks: JoinSet<anyhow::Result<usize>> = JoinSet::new();
        let mut stall_check = tokio::time::interval(STALL_CHECK);
        let mut given_back = 0;
        let mut input_open = true;
        while input_open || !tasks.is_empty() {
            tokio::select! {
                received = input.recv(), if input_open => {
                    let Some(batch) = received else {
                        input_open = false;
                        continue;
                    };
                    if shared.given_up() {
                        given_back += batch.events.len();
                        batch.delivery.settle(BatchStatus::GivenBack);
                        continue;
                    }
                    shared.batch_events.record(batch.events.len() as f64);
                    let permit = loop {
                        tokio::select! {
                            permit = Arc::clone(&window).acquire_owned() => break permit?,
                            _ = stall_check.tick() => shared.give_up_if_stalled(),
                        }
                    };
                    let mut inflight = InFlight::new(batch);
                    let all: Vec<usize> = (0..inflight.events.len()).collect();
                    inflight.produce(&shared, &mut builder, all).await;
                    let shared = Arc::clone(&shared);
                    tasks.spawn(inflight.finish(shared, permit));
                }
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    given_back += joined.context("a Kafka delivery task crashed")??;
                }
                // Unconditional: a branch's condition is read once per `select!`, and the
                // stop may come while this one waits.
                _ = stall_check.tick() => {
                    if !tasks.is_empty() {
                        shared.give_up_if_stalled();
                    }
                }
            }
        }
        ctx.report_given_back(given_back);
        drop(shared);
        if let Some(dead_letter) = dead_letter {
            dead_letter.finish().await?;
        }
        Ok(())
    }
}

/// One input batch on its way: the records awaiting their reports, and those the
/// broker will never take.
struct InFlight {
    events: Vec<Event>,
    delivery: Delivery,
    waiting: Vec<(usize, u64, usize, DeliveryFuture)>,
    refused: Vec<(usize, &'static str)>,
    /// When the records were last handed to librdkafka.
    produced_at: Instant,
    /// Production stopped part-way because the sink gave up at a stop.
    abandoned: bool,
}

/// How a record that was not delivered is handled.
enum Failure {
    /// Produce it again after a backoff.
    Retry,
    /// The broker will never take it: dead-letter it, with this reason.
    Refused(&'static str),
}

fn classify(error: &KafkaError) -> Failure {
    let KafkaError::MessageProduction(code) = error else {
        return Failure::Retry;
    };
    match code {
        RDKafkaErrorCode::MessageSizeTooLarge
        | RDKafkaErrorCode::InvalidMessageSize
        | RDKafkaErrorCode::MessageBatchTooLarge => Failure::Refused("too_large"),
        RDKafkaErrorCode::InvalidMessage
        | RDKafkaErrorCode::InvalidRecord
        | RDKafkaErrorCode::BadMessage => Failure::Refused("invalid_record"),
        RDKafkaErrorCode::InvalidTopic => Failure::Refused("invalid_topic"),
        _ => Failure::Retry,
    }
}

impl InFlight {
    fn new(batch: Batch) -> Self {
        InFlight {
            events: batch.events,
            delivery: batch.delivery,
            waiting: Vec::new(),
            refused: Vec::new(),
            produced_at: Instant::now(),
            abandoned: false,
        }
    }

    /// Hands the records of `indices` to librdkafka, in order, waiting while its
    /// queue is full.
    async fn produce(&mut self, shared: &Shared, builder: &mut RecordBuilder, indices: Vec<usize>) {
        self.produced_at = Instant::now();
        let (mut generation, mut producer) = shared.producers.get();
        for index in indices {
            loop {
                if shared.given_up() {
                    self.abandoned = true;
                    return;
                }
                let record = match builder.build(&shared.format, &self.events[index]) {
                    Ok(record) => record,
                    Err(reason) => {
                        self.refused.push((index, reason));
                        break;
                    }
                };
                let bytes = record.payload.len();
                let mut future_record =
                    FutureRecord::<str, [u8]>::to(record.topic).payload(record.payload);
                if let Some(key) = record.key {
                    future_record = future_record.key(key);
                }
                if let Some(headers) = record.headers {
                    future_record = future_record.headers(headers);
                }
                match producer.send_result(future_record) {
                    Ok(future) => {
                        self.waiting.push((index, generation, bytes, future));
                        break;
                    }
                    Err((error, _)) => match error {
                        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                            shared.give_up_if_stalled();
                            tokio::time::sleep(QUEUE_FULL_WAIT).await;
                        }
                        error => match classify(&error) {
                            Failure::Refused(reason) => {
                                self.refused.push((index, reason));
                                break;
                            }
                            Failure::Retry => {
                                shared.errors.increment(1);
                                shared.producers.replace_if_fatal(generation);
                                tokio::time::sleep(shared.retry_initial_backoff).await;
                                (generation, producer) = shared.producers.get();
                            }
                        },
                    },
                }
            }
        }
    }

    /// Awaits every report, produces failed records again until none is left, then
    /// dead-letters what was refused and settles the batch.
    async fn finish(
        mut self,
        shared: Arc<Shared>,
        permit: OwnedSemaphorePermit,
    ) -> anyhow::Result<usize> {
        let mut builder = RecordBuilder::default();
        let mut delays = backoff(shared.retry_initial_backoff, shared.retry_max_backoff);
        loop {
            let mut retry = Vec::new();
            let mut first_error = None;
            for (index, generation, bytes, future) in std::mem::take(&mut self.waiting) {
                let error = match future.await {
                    Ok(Ok(_)) => {
                        shared.events.increment(1);
                        shared.bytes.increment(bytes as u64);
                        shared.delivered_now();
                        continue;
                    }
                    Ok(Err((error, _))) => error,
                    Err(_canceled) => KafkaError::Canceled,
                };
                match classify(&error) {
                    Failure::Refused(reason) => self.refused.push((index, reason)),
                    Failure::Retry => {
                        shared.producers.replace_if_fatal(generation);
                        first_error.get_or_insert(error);
                        retry.push(index);
                    }
                }
            }
            shared
                .duration
                .record(self.produced_at.elapsed().as_secs_f64());
            let Some(error) = first_error else { break };
            if shared.given_up() {
                return Ok(self.give_back(permit));
            }
            shared.errors.increment(retry.len() as u64);
            let message = format!("{} records not delivered ({error}); retrying", retry.len());
            tracing::warn!(sink = %shared.sink, "{message}");
            shared.health.set(&shared.health_key(), message);
            let delay = delays.next().unwrap_or(shared.retry_max_backoff);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                // Stopping while in the retry backoff: nothing is getting through.
                () = shared.stopping.cancelled() => shared.give_up(),
            }
            if shared.given_up() {
                return Ok(self.give_back(permit));
            }
            shared.retried.increment(retry.len() as u64);
            self.produce(&shared, &mut builder, retry).await;
        }
        if self.abandoned {
            return Ok(self.give_back(permit));
        }
        shared.health.clear(&shared.health_key());
        drop(permit);
        self.settle(&shared).await?;
        Ok(0)
    }

    /// Settles the batch as given back: its checkpoint stays before it, and it is read
    /// again on the next start. Returns its event count, for the stop's warning.
    fn give_back(self, permit: OwnedSemaphorePermit) -> usize {
        drop(permit);
        self.delivery.settle(BatchStatus::GivenBack);
        self.events.len()
    }

    async fn settle(mut self, shared: &Shared) -> anyhow::Result<()> {
        if self.refused.is_empty() {
            self.delivery.settle(BatchStatus::Delivered);
            return Ok(());
        }
        self.refused.sort_unstable();
        let reasons: BTreeSet<&str> = self.refused.iter().map(|(_, reason)| *reason).collect();
        for (_, reason) in &self.refused {
            metrics::counter!("ferry_kafka_rejected_events_total", "sink" => shared.sink.to_string(), "reason" => *reason)
                .increment(1);
        }
        tracing::warn!(
            sink = %shared.sink,
            events = self.refused.len(),
            dead_letter = shared.dead_letter.is_some(),
            "Kafka refuses records for good ({})",
            reasons.into_iter().collect::<Vec<_>>().join(", ")
        );
        let Some(dead_letter) = &shared.dead_letter else {
            self.delivery.settle(BatchStatus::Rejected);
            return Ok(());
        };
        let events = refused_events(std::mem::take(&mut self.events), &self.refused);
        shared.dead_lettered.increment(events.len() as u64);
        dead_letter.reject(events, self.delivery).await
    }
}

/// The events at the (sorted) refused indices.
fn refused_events(events: Vec<Event>, refused: &[(usize, &'static str)]) -> Vec<Event> {
    let mut wanted = refused.iter().map(|(index, _)| *index).peekable();
    let mut out = Vec::with_capacity(refused.len());
    for (index, event) in events.into_iter().enumerate() {
        if wanted.peek() == Some(&index) {
            wanted.next();
            out.push(event);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_records_the_broker_can_never_take_are_refused() {
        let refused = |code| {
            matches!(
                classify(&KafkaError::MessageProduction(code)),
                Failure::Refused(_)
            )
        };
        assert!(refused(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(refused(RDKafkaErrorCode::InvalidRecord));
        assert!(!refused(RDKafkaErrorCode::MessageTimedOut));
        assert!(!refused(RDKafkaErrorCode::TopicAuthorizationFailed));
        assert!(!refused(RDKafkaErrorCode::NotLeaderForPartition));
        assert!(matches!(classify(&KafkaError::Canceled), Failure::Retry));
    }
}

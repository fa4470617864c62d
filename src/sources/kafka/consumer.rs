//! The consumer: a librdkafka group consumer driven from one dedicated thread, so its
//! rebalance callbacks may wait (bounded) for deliveries without stalling the async
//! runtime the sinks run on.
//!
//! The thread polls records into batches (`batch_max_events`, `batch_max_bytes`,
//! `batch_timeout`) and hands each to the pipeline with its per-partition cursor.
//! While the pipeline holds it back, the assigned partitions are paused and the
//! consumer is still polled, so the group keeps it as a member and rebalances are
//! served. Offsets are stored only from the cursors the ack tracker commits (see
//! `offsets`), committed every `commit_interval`, when a partition is revoked (after
//! waiting up to `revoke_timeout` for its records in flight), and at shutdown (after
//! every record read has been delivered or the shutdown timeout ends the process).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::decode::Decoder;
use super::offsets::{Offsets, cursor_key, cursor_value};
use crate::checkpoint::{CursorUpdate, Cursors};
use crate::event::Event;
use crate::kafka::ClientLog;
use crate::sources::SourceCommon;
use crate::sources::{SendError, SourceOutput};

/// Longest single wait in `poll`, so shutdown is noticed promptly.
const POLL_IDLE: Duration = Duration::from_millis(100);
/// How often the consumer is served while the pipeline holds a batch back.
const BACKPRESSURE_POLL: Duration = Duration::from_millis(100);

/// The callbacks librdkafka runs on the consumer thread.
pub struct Hooks {
    source: Arc<str>,
    log: ClientLog,
    offsets: Arc<Mutex<Offsets>>,
    committed: watch::Receiver<Cursors>,
    runtime: Handle,
    revoke_timeout: Duration,
}

impl Hooks {
    pub fn new(
        source: Arc<str>,
        offsets: Arc<Mutex<Offsets>>,
        committed: watch::Receiver<Cursors>,
        runtime: Handle,
        revoke_timeout: Duration,
    ) -> Self {
        Hooks {
            log: ClientLog::new(format!("sources.{source}")),
            source,
            offsets,
            committed,
            runtime,
            revoke_timeout,
        }
    }

    /// Before giving `partitions` up: waits (bounded) until what was sent from them is
    /// delivered, stores those offsets and commits them synchronously.
    fn release(&self, consumer: &BaseConsumer<Hooks>, partitions: &TopicPartitionList) {
        if consumer.assignment_lost() {
            tracing::warn!(source = %self.source, "the group took this member's partitions away (session timed out); records in flight will be read again by their new owner");
        } else {
            let deadline = Instant::now() + self.revoke_timeout;
            let mut committed = self.committed.clone();
            loop {
                store_committed(consumer, &self.offsets, &committed.borrow_and_update());
                if lock(&self.offsets).settled(partitions) {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    tracing::warn!(source = %self.source, "partitions revoked with records still in flight after revoke_timeout; their new owner reads them again");
                    break;
                }
                let changed = self
                    .runtime
                    .block_on(tokio::time::timeout(left, committed.changed()));
                if matches!(changed, Ok(Err(_))) {
                    break;
                }
            }
            commit(consumer, CommitMode::Sync, &self.log);
        }
        lock(&self.offsets).revoke(partitions);
    }
}

fn lock(offsets: &Mutex<Offsets>) -> MutexGuard<'_, Offsets> {
    offsets
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stores the offsets the tracker has newly committed; true if there were any.
fn store_committed(
    consumer: &BaseConsumer<Hooks>,
    offsets: &Mutex<Offsets>,
    cursors: &Cursors,
) -> bool {
    let list = lock(offsets).newly_committed(cursors);
    if list.count() == 0 {
        return false;
    }
    // Fails only for partitions no longer assigned, whose new owner reads them again.
    if let Err(error) = consumer.store_offsets(&list) {
        tracing::debug!("offsets not stored: {error}");
    }
    true
}

fn commit(consumer: &BaseConsumer<Hooks>, mode: CommitMode, log: &ClientLog) {
    match consumer.commit_consumer_state(mode) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => log.error(&error, "offset commit failed; retried at the next commit"),
    }
}

impl ClientContext for Hooks {
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, stats) in &stats.partitions {
                if *partition < 0 {
                    continue;
                }
                metrics::gauge!(
                    "ferry_kafka_consumer_lag",
                    "source" => self.source.to_string(),
                    "topic" => topic.clone(),
                    "partition" => partition.to_string()
                )
                .set(stats.consumer_lag.max(0) as f64);
            }
        }
    }
}

impl ConsumerContext for Hooks {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            tracing::info!(source = %self.source, partitions = partitions.count(), "partitions revoked");
            self.release(consumer, partitions);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(source = %self.source, partitions = partitions.count(), "partitions assigned");
                lock(&self.offsets).assign(partitions);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => self.log.error(error, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result
            && !matches!(
                error,
                KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)
            )
        {
            self.log
                .error(&error, "offset commit failed; retried at the next commit");
        }
    }
}

/// The records read but not yet sent: events, and for each event the slot of its
/// partition in `partitions` (topic, partition, generation, next offset).
#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    slots: Vec<u32>,
    partitions: Vec<(String, i32, u64, i64)>,
    bytes: usize,
    since: Option<Instant>,
}

impl Pending {
    fn push(&mut self, event: Event, topic: &str, partition: i32, generation: u64, offset: i64) {
        let same = |(t, p, g, _): &(String, i32, u64, i64)| {
            *p == partition && *g == generation && t == topic
        };
        let slot = match self.slots.last() {
            Some(&last) if same(&self.partitions[last as usize]) => last as usize,
            _ => match self.partitions.iter().position(same) {
                Some(slot) => slot,
                None => {
                    self.partitions
                        .push((topic.to_string(), partition, generation, offset));
                    self.partitions.len() - 1
                }
            },
        };
        self.partitions[slot].3 = offset + 1;
        self.bytes += event.message.len();
        self.events.push(event);
        self.slots.push(slot as u32);
        self.since.get_or_insert_with(Instant::now);
    }

    /// Drops the records of partitions no longer assigned in the same generation.
    fn retain_assigned(&mut self, offsets: &Offsets) {
        let keep: Vec<bool> = self
            .partitions
            .iter()
            .map(|(t, p, g, _)| offsets.generation(t, *p) == Some(*g))
            .collect();
        if keep.iter().all(|kept| *kept) {
            return;
        }
        let mut new_slot = vec![0; keep.len()];
        let mut partitions = Vec::new();
        for (slot, partition) in std::mem::take(&mut self.partitions).into_iter().enumerate() {
            if keep[slot] {
                new_slot[slot] = partitions.len() as u32;
                partitions.push(partition);
            }
        }
        self.partitions = partitions;
        let events = std::mem::take(&mut self.events);
        let slots = std::mem::take(&mut self.slots);
        for (event, slot) in events.into_iter().zip(slots) {
            if keep[slot as usize] {
                self.events.push(event);
                self.slots.push(new_slot[slot as usize]);
            }
        }
        self.bytes = self.events.iter().map(|e| e.message.len()).sum();
        if self.events.is_empty() {
            self.since = None;
        }
    }
}

/// The consumer thread's state.
pub struct Reader {
    pub consumer: BaseConsumer<Hooks>,
    pub offsets: Arc<Mutex<Offsets>>,
    pub committed: watch::Receiver<Cursors>,
    pub output: SourceOutput,
    pub decoder: Decoder,
    pub limits: SourceCommon,
    pub batch_timeout: Duration,
    pub commit_interval: Duration,
    pub runtime: Handle,
    pub shutdown: CancellationToken,
    /// Where consumer errors (and failed commits) are logged.
    pub log: ClientLog,
}

impl Reader {
    /// Reads until shutdown, then waits for the records in flight and commits.
    pub fn run(self) -> anyhow::Result<()> {
        let Reader {
            consumer,
            offsets,
            mut committed,
            mut output,
            decoder,
            limits,
            batch_timeout,
            commit_interval,
            runtime,
            shutdown,
            log,
        } = self;
        let mut pending = Pending::default();
        let mut revocations = 0;
        let mut last_commit = Instant::now();
        let mut stored = false;
        let result = loop {
            if shutdown.is_cancelled() {
                break Ok(());
            }
            if committed.has_changed().unwrap_or(false) {
                stored |= store_committed(&consumer, &offsets, &committed.borrow_and_update());
            }
            if stored && last_commit.elapsed() >= commit_interval {
                commit(&consumer, CommitMode::Async, &log);
                stored = false;
                last_commit = Instant::now();
            }
            let wait = pending
                .since
                .map_or(POLL_IDLE, |since| {
                    batch_timeout.saturating_sub(since.elapsed())
                })
                .min(POLL_IDLE);
            match consumer.poll(wait) {
                None => {}
                Some(Ok(message)) => read(&decoder, &offsets, &mut pending, &message),
                Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                    break Err(anyhow::anyhow!(
                        "the Kafka consumer failed for good: {code}"
                    ));
                }
                Some(Err(error)) => log.error(&error, "consuming"),
            }
            revocations = drop_revoked(&offsets, &mut pending, revocations);
            let full = pending.events.len() >= limits.batch_max_events
                || pending.bytes >= limits.batch_max_bytes;
            let due = pending
                .since
                .is_some_and(|since| since.elapsed() >= batch_timeout);
            if full || due {
                let batch = std::mem::take(&mut pending);
                let sent = send(
                    batch,
                    &consumer,
                    &offsets,
                    &decoder,
                    &mut output,
                    &runtime,
                    &mut pending,
                );
                match sent {
                    Ok(()) => {}
                    Err(SendError::ShuttingDown) => break Ok(()),
                    Err(SendError::Closed) => {
                        break Err(anyhow::anyhow!("downstream components have stopped"));
                    }
                }
                revocations = drop_revoked(&offsets, &mut pending, revocations);
            }
        };
        // Wait for every batch sent to be finalized (the tracker closes the watch after
        // its last commit), then commit the group's offsets one last time.
        drop(output);
        while runtime.block_on(committed.changed()).is_ok() {
            store_committed(&consumer, &offsets, &committed.borrow_and_update());
        }
        store_committed(&consumer, &offsets, &committed.borrow_and_update());
        commit(&consumer, CommitMode::Sync, &log);
        result
    }
}

fn read(
    decoder: &Decoder,
    offsets: &Mutex<Offsets>,
    pending: &mut Pending,
    message: &BorrowedMessage<'_>,
) {
    let Some(generation) = lock(offsets).generation(message.topic(), message.partition()) else {
        return;
    };
    let event = decoder.decode(message);
    pending.push(
        event,
        message.topic(),
        message.partition(),
        generation,
        message.offset(),
    );
}

fn drop_revoked(offsets: &Mutex<Offsets>, pending: &mut Pending, seen: u64) -> u64 {
    let offsets = lock(offsets);
    if offsets.revocations() != seen {
        pending.retain_assigned(&offsets);
    }
    offsets.revocations()
}

/// Sends `batch`; while the pipeline holds it back, pauses the assigned partitions
/// and keeps serving the consumer (records already fetched go to `next`).
fn send(
    batch: Pending,
    consumer: &BaseConsumer<Hooks>,
    offsets: &Mutex<Offsets>,
    decoder: &Decoder,
    output: &mut SourceOutput,
    runtime: &Handle,
    next: &mut Pending,
) -> Result<(), SendError> {
    let mut cursor = CursorUpdate::default();
    for (topic, partition, generation, next_offset) in &batch.partitions {
        cursor = cursor.with(
            cursor_key(topic, *partition),
            Some(cursor_value(*next_offset, *generation)),
        );
    }
    let partitions = batch.partitions;
    let mut sending = Box::pin(output.send(batch.events, cursor));
    let mut paused: Option<TopicPartitionList> = None;
    let result = loop {
        match runtime.block_on(tokio::time::timeout(BACKPRESSURE_POLL, &mut sending)) {
            Ok(result) => break result,
            Err(_held_back) => {
                let assignment = consumer.assignment().unwrap_or_default();
                if paused.as_ref().map(TopicPartitionList::to_topic_map)
                    != Some(assignment.to_topic_map())
                {
                    if let Err(error) = consumer.pause(&assignment) {
                        tracing::debug!("cannot pause partitions: {error}");
                    }
                    paused = Some(assignment);
                }
                if let Some(Ok(message)) = consumer.poll(Duration::ZERO) {
                    read(decoder, offsets, next, &message);
                }
            }
        }
    };
    if paused.is_some()
        && let Ok(assignment) = consumer.assignment()
        && let Err(error) = consumer.resume(&assignment)
    {
        tracing::debug!("cannot resume partitions: {error}");
    }
    if result.is_ok() {
        let mut offsets = lock(offsets);
        for (topic, partition, generation, next_offset) in &partitions {
            offsets.sent(topic, *partition, *generation, *next_offset);
        }
    }
    result
}

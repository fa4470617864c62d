//! The `kafka` source: a consumer-group member that reads topics (names or `^regex`)
//! and commits the group's offsets only after ferry's sinks have finalized the
//! records up to them — never on read, as `enable.auto.commit` alone would. Several
//! ferry instances with the same `group_id` share the partitions; when one stops or
//! dies, the others take its partitions over from its last committed offsets.
//!
//! How the source learns what is delivered: every batch carries per-partition
//! cursors, the ack tracker commits them in order as usual and publishes each commit
//! (`SourceOutput::committed`); the source stores exactly those offsets into the
//! consumer and commits them to the group. The tracker stays the only judge of
//! "delivered", and the core API grows by one read-only watch rather than a
//! Kafka-specific hook. The group's committed offsets, not the redb copy, are where a
//! member resumes.
//!
//! - `config`: options and the librdkafka consumer settings
//! - `consumer`: the consumer thread, batching, backpressure, rebalance callbacks
//! - `offsets`: which offsets may be stored
//! - `decode`: a record as an event
//! - `lag`: how far the group is behind, for `ferry checkpoints list`

mod config;
mod consumer;
mod decode;
mod lag;
mod offsets;

use std::sync::{Arc, Mutex};

use anyhow::Context;
use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

pub use config::{KafkaDecoding, KafkaSourceConfig, OffsetReset};
pub use decode::DECODE_ERROR_FIELD;
pub use lag::group_lag;

use self::consumer::{Hooks, Reader};
use self::decode::Decoder;
use self::offsets::Offsets;
use super::{Source, SourceContext};
use crate::kafka::ClientLog;

pub struct KafkaSource {
    config: KafkaSourceConfig,
    consumer_config: ClientConfig,
}

impl KafkaSource {
    /// Checks the options and reads the secret files.
    pub fn new(config: KafkaSourceConfig) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let consumer_config = config.consumer_config().map_err(anyhow::Error::msg)?;
        Ok(KafkaSource {
            config,
            consumer_config,
        })
    }
}

impl TryFrom<Box<KafkaSourceConfig>> for KafkaSource {
    type Error = anyhow::Error;

    fn try_from(config: Box<KafkaSourceConfig>) -> anyhow::Result<Self> {
        KafkaSource::new(*config)
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        let KafkaSource {
            config,
            consumer_config,
        } = *self;
        let runtime = tokio::runtime::Handle::current();
        let committed = ctx.output.committed();
        // The consumer lives and dies on its own thread: its callbacks block.
        tokio::task::spawn_blocking(move || {
            let offsets = Arc::new(Mutex::new(Offsets::default()));
            let hooks = Hooks::new(
                Arc::clone(&ctx.id),
                Arc::clone(&offsets),
                committed.clone(),
                runtime.clone(),
                config.revoke_timeout,
            );
            let consumer: BaseConsumer<Hooks> = consumer_config
                .create_with_context(hooks)
                .map_err(|e| anyhow::anyhow!("cannot create the Kafka consumer: {e}"))?;
            let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&topics)
                .map_err(|e| anyhow::anyhow!("cannot subscribe to {topics:?}: {e}"))?;
            tracing::info!(source = %ctx.id, group = %config.group_id, ?topics, "joining the consumer group");
            Reader {
                consumer,
                offsets,
                committed,
                decoder: Decoder::new(
                    Arc::clone(&ctx.id),
                    config.decoding,
                    &config.metadata_field,
                ),
                output: ctx.output,
                limits: ctx.limits,
                batch_timeout: config.batch_timeout,
                commit_interval: config.commit_interval,
                runtime,
                shutdown: ctx.shutdown,
                log: ClientLog::new(format!("sources.{}", ctx.id)),
            }
            .run()
        })
        .await
        .context("the Kafka consumer thread crashed")?
    }
}

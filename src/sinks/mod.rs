//! Sinks: the `Sink` trait, what the runtime hands a sink, and the registry that maps
//! a config `type` to a sink.

pub mod console;
pub mod dead_letter;
pub mod encoding;
pub mod file;
pub mod kafka;
pub mod loki;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::telemetry::Health;
use crate::topology::BatchReceiver;

/// A consumer of batches. It delivers each batch durably, then settles the batch's
/// `Delivery`; it returns once its input is closed and drained.
#[async_trait]
pub trait Sink: Send {
    async fn run(self: Box<Self>, input: BatchReceiver, ctx: SinkContext) -> anyhow::Result<()>;
}

/// Everything the runtime gives a running sink.
pub struct SinkContext {
    pub id: Arc<str>,
    pub health: Arc<Health>,
}

impl SinkContext {
    /// `ferry_sink_events_total` of this sink: events durably delivered.
    pub fn events_out(&self) -> metrics::Counter {
        self.health.throughput.sink_events(&self.id)
    }
}

/// The `[sinks.ID]` table, by `type`.
#[derive(Debug)]
pub enum SinkConfig {
    Console(console::ConsoleSinkConfig),
    File(file::FileSinkConfig),
    Kafka(Box<kafka::KafkaSinkConfig>),
    Loki(Box<loki::LokiSinkConfig>),
}

impl SinkConfig {
    pub const TYPES: &[&str] = &["console", "file", "kafka", "loki"];

    /// Deserializes the options of sink type `type_name`; `None` if no such type.
    pub fn deserialize_type<'de, D: serde::Deserializer<'de>>(
        type_name: &str,
        options: D,
    ) -> Option<Result<Self, D::Error>> {
        Some(match type_name {
            "console" => console::ConsoleSinkConfig::deserialize(options).map(SinkConfig::Console),
            "file" => file::FileSinkConfig::deserialize(options).map(SinkConfig::File),
            "kafka" => {
                kafka::KafkaSinkConfig::deserialize(options).map(|c| SinkConfig::Kafka(Box::new(c)))
            }
            "loki" => {
                loki::LokiSinkConfig::deserialize(options).map(|c| SinkConfig::Loki(Box::new(c)))
            }
            _ => return None,
        })
    }

    /// Checks that need more than one option at a time.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            SinkConfig::Console(_) | SinkConfig::File(_) => Ok(()),
            SinkConfig::Kafka(c) => c.validate(),
            SinkConfig::Loki(c) => c.validate(),
        }
    }

    pub fn build(&self) -> anyhow::Result<Box<dyn Sink>> {
        Ok(match self {
            SinkConfig::Console(c) => Box::new(console::ConsoleSink::new(c.clone())),
            SinkConfig::File(c) => Box::new(file::FileSink::new(c.clone())),
            SinkConfig::Kafka(c) => Box::new(kafka::KafkaSink::new(c)?),
            SinkConfig::Loki(c) => Box::new(loki::LokiSink::new(c)?),
        })
    }
}

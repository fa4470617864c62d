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
use tokio_util::sync::CancellationToken;

use crate::telemetry::{Health, catalog};
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
    /// Fires when ferry stops. A sink that is making progress drains what it holds;
    /// one stuck in its retry backoff then gives its batches back unsettled (they are
    /// read again on the next start) and ends at once.
    pub stopping: CancellationToken,
    /// The sink is fed from a disk buffer: what it gives back stays there.
    pub disk_buffered: bool,
}

impl SinkContext {
    /// `ferry_component_sent_events_total` of this sink: events durably delivered.
    pub fn events_out(&self) -> metrics::Counter {
        self.health.throughput.sink_events(&self.id)
    }

    /// `ferry_component_errors_total` of this sink: failed delivery attempts.
    pub fn errors(&self) -> metrics::Counter {
        catalog::component_counter(catalog::ERRORS, "sink", &self.id)
    }

    /// `ferry_sink_request_duration_seconds` of this sink: one request (or write).
    pub fn request_duration(&self) -> metrics::Histogram {
        metrics::histogram!(catalog::REQUEST_DURATION, "sink" => self.id.to_string())
    }

    /// `ferry_sink_batch_events` of this sink: the events of one request (or write).
    pub fn batch_events(&self) -> metrics::Histogram {
        metrics::histogram!(catalog::BATCH_EVENTS, "sink" => self.id.to_string())
    }

    /// The one warning a sink logs when it stopped without delivering `events` it
    /// held (see [`SinkContext::stopping`]).
    pub fn report_given_back(&self, events: usize) {
        if events == 0 {
            return;
        }
        let from = match self.disk_buffered {
            true => "its disk buffer",
            false => "the sources' last checkpoints",
        };
        tracing::warn!(
            sink = %self.id,
            events,
            "stopped while sinks.{} cannot deliver: gave back {events} undelivered events; they are read again from {from} on the next start",
            self.id
        );
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

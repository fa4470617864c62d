//! Sources: the `Source` trait, what the runtime hands a source (`SourceContext`),
//! and the registry that maps a config `type` to a source.

pub mod dcos;
pub mod demo;
pub mod file;
pub mod ionet;
pub mod kafka;
pub mod merge;
pub mod stdin;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Acker, CursorUpdate, Cursors};
use crate::config::SourceCommon;
use crate::event::{Batch, Event, allocated_bytes};
use crate::http::stream::StreamOptions;
use crate::topology::{Chain, Fanout};

/// A producer of events. It resumes from `ctx.checkpoint`, sends batches tagged with
/// the cursor they reach, and returns when `ctx.shutdown` fires (or its input ends).
/// The runtime, not the source, commits cursors.
#[async_trait]
pub trait Source: Send {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()>;
}

/// Everything the runtime gives a running source.
pub struct SourceContext {
    pub id: Arc<str>,
    /// The cursors committed by the previous run (empty on a first start).
    pub checkpoint: Cursors,
    pub limits: SourceCommon,
    pub output: SourceOutput,
    pub shutdown: CancellationToken,
}

/// Why a send did not happen; either way the source should stop.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("shutting down")]
    ShuttingDown,
    #[error("downstream components have stopped")]
    Closed,
}

/// A source's output: runs the transforms fused after the source, waits for room in
/// the in-flight window, then fans the batch out.
pub struct SourceOutput {
    acker: Acker,
    chain: Chain,
    fanout: Fanout,
    shutdown: CancellationToken,
    events: metrics::Counter,
    bytes: metrics::Counter,
}

impl SourceOutput {
    pub fn new(
        id: &str,
        acker: Acker,
        chain: Chain,
        fanout: Fanout,
        shutdown: CancellationToken,
    ) -> Self {
        let label = ("source", id.to_string());
        SourceOutput {
            acker,
            chain,
            fanout,
            shutdown,
            events: metrics::counter!("ferry_source_events_total", std::slice::from_ref(&label)),
            bytes: metrics::counter!("ferry_source_bytes_total", &[label]),
        }
    }

    /// The cursors committed so far (see [`Acker::committed`]), for a source that must
    /// also record its positions elsewhere; it closes once the output is dropped and
    /// the last commit is made.
    pub fn committed(&self) -> tokio::sync::watch::Receiver<Cursors> {
        self.acker.committed()
    }

    /// Sends `events`; once they and every earlier batch are delivered, `cursor` is
    /// committed. Waits while the in-flight window is full (backpressure).
    pub async fn send(
        &mut self,
        mut events: Vec<Event>,
        cursor: CursorUpdate,
    ) -> Result<(), SendError> {
        if self.shutdown.is_cancelled() {
            return Err(SendError::ShuttingDown);
        }
        let (count, message_bytes) = (
            events.len() as u64,
            events.iter().map(|e| e.message.len() as u64).sum(),
        );
        self.chain.apply(&mut events);
        let held = if events.is_empty() {
            0
        } else {
            allocated_bytes(&events)
        };
        let delivery = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => return Err(SendError::ShuttingDown),
            delivery = self.acker.delivery_holding(cursor, held) => delivery,
        };
        self.events.increment(count);
        self.bytes.increment(message_bytes);
        if events.is_empty() {
            delivery.settle(crate::checkpoint::BatchStatus::Delivered);
            return Ok(());
        }
        self.fanout
            .send_sized(Batch { events, delivery }, held)
            .await
            .map_err(|_| SendError::Closed)
    }
}

/// The `[sources.ID]` table, by `type`.
#[derive(Debug)]
pub enum SourceConfig {
    Dcos(dcos::DcosConfig),
    Demo(demo::DemoConfig),
    File(file::FileSourceConfig),
    Ionet(ionet::IonetConfig),
    Kafka(Box<kafka::KafkaSourceConfig>),
    Stdin(stdin::StdinConfig),
}

impl SourceConfig {
    pub const TYPES: &[&str] = &["dcos", "demo", "file", "ionet", "kafka", "stdin"];

    /// The types that follow HTTP streams and take the shared [`StreamOptions`] keys.
    pub const STREAMING: &[&str] = &["dcos", "ionet"];

    /// Hands a streaming source the stream options the config layer read for it.
    pub fn set_stream_options(&mut self, stream: StreamOptions) {
        match self {
            SourceConfig::Dcos(c) => c.stream = stream,
            SourceConfig::Ionet(c) => c.stream = stream,
            SourceConfig::Demo(_)
            | SourceConfig::File(_)
            | SourceConfig::Kafka(_)
            | SourceConfig::Stdin(_) => {}
        }
    }

    /// Deserializes the options of source type `type_name`; `None` if no such type.
    pub fn deserialize_type<'de, D: serde::Deserializer<'de>>(
        type_name: &str,
        options: D,
    ) -> Option<Result<Self, D::Error>> {
        Some(match type_name {
            "dcos" => dcos::DcosConfig::deserialize(options).map(SourceConfig::Dcos),
            "demo" => demo::DemoConfig::deserialize(options).map(SourceConfig::Demo),
            "file" => file::FileSourceConfig::deserialize(options).map(SourceConfig::File),
            "ionet" => ionet::IonetConfig::deserialize(options).map(SourceConfig::Ionet),
            "kafka" => kafka::KafkaSourceConfig::deserialize(options)
                .map(|c| SourceConfig::Kafka(Box::new(c))),
            "stdin" => stdin::StdinConfig::deserialize(options).map(SourceConfig::Stdin),
            _ => return None,
        })
    }

    /// Checks that need more than one option at a time.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            SourceConfig::Dcos(c) => c.validate(),
            SourceConfig::File(c) => c.validate(),
            SourceConfig::Ionet(c) => c.validate(),
            SourceConfig::Kafka(c) => c.validate(),
            SourceConfig::Demo(_) | SourceConfig::Stdin(_) => Ok(()),
        }
    }

    pub fn build(&self) -> anyhow::Result<Box<dyn Source>> {
        Ok(match self {
            SourceConfig::Dcos(c) => Box::new(dcos::DcosSource::new(c.clone())?),
            SourceConfig::Demo(c) => Box::new(demo::DemoSource::new(c.clone())),
            SourceConfig::File(c) => Box::new(file::FileSource::new(c.clone())?),
            SourceConfig::Ionet(c) => Box::new(ionet::IonetSource::new(c.clone())?),
            SourceConfig::Kafka(c) => Box::new(kafka::KafkaSource::new((**c).clone())?),
            SourceConfig::Stdin(c) => Box::new(stdin::StdinSource::new(c.clone())),
        })
    }
}

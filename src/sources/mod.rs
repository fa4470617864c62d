//! Sources: the `Source` trait, what the runtime hands a source (`SourceContext`),
//! and the registry that maps a config `type` to a source.

pub mod bytenite;
mod common;
pub mod dcos;
pub mod demo;
pub mod digitalocean;
pub mod file;
pub mod ionet;
pub mod kafka;
pub mod provider;
pub mod scalingo;
pub mod stdin;

pub use common::SourceCommon;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Acker, CursorUpdate, Cursors};
use crate::event::{Batch, Event, allocated_bytes};
use crate::http::stream::StreamOptions;
use crate::telemetry::{Health, catalog};
use crate::topology::Route;

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
/// the in-flight window, then fans the batch out (both through the source's
/// [`Route`], which a reload may replace).
pub struct SourceOutput {
    acker: Acker,
    route: Arc<Route>,
    shutdown: CancellationToken,
    /// `ferry_component_received_events_total`: the events the source read.
    received: metrics::Counter,
    /// `ferry_component_sent_events_total`: the events it sent on (all it read).
    events: metrics::Counter,
    bytes: metrics::Counter,
    /// Nanoseconds spent waiting for room downstream (see [`Throughput`](crate::telemetry::Throughput)).
    waiting: Arc<AtomicU64>,
}

impl SourceOutput {
    pub fn new(
        id: &str,
        acker: Acker,
        route: Arc<Route>,
        shutdown: CancellationToken,
        health: &Health,
    ) -> Self {
        SourceOutput {
            acker,
            route,
            shutdown,
            received: catalog::component_counter(catalog::RECEIVED_EVENTS, "source", id),
            events: health.throughput.source_events(id),
            bytes: metrics::counter!("ferry_source_bytes_total", "source" => id.to_string()),
            waiting: health.throughput.source_waiting(id),
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
        self.received.increment(count);
        let fanout = self.route.apply(&mut events);
        let held = if events.is_empty() {
            0
        } else {
            allocated_bytes(&events)
        };
        let waiting_since = Instant::now();
        let delivery = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => return Err(SendError::ShuttingDown),
            delivery = self.acker.delivery_holding(cursor, held) => delivery,
        };
        self.events.increment(count);
        self.bytes.increment(message_bytes);
        let sent = if events.is_empty() {
            delivery.settle(crate::checkpoint::BatchStatus::Delivered);
            Ok(())
        } else {
            fanout
                .send_sized(Batch { events, delivery }, held)
                .await
                .map_err(|_| SendError::Closed)
        };
        let waited = u64::try_from(waiting_since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.waiting.fetch_add(waited, Ordering::Relaxed);
        sent
    }
}

/// A source type's option checks that need more than one option at a time.
pub trait SourceOptions {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Declares the source types, one line each:
/// `"type" => Variant(module::Config) -> module::Source`, with `[streaming]` after it
/// for the provider sources, whose config is a [`provider::Config`] (its `stream`
/// filled from the shared keys) and whose source a [`provider::ProviderSource`].
/// The config implements `Deserialize`, `Clone` and [`SourceOptions`]; the source
/// is built with `try_from(config)`.
macro_rules! source_types {
    ($($name:literal => $variant:ident($config:ty) -> $source:ty $([$streaming:ident])?),* $(,)?) => {
        /// The `[sources.ID]` table, by `type`.
        #[derive(Debug)]
        pub enum SourceConfig {
            $($variant($config)),*
        }

        impl SourceConfig {
            pub const TYPES: &[&str] = &[$($name),*];

            /// The config `type` of this source.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(SourceConfig::$variant(_) => $name,)*
                }
            }

            /// Whether source type `type_name` takes the shared [`StreamOptions`] keys.
            pub fn streams(type_name: &str) -> bool {
                match type_name {
                    $($name => source_types!(@streams $($streaming)?),)*
                    _ => false,
                }
            }

            /// Deserializes the options of source type `type_name`; `None` if no such type.
            pub fn deserialize_type<'de, D: serde::Deserializer<'de>>(
                type_name: &str,
                options: D,
            ) -> Option<Result<Self, D::Error>> {
                Some(match type_name {
                    $($name => <$config>::deserialize(options).map(SourceConfig::$variant),)*
                    _ => return None,
                })
            }

            /// Hands a streaming source the stream options the config layer read for it.
            pub fn set_stream_options(&mut self, stream: StreamOptions) {
                match self {
                    $(SourceConfig::$variant(c) => source_types!(@set c, stream $(, $streaming)?),)*
                }
            }

            /// Checks that need more than one option at a time.
            pub fn validate(&self) -> Result<(), String> {
                match self {
                    $(SourceConfig::$variant(c) => c.validate(),)*
                }
            }

            pub fn build(&self) -> anyhow::Result<Box<dyn Source>> {
                Ok(match self {
                    $(SourceConfig::$variant(c) => Box::new(<$source>::try_from(c.clone())?),)*
                })
            }
        }

        $(
            /// For config tests: the config of this type, or the source config of another.
            #[cfg(test)]
            impl TryFrom<SourceConfig> for $config {
                type Error = SourceConfig;

                fn try_from(config: SourceConfig) -> Result<Self, SourceConfig> {
                    match config {
                        SourceConfig::$variant(c) => Ok(c),
                        other => Err(other),
                    }
                }
            }
        )*
    };
    (@streams streaming) => { true };
    (@streams) => { false };
    (@set $config:ident, $stream:ident, streaming) => { $config.stream = $stream };
    (@set $config:ident, $stream:ident) => {{ let _ = ($config, $stream); }};
}

source_types! {
    "bytenite" => Bytenite(provider::Config<bytenite::ByteniteConfig>) -> provider::ProviderSource<bytenite::ByteniteConfig> [streaming],
    "dcos" => Dcos(provider::Config<dcos::DcosConfig>) -> provider::ProviderSource<dcos::DcosConfig> [streaming],
    "demo" => Demo(demo::DemoConfig) -> demo::DemoSource,
    "digitalocean" => DigitalOcean(provider::Config<digitalocean::DigitalOceanConfig>) -> provider::ProviderSource<digitalocean::DigitalOceanConfig> [streaming],
    "file" => File(file::FileSourceConfig) -> file::FileSource,
    "ionet" => Ionet(provider::Config<ionet::IonetConfig>) -> provider::ProviderSource<ionet::IonetConfig> [streaming],
    "kafka" => Kafka(Box<kafka::KafkaSourceConfig>) -> kafka::KafkaSource,
    "scalingo" => Scalingo(provider::Config<scalingo::ScalingoConfig>) -> provider::ProviderSource<scalingo::ScalingoConfig> [streaming],
    "stdin" => Stdin(stdin::StdinConfig) -> stdin::StdinSource,
}

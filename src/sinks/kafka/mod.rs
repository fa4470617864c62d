//! The `kafka` sink: events as Kafka records through librdkafka's idempotent producer,
//! acknowledged only on the broker's delivery report (`acks = "all"` by default).
//! Topic, key and headers are templates; the value is JSON, the message text, or the
//! whole event (`native`) for a ferry aggregator on the other side.
//!
//! - `config`: options, validation, the librdkafka producer settings
//! - `record`: an event as a record (topic, key, headers, value)
//! - `sink`: the run loop, delivery reports, retries, dead letters

mod config;
mod record;
mod sink;

pub use config::{Acks, KafkaCompression, KafkaEncoding, KafkaSinkConfig};
pub use sink::KafkaSink;

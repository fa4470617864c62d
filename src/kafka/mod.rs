//! What the `kafka` sink and the `kafka` source share: the client options (brokers,
//! SASL, TLS, librdkafka passthrough) and how they become a librdkafka config, the
//! `native` encoding that carries a whole event from one ferry to another, and the
//! client context that logs librdkafka's errors without flooding.

mod client;
pub mod native;

pub use client::{ClientLog, KafkaClientOptions, Sasl, SaslMechanism, TlsOptions};

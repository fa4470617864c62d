//! What the `kafka` sink and the `kafka` source share: the client options (brokers,
//! SASL, TLS, librdkafka passthrough) and how they become a librdkafka config, and
//! the client context that logs librdkafka's errors without flooding. (The `native`
//! encoding that carries a whole event from one ferry to another is
//! [`crate::event::native`], shared with the disk buffer.)

mod client;

pub use client::{ClientLog, KafkaClientOptions, Sasl, SaslMechanism, TlsOptions};

/// Kafka components read from a whole config, as `ferry validate` would.
#[cfg(test)]
pub(crate) mod test_config {
    use std::path::Path;

    use crate::sinks::SinkConfig;
    use crate::sources::SourceConfig;

    /// The `kafka` sink `k` (fed by a demo source) with `options`.
    pub fn sink(options: &str) -> Result<crate::sinks::kafka::KafkaSinkConfig, String> {
        let text = format!(
            "[sources.d]\ntype = \"demo\"\n[sinks.k]\ntype = \"kafka\"\ninputs = [\"d\"]\n{options}\n"
        );
        let mut config = crate::topology::config::parse(&text, Path::new("ferry.toml"), |_| None)
            .map_err(|e| e.to_string())?;
        match config.sinks.remove("k").map(|s| s.config) {
            Some(SinkConfig::Kafka(kafka)) => Ok(*kafka),
            other => Err(format!("not a kafka sink: {other:?}")),
        }
    }

    /// The `kafka` source `k` (feeding a console sink) with `options`.
    pub fn source(options: &str) -> Result<crate::sources::kafka::KafkaSourceConfig, String> {
        let text = format!(
            "[sources.k]\ntype = \"kafka\"\n{options}\n[sinks.out]\ntype = \"console\"\ninputs = [\"k\"]\n"
        );
        let mut config = crate::topology::config::parse(&text, Path::new("ferry.toml"), |_| None)
            .map_err(|e| e.to_string())?;
        match config.sources.remove("k").map(|s| s.config) {
            Some(SourceConfig::Kafka(kafka)) => Ok(*kafka),
            other => Err(format!("not a kafka source: {other:?}")),
        }
    }
}

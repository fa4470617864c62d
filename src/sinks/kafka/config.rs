//! The `kafka` sink's options, their defaults, the checks that refuse a broken config
//! before anything starts, and the librdkafka producer settings they become.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::kafka::KafkaClientOptions;
use crate::sinks::dead_letter::DeadLetter;
use crate::template::Template;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    #[serde(flatten)]
    pub client: KafkaClientOptions,
    /// Topic template, e.g. `logs-{{ provider }}`.
    pub topic: Template,
    /// Message key template; none by default (records spread over partitions).
    #[serde(default)]
    pub key: Option<Template>,
    #[serde(default)]
    pub encoding: KafkaEncoding,
    /// Record headers: header name → template; a value that renders empty is left out.
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    #[serde(default)]
    pub compression: KafkaCompression,
    /// Broker acknowledgement required: `all` (every in-sync replica) or `leader`.
    #[serde(default)]
    pub acks: Acks,
    /// Idempotent producer: no duplicates or reordering from librdkafka's own retries.
    #[serde(default = "default_true")]
    pub idempotence: bool,
    /// Most records in one produce request (`batch.num.messages`).
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// Most bytes in one produce request (`batch.size`).
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// How long a record waits for its produce request to fill up (`linger.ms`).
    #[serde(default = "default_batch_timeout", with = "humantime_serde")]
    pub batch_timeout: Duration,
    /// Memory budget of librdkafka's send queue (`queue.buffering.max.kbytes`).
    #[serde(default = "default_queue_max_bytes")]
    pub queue_max_bytes: usize,
    /// How long librdkafka tries to deliver a record (`message.timeout.ms`); after
    /// that ferry retries it itself, with backoff, without limit.
    #[serde(default = "default_message_timeout", with = "humantime_serde")]
    pub message_timeout: Duration,
    /// Input batches being delivered at once.
    #[serde(default = "default_max_in_flight_batches")]
    pub max_in_flight_batches: usize,
    /// First wait before ferry retries records that failed; doubles (with jitter) up
    /// to `retry_max_backoff`.
    #[serde(default = "default_retry_initial_backoff", with = "humantime_serde")]
    pub retry_initial_backoff: Duration,
    #[serde(default = "default_retry_max_backoff", with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// Where records the broker refuses for good (too large, invalid) go.
    #[serde(default)]
    pub dead_letter: Option<DeadLetter>,
}

fn default_true() -> bool {
    true
}

fn default_batch_max_events() -> usize {
    10_000
}

fn default_batch_max_bytes() -> usize {
    1_000_000
}

fn default_batch_timeout() -> Duration {
    Duration::from_millis(5)
}

fn default_queue_max_bytes() -> usize {
    32 << 20
}

fn default_message_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_max_in_flight_batches() -> usize {
    16
}

fn default_retry_initial_backoff() -> Duration {
    Duration::from_millis(500)
}

fn default_retry_max_backoff() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaEncoding {
    /// The event as a JSON object, as the file sink writes it.
    #[default]
    Json,
    /// The message alone.
    Text,
    /// The whole event, for a ferry aggregator (see `crate::event::native`).
    Native,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaCompression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl KafkaCompression {
    fn as_str(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

/// `acks = 0` is not offered: ferry acknowledges a batch on the broker's word only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acks {
    #[default]
    All,
    Leader,
}

/// librdkafka properties the sink derives from its options (librdkafka key, option).
const MANAGED: &[(&str, &str)] = &[
    ("acks", "acks"),
    ("request.required.acks", "acks"),
    ("enable.idempotence", "idempotence"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("batch.num.messages", "batch_max_events"),
    ("batch.size", "batch_max_bytes"),
    ("linger.ms", "batch_timeout"),
    ("queue.buffering.max.ms", "batch_timeout"),
    ("queue.buffering.max.kbytes", "queue_max_bytes"),
    ("message.timeout.ms", "message_timeout"),
    ("delivery.timeout.ms", "message_timeout"),
    (
        "delivery.report.only.error",
        "(always off: every record is acknowledged)",
    ),
    ("transactional.id", "(not supported)"),
];

impl KafkaSinkConfig {
    /// The producer's librdkafka config (reads the secret files).
    pub fn producer_config(&self) -> Result<ClientConfig, String> {
        let settings = [
            (
                "acks",
                match self.acks {
                    Acks::All => "all",
                    Acks::Leader => "1",
                }
                .to_string(),
            ),
            ("enable.idempotence", self.idempotence.to_string()),
            ("compression.type", self.compression.as_str().to_string()),
            ("batch.num.messages", self.batch_max_events.to_string()),
            ("batch.size", self.batch_max_bytes.to_string()),
            ("linger.ms", self.batch_timeout.as_millis().to_string()),
            (
                "queue.buffering.max.kbytes",
                (self.queue_max_bytes / 1024).max(1).to_string(),
            ),
            (
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            ),
        ];
        self.client.client_config(&settings, MANAGED)
    }

    /// Checks that need more than one option at a time, or the file system.
    pub fn validate(&self) -> Result<(), String> {
        if self.idempotence && self.acks != Acks::All {
            return Err("`idempotence = true` needs `acks = \"all\"`".into());
        }
        for (what, value) in [
            ("batch_max_events", self.batch_max_events),
            ("batch_max_bytes", self.batch_max_bytes),
            ("max_in_flight_batches", self.max_in_flight_batches),
        ] {
            if value == 0 {
                return Err(format!("`{what}` must be at least 1"));
            }
        }
        if self.retry_initial_backoff > self.retry_max_backoff {
            return Err("`retry_initial_backoff` is longer than `retry_max_backoff`".into());
        }
        if self.message_timeout.is_zero() {
            return Err("`message_timeout` must be longer than 0".into());
        }
        for name in self.headers.keys() {
            if name.is_empty() {
                return Err("`headers`: a header name is empty".into());
            }
        }
        if let Some(dead_letter) = &self.dead_letter {
            dead_letter.validate()?;
        }
        self.producer_config().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::test_config::sink;

    #[test]
    fn defaults_ack_on_all_replicas_with_idempotence() {
        let config =
            sink("bootstrap_servers = \"b:9092\"\ntopic = \"logs-{{ provider }}\"").unwrap();
        assert_eq!(config.encoding, KafkaEncoding::Json);
        assert!(config.key.is_none());
        let producer = config.producer_config().unwrap();
        assert_eq!(producer.get("acks"), Some("all"));
        assert_eq!(producer.get("enable.idempotence"), Some("true"));
        assert_eq!(producer.get("compression.type"), Some("none"));
        assert_eq!(producer.get("linger.ms"), Some("5"));
        assert_eq!(producer.get("queue.buffering.max.kbytes"), Some("32768"));
    }

    #[test]
    fn options_map_to_librdkafka_and_a_dead_letter_sink_is_accepted() {
        let config = sink(
            r#"bootstrap_servers = "b1:9092,b2:9092"
topic = "logs"
key = "{{ host }}"
encoding = "native"
compression = "zstd"
batch_timeout = "20ms"
headers = { app = "{{ app }}" }
librdkafka_options = { "client.id" = "agent-1" }
dead_letter = { type = "file", path = "/tmp/kafka-rejected.log" }"#,
        )
        .unwrap();
        let producer = config.producer_config().unwrap();
        assert_eq!(producer.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
        assert_eq!(producer.get("compression.type"), Some("zstd"));
        assert_eq!(producer.get("linger.ms"), Some("20"));
        assert_eq!(producer.get("client.id"), Some("agent-1"));
        assert_eq!(config.encoding, KafkaEncoding::Native);
        assert!(config.dead_letter.is_some());
    }

    #[test]
    fn broken_options_are_refused_with_a_reason() {
        let error = sink("topic = \"logs\"").unwrap_err();
        assert!(error.contains("bootstrap_servers"), "{error}");
        let error = sink("bootstrap_servers = \"b:9092\"\ntopic = \"l\"\ncompression = \"brotli\"")
            .unwrap_err();
        assert!(error.contains("brotli"), "{error}");
        let error =
            sink("bootstrap_servers = \"b:9092\"\ntopic = \"l\"\nacks = \"leader\"").unwrap_err();
        assert!(error.contains("idempotence"), "{error}");
        let error = sink(
            "bootstrap_servers = \"b:9092\"\ntopic = \"l\"\nlibrdkafka_options = { acks = \"0\" }",
        )
        .unwrap_err();
        assert!(error.contains("use `acks`"), "{error}");
        let error =
            sink("bootstrap_servers = \"b:9092\"\ntopic = \"l\"\ntopics = [\"x\"]").unwrap_err();
        assert!(error.contains("topics"), "{error}");
    }
}

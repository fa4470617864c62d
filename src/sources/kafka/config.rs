//! The `kafka` source's options, their defaults, and the librdkafka consumer settings
//! they become. The settings that keep the delivery guarantee (no automatic offset
//! store, ferry's own commits) are fixed and cannot be overridden.

use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::config::defaults::{millis, secs};
use crate::kafka::KafkaClientOptions;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    #[serde(flatten)]
    pub client: KafkaClientOptions,
    /// The consumer group: ferry instances with the same `group_id` share the
    /// partitions of the topics between them.
    pub group_id: String,
    /// Topic names, or regular expressions starting with `^` (`^logs-.*`).
    pub topics: Vec<String>,
    #[serde(default)]
    pub decoding: KafkaDecoding,
    /// Where a partition with no committed offset for the group starts.
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// How often offsets of delivered records are committed to the group.
    #[serde(default = "secs::<5>", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long a partition being taken away (rebalance) waits for its records in
    /// flight to be delivered, so their offsets are committed before another member
    /// takes over; what is still undelivered then is read again by that member.
    #[serde(default = "secs::<10>", with = "humantime_serde")]
    pub revoke_timeout: Duration,
    /// A member silent this long is dropped from the group and its partitions given
    /// to the others (`session.timeout.ms`).
    #[serde(default = "secs::<45>", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Longest a record waits for its batch to fill up.
    #[serde(default = "millis::<100>", with = "humantime_serde")]
    pub batch_timeout: Duration,
    /// Memory budget of records fetched ahead (`queued.max.messages.kbytes`, and the
    /// most one fetch response may carry, `fetch.max.bytes`).
    #[serde(default = "default_fetch_buffer_bytes")]
    pub fetch_buffer_bytes: usize,
    /// The event field that holds the record's topic, partition, offset, key and
    /// headers; `""` leaves them out.
    #[serde(default = "default_metadata_field")]
    pub metadata_field: String,
    /// How often consumer lag is measured (librdkafka statistics); `0s` turns the
    /// `ferry_kafka_consumer_lag` metric off.
    #[serde(default = "secs::<10>", with = "humantime_serde")]
    pub lag_interval: Duration,
}

fn default_fetch_buffer_bytes() -> usize {
    16 << 20
}

fn default_metadata_field() -> String {
    "kafka".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaDecoding {
    /// A JSON object: `message`, `timestamp`, `level`, `stream` and the origin names
    /// fill the event's own parts, `fields` and every other key become fields.
    #[default]
    Json,
    /// The value as the message.
    Text,
    /// A whole event written by a ferry `kafka` sink with `encoding = "native"`.
    Native,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    /// From the oldest record still kept: a new group misses nothing.
    #[default]
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// librdkafka properties the source sets itself (librdkafka key, option).
const MANAGED: &[(&str, &str)] = &[
    ("group.id", "group_id"),
    ("auto.offset.reset", "auto_offset_reset"),
    ("enable.auto.commit", "commit_interval"),
    ("auto.commit.interval.ms", "commit_interval"),
    (
        "enable.auto.offset.store",
        "(always off: offsets are stored after delivery)",
    ),
    ("session.timeout.ms", "session_timeout"),
    ("queued.max.messages.kbytes", "fetch_buffer_bytes"),
    ("fetch.max.bytes", "fetch_buffer_bytes"),
    ("statistics.interval.ms", "lag_interval"),
    ("enable.partition.eof", "(always off)"),
];

impl KafkaSourceConfig {
    /// The consumer's librdkafka config (reads the secret files).
    pub fn consumer_config(&self) -> Result<ClientConfig, String> {
        let settings = [
            ("group.id", self.group_id.clone()),
            (
                "auto.offset.reset",
                match self.auto_offset_reset {
                    OffsetReset::Earliest => "earliest",
                    OffsetReset::Latest => "latest",
                }
                .to_string(),
            ),
            ("enable.auto.commit", "false".to_string()),
            ("enable.auto.offset.store", "false".to_string()),
            ("enable.partition.eof", "false".to_string()),
            (
                "session.timeout.ms",
                self.session_timeout.as_millis().to_string(),
            ),
            (
                "queued.max.messages.kbytes",
                (self.fetch_buffer_bytes / 1024).max(1).to_string(),
            ),
            // One fetch response stays within the budget too (at least one partition's
            // worth, `fetch.message.max.bytes`, as librdkafka requires).
            (
                "fetch.max.bytes",
                self.fetch_buffer_bytes.max(1 << 20).to_string(),
            ),
            (
                "statistics.interval.ms",
                self.lag_interval.as_millis().to_string(),
            ),
            // A default `librdkafka_options` may change: when a partition's fetched
            // records fill the budget, librdkafka waits this long before fetching it
            // again (1 s by default), and a consumer faster than one fetch a second
            // idles; 10 ms took the source from 142 k to 333 k events/s.
            ("fetch.queue.backoff.ms", "10".to_string()),
        ];
        self.client.client_config(&settings, MANAGED)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.group_id.trim().is_empty() {
            return Err("`group_id` is empty".into());
        }
        if self.topics.is_empty() {
            return Err("`topics` is empty; name at least one topic or `^regex`".into());
        }
        for topic in &self.topics {
            if topic.is_empty() {
                return Err("`topics`: a topic name is empty".into());
            }
            if topic.starts_with('^') {
                regex::Regex::new(topic)
                    .map_err(|e| format!("`topics`: `{topic}` is not a valid regex: {e}"))?;
            }
        }
        if self.commit_interval.is_zero() {
            return Err("`commit_interval` must be longer than 0".into());
        }
        self.consumer_config().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::test_config::source;

    #[test]
    fn defaults_start_at_the_earliest_record_and_never_store_offsets_on_read() {
        let config = source(
            "bootstrap_servers = \"b:9092\"\ngroup_id = \"aggregators\"\ntopics = [\"logs\", \"^app-.*\"]\nbatch_max_events = 500",
        )
        .unwrap();
        assert_eq!(config.decoding, KafkaDecoding::Json);
        assert_eq!(config.metadata_field, "kafka");
        let consumer = config.consumer_config().unwrap();
        assert_eq!(consumer.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(consumer.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
        assert_eq!(consumer.get("group.id"), Some("aggregators"));
        assert_eq!(consumer.get("fetch.queue.backoff.ms"), Some("10"));
        let tuned = source(
            "bootstrap_servers = \"b:9092\"\ngroup_id = \"g\"\ntopics = [\"logs\"]\nlibrdkafka_options = { \"fetch.queue.backoff.ms\" = \"100\" }",
        )
        .unwrap();
        let consumer = tuned.consumer_config().unwrap();
        assert_eq!(consumer.get("fetch.queue.backoff.ms"), Some("100"));
    }

    #[test]
    fn broken_options_are_refused_with_a_reason() {
        let error = source("bootstrap_servers = \"b:9092\"\ntopics = [\"logs\"]").unwrap_err();
        assert!(error.contains("group_id"), "{error}");
        let error =
            source("bootstrap_servers = \"b:9092\"\ngroup_id = \"g\"\ntopics = []").unwrap_err();
        assert!(error.contains("topics"), "{error}");
        let error = source("bootstrap_servers = \"b:9092\"\ngroup_id = \"g\"\ntopics = [\"^(\"]")
            .unwrap_err();
        assert!(error.contains("regex"), "{error}");
        let error = source(
            "bootstrap_servers = \"b:9092\"\ngroup_id = \"g\"\ntopics = [\"t\"]\nlibrdkafka_options = { \"enable.auto.offset.store\" = \"true\" }",
        )
        .unwrap_err();
        assert!(error.contains("set by ferry"), "{error}");
        let error = source(
            "bootstrap_servers = \"b:9092\"\ngroup_id = \"g\"\ntopics = [\"t\"]\ndecoding = \"avro\"",
        )
        .unwrap_err();
        assert!(error.contains("avro"), "{error}");
    }
}

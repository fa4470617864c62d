//! How far a source's consumer group is behind, for `ferry checkpoints list`: per
//! partition, the records between the group's committed offset (where a member
//! resumes) and the partition's end, asked of the brokers at the time of the call.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaSourceConfig;
use super::offsets::cursor_key;

/// The records the group has not committed yet, by cursor key (`TOPIC:PARTITION`),
/// for the partitions among `streams`. The consumer made for the question joins no
/// group, so it takes no partition from the running members.
pub fn group_lag(
    config: &KafkaSourceConfig,
    streams: &[&str],
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut partitions = TopicPartitionList::new();
    for (topic, partition) in streams.iter().filter_map(|stream| partition_of(stream)) {
        partitions.add_partition(topic, partition);
    }
    if partitions.count() == 0 {
        return Ok(BTreeMap::new());
    }
    let consumer: BaseConsumer = config
        .consumer_config()
        .map_err(anyhow::Error::msg)?
        .create()
        .context("cannot create a Kafka consumer")?;
    let committed = consumer
        .committed_offsets(partitions, timeout)
        .context("cannot read the group's committed offsets")?;
    let mut lag = BTreeMap::new();
    for element in committed.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .with_context(|| format!("cannot read the end of {topic}:{partition}"))?;
        let from = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => low,
        };
        lag.insert(
            cursor_key(topic, partition),
            u64::try_from(high - from).unwrap_or(0),
        );
    }
    Ok(lag)
}

/// The topic and partition of a cursor key (`TOPIC:PARTITION`; topics hold no `:`).
fn partition_of(stream: &str) -> Option<(&str, i32)> {
    let (topic, partition) = stream.rsplit_once(':')?;
    Some((topic, partition.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_keys_name_their_partition() {
        assert_eq!(
            partition_of(&cursor_key("logs.app", 3)),
            Some(("logs.app", 3))
        );
        assert_eq!(partition_of("2049:12x"), None);
        assert_eq!(partition_of("sequence"), None);
    }
}

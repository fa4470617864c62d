//! Which offsets the consumer may store for its group: only those the ack tracker
//! has committed, i.e. whose records every sink has finalized.
//!
//! Each batch carries, per partition it read from, the cursor
//! `"TOPIC:PARTITION" → {"offset": next offset, "generation": G}`. The tracker
//! commits cursors in batch order and publishes them (`SourceOutput::committed`);
//! this bookkeeping turns the published cursors into offsets to store. The
//! generation counts the partition's assignments in this process: a batch read
//! before the partition was taken away and given back must not move the group's
//! offset back to where this member left it, since another member may have moved
//! it on meanwhile; its cursor is ignored. (The redb copy of these cursors is only
//! informative — `ferry checkpoints list` shows it; the group's committed offsets are
//! where a restarted or another member resumes.)

use std::collections::HashMap;

use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use crate::checkpoint::Cursors;

#[derive(Debug, Default)]
pub struct Offsets {
    next_generation: u64,
    partitions: HashMap<(String, i32), Partition>,
    /// Cursor values already turned into stored offsets.
    seen: HashMap<String, Value>,
    /// Bumped at every revocation, so the reader drops records of revoked partitions
    /// from the batch it is filling.
    revocations: u64,
}

#[derive(Debug, Clone, Copy)]
struct Partition {
    generation: u64,
    /// The offset after the last record handed to the pipeline.
    sent: Option<i64>,
    /// The offset after the last record delivered and stored for the group.
    stored: Option<i64>,
}

/// The cursor key of a partition (topic names cannot contain `:`).
pub fn cursor_key(topic: &str, partition: i32) -> String {
    format!("{topic}:{partition}")
}

pub fn cursor_value(next_offset: i64, generation: u64) -> Value {
    json!({ "offset": next_offset, "generation": generation })
}

impl Offsets {
    pub fn assign(&mut self, partitions: &TopicPartitionList) {
        for element in partitions.elements() {
            self.next_generation += 1;
            self.partitions.insert(
                (element.topic().to_string(), element.partition()),
                Partition {
                    generation: self.next_generation,
                    sent: None,
                    stored: None,
                },
            );
        }
    }

    pub fn revoke(&mut self, partitions: &TopicPartitionList) {
        for element in partitions.elements() {
            self.partitions
                .remove(&(element.topic().to_string(), element.partition()));
        }
        self.revocations += 1;
    }

    pub fn revocations(&self) -> u64 {
        self.revocations
    }

    /// The generation of an assigned partition; `None` when it is not assigned.
    pub fn generation(&self, topic: &str, partition: i32) -> Option<u64> {
        self.partitions
            .get(&(topic.to_string(), partition))
            .map(|p| p.generation)
    }

    /// Records that the pipeline has the partition's records up to `next_offset`.
    pub fn sent(&mut self, topic: &str, partition: i32, generation: u64, next_offset: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_string(), partition))
            && p.generation == generation
        {
            p.sent = p.sent.max(Some(next_offset));
        }
    }

    /// The offsets newly committed by the tracker for partitions still assigned in
    /// the same generation; they are marked stored.
    pub fn newly_committed(&mut self, committed: &Cursors) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (key, value) in committed {
            if self.seen.get(key) == Some(value) {
                continue;
            }
            self.seen.insert(key.clone(), value.clone());
            let Some((topic, partition)) = key
                .rsplit_once(':')
                .and_then(|(t, p)| Some((t, p.parse::<i32>().ok()?)))
            else {
                continue;
            };
            let (Some(offset), Some(generation)) =
                (value["offset"].as_i64(), value["generation"].as_u64())
            else {
                continue;
            };
            let Some(p) = self.partitions.get_mut(&(topic.to_string(), partition)) else {
                continue;
            };
            if p.generation != generation || p.stored >= Some(offset) {
                continue;
            }
            p.stored = Some(offset);
            // Only fails for an offset that cannot be represented; there is none here.
            let _ = list.add_partition_offset(topic, partition, Offset::Offset(offset));
        }
        list
    }

    /// True when every record sent from `partitions` has been stored.
    pub fn settled(&self, partitions: &TopicPartitionList) -> bool {
        partitions.elements().iter().all(|element| {
            self.partitions
                .get(&(element.topic().to_string(), element.partition()))
                .is_none_or(|p| p.stored >= p.sent)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(partitions: &[(&str, i32)]) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition(topic, *partition);
        }
        list
    }

    fn committed(entries: &[(&str, i32, i64, u64)]) -> Cursors {
        entries
            .iter()
            .map(|(t, p, o, g)| (cursor_key(t, *p), cursor_value(*o, *g)))
            .collect()
    }

    #[test]
    fn only_newly_committed_offsets_of_the_current_assignment_are_stored() {
        let mut offsets = Offsets::default();
        offsets.assign(&list(&[("logs", 0), ("logs", 1)]));
        let g0 = offsets.generation("logs", 0).unwrap();
        let g1 = offsets.generation("logs", 1).unwrap();
        offsets.sent("logs", 0, g0, 10);
        offsets.sent("logs", 1, g1, 5);
        assert!(!offsets.settled(&list(&[("logs", 0)])));
        let store = offsets.newly_committed(&committed(&[("logs", 0, 10, g0)]));
        assert_eq!(store.count(), 1);
        assert!(offsets.settled(&list(&[("logs", 0)])));
        assert!(!offsets.settled(&list(&[("logs", 0), ("logs", 1)])));
        assert_eq!(
            offsets
                .newly_committed(&committed(&[("logs", 0, 10, g0)]))
                .count(),
            0,
            "already stored"
        );

        offsets.revoke(&list(&[("logs", 1)]));
        assert_eq!(offsets.revocations(), 1);
        offsets.assign(&list(&[("logs", 1)]));
        let stale = committed(&[("logs", 0, 10, g0), ("logs", 1, 5, g1)]);
        assert_eq!(
            offsets.newly_committed(&stale).count(),
            0,
            "a batch from before the partition came back must not move its offset"
        );
        assert!(offsets.settled(&list(&[("logs", 1)])), "nothing sent since");
    }
}

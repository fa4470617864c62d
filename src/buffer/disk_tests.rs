//! Recovery and replay of damaged buffers: segment files truncated at random offsets
//! and hit by random bit flips (a property test), opened and replayed to the end. No
//! panic, every intact record delivered once and in order, every damaged one
//! counted.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::buffer::record;
use crate::buffer::{BufferKind, MIN_MAX_BYTES};
use crate::checkpoint::{BatchStatus, Delivery};
use crate::event::{Batch, Event};
use crate::topology::batch_channel;

/// Where one record of a test buffer sits.
#[derive(Clone, Copy, Debug)]
struct Placed {
    segment: usize,
    offset: u64,
    len: u64,
    seq: u64,
}

/// Writes `sizes.len()` records (record `i` holds `sizes[i]` events), `per_segment`
/// to a segment file, and a ledger that has released nothing.
fn write_buffer(dir: &Path, sizes: &[usize], per_segment: usize) -> Vec<Placed> {
    let mut placed = Vec::new();
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let seq = i as u64 + 1;
        if i % per_segment == 0 {
            segments.push(Vec::new());
        }
        let bytes = segments.last_mut().expect("pushed above");
        let offset = bytes.len() as u64;
        let events: Vec<Event> = (0..*size)
            .map(|n| Event::new("s".into(), "file".into(), format!("{seq} {n}"), 0))
            .collect();
        let header = record::encode(bytes, seq, now_nanos(), &events);
        placed.push(Placed {
            segment: segments.len() - 1,
            offset,
            len: header.record_len(),
            seq,
        });
    }
    for (index, bytes) in segments.iter().enumerate() {
        std::fs::write(segment::path(dir, index as u64 + 1), bytes).unwrap();
    }
    Ledger::open(dir).unwrap().release(0, true).unwrap();
    placed
}

/// A buffer opened in `dir` and started: its state, the sender feeding it, the
/// sink's receiver, and its tasks and release tracker.
struct Started {
    shared: Arc<Shared>,
    sender: crate::topology::BatchSender,
    sink: crate::topology::BatchReceiver,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
    tracker: TrackerHandle,
}

impl Started {
    /// Must run inside a tokio runtime (the tasks are spawned on it).
    fn new(dir: &Path, config: &BufferConfig) -> Started {
        Started::reporting_to(dir, config, Arc::new(Health::default()))
    }

    fn reporting_to(dir: &Path, config: &BufferConfig, health: Arc<Health>) -> Started {
        let buffer = DiskBuffer::open(dir, "t", config).unwrap();
        let shared = Arc::clone(&buffer.shared);
        let (sender, input) = batch_channel(64 << 20);
        let attached = buffer.start(input, health, CancellationToken::new());
        Started {
            shared,
            sender,
            sink: attached.input,
            tasks: attached
                .tasks
                .into_iter()
                .map(|(_, task)| tokio::spawn(task))
                .collect(),
            tracker: attached.tracker,
        }
    }
}

/// Waits for a started buffer's tasks and tracker (after its sink saw the end).
async fn finish(tasks: Vec<tokio::task::JoinHandle<Result<()>>>, tracker: TrackerHandle) {
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    tracker.await.unwrap();
}

/// A disk buffer with the default options.
fn disk_config() -> BufferConfig {
    BufferConfig {
        kind: BufferKind::Disk,
        ..BufferConfig::default()
    }
}

/// Opens the buffer in `dir` and replays it to the end: the record numbers the sink
/// got (read back from the events) and the damaged records counted.
fn replay(dir: &Path) -> (Vec<u64>, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = disk_config();
        let Started {
            shared,
            sender,
            mut sink,
            tasks,
            tracker,
        } = Started::new(dir, &config);
        drop(sender);
        let mut seqs = Vec::new();
        while let Some(batch) = sink.recv().await {
            let seq = batch.events[0]
                .message
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                batch
                    .events
                    .iter()
                    .enumerate()
                    .all(|(n, e)| e.message == format!("{seq} {n}")),
                "record {seq} came back changed"
            );
            seqs.push(seq);
            batch.delivery.settle(BatchStatus::Delivered);
        }
        finish(tasks, tracker).await;
        let corrupt = shared.state().corrupt_records;
        (seqs, corrupt)
    })
}

/// `base` cases times `FERRY_TEST_SCALE`.
fn scaled_cases(base: u32) -> u32 {
    let scale: f64 = std::env::var("FERRY_TEST_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    (f64::from(base) * scale).max(1.0) as u32
}

#[derive(Debug, Clone)]
enum Damage {
    /// Segment `segment` (modulo their count) cut at this share of its length.
    Truncate { segment: usize, at: f64 },
    /// Bits flipped at these shares of all the bytes written.
    Flips(Vec<(f64, u8)>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0usize..8, 0.0f64..1.0).prop_map(|(segment, at)| Damage::Truncate { segment, at }),
        prop::collection::vec((0.0f64..1.0, 0u8..8), 1..5).prop_map(Damage::Flips),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: scaled_cases(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn damage_is_cut_or_skipped_and_counted_and_every_intact_record_replayed(
        sizes in prop::collection::vec(1usize..6, 1..40),
        per_segment in 1usize..12,
        damage in damage(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let placed = write_buffer(dir.path(), &sizes, per_segment);
        let segments = placed.last().unwrap().segment + 1;
        // Which records the damage reached.
        let mut damaged = vec![false; placed.len()];
        match &damage {
            Damage::Truncate { segment, at } => {
                let segment = segment % segments;
                let path = segment::path(dir.path(), segment as u64 + 1);
                let len = std::fs::metadata(&path).unwrap().len();
                let cut = (len as f64 * at) as u64;
                std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
                for (i, p) in placed.iter().enumerate() {
                    damaged[i] = p.segment == segment && p.offset + p.len > cut;
                }
            }
            Damage::Flips(flips) => {
                let mut files: Vec<Vec<u8>> = (0..segments)
                    .map(|s| std::fs::read(segment::path(dir.path(), s as u64 + 1)).unwrap())
                    .collect();
                let total: u64 = placed.iter().map(|p| p.len).sum();
                for (share, bit) in flips {
                    let mut at = (total as f64 * share) as u64;
                    let p = placed.iter().position(|p| {
                        let inside = at < p.len;
                        if !inside { at -= p.len; }
                        inside
                    }).unwrap();
                    files[placed[p].segment][(placed[p].offset + at) as usize] ^= 1 << bit;
                    damaged[p] = true;
                }
                for (s, bytes) in files.iter().enumerate() {
                    std::fs::write(segment::path(dir.path(), s as u64 + 1), bytes).unwrap();
                }
            }
        }

        let (seqs, corrupt) = replay(dir.path());
        let intact: Vec<u64> = placed.iter().zip(&damaged).filter(|(_, d)| !**d).map(|(p, _)| p.seq).collect();
        prop_assert_eq!(&seqs, &intact, "every intact record, once, in order; no damaged one");
        let lost = (placed.len() - intact.len()) as u64;
        if damaged.last() == Some(&false) {
            // A record after the damage: the gap in record numbers counts it exactly.
            prop_assert_eq!(corrupt, lost);
        } else {
            // A damaged tail: each record start still seen in it is counted; records
            // a truncation removed whole left no trace to count.
            prop_assert!(corrupt <= lost);
            let truncated = matches!(damage, Damage::Truncate { .. });
            prop_assert!(corrupt >= 1 || truncated, "a flipped tail went uncounted");
        }

        // The damage is gone for good: a second start finds nothing more to count.
        let (again, corrupt_again) = replay(dir.path());
        prop_assert!(again.is_empty(), "delivered records are not replayed: {:?}", again);
        prop_assert_eq!(corrupt_again, 0);
    }
}

/// Sends `batches` batches into a buffer of the smallest `max_bytes` whose sink takes
/// nothing until every batch was taken in (`drop_newest`) or the buffer is full
/// (`block`), then drains it. Returns (events delivered, the most bytes its segment
/// files held, the segment size).
fn fill_then_drain(when_full: WhenFull, batches: usize) -> (usize, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = BufferConfig {
            kind: BufferKind::Disk,
            max_bytes: Some(MIN_MAX_BYTES),
            when_full,
            fsync: None,
        };
        let Started {
            shared,
            sender,
            mut sink,
            tasks,
            tracker,
        } = Started::new(dir.path(), &config);
        let on_disk = || -> u64 {
            segment::list(dir.path())
                .unwrap()
                .iter()
                .filter_map(|id| std::fs::metadata(segment::path(dir.path(), *id)).ok())
                .map(|m| m.len())
                .sum()
        };
        for n in 0..batches {
            let events = (0..50)
                .map(|i| {
                    Event::new(
                        "s".into(),
                        "file".into(),
                        format!("{n} {i} {}", "x".repeat(200)),
                        0,
                    )
                })
                .collect();
            sender
                .send(Batch {
                    events,
                    delivery: Delivery::detached(),
                })
                .await
                .unwrap();
        }
        drop(sender);
        let full =
            |state: &State| state.writer_done || state.disk_bytes + (64 << 10) > MIN_MAX_BYTES;
        let began = std::time::Instant::now();
        while !full(&shared.state()) {
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "the buffer never filled"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut peak = on_disk();
        let mut delivered = 0;
        while let Some(batch) = sink.recv().await {
            delivered += batch.events.len();
            batch.delivery.settle(BatchStatus::Delivered);
            peak = peak.max(on_disk());
        }
        finish(tasks, tracker).await;
        assert_eq!(on_disk(), 0, "every delivered segment deleted");
        (delivered, peak, shared.limits.segment_bytes)
    })
}

#[test]
fn a_full_buffer_drops_the_newest_or_holds_the_input_within_max_bytes_and_one_segment() {
    let batches = 200;
    let (delivered, peak, segment) = fill_then_drain(WhenFull::DropNewest, batches);
    assert!(peak <= MIN_MAX_BYTES + segment, "{peak} bytes on disk");
    assert!(
        delivered > 0 && delivered < batches * 50,
        "{delivered} delivered: some dropped"
    );

    let (delivered, peak, segment) = fill_then_drain(WhenFull::Block, batches);
    assert!(peak <= MIN_MAX_BYTES + segment, "{peak} bytes on disk");
    assert_eq!(delivered, batches * 50, "block loses nothing");
}

/// Polls `check` every 10 ms; panics after a minute (a hang guard).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let began = std::time::Instant::now();
    while !check() {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_that_cannot_be_written_turns_health_503_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let health = Arc::new(Health::default());
    let config = disk_config();
    let Started {
        shared,
        sender,
        mut sink,
        tasks,
        tracker,
    } = Started::reporting_to(dir.path(), &config, Arc::clone(&health));
    *shared.ledger.lock().unwrap() = Ledger::read_only(dir.path()).unwrap();
    let event = Event::new("s".into(), "file".into(), "one".into(), 0);
    sender
        .send(Batch {
            events: vec![event],
            delivery: Delivery::detached(),
        })
        .await
        .unwrap();
    let batch = sink.recv().await.unwrap();
    batch.delivery.settle(BatchStatus::Delivered);
    eventually("the ledger failure in /health", || {
        health.problems().contains_key("buffer-ledger:t")
    })
    .await;
    assert_eq!(shared.state().buffered_events, 1, "not released");

    *shared.ledger.lock().unwrap() = Ledger::open(dir.path()).unwrap();
    eventually("the ledger committed again", || {
        health.problems().is_empty()
    })
    .await;
    assert_eq!(shared.state().buffered_events, 0, "released");
    assert_eq!(crate::buffer::ledger::read(dir.path()).unwrap(), 1);
    drop(sender);
    assert!(sink.recv().await.is_none());
    finish(tasks, tracker).await;
}

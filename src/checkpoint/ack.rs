//! End-to-end acknowledgements. A source asks its [`Acker`] for a [`Delivery`] per
//! batch (waiting while its in-flight window is full); every fan-out clone of that
//! delivery must be settled by the sink that received it. When the last clone is
//! gone, the source's tracker hears `(seq, status, cursor)` and commits the cursors of
//! the highest run of contiguous finalized batches in one durable transaction. The
//! in-flight slot of a batch is released only after its cursor is committed, so the
//! window bounds exactly what a crash can replay.
//!
//! Every successful commit is also published ([`Acker::committed`]): a source whose
//! positions live in another system too (Kafka's consumer-group offsets) watches it
//! and copies what is committed there. The tracker stays the one place that decides
//! what is finalized; such a source never learns of a batch any other way, so it can
//! never get ahead of the sinks.
//!
//! The same tracker also serves a sink's disk buffer, which replays recorded batches
//! to its sink: there the "cursor" is the last record the sink has, in order, and the
//! place it is made durable is the buffer's own ledger ([`CursorLog`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::budget::ByteBudget;
use super::{CheckpointStore, Cursors};
use crate::telemetry::Health;

/// How a sink finished with its copy of a batch. When clones disagree, the worst wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum BatchStatus {
    /// Durably accepted (or dropped on purpose by a transform).
    Delivered = 0,
    /// Permanently refused and counted (dead-lettered where configured): final, so
    /// the checkpoint may move past it.
    Rejected = 1,
    /// Handed back by a sink that could not deliver when ferry stopped: the checkpoint
    /// must not move past it; a restart re-reads it (the sink said so once).
    GivenBack = 2,
    /// Not delivered: the checkpoint must not move past it; a restart re-reads it.
    Errored = 3,
}

impl BatchStatus {
    fn from_u8(v: u8) -> BatchStatus {
        match v {
            0 => BatchStatus::Delivered,
            1 => BatchStatus::Rejected,
            2 => BatchStatus::GivenBack,
            _ => BatchStatus::Errored,
        }
    }
}

/// The cursor changes a batch brings: key → new value, or `None` to forget the key.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CursorUpdate {
    changes: Vec<(String, Option<Value>)>,
}

impl CursorUpdate {
    pub fn set(key: impl Into<String>, value: Value) -> Self {
        CursorUpdate {
            changes: vec![(key.into(), Some(value))],
        }
    }

    pub fn remove(key: impl Into<String>) -> Self {
        CursorUpdate {
            changes: vec![(key.into(), None)],
        }
    }

    /// Adds a change (`None` forgets `key`).
    pub fn with(mut self, key: impl Into<String>, value: Option<Value>) -> Self {
        self.changes.push((key.into(), value));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

struct Settled {
    seq: u64,
    status: BatchStatus,
    cursor: CursorUpdate,
    permit: Option<OwnedSemaphorePermit>,
}

struct Shared {
    seq: u64,
    /// The source's in-flight window, in batches (0: none).
    window: usize,
    status: AtomicU8,
    cursor: CursorUpdate,
    permit: Option<OwnedSemaphorePermit>,
    report: Option<mpsc::UnboundedSender<Settled>>,
    /// The source's byte budget and what the batch and its copies are charged.
    budget: Option<Arc<ByteBudget>>,
    charged: AtomicUsize,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.release(*self.charged.get_mut());
        }
        if let Some(report) = self.report.take() {
            // The tracker is gone only when the whole topology is; nothing to tell then.
            let _ = report.send(Settled {
                seq: self.seq,
                status: BatchStatus::from_u8(self.status.load(Ordering::Acquire)),
                cursor: std::mem::take(&mut self.cursor),
                permit: self.permit.take(),
            });
        }
    }
}

/// The promise attached to a batch. Each clone must be [`settle`](Self::settle)d;
/// a clone dropped unsettled counts as [`BatchStatus::Errored`].
///
/// A delivery may carry the promises of earlier batches along with its own
/// ([`attach`](Self::attach)): a stateful transform that held events back (multiline)
/// hands them on with the batch that finally contains those events, so whatever
/// happens to that batch happens to them: settled together, cloned together for
/// fan-out, and counted as errored together if dropped unsettled.
pub struct Delivery {
    shared: Arc<Shared>,
    riders: Vec<Arc<Shared>>,
    settled: bool,
}

impl Delivery {
    /// A delivery nobody waits for (tests, benchmarks, sources without cursors).
    pub fn detached() -> Delivery {
        Delivery {
            shared: Arc::new(Shared {
                seq: 0,
                window: 0,
                status: AtomicU8::new(0),
                cursor: CursorUpdate::default(),
                permit: None,
                report: None,
                budget: None,
                charged: AtomicUsize::new(0),
            }),
            riders: Vec::new(),
            settled: false,
        }
    }

    /// Counts `bytes` more against the source's in-flight byte budget until the batch
    /// is finalized: a copy made for fan-out, or what a transform added.
    pub fn charge(&self, bytes: usize) {
        if let Some(budget) = &self.shared.budget {
            self.shared.charged.fetch_add(bytes, Ordering::AcqRel);
            budget.charge(bytes);
        }
    }

    /// Gives back up to `bytes` of what the batch is charged (a transform shrank it).
    pub fn refund(&self, bytes: usize) {
        if let Some(budget) = &self.shared.budget {
            let mut given = 0;
            let _ =
                self.shared
                    .charged
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |charged| {
                        given = bytes.min(charged);
                        Some(charged - given)
                    });
            budget.release(given);
        }
    }

    pub fn settle(mut self, status: BatchStatus) {
        self.record(status);
        self.settled = true;
    }

    /// Makes `other` (and whatever rides with it) travel with this delivery and the
    /// copies made from it from now on: it is settled when they are, with their
    /// status. The riders are kept per copy, flat and without repeats (never in the
    /// shared state, so no two batches can end up waiting for each other).
    pub fn attach(&mut self, mut other: Delivery) {
        other.settled = true;
        for shared in std::iter::once(&other.shared).chain(&other.riders) {
            let known = Arc::ptr_eq(shared, &self.shared)
                || self.riders.iter().any(|r| Arc::ptr_eq(r, shared));
            if !known {
                self.riders.push(Arc::clone(shared));
            }
        }
    }

    /// The in-flight window of the batch's source, in batches (`None`: no limit).
    pub fn window(&self) -> Option<usize> {
        (self.shared.window > 0).then_some(self.shared.window)
    }

    /// How many earlier batches ride with this one.
    pub fn riders(&self) -> usize {
        self.riders.len()
    }

    /// The in-flight byte budget of the batch's source (`None`: no limit).
    pub fn byte_budget(&self) -> Option<usize> {
        self.shared.budget.as_ref().map(|budget| budget.capacity())
    }

    /// The bytes charged to the budget for this batch and the batches riding with it.
    pub fn charged(&self) -> usize {
        std::iter::once(&self.shared)
            .chain(&self.riders)
            .map(|shared| shared.charged.load(Ordering::Acquire))
            .sum()
    }

    fn record(&self, status: BatchStatus) {
        for shared in std::iter::once(&self.shared).chain(&self.riders) {
            shared.status.fetch_max(status as u8, Ordering::AcqRel);
        }
    }
}

impl Clone for Delivery {
    fn clone(&self) -> Self {
        Delivery {
            shared: Arc::clone(&self.shared),
            riders: self.riders.clone(),
            settled: false,
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.settled {
            self.record(BatchStatus::Errored);
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("seq", &self.shared.seq)
            .field("riders", &self.riders.len())
            .field("settled", &self.settled)
            .finish()
    }
}

/// Where a tracker makes finalized cursors durable: the checkpoint store for a
/// source, a disk buffer's ledger for the records it replays to its sink.
pub trait CursorLog: Send + Sync + 'static {
    /// Applies `updates` (`None` forgets a key) durably, all or nothing.
    fn commit(&self, owner: &str, updates: &BTreeMap<String, Option<Value>>) -> anyhow::Result<()>;
}

impl CursorLog for CheckpointStore {
    fn commit(&self, owner: &str, updates: &BTreeMap<String, Option<Value>>) -> anyhow::Result<()> {
        CheckpointStore::commit(self, owner, updates)
    }
}

/// Who a tracker works for, as its logs, metrics and `/health` name it.
#[derive(Clone)]
pub struct TrackerOwner {
    /// The metric label: `source`, or `sink` for a disk buffer's tracker.
    kind: &'static str,
    id: Arc<str>,
    /// The `/health` component its commit failures are reported under.
    health_key: String,
}

impl TrackerOwner {
    pub fn source(id: Arc<str>) -> TrackerOwner {
        TrackerOwner {
            kind: "source",
            health_key: format!("checkpoint:{id}"),
            id,
        }
    }

    /// The disk buffer in front of sink `id`.
    pub fn sink_buffer(id: Arc<str>) -> TrackerOwner {
        TrackerOwner {
            kind: "sink",
            health_key: format!("buffer-ledger:{id}"),
            id,
        }
    }

    fn label(&self) -> [(&'static str, String); 1] {
        [(self.kind, self.id.to_string())]
    }
}

/// A source's side of the tracker: hands out deliveries in sequence.
pub struct Acker {
    next_seq: u64,
    window: Arc<Semaphore>,
    window_size: usize,
    budget: Option<Arc<ByteBudget>>,
    report: mpsc::UnboundedSender<Settled>,
    committed: watch::Receiver<Cursors>,
}

impl Acker {
    /// Also bounds what is in flight by the bytes its batches hold (see
    /// [`Acker::delivery_holding`]).
    pub fn with_byte_budget(mut self, bytes: usize) -> Self {
        self.budget = Some(Arc::new(ByteBudget::new(bytes)));
        self
    }

    /// The delivery for the next batch, which will commit `cursor` once it and every
    /// earlier batch are finalized. Waits while the in-flight window is full: this is
    /// where a slow sink holds the source back.
    pub async fn delivery(&mut self, cursor: CursorUpdate) -> Delivery {
        self.delivery_holding(cursor, 0).await
    }

    /// [`Acker::delivery`] for a batch holding `bytes`; also waits for room in the
    /// byte budget, and charges the batch to it until it is finalized.
    pub async fn delivery_holding(&mut self, cursor: CursorUpdate, bytes: usize) -> Delivery {
        let permit = Arc::clone(&self.window).acquire_owned().await.ok();
        if let Some(budget) = &self.budget {
            budget.admit(bytes).await;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Delivery {
            shared: Arc::new(Shared {
                seq,
                window: self.window_size,
                status: AtomicU8::new(BatchStatus::Delivered as u8),
                cursor,
                permit,
                report: Some(self.report.clone()),
                charged: AtomicUsize::new(if self.budget.is_some() { bytes } else { 0 }),
                budget: self.budget.clone(),
            }),
            riders: Vec::new(),
            settled: false,
        }
    }

    /// Every cursor key committed since the tracker started, with its latest value; it
    /// changes after each successful commit and closes once the tracker has made its
    /// last commit (after the `Acker` and every delivery are gone).
    pub fn committed(&self) -> watch::Receiver<Cursors> {
        self.committed.clone()
    }
}

/// The tracker task; it ends after the source's [`Acker`] and every delivery are gone
/// and the last cursors are committed.
pub type TrackerHandle = JoinHandle<()>;

/// Starts the tracker of `source` with an in-flight window of `window` batches.
pub fn spawn_tracker(
    source: Arc<str>,
    store: Arc<CheckpointStore>,
    window: usize,
    health: Arc<Health>,
) -> (Acker, TrackerHandle) {
    spawn_tracker_into(TrackerOwner::source(source), store, window, health)
}

/// Starts a tracker that commits into `log` on behalf of `owner`.
pub fn spawn_tracker_into(
    owner: TrackerOwner,
    log: Arc<dyn CursorLog>,
    window: usize,
    health: Arc<Health>,
) -> (Acker, TrackerHandle) {
    let (report, settled) = mpsc::unbounded_channel();
    let (published, committed) = watch::channel(Cursors::new());
    let acker = Acker {
        next_seq: 0,
        window: Arc::new(Semaphore::new(window.max(1))),
        window_size: window.max(1),
        budget: None,
        report,
        committed,
    };
    let label = owner.label();
    let tracker = Tracker {
        counters: TrackerCounters {
            commits: metrics::counter!("ferry_checkpoint_commits_total", &label),
            errors: metrics::counter!("ferry_checkpoint_errors_total", &label),
            last_commit: metrics::gauge!("ferry_checkpoint_last_commit_timestamp_seconds", &label),
            errored: metrics::counter!("ferry_batches_errored_total", &label),
            rejected: metrics::counter!("ferry_batches_rejected_total", &label),
        },
        owner,
        log,
        health,
        published,
        pending: BTreeMap::new(),
        next: 0,
        uncommitted: BTreeMap::new(),
        held: Vec::new(),
        stuck_at: None,
        failing: false,
    };
    (acker, tokio::spawn(tracker.run(settled)))
}

struct Tracker {
    owner: TrackerOwner,
    counters: TrackerCounters,
    log: Arc<dyn CursorLog>,
    health: Arc<Health>,
    published: watch::Sender<Cursors>,
    pending: BTreeMap<u64, Settled>,
    next: u64,
    uncommitted: BTreeMap<String, Option<Value>>,
    held: Vec<OwnedSemaphorePermit>,
    stuck_at: Option<u64>,
    /// The last commit failed (logged once per failure episode).
    failing: bool,
}

/// A tracker's metrics, registered when it starts (so they are served at zero).
struct TrackerCounters {
    commits: metrics::Counter,
    errors: metrics::Counter,
    last_commit: metrics::Gauge,
    errored: metrics::Counter,
    rejected: metrics::Counter,
}

const COMMIT_RETRY: Duration = Duration::from_secs(1);

impl Tracker {
    async fn run(mut self, mut settled: mpsc::UnboundedReceiver<Settled>) {
        loop {
            let message = if self.failing {
                tokio::select! {
                    m = settled.recv() => m,
                    () = tokio::time::sleep(COMMIT_RETRY) => {
                        self.commit().await;
                        continue;
                    }
                }
            } else {
                settled.recv().await
            };
            let Some(first) = message else { break };
            self.accept(first);
            while let Ok(more) = settled.try_recv() {
                self.accept(more);
            }
            self.advance();
            self.commit().await;
        }
        for _ in 0..3 {
            if self.commit().await {
                return;
            }
            tokio::time::sleep(COMMIT_RETRY).await;
        }
        tracing::error!(
            owner = %self.owner.id,
            "giving up on the last checkpoint commit; a restart will re-read the batches since the previous one"
        );
    }

    fn accept(&mut self, settled: Settled) {
        self.pending.insert(settled.seq, settled);
    }

    /// Folds the contiguous run of finalized batches into the uncommitted cursors.
    fn advance(&mut self) {
        if self.stuck_at.is_some() {
            return;
        }
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            let settled = entry.remove();
            match settled.status {
                BatchStatus::Errored | BatchStatus::GivenBack => {
                    if settled.status == BatchStatus::Errored {
                        tracing::error!(
                            owner = %self.owner.id,
                            "a batch was not delivered; the checkpoint stays before it until restart"
                        );
                    }
                    self.counters.errored.increment(1);
                    self.stuck_at = Some(settled.seq);
                    self.pending.insert(settled.seq, settled);
                    return;
                }
                BatchStatus::Rejected => {
                    self.counters.rejected.increment(1);
                }
                BatchStatus::Delivered => {}
            }
            for (key, value) in settled.cursor.changes {
                self.uncommitted.insert(key, value);
            }
            self.held.extend(settled.permit);
            self.next += 1;
        }
    }

    /// Commits what has accumulated; true when nothing is left to commit.
    async fn commit(&mut self) -> bool {
        if self.uncommitted.is_empty() {
            self.held.clear();
            return true;
        }
        let log = Arc::clone(&self.log);
        let owner = Arc::clone(&self.owner.id);
        let updates = self.uncommitted.clone();
        let result = tokio::task::spawn_blocking(move || log.commit(&owner, &updates))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
        match result {
            Ok(()) => {
                self.published.send_modify(|cursors| {
                    for (key, value) in std::mem::take(&mut self.uncommitted) {
                        match value {
                            Some(value) => cursors.insert(key, value),
                            None => cursors.remove(&key),
                        };
                    }
                });
                self.held.clear();
                if std::mem::take(&mut self.failing) {
                    tracing::info!(owner = %self.owner.id, "checkpoint commits succeed again");
                }
                self.health.clear(&self.owner.health_key);
                self.counters.commits.increment(1);
                self.counters
                    .last_commit
                    .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
                true
            }
            Err(error) => {
                let message = format!("checkpoint commit failed: {error:#}");
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::error!(owner = %self.owner.id, "{message}; retrying every second, holding the source back");
                }
                self.health.set(&self.owner.health_key, message);
                self.counters.errors.increment(1);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn tracker(
        window: usize,
    ) -> (
        Acker,
        TrackerHandle,
        Arc<CheckpointStore>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::open(dir.path()).unwrap());
        let (acker, handle) = spawn_tracker(
            "s".into(),
            store.clone(),
            window,
            Arc::new(Health::default()),
        );
        (acker, handle, store, dir)
    }

    #[tokio::test]
    async fn commits_only_the_contiguous_prefix_of_settled_batches() {
        let (mut acker, handle, store, _dir) = tracker(8).await;
        let d0 = acker.delivery(CursorUpdate::set("k", json!(0))).await;
        let d1 = acker.delivery(CursorUpdate::set("k", json!(1))).await;
        let d2 = acker.delivery(CursorUpdate::set("k", json!(2))).await;
        let d1_copy = d1.clone();
        d2.settle(BatchStatus::Delivered);
        d1.settle(BatchStatus::Delivered);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            store.load("s").unwrap().is_empty(),
            "batch 0 still in flight"
        );
        d0.settle(BatchStatus::Delivered);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            store.load("s").unwrap()["k"],
            json!(0),
            "batch 1 has a copy in flight"
        );
        d1_copy.settle(BatchStatus::Rejected);
        drop(acker);
        handle.await.unwrap();
        assert_eq!(store.load("s").unwrap()["k"], json!(2));
    }

    #[tokio::test]
    async fn commits_are_published_and_the_watch_closes_with_the_tracker() {
        let (mut acker, handle, _store, _dir) = tracker(8).await;
        let mut committed = acker.committed();
        acker
            .delivery(CursorUpdate::set("a", json!(1)).with("b", Some(json!(2))))
            .await
            .settle(BatchStatus::Delivered);
        committed.changed().await.unwrap();
        assert_eq!(committed.borrow_and_update()["a"], json!(1));
        acker
            .delivery(CursorUpdate::remove("b"))
            .await
            .settle(BatchStatus::Delivered);
        drop(acker);
        handle.await.unwrap();
        let last = committed.borrow_and_update().clone();
        assert_eq!(last.len(), 1);
        assert_eq!(last["a"], json!(1));
        assert!(
            committed.changed().await.is_err(),
            "closed after the last commit"
        );
    }

    #[tokio::test]
    async fn an_unsettled_drop_holds_the_checkpoint_back() {
        let (mut acker, handle, store, _dir) = tracker(8).await;
        acker
            .delivery(CursorUpdate::set("k", json!(0)))
            .await
            .settle(BatchStatus::Delivered);
        drop(acker.delivery(CursorUpdate::set("k", json!(1))).await);
        acker
            .delivery(CursorUpdate::set("k", json!(2)))
            .await
            .settle(BatchStatus::Delivered);
        drop(acker);
        handle.await.unwrap();
        assert_eq!(store.load("s").unwrap()["k"], json!(0));
    }

    #[tokio::test]
    async fn attached_deliveries_are_settled_with_the_one_they_ride_on() {
        let (mut acker, handle, store, _dir) = tracker(8).await;
        let held = acker.delivery(CursorUpdate::set("k", json!(0))).await;
        let mut carrier = acker.delivery(CursorUpdate::set("k", json!(1))).await;
        // The batch itself went on and was delivered; a transform kept a clone.
        held.clone().settle(BatchStatus::Delivered);
        carrier.attach(held);
        let fanout_copy = carrier.clone();
        carrier.settle(BatchStatus::Delivered);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            store.load("s").unwrap().is_empty(),
            "a fan-out copy of the carrier (and so of the rider) is in flight"
        );
        fanout_copy.settle(BatchStatus::Delivered);
        let mut dropped = acker.delivery(CursorUpdate::set("k", json!(2))).await;
        let rider = acker.delivery(CursorUpdate::set("k", json!(3))).await;
        dropped.attach(rider);
        drop(dropped);
        drop(acker);
        handle.await.unwrap();
        assert_eq!(
            store.load("s").unwrap()["k"],
            json!(1),
            "a carrier dropped unsettled holds its riders back too"
        );
    }

    #[tokio::test]
    async fn the_window_blocks_until_earlier_batches_commit() {
        let (mut acker, handle, _store, _dir) = tracker(2).await;
        let d0 = acker.delivery(CursorUpdate::set("k", json!(0))).await;
        let _d1 = acker.delivery(CursorUpdate::set("k", json!(1))).await;
        let third = tokio::time::timeout(
            Duration::from_millis(100),
            acker.delivery(CursorUpdate::default()),
        )
        .await;
        assert!(third.is_err(), "a third batch must wait for a free slot");
        d0.settle(BatchStatus::Delivered);
        let third = tokio::time::timeout(
            Duration::from_secs(5),
            acker.delivery(CursorUpdate::default()),
        )
        .await;
        assert!(third.is_ok());
        drop(third);
        drop(acker);
        drop(_d1);
        handle.await.unwrap();
    }
}

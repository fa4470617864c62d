//! Bounded batch channels whose capacity is a byte budget (the bytes the queued
//! batches really hold), and the fan-out that feeds every downstream component its
//! own copy of a batch.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::event::Batch;
use crate::telemetry::TapPoint;

/// Sending half; clone it for fan-in (several upstreams into one component).
#[derive(Clone)]
pub struct BatchSender {
    queue: mpsc::UnboundedSender<(Batch, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    capacity: u32,
}

/// A sender that does not keep the channel open: what a running pipeline keeps of
/// a sink's input, to connect new upstreams to it on a reload.
pub struct WeakBatchSender {
    queue: mpsc::WeakUnboundedSender<(Batch, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    capacity: u32,
}

/// Receiving half, owned by one transform or sink.
pub struct BatchReceiver {
    queue: mpsc::UnboundedReceiver<(Batch, OwnedSemaphorePermit)>,
    tap: Option<Arc<TapPoint>>,
    received: Option<metrics::Counter>,
}

/// The receiver is gone (its component stopped); the batch was not sent.
#[derive(Debug, thiserror::Error)]
#[error("downstream component has stopped")]
pub struct Closed;

/// A channel holding at most `capacity_bytes` of batches (a batch larger than the whole
/// budget still passes, alone).
pub fn batch_channel(capacity_bytes: usize) -> (BatchSender, BatchReceiver) {
    let capacity = u32::try_from(capacity_bytes.max(1)).unwrap_or(u32::MAX >> 4);
    let capacity = capacity.min(Semaphore::MAX_PERMITS as u32);
    let (queue, rx) = mpsc::unbounded_channel();
    (
        BatchSender {
            queue,
            budget: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        },
        BatchReceiver {
            queue: rx,
            tap: None,
            received: None,
        },
    )
}

impl BatchSender {
    /// Waits for room, then queues the batch. On `Closed` the batch is dropped
    /// unsettled, so its checkpoint never advances.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        let bytes = batch.allocated_bytes();
        self.send_sized(batch, bytes).await
    }

    /// [`BatchSender::send`] of a batch known to hold `bytes`.
    pub async fn send_sized(&self, batch: Batch, bytes: usize) -> Result<(), Closed> {
        let bytes = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity);
        let permit = Arc::clone(&self.budget)
            .acquire_many_owned(bytes)
            .await
            .map_err(|_| Closed)?;
        self.queue.send((batch, permit)).map_err(|_| Closed)
    }

    pub fn downgrade(&self) -> WeakBatchSender {
        WeakBatchSender {
            queue: self.queue.downgrade(),
            budget: Arc::clone(&self.budget),
            capacity: self.capacity,
        }
    }
}

impl WeakBatchSender {
    /// A sender, unless every sender is gone (the receiver is ending).
    pub fn upgrade(&self) -> Option<BatchSender> {
        Some(BatchSender {
            queue: self.queue.upgrade()?,
            budget: Arc::clone(&self.budget),
            capacity: self.capacity,
        })
    }
}

impl BatchReceiver {
    /// Shows what this receiver takes to the clients of `tap` (a sink's input).
    pub fn with_tap(mut self, tap: Arc<TapPoint>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Counts the events taken from this receiver in `received`.
    pub fn counted(mut self, received: metrics::Counter) -> Self {
        self.received = Some(received);
        self
    }

    /// The next batch, or `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Batch> {
        let (batch, _permit) = self.queue.recv().await?;
        self.observe(&batch);
        Some(batch)
    }

    /// A batch that is already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Batch> {
        let (batch, _permit) = self.queue.try_recv().ok()?;
        self.observe(&batch);
        Some(batch)
    }

    fn observe(&self, batch: &Batch) {
        if let Some(tap) = &self.tap {
            tap.observe(&batch.events);
        }
        if let Some(received) = &self.received {
            received.increment(batch.events.len() as u64);
        }
    }
}

/// One component's output: every downstream gets every batch.
#[derive(Clone, Default)]
pub struct Fanout {
    outputs: Vec<BatchSender>,
}

impl Fanout {
    pub fn new(outputs: Vec<BatchSender>) -> Self {
        Fanout { outputs }
    }

    pub fn push(&mut self, output: BatchSender) {
        self.outputs.push(output);
    }

    /// Sends a copy to each output (the last gets the original). A batch with nowhere
    /// to go is finalized at once.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        let bytes = batch.allocated_bytes();
        self.send_sized(batch, bytes).await
    }

    /// [`Fanout::send`] of a batch known to hold `bytes`; each copy is charged to the
    /// source's in-flight budget as well.
    pub async fn send_sized(&self, batch: Batch, bytes: usize) -> Result<(), Closed> {
        let Some((last, rest)) = self.outputs.split_last() else {
            batch
                .delivery
                .settle(crate::checkpoint::BatchStatus::Delivered);
            return Ok(());
        };
        for output in rest {
            let copy = Batch {
                events: batch.events.clone(),
                delivery: batch.delivery.clone(),
            };
            copy.delivery.charge(bytes);
            output.send_sized(copy, bytes).await?;
        }
        last.send_sized(batch, bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Delivery;
    use crate::event::Event;
    use std::time::Duration;

    fn batch(message: &str) -> Batch {
        Batch {
            events: vec![Event::new("s".into(), "demo".into(), message.into(), 0)],
            delivery: Delivery::detached(),
        }
    }

    #[tokio::test]
    async fn a_full_budget_holds_the_sender_until_the_receiver_drains() {
        let one = batch("x").allocated_bytes();
        let (tx, mut rx) = batch_channel(one * 2);
        tx.send(batch("a")).await.unwrap();
        tx.send(batch("b")).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), tx.send(batch("c"))).await;
        assert!(blocked.is_err(), "third batch must wait for room");
        assert_eq!(rx.recv().await.unwrap().events[0].message, "a");
        tokio::time::timeout(Duration::from_secs(5), tx.send(batch("c")))
            .await
            .unwrap()
            .unwrap();
        drop(tx);
        assert_eq!(rx.recv().await.unwrap().events[0].message, "b");
        assert_eq!(rx.recv().await.unwrap().events[0].message, "c");
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn fanout_gives_every_output_every_batch() {
        let (tx1, mut rx1) = batch_channel(1 << 20);
        let (tx2, mut rx2) = batch_channel(1 << 20);
        let fanout = Fanout::new(vec![tx1, tx2]);
        fanout.send(batch("m")).await.unwrap();
        assert_eq!(rx1.recv().await.unwrap().events[0].message, "m");
        assert_eq!(rx2.recv().await.unwrap().events[0].message, "m");
    }
}

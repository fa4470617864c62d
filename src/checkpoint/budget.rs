//! The in-flight byte budget of a source: the bytes its batches hold from the moment
//! they enter the pipeline until every sink is done with them. A source waits for
//! room before it sends; a batch is charged what it really holds (and again for each
//! copy a fan-out makes, or for what a transform adds), and the charge is given back
//! when the batch is finalized. So what a source has in flight never exceeds its
//! budget by more than its last batch, whatever the input rate or the sinks' speed.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct ByteBudget {
    capacity: usize,
    used: AtomicUsize,
    freed: Notify,
}

impl ByteBudget {
    pub fn new(capacity: usize) -> Self {
        ByteBudget {
            capacity: capacity.max(1),
            used: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// Waits until less than the whole budget is in use, then charges `bytes` (a
    /// batch larger than the room left, or than the whole budget, still goes).
    pub async fn admit(&self, bytes: usize) {
        while self.used.load(Ordering::Acquire) >= self.capacity {
            self.freed.notified().await;
        }
        self.charge(bytes);
    }

    /// Charges `bytes` without waiting (a copy or growth of a batch already admitted).
    pub fn charge(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Gives `bytes` back.
    pub fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            self.freed.notify_one();
        }
    }

    /// The bytes a source may have in flight before it waits.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes charged now.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_budget_holds_admission_until_bytes_are_given_back() {
        let budget = Arc::new(ByteBudget::new(100));
        budget.admit(60).await;
        budget.admit(60).await; // below capacity when asked: goes, overshooting by its size
        assert_eq!(budget.used(), 120);
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.admit(10).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no room: admission waits");
        budget.release(60);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(budget.used(), 70);
    }
}

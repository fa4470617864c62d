//! What the systemd `STATUS=` line reports: events into the pipeline (read by the
//! sources) and out of it (delivered by the sinks), and which sources are lagging.
//! The totals are teed off the Prometheus counters the components already bump, so
//! they cost one more atomic add per batch.
//!
//! A source is *lagging* when it spent more than half of the last interval waiting
//! for room downstream (its in-flight window or a full channel): its sinks are not
//! keeping up, so it is reading behind what its input offers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use metrics::{Counter, CounterFn};

/// The pipeline-wide event totals and each running source's waiting time.
#[derive(Default)]
pub struct Throughput {
    events_in: Arc<AtomicU64>,
    events_out: Arc<AtomicU64>,
    sources: Mutex<Vec<(Arc<str>, Weak<AtomicU64>)>>,
}

/// One sample of the totals, for rates between two samples.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub events_in: u64,
    pub events_out: u64,
    /// Nanoseconds each source has waited for room downstream.
    waited: BTreeMap<Arc<str>, u64>,
}

impl Throughput {
    /// The events source `id` sent into the pipeline, also counted as events in.
    pub fn source_events(&self, id: &str) -> Counter {
        tee("source", id, &self.events_in)
    }

    /// The events sink `id` delivered, also counted as events out.
    pub fn sink_events(&self, id: &str) -> Counter {
        tee("sink", id, &self.events_out)
    }

    /// The clock of source `id`'s time waiting for room downstream, in nanoseconds;
    /// it is followed while the returned handle lives.
    pub fn source_waiting(&self, id: &str) -> Arc<AtomicU64> {
        let waited = Arc::new(AtomicU64::new(0));
        if let Ok(mut sources) = self.sources.lock() {
            sources.retain(|(_, waited)| waited.strong_count() > 0);
            sources.push((Arc::from(id), Arc::downgrade(&waited)));
        }
        waited
    }

    pub fn sample(&self) -> Sample {
        let mut waited = BTreeMap::new();
        if let Ok(sources) = self.sources.lock() {
            for (id, clock) in sources.iter() {
                if let Some(clock) = clock.upgrade() {
                    *waited.entry(Arc::clone(id)).or_default() += clock.load(Ordering::Relaxed);
                }
            }
        }
        Sample {
            events_in: self.events_in.load(Ordering::Relaxed),
            events_out: self.events_out.load(Ordering::Relaxed),
            waited,
        }
    }
}

impl Sample {
    /// Sources that waited for room downstream more than half of `elapsed` since
    /// `earlier`.
    pub fn lagging_since(&self, earlier: &Sample, elapsed: Duration) -> usize {
        let half = elapsed.as_nanos() / 2;
        self.waited
            .iter()
            .filter(|(id, now)| {
                let before = earlier.waited.get(*id).copied().unwrap_or(0);
                u128::from(now.saturating_sub(before)) > half
            })
            .count()
    }
}

/// `ferry_component_sent_events_total` of component `id` of `kind`, also added to `total`.
fn tee(kind: &'static str, id: &str, total: &Arc<AtomicU64>) -> Counter {
    let exported = super::catalog::component_counter(super::catalog::SENT_EVENTS, kind, id);
    Counter::from_arc(Arc::new(Tee {
        exported,
        total: Arc::clone(total),
    }))
}

struct Tee {
    exported: Counter,
    total: Arc<AtomicU64>,
}

impl CounterFn for Tee {
    fn increment(&self, value: u64) {
        self.exported.increment(value);
        self.total.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.exported.absolute(value);
        self.total.fetch_max(value, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_follow_the_counters_and_lag_is_waiting_over_half_the_time() {
        let throughput = Throughput::default();
        throughput.source_events("a").increment(5);
        throughput.sink_events("out").increment(3);
        let slow = throughput.source_waiting("slow");
        let fine = throughput.source_waiting("fine");
        let before = throughput.sample();
        slow.fetch_add(800_000_000, Ordering::Relaxed);
        fine.fetch_add(100_000_000, Ordering::Relaxed);
        let after = throughput.sample();
        assert_eq!((after.events_in, after.events_out), (5, 3));
        assert_eq!(after.lagging_since(&before, Duration::from_secs(1)), 1);
        drop(slow);
        assert_eq!(throughput.sample().waited.len(), 1);
    }
}

//! Fusion: consecutive pure transforms run one after the other in one task, with no
//! channel between them. A transform joins the task of the component before it when
//! that component is its only input and it is that component's only consumer, so a
//! source followed by parse → level → redact is one task that reads, parses, tags
//! and redacts each batch before it enters the in-flight budget (and is charged what
//! it then holds). A large batch is cut into parts run at once, one per core.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crate::event::Event;
use crate::telemetry::{TapPoint, catalog};
use crate::transforms::Transform;

/// A transform's `ferry_component_received_events_total` and `…_sent_events_total`
/// (what it drops on purpose is counted, by reason, by the transform itself).
pub struct Flow {
    received: metrics::Counter,
    sent: metrics::Counter,
}

impl Flow {
    pub fn transform(id: &str) -> Flow {
        Flow {
            received: catalog::component_counter(catalog::RECEIVED_EVENTS, "transform", id),
            sent: catalog::component_counter(catalog::SENT_EVENTS, "transform", id),
        }
    }

    pub fn count(&self, received: usize, sent: usize) {
        self.received.increment(received as u64);
        self.sent.increment(sent as u64);
    }
}

/// The pure transforms run on each batch of one task, in order, and the tap points
/// of what enters the chain (the output of the task's source or stateful transform)
/// and of each transform's output.
///
/// A batch of at least [`MIN_PART`] events per thread is cut into parts, one per
/// core, run at once: the task's own thread takes the first part, rayon's pool the
/// others, and the parts are put back together in order. Each part runs through
/// every transform on its own lane (a [`Transform::fork`] of each), so no part waits
/// for another between transforms. The transforms are pure, so the events that come
/// out are the ones one pass over the whole batch would give.
#[derive(Default)]
pub struct Chain {
    head: Option<Arc<TapPoint>>,
    stages: Vec<Stage>,
    /// `lanes[lane][stage]`: the first lane runs whole batches and first parts.
    lanes: Vec<Vec<Box<dyn Transform>>>,
}

/// A transform's counters and tap point, which every lane shares.
struct Stage {
    flow: Flow,
    tap: Option<Arc<TapPoint>>,
}

/// The fewest events a part of a cut batch holds: below that, the cut costs more
/// than it saves.
pub const MIN_PART: usize = 256;

/// How many lanes a chain runs: one per core.
fn lane_count() -> usize {
    static LANES: OnceLock<usize> = OnceLock::new();
    *LANES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl Chain {
    /// A chain whose input is shown to the clients of `tap`.
    pub fn tapped(tap: Arc<TapPoint>) -> Self {
        Chain {
            head: Some(tap),
            ..Chain::default()
        }
    }

    pub fn push(&mut self, id: &str, transform: Box<dyn Transform>, tap: Option<Arc<TapPoint>>) {
        if self.lanes.is_empty() {
            self.lanes.resize_with(lane_count(), Vec::new);
        }
        for lane in &mut self.lanes[1..] {
            lane.push(transform.fork());
        }
        self.lanes[0].push(transform);
        self.stages.push(Stage {
            flow: Flow::transform(id),
            tap,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs every transform on `events`, counting the events in and out of each.
    pub fn apply(&mut self, events: &mut Vec<Event>) {
        if let Some(tap) = &self.head {
            tap.observe(events);
        }
        let parts = (events.len() / MIN_PART).min(self.lanes.len());
        if parts < 2 {
            if let Some(lane) = self.lanes.first_mut() {
                run_lane(&self.stages, lane, events);
            }
            return;
        }
        let part_len = events.len().div_ceil(parts);
        let mut rest: Vec<Vec<Event>> = (1..parts)
            .rev()
            .map(|part| events.split_off(part * part_len))
            .collect();
        rest.reverse();
        let stages = &self.stages;
        let (first_lane, other_lanes) = self.lanes.split_at_mut(1);
        rayon::in_place_scope(|scope| {
            for (lane, part) in other_lanes.iter_mut().zip(rest.iter_mut()) {
                scope.spawn(move |_| run_lane(stages, lane, part));
            }
            run_lane(stages, &mut first_lane[0], events);
        });
        for mut part in rest {
            events.append(&mut part);
        }
    }
}

/// Runs the transforms of one lane on `events`, counting and showing each's output.
fn run_lane(stages: &[Stage], lane: &mut [Box<dyn Transform>], events: &mut Vec<Event>) {
    for (stage, transform) in stages.iter().zip(lane) {
        if events.is_empty() {
            return;
        }
        let before = events.len();
        transform.apply(events);
        stage.flow.count(before, events.len());
        if let Some(tap) = &stage.tap {
            tap.observe(events);
        }
    }
}

/// For each component that feeds others (`consumers`: producer → the components
/// with it among their inputs), the transforms fused after it, in order: a transform
/// is fused when `fusable` says it may be, it has `producer` as its only input, and
/// it is the producer's only consumer. Fused transforms get no task and no channel.
pub fn fused_after(
    producer: &str,
    consumers: &BTreeMap<String, Vec<String>>,
    inputs: &BTreeMap<String, Vec<String>>,
    fusable: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut chain = Vec::new();
    let mut last = producer;
    while let Some([next]) = consumers.get(last).map(Vec::as_slice) {
        let single_input = inputs.get(next).is_some_and(|i| i.len() == 1);
        if !single_input || !fusable(next) {
            break;
        }
        chain.push(next.clone());
        last = next;
    }
    chain
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Drops every third event (by its number) and counts its calls.
    #[derive(Clone)]
    struct DropThirds(Arc<AtomicUsize>);

    impl Transform for DropThirds {
        fn apply(&mut self, events: &mut Vec<Event>) {
            self.0.fetch_add(1, Ordering::Relaxed);
            events.retain(|e| e.timestamp % 3 != 0);
        }
    }

    fn numbered(count: i64) -> Vec<Event> {
        (0..count)
            .map(|n| Event::new("in".into(), "test".into(), n.to_string(), n))
            .collect()
    }

    #[test]
    fn a_large_batch_runs_in_parts_on_every_lane_and_comes_back_in_order() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut chain = Chain {
            lanes: (0..3).map(|_| Vec::new()).collect(),
            ..Chain::default()
        };
        chain.push("thirds", Box::new(DropThirds(Arc::clone(&calls))), None);
        chain.push("again", Box::new(DropThirds(Arc::clone(&calls))), None);
        let mut events = numbered(2000);
        chain.apply(&mut events);
        // Three parts, each through both transforms on its own lane.
        assert_eq!(calls.load(Ordering::Relaxed), 6);
        let kept: Vec<i64> = events.iter().map(|e| e.timestamp).collect();
        let expected: Vec<i64> = (0..2000).filter(|n| n % 3 != 0).collect();
        assert_eq!(kept, expected);
        // A batch too small to cut runs whole on the first lane.
        let small_count = 2 * MIN_PART as i64 - 1;
        let mut small = numbered(small_count);
        chain.apply(&mut small);
        assert_eq!(calls.load(Ordering::Relaxed), 8);
        assert_eq!(small.len(), (0..small_count).filter(|n| n % 3 != 0).count());
    }

    fn graph(
        edges: &[(&str, &[&str])],
    ) -> (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>) {
        let mut consumers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut inputs = BTreeMap::new();
        for (node, from) in edges {
            inputs.insert(
                node.to_string(),
                from.iter().map(|s| s.to_string()).collect(),
            );
            for f in *from {
                consumers
                    .entry(f.to_string())
                    .or_default()
                    .push(node.to_string());
            }
        }
        (consumers, inputs)
    }

    #[test]
    fn a_straight_line_fuses_and_branches_or_joins_stop_it() {
        let transforms = ["parse", "level", "redact", "a", "b", "join"];
        let fusable = |id: &str| transforms.contains(&id);
        let (consumers, inputs) = graph(&[
            ("parse", &["in"]),
            ("level", &["parse"]),
            ("redact", &["level"]),
            ("out", &["redact"]),
        ]);
        assert_eq!(
            fused_after("in", &consumers, &inputs, fusable),
            ["parse", "level", "redact"]
        );
        // A fan-out after `parse`, a fan-in at `join`.
        let (consumers, inputs) = graph(&[
            ("parse", &["in"]),
            ("a", &["parse"]),
            ("b", &["parse"]),
            ("join", &["a", "other"]),
            ("out", &["b", "join"]),
        ]);
        assert_eq!(fused_after("in", &consumers, &inputs, fusable), ["parse"]);
        assert!(fused_after("a", &consumers, &inputs, fusable).is_empty());
        assert!(fused_after("b", &consumers, &inputs, fusable).is_empty());
        // A component that may not be fused (a sink, a stateful transform) ends it.
        let (consumers, inputs) = graph(&[("parse", &["in"]), ("out", &["parse"])]);
        assert_eq!(
            fused_after("in", &consumers, &inputs, |id| id != "out"),
            ["parse"]
        );
    }
}

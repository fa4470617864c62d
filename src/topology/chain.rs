//! Fusion: consecutive pure transforms run one after the other in one task, with no
//! channel between them. A transform joins the task of the component before it when
//! that component is its only input and it is that component's only consumer, so a
//! source followed by parse → level → redact is one task that reads, parses, tags
//! and redacts each batch before it enters the in-flight budget (and is charged what
//! it then holds).

use std::collections::BTreeMap;

use crate::event::Event;
use crate::transforms::Transform;

/// The pure transforms run on each batch of one task, in order.
#[derive(Default)]
pub struct Chain {
    stages: Vec<Stage>,
}

struct Stage {
    transform: Box<dyn Transform>,
    dropped: metrics::Counter,
}

impl Chain {
    pub fn push(&mut self, id: &str, transform: Box<dyn Transform>) {
        self.stages.push(Stage {
            transform,
            dropped: metrics::counter!(
                "ferry_transform_dropped_events_total",
                "transform" => id.to_string()
            ),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs every transform on `events`, counting the events each one drops.
    pub fn apply(&mut self, events: &mut Vec<Event>) {
        for stage in &mut self.stages {
            if events.is_empty() {
                return;
            }
            let before = events.len();
            stage.transform.apply(events);
            stage
                .dropped
                .increment(before.saturating_sub(events.len()) as u64);
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
    use super::*;

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

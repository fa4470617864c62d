//! Transforms: the two kinds of transform and the registry that maps a config `type`
//! to one. Most transforms are pure and synchronous ([`Transform`]); the runtime runs
//! them on each batch and finalizes a batch whose events were all dropped. A
//! transform that must keep events across batches and act on time (multiline) is a
//! [`StatefulTransform`]: it runs in a task of its own, takes whole batches with
//! their deliveries, and is never fused with its neighbours.

pub mod filter;
pub mod level;
pub mod multiline;
pub mod parse;
mod pattern;
pub mod redact;

use serde::Deserialize;
use tokio::time::Instant;

use crate::event::{Batch, Event};

/// Rewrites or drops the events of one batch in place. Never touches delivery: a
/// dropped event is acknowledged with the rest of its batch. Consecutive pure
/// transforms may be run as one step, and a large batch may be cut into parts run at
/// once on several threads: what `apply` does to an event depends on that event alone.
pub trait Transform: Send + Fork {
    fn apply(&mut self, events: &mut Vec<Event>);
}

/// Another instance of a transform for another thread: the same compiled rules (and
/// metric handles), its own scratch space. Every `Clone` transform has it.
pub trait Fork {
    fn fork(&self) -> Box<dyn Transform>;
}

impl<T: Transform + Clone + 'static> Fork for T {
    fn fork(&self) -> Box<dyn Transform> {
        Box::new(self.clone())
    }
}

/// A transform that may hold events back across batches and release them later: on
/// a later batch, when a deadline passes, or at the end of its input.
///
/// The delivery contract through it: while an event is held, the transform keeps a
/// clone of the [`Delivery`](crate::checkpoint::Delivery) of every batch that event
/// has lines (or parts) from, so none of those batches is finalized and no source
/// cursor moves past them. When the event is emitted, those clones are
/// [attached](crate::checkpoint::Delivery::attach) to the delivery of the batch that
/// carries it, and settle when that batch does. A crash while events are held
/// replays them from the source; nothing is lost.
///
/// The runner calls [`process`](Self::process) for each input batch, calls
/// [`expire`](Self::expire) when [`deadline`](Self::deadline) passes while no batch
/// is waiting, and [`flush`](Self::flush) once its input has ended.
pub trait StatefulTransform: Send {
    /// Takes one batch seen at `now`; returns the events now ready (carrying the
    /// input's delivery and those of the held batches they complete), or `None`
    /// when everything was held.
    fn process(&mut self, batch: Batch, now: Instant) -> Option<Batch>;
    /// When the earliest held event is due, if any is held.
    fn deadline(&self) -> Option<Instant>;
    /// Emits the held events that are due at `now`.
    fn expire(&mut self, now: Instant) -> Option<Batch>;
    /// Emits every held event: the input has ended.
    fn flush(&mut self) -> Option<Batch>;
}

/// A built transform, of one of the two kinds.
pub enum Stage {
    /// Pure and synchronous: may share a task with neighbouring pure stages.
    Pure(Box<dyn Transform>),
    /// Holds events and needs a clock: runs in a task of its own (a fusion boundary).
    Stateful(Box<dyn StatefulTransform>),
}

impl Stage {
    /// The pure transform, for callers that run `apply` themselves (benchmarks,
    /// fuzzing); `None` for a stateful one.
    pub fn into_pure(self) -> Option<Box<dyn Transform>> {
        match self {
            Stage::Pure(transform) => Some(transform),
            Stage::Stateful(_) => None,
        }
    }
}

/// The `[transforms.ID]` table, by `type`.
#[derive(Debug)]
pub enum TransformConfig {
    Filter(filter::FilterConfig),
    Level(level::LevelConfig),
    Multiline(multiline::MultilineConfig),
    Parse(parse::ParseConfig),
    Redact(redact::RedactConfig),
}

impl TransformConfig {
    pub const TYPES: &[&str] = &["filter", "level", "multiline", "parse", "redact"];

    /// Deserializes the options of transform type `type_name`; `None` if no such type.
    pub fn deserialize_type<'de, D: serde::Deserializer<'de>>(
        type_name: &str,
        options: D,
    ) -> Option<Result<Self, D::Error>> {
        Some(match type_name {
            "filter" => filter::FilterConfig::deserialize(options).map(TransformConfig::Filter),
            "level" => level::LevelConfig::deserialize(options).map(TransformConfig::Level),
            "multiline" => {
                multiline::MultilineConfig::deserialize(options).map(TransformConfig::Multiline)
            }
            "parse" => parse::ParseConfig::deserialize(options).map(TransformConfig::Parse),
            "redact" => redact::RedactConfig::deserialize(options).map(TransformConfig::Redact),
            _ => return None,
        })
    }

    /// Checks that need more than one option at a time.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            TransformConfig::Filter(_) | TransformConfig::Level(_) => Ok(()),
            TransformConfig::Multiline(c) => c.validate(),
            TransformConfig::Parse(c) => c.validate(),
            TransformConfig::Redact(c) => c.validate(),
        }
    }

    /// Builds the transform with id `id` (the label of its metrics).
    pub fn build(&self, id: &str) -> anyhow::Result<Stage> {
        Ok(match self {
            TransformConfig::Filter(c) => Stage::Pure(Box::new(filter::Filter::new(id, c))),
            TransformConfig::Level(c) => Stage::Pure(Box::new(level::LevelTag::new(id, c))),
            TransformConfig::Multiline(c) => {
                Stage::Stateful(Box::new(multiline::Multiline::new(id, c)))
            }
            TransformConfig::Parse(c) => Stage::Pure(Box::new(parse::Parse::new(id, c))),
            TransformConfig::Redact(c) => Stage::Pure(Box::new(redact::Redact::new(id, c)?)),
        })
    }
}

/// Counts events a transform dropped on purpose, by reason.
fn drop_counter(transform: &str, reason: &'static str) -> metrics::Counter {
    metrics::counter!(
        "ferry_transform_dropped_events_total",
        "transform" => transform.to_string(),
        "reason" => reason
    )
}

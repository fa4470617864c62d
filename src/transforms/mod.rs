//! Transforms: the `Transform` trait and the registry that maps a config `type` to a
//! transform. A transform is pure and synchronous; the runtime runs it on each batch
//! and finalizes a batch whose events were all dropped.

pub mod filter;
pub mod level;
pub mod parse;
mod pattern;
pub mod redact;

use serde::Deserialize;

use crate::event::Event;

/// Rewrites or drops the events of one batch in place. Never touches delivery: a
/// dropped event is acknowledged with the rest of its batch.
pub trait Transform: Send {
    fn apply(&mut self, events: &mut Vec<Event>);
}

/// The `[transforms.ID]` table, by `type`.
#[derive(Debug)]
pub enum TransformConfig {
    Filter(filter::FilterConfig),
    Level(level::LevelConfig),
    Parse(parse::ParseConfig),
    Redact(redact::RedactConfig),
}

impl TransformConfig {
    pub const TYPES: &[&str] = &["filter", "level", "parse", "redact"];

    /// Deserializes the options of transform type `type_name`; `None` if no such type.
    pub fn deserialize_type<'de, D: serde::Deserializer<'de>>(
        type_name: &str,
        options: D,
    ) -> Option<Result<Self, D::Error>> {
        Some(match type_name {
            "filter" => filter::FilterConfig::deserialize(options).map(TransformConfig::Filter),
            "level" => level::LevelConfig::deserialize(options).map(TransformConfig::Level),
            "parse" => parse::ParseConfig::deserialize(options).map(TransformConfig::Parse),
            "redact" => redact::RedactConfig::deserialize(options).map(TransformConfig::Redact),
            _ => return None,
        })
    }

    /// Checks that need more than one option at a time.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            TransformConfig::Filter(_) | TransformConfig::Level(_) => Ok(()),
            TransformConfig::Parse(c) => c.validate(),
            TransformConfig::Redact(c) => c.validate(),
        }
    }

    /// Builds the transform with id `id` (the label of its metrics).
    pub fn build(&self, id: &str) -> anyhow::Result<Box<dyn Transform>> {
        Ok(match self {
            TransformConfig::Filter(c) => Box::new(filter::Filter::new(id, c)),
            TransformConfig::Level(c) => Box::new(level::LevelTag::new(id, c)),
            TransformConfig::Parse(c) => Box::new(parse::Parse::new(id, c)),
            TransformConfig::Redact(c) => Box::new(redact::Redact::new(id, c)?),
        })
    }
}

/// Counts events a transform dropped on purpose, by reason.
fn drop_counter(transform: &str, reason: &'static str) -> metrics::Counter {
    metrics::counter!(
        "ferry_transform_drops_total",
        "transform" => transform.to_string(),
        "reason" => reason
    )
}

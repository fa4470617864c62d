//! Transforms: the `Transform` trait and the registry that maps a config `type` to a
//! transform. A transform is pure and synchronous; the runtime runs it on each batch
//! and finalizes a batch whose events were all dropped.

use crate::event::Event;

/// Rewrites or drops the events of one batch in place. Never touches delivery: a
/// dropped event is acknowledged with the rest of its batch.
pub trait Transform: Send {
    fn apply(&mut self, events: &mut Vec<Event>);
}

/// The `[transforms.ID]` table, by `type`. No transform types exist yet.
#[derive(Debug)]
pub enum TransformConfig {}

impl TransformConfig {
    pub const TYPES: &[&str] = &[];

    /// Deserializes the options of transform type `type_name`; `None` if no such type.
    pub fn deserialize_type<'de, D: serde::Deserializer<'de>>(
        _type_name: &str,
        _options: D,
    ) -> Option<Result<Self, D::Error>> {
        None
    }

    pub fn build(&self) -> anyhow::Result<Box<dyn Transform>> {
        match *self {}
    }
}

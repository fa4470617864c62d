//! The `level` transform: sets each event's `level` from the first source that knows
//! it (the level a provider already set, a parsed field, the message text, the
//! stream), normalizes aliases, and optionally drops events below `min_level`.

mod text;

use serde::Deserialize;
use serde_json::Value;

use super::{Transform, drop_counter};
use crate::event::{Event, Level};

use text::TextRules;

/// Where a level can come from, in the order given by `sources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LevelSource {
    /// The level the source (provider) already set.
    Provider,
    /// The first of `fields` that holds a level name or number.
    Fields,
    /// The message text (see the rules in the docs).
    Message,
    /// `stream = "stderr"` gives `stderr_level`.
    Stream,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelConfig {
    /// Sources tried in order. Default `["provider", "fields", "message", "stream"]`.
    #[serde(default = "default_sources")]
    pub sources: Vec<LevelSource>,
    /// Parsed fields read by the `fields` source, in order (dots walk into objects).
    /// Names (`warning`, `err`, `crit` …), syslog severities 0–7 and bunyan/pino
    /// levels 10–60 are understood. Default: `level`, `lvl`, `severity`,
    /// `log.level`, `loglevel`, `levelname`, `PRIORITY` (journald), `priority`.
    #[serde(default = "default_fields")]
    pub fields: Vec<String>,
    /// The level of an event on stderr when nothing else is known. Default `error`.
    #[serde(default = "default_stderr_level")]
    pub stderr_level: Level,
    /// The level when no source knows one; left out, the level stays unset.
    #[serde(default)]
    pub default: Option<Level>,
    /// Drop events below this level (counted, reason `below_min_level`). Events
    /// whose level stays unknown are kept.
    #[serde(default)]
    pub min_level: Option<Level>,
    /// How many leading bytes of the message are searched for a level word.
    /// Default 200. Error markers (`Traceback`, `panicked at`, `Exception`) are
    /// searched in the whole message.
    #[serde(default = "default_header_bytes")]
    pub header_bytes: usize,
}

fn default_sources() -> Vec<LevelSource> {
    vec![
        LevelSource::Provider,
        LevelSource::Fields,
        LevelSource::Message,
        LevelSource::Stream,
    ]
}

fn default_fields() -> Vec<String> {
    [
        "level",
        "lvl",
        "severity",
        "log.level",
        "loglevel",
        "levelname",
        "PRIORITY",
        "priority",
    ]
    .map(String::from)
    .to_vec()
}

fn default_stderr_level() -> Level {
    Level::Error
}

fn default_header_bytes() -> usize {
    text::DEFAULT_HEADER_BYTES
}

#[derive(Clone)]
pub struct LevelTag {
    config: LevelConfig,
    text: TextRules,
    dropped: metrics::Counter,
}

impl LevelTag {
    pub fn new(id: &str, config: &LevelConfig) -> Self {
        LevelTag {
            config: config.clone(),
            text: TextRules::new(config.header_bytes),
            dropped: drop_counter(id, "below_min_level"),
        }
    }

    fn level_of(&self, event: &Event) -> Option<Level> {
        self.config
            .sources
            .iter()
            .find_map(|source| match source {
                LevelSource::Provider => event.level,
                LevelSource::Fields => self
                    .config
                    .fields
                    .iter()
                    .find_map(|f| event.field(f).and_then(level_of_value)),
                LevelSource::Message => self.text.level_of(&event.message),
                LevelSource::Stream => {
                    (event.stream.as_deref() == Some("stderr")).then_some(self.config.stderr_level)
                }
            })
            .or(self.config.default)
    }
}

impl Transform for LevelTag {
    fn apply(&mut self, events: &mut Vec<Event>) {
        for event in events.iter_mut() {
            event.level = self.level_of(event);
        }
        if let Some(min) = self.config.min_level {
            let before = events.len();
            events.retain(|e| e.level.is_none_or(|level| level >= min));
            self.dropped.increment((before - events.len()) as u64);
        }
    }
}

/// A level from a field value: a name, or a number (as such or as text).
fn level_of_value(value: &Value) -> Option<Level> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            Level::from_name(s).or_else(|| s.parse().ok().and_then(level_of_number))
        }
        Value::Number(n) => n.as_u64().and_then(level_of_number),
        _ => None,
    }
}

/// Syslog severities 0–7 (journald `PRIORITY`), bunyan/pino levels 10–60.
fn level_of_number(n: u64) -> Option<Level> {
    Some(match n {
        0..=2 => Level::Fatal,
        3 => Level::Error,
        4 => Level::Warn,
        5 => Level::Notice,
        6 => Level::Info,
        7 => Level::Debug,
        10 => Level::Trace,
        20 => Level::Debug,
        30 => Level::Info,
        40 => Level::Warn,
        50 => Level::Error,
        60 => Level::Fatal,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;

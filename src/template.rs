//! Templates such as `/var/log/ferry/{{ app }}/%Y-%m-%d.log`: `{{ name }}` takes an
//! event value (see [`Event::lookup`]), `%` sequences are strftime parts of the event
//! time in UTC. Compiled once when the config is read; a missing value renders empty.

use std::fmt::Write;

use chrono::format::{Item, StrftimeItems};
use serde::{Deserialize, Deserializer};

use crate::event::Event;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(String),
    Time(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("{{") {
                let end = after
                    .find("}}")
                    .ok_or_else(|| format!("unclosed `{{{{` in template `{source}`"))?;
                let name = after[..end].trim();
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                {
                    return Err(format!("invalid field name `{name}` in template `{source}`"));
                }
                parts.push(Part::Field(name.to_string()));
                rest = &after[end + 2..];
            } else if rest.starts_with('%') {
                let len = strftime_len(rest);
                let spec = &rest[..len];
                if StrftimeItems::new(spec).any(|item| matches!(item, Item::Error)) {
                    return Err(format!("invalid time format `{spec}` in template `{source}`"));
                }
                parts.push(Part::Time(spec.to_string()));
                rest = &rest[len..];
            } else {
                let end = rest
                    .find(['{', '%'])
                    .map(|i| if i == 0 { 1 } else { i })
                    .unwrap_or(rest.len());
                match parts.last_mut() {
                    Some(Part::Literal(text)) => text.push_str(&rest[..end]),
                    _ => parts.push(Part::Literal(rest[..end].to_string())),
                }
                rest = &rest[end..];
            }
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// True when the template renders the same text for every event.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn render(&self, event: &Event) -> String {
        let mut out = String::new();
        self.render_into(event, &mut out);
        out
    }

    pub fn render_into(&self, event: &Event, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(name) => {
                    if let Some(value) = event.lookup(name) {
                        out.push_str(&value);
                    }
                }
                Part::Time(spec) => {
                    let time = chrono::DateTime::from_timestamp_nanos(event.timestamp);
                    let _ = write!(out, "{}", time.format(spec));
                }
            }
        }
    }
}

/// Length of the run of `%X` sequences at the start of `s` (with `%-d`, `%3f`-style
/// modifiers), so adjacent parts share one strftime call.
fn strftime_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() && bytes[i] == b'%' {
        i += 1;
        while i < bytes.len() && matches!(bytes[i], b'-' | b'_' | b'0'..=b'9' | b'.' | b':' | b'#') {
            i += 1;
        }
        if i < bytes.len() {
            i += s[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    i
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        Template::parse(&source).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_and_time_parts() {
        let mut event = Event::new("s".into(), "demo".into(), "m".into(), 1_763_632_800_000_000_000);
        event.origin.app = Some("web".into());
        let t = Template::parse("/logs/{{ app }}/{{provider}}-%Y-%m-%d.log").unwrap();
        assert_eq!(t.render(&event), "/logs/web/demo-2025-11-20.log");
        let t = Template::parse("{{ missing }}|100%%|%H").unwrap();
        assert_eq!(t.render(&event), "|100%|10");
        assert!(Template::parse("plain {x}").unwrap().is_static());
    }

    #[test]
    fn rejects_broken_templates() {
        assert!(Template::parse("{{ app").unwrap_err().contains("unclosed"));
        assert!(Template::parse("{{ a b }}").unwrap_err().contains("invalid field name"));
        assert!(Template::parse("%Q").unwrap_err().contains("invalid time format"));
    }
}

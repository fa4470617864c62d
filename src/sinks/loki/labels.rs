//! Stream labels: rendering an event's label set in Prometheus text form (the stream's
//! identity), and the cap on active streams. When a new label set would exceed
//! `max_streams`, the labels with the most distinct values are dropped from it, one at
//! a time, until it matches a stream that is already active; the caller moves them to
//! structured metadata. If no reduction matches, the event goes to one overflow stream
//! `{ferry_overflow="true"}`, so the count never grows past `max_streams + 1`.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use crate::event::Event;
use crate::template::Template;

/// The label set of the overflow stream.
pub const OVERFLOW_STREAM: &str = "{ferry_overflow=\"true\"}";

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Appends `value` quoted and escaped as in Prometheus: `\\`, `\"`, `\n`.
pub fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The configured labels, sorted by name, rendered per event into reusable buffers.
pub struct LabelTemplates {
    names: Vec<String>,
    templates: Vec<Template>,
}

impl LabelTemplates {
    pub fn new(labels: impl IntoIterator<Item = (String, Template)>) -> Self {
        let mut pairs: Vec<(String, Template)> = labels.into_iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, templates) = pairs.into_iter().unzip();
        LabelTemplates { names, templates }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Renders every label of `event` into `values` (same order as `names`); a label
    /// whose template renders empty is absent from the stream.
    pub fn render(&self, event: &Event, values: &mut Vec<String>) {
        values.resize_with(self.templates.len(), String::new);
        for (template, value) in self.templates.iter().zip(values.iter_mut()) {
            value.clear();
            template.render_into(event, value);
        }
    }
}

/// Writes the Prometheus text form of the labels `keep` selects into `out`:
/// `{app="web", level="error"}`.
pub fn write_key(
    names: &[String],
    values: &[String],
    keep: impl Fn(usize) -> bool,
    out: &mut String,
) {
    out.clear();
    out.push('{');
    let mut first = true;
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if value.is_empty() || !keep(i) {
            continue;
        }
        if !first {
            out.push_str(", ");
        }
        first = false;
        let _ = write!(out, "{name}=");
        push_quoted(out, value);
    }
    out.push('}');
}

/// What [`ActiveStreams::admit`] decided for one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// The full label set (now in the key buffer).
    Full,
    /// The labels at these indexes were dropped to fit under the cap; the key buffer
    /// holds the reduced set (or the overflow stream).
    Reduced(Vec<usize>),
}

struct Active {
    last_seen: Instant,
    values: Vec<String>,
}

/// The label sets written recently, and how many distinct values each label has among
/// them.
pub struct ActiveStreams {
    max: usize,
    idle: Duration,
    streams: HashMap<String, Active>,
    /// Per label index: value → number of active streams that carry it.
    cardinality: Vec<HashMap<String, usize>>,
    last_sweep: Instant,
}

impl ActiveStreams {
    pub fn new(label_count: usize, max: usize, idle: Duration) -> Self {
        ActiveStreams {
            max,
            idle,
            streams: HashMap::new(),
            cardinality: vec![HashMap::new(); label_count],
            last_sweep: Instant::now(),
        }
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Finds or admits the stream for `values`, leaving its key in `key`.
    pub fn admit(
        &mut self,
        names: &[String],
        values: &[String],
        now: Instant,
        key: &mut String,
    ) -> Admission {
        write_key(names, values, |_| true, key);
        if let Some(active) = self.streams.get_mut(key.as_str()) {
            active.last_seen = now;
            return Admission::Full;
        }
        if self.streams.len() < self.max && key.len() > 2 {
            self.insert(key.clone(), values.to_vec(), now);
            return Admission::Full;
        }
        let mut order: Vec<usize> = (0..values.len())
            .filter(|&i| !values[i].is_empty())
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.cardinality[i].len()));
        let mut dropped = Vec::new();
        for &index in &order[..order.len().saturating_sub(1)] {
            dropped.push(index);
            write_key(names, values, |i| !dropped.contains(&i), key);
            if let Some(active) = self.streams.get_mut(key.as_str()) {
                active.last_seen = now;
                return Admission::Reduced(dropped);
            }
        }
        key.clear();
        key.push_str(OVERFLOW_STREAM);
        match self.streams.get_mut(OVERFLOW_STREAM) {
            Some(active) => active.last_seen = now,
            None => {
                self.streams.insert(
                    OVERFLOW_STREAM.to_string(),
                    Active {
                        last_seen: now,
                        values: Vec::new(),
                    },
                );
            }
        }
        Admission::Reduced(order)
    }

    fn insert(&mut self, key: String, values: Vec<String>, now: Instant) {
        for (index, value) in values.iter().enumerate() {
            if !value.is_empty() {
                *self.cardinality[index].entry(value.clone()).or_default() += 1;
            }
        }
        self.streams.insert(
            key,
            Active {
                last_seen: now,
                values,
            },
        );
    }

    /// Forgets streams idle for longer than the idle timeout (at most once a second).
    pub fn expire(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = now;
        let idle = self.idle;
        let cardinality = &mut self.cardinality;
        self.streams.retain(|_, active| {
            let keep = now.saturating_duration_since(active.last_seen) < idle;
            if !keep {
                for (index, value) in active.values.iter().enumerate() {
                    if let Some(count) = cardinality[index].get_mut(value.as_str()) {
                        *count -= 1;
                        if *count == 0 {
                            cardinality[index].remove(value.as_str());
                        }
                    }
                }
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["app".into(), "level".into(), "pod".into()]
    }

    fn values(app: &str, level: &str, pod: &str) -> Vec<String> {
        vec![app.into(), level.into(), pod.into()]
    }

    #[test]
    fn keys_are_sorted_escaped_and_skip_empty_values() {
        let mut key = String::new();
        write_key(&names(), &values("we\"b\\", "", "a\nb"), |_| true, &mut key);
        assert_eq!(key, r#"{app="we\"b\\", pod="a\nb"}"#);
        assert!(is_valid_label_name("_a1"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a-b"));
        assert!(!is_valid_label_name(""));
    }

    #[test]
    fn the_cap_drops_the_highest_cardinality_label_first() {
        let now = Instant::now();
        let mut streams = ActiveStreams::new(3, 4, Duration::from_secs(60));
        let mut key = String::new();
        for pod in ["p1", "p2", "p3"] {
            assert_eq!(
                streams.admit(&names(), &values("web", "info", pod), now, &mut key),
                Admission::Full
            );
        }
        assert_eq!(
            streams.admit(&names(), &values("web", "info", ""), now, &mut key),
            Admission::Full
        );
        assert_eq!(streams.len(), 4);
        let admitted = streams.admit(&names(), &values("web", "info", "p9"), now, &mut key);
        assert_eq!(admitted, Admission::Reduced(vec![2]));
        assert_eq!(key, r#"{app="web", level="info"}"#);
        let admitted = streams.admit(&names(), &values("api", "warn", "p9"), now, &mut key);
        assert_eq!(admitted, Admission::Reduced(vec![2, 0, 1]));
        assert_eq!(key, OVERFLOW_STREAM);
        assert_eq!(
            streams.len(),
            5,
            "the overflow stream is the only one past the cap"
        );
        streams.expire(now + Duration::from_secs(120));
        assert_eq!(streams.len(), 0);
        assert!(streams.cardinality.iter().all(HashMap::is_empty));
    }
}

//! The `redact` transform: finds secrets and personal data in the message and in
//! every parsed field (keys and string values, at any depth) with the built-in
//! detectors and custom patterns, and replaces each with a mask, a keyed hash (same
//! value, same token, never reversible) or a partial view. Values under keys that
//! carry secrets (`password`, `token`, …) are replaced whole. Matches are counted per
//! detector.

mod detectors;
mod scope;
mod shapes;
mod texts;

use std::path::PathBuf;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

pub use detectors::Detector;
use detectors::{Found, Scanner};
use scope::{DEFAULT_SENSITIVE_KEYS, FieldPath, FieldScope, Reach, SensitiveKeys};
use texts::{Joined, KEEP_BYTES, Object};

use super::Transform;
use super::pattern::Pattern;
use crate::event::{Event, Origin};
use crate::secret::{Secret, resolve_secret};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Replace with `replacement` (default `[REDACTED:{detector}]`).
    #[default]
    Mask,
    /// Replace with a truncated HMAC-SHA256 of the value under `key`, rendered by
    /// `replacement` (default `[{detector}:{hash}]`).
    Hash,
    /// Keep `keep_prefix` leading and `keep_suffix` trailing characters, replace the
    /// rest with `mask_char` (a value too short to show anything is masked whole).
    Partial,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// Built-in detectors to run. Default: all of them.
    #[serde(default = "all_detectors")]
    pub detectors: Vec<Detector>,
    /// Custom regexes; a pattern with a capture group redacts only its first group.
    #[serde(default)]
    pub patterns: Vec<Pattern>,
    /// Narrows the parsed fields scanned to these paths (dots walk into objects, `*`
    /// is any one key; everything under a path is included). Default: every field.
    #[serde(default)]
    pub fields: Option<Vec<FieldPath>>,
    /// Parsed fields (paths as in `fields`) left alone. Default: none.
    #[serde(default)]
    pub exclude_fields: Vec<FieldPath>,
    /// Field keys whose values are redacted whole, whatever they look like; matched
    /// ignoring case and `_`/`-`/`.`, also as a suffix (`db_password`). Default: a
    /// list of common secret carriers (`password`, `token`, `cookie`, …).
    #[serde(default = "default_sensitive_keys")]
    pub sensitive_keys: Vec<String>,
    /// Also scan the origin names (app, deployment, component, instance, host,
    /// file). Default false: they are the provider's names, usually labels.
    #[serde(default)]
    pub include_origin: bool,
    /// Default `mask`.
    #[serde(default)]
    pub mode: Mode,
    /// The text put in place of a match (`mask` and `hash` modes): `{detector}` is
    /// the detector's name (`custom` for patterns), `{hash}` the hash.
    #[serde(default)]
    pub replacement: Option<String>,
    /// The HMAC key for `hash` mode (usually `"${REDACT_KEY}"`), or …
    #[serde(default)]
    pub key: Option<Secret>,
    /// … a file holding only the key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Hex characters of the hash kept, 8 to 64. Default 16.
    #[serde(default = "default_hash_length")]
    pub hash_length: usize,
    /// `partial` mode: leading characters kept. Default 0.
    #[serde(default)]
    pub keep_prefix: usize,
    /// `partial` mode: trailing characters kept. Default 4.
    #[serde(default = "default_keep_suffix")]
    pub keep_suffix: usize,
    /// `partial` mode: the character that replaces the others. Default `*`.
    #[serde(default = "default_mask_char")]
    pub mask_char: char,
}

fn all_detectors() -> Vec<Detector> {
    Detector::ALL.to_vec()
}

fn default_sensitive_keys() -> Vec<String> {
    DEFAULT_SENSITIVE_KEYS
        .iter()
        .map(|k| k.to_string())
        .collect()
}

/// The detector name that values under sensitive keys are reported as.
const SENSITIVE_KEY: &str = "sensitive_key";

fn default_hash_length() -> usize {
    16
}

fn default_keep_suffix() -> usize {
    4
}

fn default_mask_char() -> char {
    '*'
}

impl RedactConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.detectors.is_empty() && self.patterns.is_empty() && self.sensitive_keys.is_empty() {
            return Err(
                "nothing to detect: give `detectors`, `patterns` or `sensitive_keys`".into(),
            );
        }
        let has_key = self.key.is_some() || self.key_file.is_some();
        match self.mode {
            Mode::Hash if !has_key => {
                return Err("mode = \"hash\" needs `key` or `key_file`".into());
            }
            Mode::Hash if self.key.is_some() && self.key_file.is_some() => {
                return Err("give either `key` or `key_file`, not both".into());
            }
            Mode::Mask | Mode::Partial if has_key => {
                return Err("`key` and `key_file` are only used with mode = \"hash\"".into());
            }
            Mode::Partial if self.replacement.is_some() => {
                return Err("`replacement` is not used with mode = \"partial\"".into());
            }
            _ => {}
        }
        if !(8..=64).contains(&self.hash_length) {
            return Err("`hash_length` must be between 8 and 64".into());
        }
        if let Some(replacement) = &self.replacement
            && self.mode == Mode::Mask
            && replacement.contains("{hash}")
        {
            return Err("`{hash}` in `replacement` needs mode = \"hash\"".into());
        }
        Ok(())
    }
}

/// The replacement template, split once into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Detector,
    Hash,
}

fn compile_replacement(template: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        let next = [("{detector}", Part::Detector), ("{hash}", Part::Hash)]
            .into_iter()
            .filter_map(|(tag, part)| rest.find(tag).map(|at| (at, tag.len(), part)))
            .min_by_key(|(at, _, _)| *at);
        match next {
            Some((at, len, part)) => {
                if at > 0 {
                    parts.push(Part::Text(rest[..at].to_string()));
                }
                parts.push(part);
                rest = &rest[at + len..];
            }
            None => {
                parts.push(Part::Text(rest.to_string()));
                rest = "";
            }
        }
    }
    parts
}

#[derive(Clone)]
enum Render {
    Template(Vec<Part>, Option<Hmac<Sha256>>),
    Partial {
        prefix: usize,
        suffix: usize,
        mask: char,
    },
}

#[derive(Clone)]
pub struct Redact {
    scanner: Scanner,
    scope: FieldScope,
    sensitive: SensitiveKeys,
    include_origin: bool,
    render: Render,
    hash_length: usize,
    /// Per scanner rule: its name and its match counter.
    rules: Vec<(&'static str, metrics::Counter)>,
    /// Values redacted whole because of their key.
    sensitive_matches: metrics::Counter,
    /// Matches per rule, then values under sensitive keys, since the last batch:
    /// added to the counters once a batch, as lanes adding to the same counters for
    /// each match keep taking their cache line from each other.
    unpublished: Vec<u64>,
    /// Every text of the current event in scope, joined: one multi-pattern pass tells
    /// which regex rules occur (most texts hold none), then one search per such rule,
    /// and per byte-scanner rule, finds their matches in every text.
    joined: Joined,
    /// The rules found in `joined`.
    candidates: Vec<usize>,
    found: Vec<Found>,
    /// The text being rewritten; swapped with the text it replaces, whose buffer is
    /// written into next (no allocation per rewrite).
    rewritten: String,
    /// Where the matches of the texts being rewritten come from.
    source: MatchSource,
}

/// How [`Redact::redacted`] finds the matches of the text it is given.
#[derive(Clone)]
enum MatchSource {
    /// Found already in the joined texts (`found`, in joined positions): the text is
    /// the `text`-th of `joined`, its matches start at `found[next]`.
    Joined { text: usize, next: usize },
    /// Scanned text by text with the candidate rules (a match ran across texts).
    Candidates,
    /// Scanned text by text with every rule (custom patterns cannot be joined).
    Everything,
}

impl Redact {
    pub fn new(id: &str, config: &RedactConfig) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let scanner = Scanner::new(&config.detectors, &config.sensitive_keys, &config.patterns)?;
        let rules: Vec<_> = scanner
            .rules()
            .map(|rule| {
                let counter = metrics::counter!(
                    "ferry_redact_matches_total",
                    "transform" => id.to_string(),
                    "detector" => rule.name()
                );
                (rule.name(), counter)
            })
            .collect();
        let render = match config.mode {
            Mode::Mask => Render::Template(
                compile_replacement(
                    config
                        .replacement
                        .as_deref()
                        .unwrap_or("[REDACTED:{detector}]"),
                ),
                None,
            ),
            Mode::Hash => {
                let key = resolve_secret("key", config.key.as_ref(), config.key_file.as_deref())
                    .map_err(anyhow::Error::msg)?
                    .ok_or_else(|| anyhow::anyhow!("mode = \"hash\" needs `key` or `key_file`"))?;
                if key.expose().is_empty() {
                    anyhow::bail!("the redact `key` is empty");
                }
                let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose().as_bytes())
                    .map_err(|e| anyhow::anyhow!("unusable redact key: {e}"))?;
                Render::Template(
                    compile_replacement(
                        config
                            .replacement
                            .as_deref()
                            .unwrap_or("[{detector}:{hash}]"),
                    ),
                    Some(mac),
                )
            }
            Mode::Partial => Render::Partial {
                prefix: config.keep_prefix,
                suffix: config.keep_suffix,
                mask: config.mask_char,
            },
        };
        Ok(Redact {
            scanner,
            scope: FieldScope::new(config.fields.clone(), config.exclude_fields.clone()),
            sensitive: SensitiveKeys::new(&config.sensitive_keys),
            include_origin: config.include_origin,
            render,
            hash_length: config.hash_length,
            unpublished: vec![0; rules.len() + 1],
            rules,
            sensitive_matches: metrics::counter!(
                "ferry_redact_matches_total",
                "transform" => id.to_string(),
                "detector" => SENSITIVE_KEY
            ),
            joined: Joined::default(),
            candidates: Vec::new(),
            found: Vec::new(),
            rewritten: String::new(),
            source: MatchSource::Everything,
        })
    }

    /// Adds the matches counted since the last batch to the shared counters.
    fn publish_matches(&mut self) {
        let counters = self.rules.iter().map(|(_, counter)| counter);
        for (counter, count) in counters
            .chain([&self.sensitive_matches])
            .zip(&mut self.unpublished)
        {
            if *count > 0 {
                counter.increment(std::mem::take(count));
            }
        }
    }

    /// Redacts whatever `event` holds: gathers its texts in scope, finds their
    /// matches with one search per rule that may occur in them, and rewrites the
    /// event only when there is something to replace.
    fn redact_event(&mut self, event: &mut Event) {
        if !self.scanner.joinable() {
            self.source = MatchSource::Everything;
            self.rewrite(event);
            return;
        }
        let mut joined = std::mem::take(&mut self.joined);
        joined.clear();
        let sensitive = self.gather(event, &mut joined);
        self.scanner.candidates(&joined.text, &mut self.candidates);
        let whole = self
            .scanner
            .scan_joined(&joined, &self.candidates, &mut self.found);
        self.joined = joined;
        if whole && self.found.is_empty() && !sensitive {
            return;
        }
        self.source = if whole {
            MatchSource::Joined { text: 0, next: 0 }
        } else {
            MatchSource::Candidates
        };
        self.rewrite(event);
    }

    /// Pushes every text of `event` in scope to `joined`, in the order [`Redact::rewrite`]
    /// visits them; `true` when a sensitive key in scope holds a value to replace.
    fn gather(&self, event: &Event, joined: &mut Joined) -> bool {
        joined.push(&event.message);
        let mut path = Vec::new();
        let sensitive = self.gather_object(&event.fields, &mut path, Reach::In, joined);
        if self.include_origin {
            let origin = &event.origin;
            for name in origin.names().into_iter().flatten() {
                joined.push(name);
            }
            if let Some(file) = &origin.file {
                joined.push(file);
            }
        }
        sensitive
    }

    fn gather_object(
        &self,
        object: &impl Object,
        path: &mut Vec<String>,
        reach: Reach,
        joined: &mut Joined,
    ) -> bool {
        let track = !self.scope.is_everything();
        let mut sensitive = false;
        for (key, value) in object.entries() {
            let reach = if track {
                path.push(key.clone());
                self.scope.reach(path)
            } else {
                reach
            };
            if reach == Reach::In {
                joined.push(key);
            }
            if reach == Reach::In && self.sensitive.contains(key) {
                sensitive |= holds_text(value);
            } else if reach != Reach::Out {
                sensitive |= self.gather_value(value, path, reach, joined);
            }
            if track {
                path.pop();
            }
        }
        sensitive
    }

    fn gather_value(
        &self,
        value: &Value,
        path: &mut Vec<String>,
        reach: Reach,
        joined: &mut Joined,
    ) -> bool {
        match value {
            Value::String(text) if reach == Reach::In => {
                joined.push(text);
                false
            }
            Value::Array(items) => items
                .iter()
                .fold(false, |s, v| self.gather_value(v, path, reach, joined) | s),
            Value::Object(map) => self.gather_object(map, path, reach, joined),
            Value::String(_) | Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }

    /// Rewrites every text of `event` in scope, in the order [`Redact::gather`] pushed
    /// them: the message, the fields (each key, then its value), the origin names.
    fn rewrite(&mut self, event: &mut Event) {
        self.redact_text(&mut event.message);
        let mut path = Vec::new();
        self.redact_object(&mut event.fields, &mut path, Reach::In);
        if self.include_origin {
            self.redact_origin(&mut event.origin);
        }
    }

    /// Redacts `text` in place; leaves it untouched (no allocation) when clean.
    fn redact_text(&mut self, text: &mut String) {
        if self.redacted(text) {
            std::mem::swap(text, &mut self.rewritten);
            // The text's old buffer is written into next, unless a huge text left it.
            if self.rewritten.capacity() > KEEP_BYTES {
                self.rewritten = String::new();
            }
        }
    }

    /// Writes the redacted form of `text` (the next text in gathering order) to
    /// `rewritten`; `false` when it holds nothing to redact.
    fn redacted(&mut self, text: &str) -> bool {
        let (found, offset) = match &mut self.source {
            MatchSource::Joined { text: index, next } => {
                let (start, end) = self.joined.spans[*index];
                *index += 1;
                let first = *next;
                while self.found.get(*next).is_some_and(|f| f.start < end) {
                    *next += 1;
                }
                (&self.found[first..*next], start)
            }
            MatchSource::Candidates => {
                self.scanner
                    .scan_rules(text, &self.candidates, &mut self.found);
                (&self.found[..], 0)
            }
            MatchSource::Everything => {
                self.scanner.candidates(text, &mut self.candidates);
                self.scanner
                    .scan_rules(text, &self.candidates, &mut self.found);
                (&self.found[..], 0)
            }
        };
        if found.is_empty() {
            return false;
        }
        let out = &mut self.rewritten;
        out.clear();
        out.reserve(text.len() + 16 * found.len());
        let mut last = 0;
        for f in found {
            let (start, end) = (f.start - offset, f.end - offset);
            out.push_str(&text[last..start]);
            let (name, _) = &self.rules[f.rule];
            self.unpublished[f.rule] += 1;
            render_one(&self.render, self.hash_length, name, &text[start..end], out);
            last = end;
        }
        out.push_str(&text[last..]);
        true
    }

    /// Redacts the keys and values of `object` in scope: string values, and keys
    /// that hold a secret themselves (a map keyed by address or e-mail); values under
    /// sensitive keys are replaced whole. `path` is tracked only when the scope is
    /// narrowed (`fields`, `exclude_fields`).
    fn redact_object(&mut self, object: &mut impl Object, path: &mut Vec<String>, reach: Reach) {
        let track = !self.scope.is_everything();
        let mut renamed = Vec::new();
        for (key, value) in object.entries_mut() {
            let reach = if track {
                path.push(key.clone());
                self.scope.reach(path)
            } else {
                reach
            };
            if reach == Reach::In && self.redacted(key) {
                renamed.push((key.clone(), std::mem::take(&mut self.rewritten)));
            }
            match reach {
                Reach::Out => {}
                Reach::In if self.sensitive.contains(key) => self.redact_whole(value),
                _ => self.redact_value(value, path, reach),
            }
            if track {
                path.pop();
            }
        }
        for (old, new) in renamed {
            if let Some(value) = object.take(&old) {
                // Masks of different keys are alike: number them rather than lose a value.
                let mut key = new.clone();
                let mut n = 2;
                while object.has(&key) {
                    key = format!("{new}#{n}");
                    n += 1;
                }
                object.put(key, value);
            }
        }
    }

    fn redact_value(&mut self, value: &mut Value, path: &mut Vec<String>, reach: Reach) {
        match value {
            Value::String(text) if reach == Reach::In => self.redact_text(text),
            Value::Array(items) => items
                .iter_mut()
                .for_each(|v| self.redact_value(v, path, reach)),
            Value::Object(map) => self.redact_object(map, path, reach),
            Value::String(_) | Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Replaces a value under a sensitive key (every value inside it, for an object
    /// or array); empty strings, nulls and booleans say nothing secret and stay.
    fn redact_whole(&mut self, value: &mut Value) {
        let text = match value {
            Value::Array(items) => return items.iter_mut().for_each(|v| self.redact_whole(v)),
            Value::Object(map) => return map.values_mut().for_each(|v| self.redact_whole(v)),
            Value::Null | Value::Bool(_) => return,
            Value::String(s) if s.is_empty() => return,
            Value::String(s) => std::mem::take(s),
            Value::Number(n) => n.to_string(),
        };
        self.unpublished[self.rules.len()] += 1;
        let mut out = String::new();
        render_one(
            &self.render,
            self.hash_length,
            SENSITIVE_KEY,
            &text,
            &mut out,
        );
        *value = Value::String(out);
    }

    fn redact_origin(&mut self, origin: &mut Origin) {
        for name in [
            &mut origin.app,
            &mut origin.deployment,
            &mut origin.component,
            &mut origin.instance,
            &mut origin.host,
        ]
        .into_iter()
        .flatten()
        {
            self.redact_text(name);
        }
        if let Some(file) = &origin.file
            && self.redacted(file)
        {
            origin.file = Some(self.rewritten.as_str().into());
        }
    }
}

/// Appends what replaces `value`, found by `detector`.
fn render_one(render: &Render, hash_length: usize, detector: &str, value: &str, out: &mut String) {
    match render {
        Render::Template(parts, mac) => {
            for part in parts {
                match part {
                    Part::Text(text) => out.push_str(text),
                    Part::Detector => out.push_str(detector),
                    Part::Hash => {
                        if let Some(mac) = mac {
                            let mut mac = mac.clone();
                            mac.update(value.as_bytes());
                            let digest = mac.finalize().into_bytes();
                            push_hex(&digest, hash_length, out);
                        }
                    }
                }
            }
        }
        Render::Partial {
            prefix,
            suffix,
            mask,
        } => {
            let count = value.chars().count();
            if count <= prefix + suffix {
                out.extend(std::iter::repeat_n(*mask, count));
            } else {
                for (i, c) in value.chars().enumerate() {
                    let shown = i < *prefix || i >= count - suffix;
                    out.push(if shown { c } else { *mask });
                }
            }
        }
    }
}

/// Whether a value under a sensitive key has something [`Redact::redact_whole`] replaces.
fn holds_text(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(_) => false,
        Value::String(s) => !s.is_empty(),
        Value::Number(_) => true,
        Value::Array(items) => items.iter().any(holds_text),
        Value::Object(map) => map.values().any(holds_text),
    }
}

fn push_hex(bytes: &[u8], len: usize, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        if 2 * i >= len {
            break;
        }
        out.push(HEX[usize::from(b >> 4)] as char);
        if 2 * i + 1 < len {
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

impl Transform for Redact {
    fn apply(&mut self, events: &mut Vec<Event>) {
        for event in events.iter_mut() {
            self.redact_event(event);
        }
        self.publish_matches();
    }
}

#[cfg(test)]
mod tests;

//! The `parse` transform: reads structure out of the message (or a field) as JSON,
//! logfmt, a regex with named captures, syslog, a provider's line format, or
//! whichever of those a line looks like (`auto`). A line that cannot be read passes
//! unchanged, tagged with an error field and counted, unless `on_error = "drop"`.

mod logfmt;
mod provider;
mod syslog;
mod timestamp;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use timestamp::TimestampFormat;

use super::pattern::Pattern;
use super::{Transform, drop_counter};
use crate::event::{Event, Fields};
use crate::telemetry::catalog;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A JSON object; its keys become fields.
    Json,
    /// `key=value key2="quoted value"`; values stay strings, a bare key is `true`.
    Logfmt,
    /// `pattern`'s named captures become fields.
    Regex,
    /// RFC 5424 or RFC 3164 (`<PRI>` required).
    Syslog,
    /// `2015-02-16 02:02:43.930163178 +0000 UTC [web-1] message`.
    Scalingo,
    /// `<component> <RFC3339Nano> <message>` (DigitalOcean App Platform).
    Digitalocean,
    /// A DC/OS logging API journal entry (JSON with `fields.MESSAGE`).
    Dcos,
    /// Whichever of json, dcos, syslog, scalingo, digitalocean or logfmt the line
    /// looks like; a line that looks like none of them passes untouched (plain text
    /// is not an error).
    Auto,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Logfmt => "logfmt",
            Format::Regex => "regex",
            Format::Syslog => "syslog",
            Format::Scalingo => "scalingo",
            Format::Digitalocean => "digitalocean",
            Format::Dcos => "dcos",
            Format::Auto => "auto",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Pass the event on unchanged, with `error_field` saying what went wrong.
    #[default]
    Keep,
    /// Drop the event (it is still acknowledged, and counted with reason `parse_error`).
    Drop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseConfig {
    pub format: Format,
    /// The regex for `format = "regex"`, with named captures (`(?P<status>\d+)`).
    #[serde(default)]
    pub pattern: Option<Pattern>,
    /// What to parse: `message` (the default) or the path of a text field.
    #[serde(default = "default_field")]
    pub field: String,
    /// Where parsed fields go: merged into the event's fields (the default), or as
    /// one object under this field name.
    #[serde(default)]
    pub target: Option<String>,
    /// A parsed field (dots walk into objects) holding the event time. Left out, the
    /// event keeps its time (envelope formats such as syslog set it themselves).
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// How to read `timestamp_field`, tried in order: `rfc3339`, `unix`, `unix_ms`,
    /// `unix_us`, `unix_ns` or a strftime pattern. Default `["rfc3339", "unix"]`.
    #[serde(default = "timestamp::default_formats")]
    pub timestamp_formats: Vec<TimestampFormat>,
    /// What to do with a line that cannot be parsed. Default `keep`.
    #[serde(default)]
    pub on_error: OnError,
    /// The field that says why parsing failed. Default `parse_error`.
    #[serde(default = "default_error_field")]
    pub error_field: String,
}

fn default_field() -> String {
    "message".into()
}

fn default_error_field() -> String {
    "parse_error".into()
}

impl ParseConfig {
    pub fn validate(&self) -> Result<(), String> {
        match (self.format, &self.pattern) {
            (Format::Regex, None) => Err("format = \"regex\" needs a `pattern`".into()),
            (Format::Regex, Some(p)) if p.capture_names().flatten().next().is_none() => {
                Err("`pattern` has no named capture such as (?P<name>...)".into())
            }
            (Format::Regex, Some(_)) | (_, None) => Ok(()),
            (_, Some(_)) => Err("`pattern` is only used with format = \"regex\"".into()),
        }
    }
}

/// What a format read out of one value. `message` is the text inside an envelope
/// (syslog, provider lines): it replaces the value that was parsed.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub fields: Fields,
    pub message: Option<String>,
    pub timestamp: Option<i64>,
    pub component: Option<String>,
    pub instance: Option<String>,
    pub host: Option<String>,
    pub stream: Option<String>,
}

impl Parsed {
    fn fields(fields: impl Into<Fields>) -> Self {
        Parsed {
            fields: fields.into(),
            ..Parsed::default()
        }
    }
}

#[derive(Clone)]
pub struct Parse {
    config: ParseConfig,
    errors: metrics::Counter,
    dropped: metrics::Counter,
}

impl Parse {
    pub fn new(id: &str, config: &ParseConfig) -> Self {
        Parse {
            config: config.clone(),
            errors: catalog::counting_as_errors(
                metrics::counter!(
                    "ferry_parse_errors_total",
                    "transform" => id.to_string(),
                    "format" => config.format.name()
                ),
                "transform",
                id,
            ),
            dropped: drop_counter(id, "parse_error"),
        }
    }

    /// Parses one event; false when it must be dropped.
    fn parse_event(&self, event: &mut Event) -> bool {
        let from_message = self.config.field == "message";
        let text = if from_message {
            Some(event.message.as_str())
        } else {
            event.field(&self.config.field).and_then(Value::as_str)
        };
        let result = match text {
            Some(text) => self.read(text),
            None => Err(format!("no text field `{}`", self.config.field)),
        };
        match result {
            Ok(Some(parsed)) => {
                self.merge(event, parsed, from_message);
                true
            }
            Ok(None) => true,
            Err(reason) => {
                self.errors.increment(1);
                match self.config.on_error {
                    OnError::Drop => {
                        self.dropped.increment(1);
                        false
                    }
                    OnError::Keep => {
                        let reason = format!("{}: {reason}", self.config.format.name());
                        event
                            .fields
                            .insert(self.config.error_field.clone(), Value::String(reason));
                        true
                    }
                }
            }
        }
    }

    /// `Ok(None)`: `auto` found no structure to read.
    fn read(&self, text: &str) -> Result<Option<Parsed>, String> {
        let format = match self.config.format {
            Format::Auto => match detect(text) {
                Some(format) => format,
                None => return Ok(None),
            },
            format => format,
        };
        let parsed = match format {
            Format::Json if self.config.format == Format::Auto => {
                let object = json_object(text)?;
                if provider::looks_like_dcos(&object) {
                    provider::dcos(object)?
                } else {
                    Parsed::fields(object)
                }
            }
            Format::Json => Parsed::fields(json_fields(text)?),
            Format::Dcos => provider::dcos(json_object(text)?)?,
            Format::Logfmt => Parsed::fields(logfmt::parse(text)?),
            Format::Regex => Parsed::fields(self.captures(text)?),
            Format::Syslog => syslog::parse(text)?,
            Format::Scalingo => provider::scalingo(text)?,
            Format::Digitalocean => provider::digitalocean(text)?,
            Format::Auto => return Ok(None),
        };
        Ok(Some(parsed))
    }

    fn captures(&self, text: &str) -> Result<Fields, String> {
        let pattern = self
            .config
            .pattern
            .as_ref()
            .ok_or("format = \"regex\" needs a `pattern`")?;
        let captures = pattern.captures(text).ok_or("pattern did not match")?;
        Ok(pattern
            .capture_names()
            .flatten()
            .filter_map(|name| {
                let value = captures.name(name)?;
                Some((name.to_string(), Value::String(value.as_str().to_string())))
            })
            .collect())
    }

    fn merge(&self, event: &mut Event, parsed: Parsed, from_message: bool) {
        let Parsed {
            fields,
            message,
            timestamp,
            component,
            instance,
            host,
            stream,
        } = parsed;
        if let Some(message) = message {
            if from_message {
                event.message = message;
            } else if let Some(slot) = event.field_mut(&self.config.field) {
                *slot = Value::String(message);
            }
        }
        if let Some(t) = timestamp {
            event.timestamp = t;
        }
        let origin = &mut event.origin;
        for (slot, value) in [
            (&mut origin.component, component),
            (&mut origin.instance, instance),
            (&mut origin.host, host),
            (&mut event.stream, stream),
        ] {
            if slot.is_none() {
                *slot = value;
            }
        }
        if let Some(name) = &self.config.timestamp_field
            && let Some(value) = fields.lookup(name)
        {
            match timestamp::read(value, &self.config.timestamp_formats) {
                Some(t) => event.timestamp = t,
                None => {
                    self.errors.increment(1);
                    event.fields.insert(
                        self.config.error_field.clone(),
                        Value::String(format!("timestamp: cannot read `{name}` = {value}")),
                    );
                }
            }
        }
        match &self.config.target {
            Some(target) => {
                event.fields.insert(target.clone(), fields.into());
            }
            None if event.fields.is_empty() => event.fields = fields,
            None => event.fields.extend(fields),
        }
    }
}

impl Transform for Parse {
    fn apply(&mut self, events: &mut Vec<Event>) {
        events.retain_mut(|event| self.parse_event(event));
    }
}

/// A JSON object read straight into fields, in its own order.
fn json_fields(text: &str) -> Result<Fields, String> {
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => "not a JSON object".to_string(),
        _ => e.to_string(),
    })
}

fn json_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The format `text` looks like, for `auto` (a JSON journal entry is told from plain
/// JSON once it is parsed).
fn detect(text: &str) -> Option<Format> {
    let trimmed = text.trim_start();
    let first = *trimmed.as_bytes().first()?;
    if first == b'{' {
        return Some(Format::Json);
    }
    if syslog::has_priority(trimmed) {
        return Some(Format::Syslog);
    }
    if provider::looks_like_scalingo(text) {
        return Some(Format::Scalingo);
    }
    if provider::looks_like_digitalocean(text) {
        return Some(Format::Digitalocean);
    }
    if logfmt::looks_like(trimmed) {
        return Some(Format::Logfmt);
    }
    None
}

#[cfg(test)]
mod tests;

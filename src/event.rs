//! The normalized log event every component speaks, and the batch that carries events
//! (with their delivery promise) through the pipeline. [`native`] writes a whole
//! event as bytes and reads it back (Kafka between ferries, the disk buffer).

pub mod native;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::checkpoint::Delivery;

mod fields;

pub use fields::{Fields, value_allocated_bytes};

/// Severity, normalized across providers and log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Notice,
    Warn,
    Error,
    Fatal,
}

impl Level {
    pub const ALL: [Level; 7] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Notice,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }

    /// Parses a level name or a common alias (`warning`, `err`, `crit`, `panic`, …),
    /// ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Level> {
        let mut buf = [0u8; 16];
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > buf.len() {
            return None;
        }
        for (dst, src) in buf.iter_mut().zip(bytes) {
            *dst = src.to_ascii_lowercase();
        }
        Some(match &buf[..bytes.len()] {
            b"trace" | b"trc" | b"verbose" | b"finest" | b"finer" => Level::Trace,
            b"debug" | b"dbg" | b"fine" => Level::Debug,
            b"info" | b"inf" | b"information" | b"informational" => Level::Info,
            b"notice" => Level::Notice,
            b"warn" | b"warning" | b"wrn" => Level::Warn,
            b"error" | b"err" | b"eror" | b"severe" => Level::Error,
            b"fatal" | b"ftl" | b"critical" | b"crit" | b"panic" | b"pnc" | b"emerg"
            | b"emergency" | b"alert" | b"dpanic" => Level::Fatal,
            _ => return None,
        })
    }
}

/// Config values name a level the way [`Level::from_name`] reads it.
impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Level::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown level `{name}`, expected one of: trace, debug, info, notice, warn, error, fatal"
            ))
        })
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an event came from inside its provider: the app, deployment, component
/// (service, unit, task), instance (container, replica), host, and the file it was
/// read from (shared by every line of a batch, so it costs no allocation per event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub app: Option<String>,
    pub deployment: Option<String>,
    pub component: Option<String>,
    pub instance: Option<String>,
    pub host: Option<String>,
    pub file: Option<Arc<str>>,
}

impl Origin {
    /// The origin names held as text (`file` aside, an `Arc`), in their order.
    pub fn names(&self) -> [&Option<String>; 5] {
        [
            &self.app,
            &self.deployment,
            &self.component,
            &self.instance,
            &self.host,
        ]
    }
}

/// One log record, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event time as Unix nanoseconds (the provider's time when known, else the
    /// time ferry read it).
    pub timestamp: i64,
    pub message: String,
    pub level: Option<Level>,
    /// `stdout`, `stderr`, `system`, or what the provider calls it.
    pub stream: Option<String>,
    /// The id of the ferry source that produced the event.
    pub source: Arc<str>,
    /// `file`, `demo`, `stdin`, `ionet`, `dcos`, …
    pub provider: Arc<str>,
    pub origin: Origin,
    /// Fields parsed out of the message or supplied by the provider.
    pub fields: Fields,
}

impl Event {
    pub fn new(source: Arc<str>, provider: Arc<str>, message: String, timestamp: i64) -> Self {
        Event {
            timestamp,
            message,
            level: None,
            stream: None,
            source,
            provider,
            origin: Origin::default(),
            fields: Fields::new(),
        }
    }

    /// The value named by `path` as text, for templates and conditions: one of the
    /// built-in names (`message`, `level`, `stream`, `source`, `provider`, `app`,
    /// `deployment`, `component`, `instance`, `host`, `file`, `timestamp`), or a parsed field,
    /// with dots walking into nested objects (`http.status`); `fields.x` is also
    /// accepted for a parsed field that shadows a built-in name.
    pub fn lookup(&self, path: &str) -> Option<Cow<'_, str>> {
        fn borrowed(s: &Option<String>) -> Option<Cow<'_, str>> {
            s.as_deref().map(Cow::Borrowed)
        }
        match path {
            "message" => Some(Cow::Borrowed(&self.message)),
            "level" => self.level.map(|l| Cow::Borrowed(l.as_str())),
            "stream" => borrowed(&self.stream),
            "source" => Some(Cow::Borrowed(&self.source)),
            "provider" => Some(Cow::Borrowed(&self.provider)),
            "app" => borrowed(&self.origin.app),
            "deployment" => borrowed(&self.origin.deployment),
            "component" => borrowed(&self.origin.component),
            "instance" => borrowed(&self.origin.instance),
            "host" => borrowed(&self.origin.host),
            "file" => self.origin.file.as_deref().map(Cow::Borrowed),
            "timestamp" => Some(Cow::Owned(format_rfc3339_nanos(self.timestamp))),
            _ => {
                let path = path.strip_prefix("fields.").unwrap_or(path);
                self.fields.lookup(path).and_then(value_as_text)
            }
        }
    }

    /// The parsed field at `path` (dots walk into nested objects), whatever its type.
    pub fn field(&self, path: &str) -> Option<&Value> {
        self.fields.lookup(path)
    }

    /// The parsed field at `path`, for rewriting it in place.
    pub fn field_mut(&mut self, path: &str) -> Option<&mut Value> {
        self.fields.lookup_mut(path)
    }

    /// The bytes this event holds: its own size and every heap allocation it owns
    /// (message, names, fields). Names shared with other events (`source`,
    /// `provider`, `file`) are not counted. Channel and in-flight budgets count this.
    pub fn allocated_bytes(&self) -> usize {
        let owned = [
            &self.stream,
            &self.origin.app,
            &self.origin.deployment,
            &self.origin.component,
            &self.origin.instance,
            &self.origin.host,
        ]
        .iter()
        .map(|s| s.as_ref().map_or(0, String::capacity))
        .sum::<usize>();
        std::mem::size_of::<Event>()
            + self.message.capacity()
            + owned
            + self.fields.allocated_bytes()
    }

    /// The event as one JSON object: `timestamp` (RFC 3339, ns), `message`, `level`,
    /// `stream`, `source`, `provider`, the origin names that are set, and `fields`.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert(
            "timestamp".into(),
            Value::String(format_rfc3339_nanos(self.timestamp)),
        );
        obj.insert("message".into(), Value::String(self.message.clone()));
        obj.insert(
            "level".into(),
            self.level
                .map_or(Value::Null, |l| Value::String(l.as_str().into())),
        );
        if let Some(stream) = &self.stream {
            obj.insert("stream".into(), Value::String(stream.clone()));
        }
        obj.insert("source".into(), Value::String(self.source.to_string()));
        obj.insert("provider".into(), Value::String(self.provider.to_string()));
        for (name, value) in [
            ("app", &self.origin.app),
            ("deployment", &self.origin.deployment),
            ("component", &self.origin.component),
            ("instance", &self.origin.instance),
            ("host", &self.origin.host),
        ] {
            if let Some(v) = value {
                obj.insert(name.into(), Value::String(v.clone()));
            }
        }
        if let Some(file) = &self.origin.file {
            obj.insert("file".into(), Value::String(file.to_string()));
        }
        if !self.fields.is_empty() {
            obj.insert("fields".into(), self.fields.clone().into());
        }
        Value::Object(obj)
    }
}

fn value_as_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// `bytes` as text, each invalid UTF-8 sequence replaced by U+FFFD. Valid text (nearly
/// every line) is checked by `str::from_utf8`, many times faster than the lossy scan.
pub fn lossy_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Unix nanoseconds now.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// `2026-11-20T10:00:00.123456789Z`
pub fn format_rfc3339_nanos(nanos: i64) -> String {
    let mut text = Vec::with_capacity(30);
    write_rfc3339_nanos(nanos, &mut text);
    String::from_utf8(text).unwrap_or_default()
}

/// Appends [`format_rfc3339_nanos`]'s text to `out`, digit by digit: every time an
/// `i64` of nanoseconds holds (1677 to 2262) has a four-digit year. The date and time
/// of the last second written on this thread are kept, since a batch's events share
/// their seconds.
pub fn write_rfc3339_nanos(nanos: i64, out: &mut Vec<u8>) {
    use std::cell::Cell;
    thread_local! {
        /// The last second written and its `YYYY-MM-DDTHH:MM:SS`.
        static LAST_SECOND: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [0; 19])) };
    }
    let (second, nanosecond) = (
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000),
    );
    let (cached, mut text) = LAST_SECOND.get();
    if cached != second {
        use chrono::{Datelike, Timelike};
        let time = chrono::DateTime::from_timestamp_nanos(nanos).naive_utc();
        let parts = [
            (0, time.year().unsigned_abs(), 4),
            (5, time.month(), 2),
            (8, time.day(), 2),
            (11, time.hour(), 2),
            (14, time.minute(), 2),
            (17, time.second(), 2),
        ];
        text = *b"0000-00-00T00:00:00";
        for (at, value, width) in parts {
            write_digits(&mut text[at..at + width], value);
        }
        LAST_SECOND.set((second, text));
    }
    out.extend_from_slice(&text);
    let mut fraction = *b".000000000Z";
    write_digits(&mut fraction[1..10], nanosecond as u32);
    out.extend_from_slice(&fraction);
}

/// Writes `value`'s last `slots.len()` decimal digits into `slots`.
fn write_digits(slots: &mut [u8], mut value: u32) {
    for slot in slots.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Events on their way, with the promise to report back once every sink has them.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<Event>,
    pub delivery: Delivery,
}

impl Batch {
    /// The bytes the batch holds: its events (see [`Event::allocated_bytes`]) and the
    /// room of its vector.
    pub fn allocated_bytes(&self) -> usize {
        allocated_bytes(&self.events)
    }
}

/// The bytes `events` hold, the vector's spare room included.
pub fn allocated_bytes(events: &Vec<Event>) -> usize {
    (events.capacity() - events.len()) * std::mem::size_of::<Event>()
        + events.iter().map(Event::allocated_bytes).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        let mut e = Event::new("src".into(), "demo".into(), "hello".into(), 0);
        e.origin.app = Some("web".into());
        e.origin.file = Some("/var/log/web.log".into());
        e.fields.insert(
            "http".into(),
            serde_json::json!({"status": 503, "path": "/x"}),
        );
        e.fields
            .insert("level".into(), Value::String("shadow".into()));
        e
    }

    #[test]
    fn lookup_reads_builtins_nested_fields_and_shadowed_names() {
        let e = event();
        assert_eq!(e.lookup("app").as_deref(), Some("web"));
        assert_eq!(e.lookup("file").as_deref(), Some("/var/log/web.log"));
        assert_eq!(e.to_json()["file"], "/var/log/web.log");
        assert_eq!(e.lookup("http.status").as_deref(), Some("503"));
        assert_eq!(e.lookup("http.path").as_deref(), Some("/x"));
        assert_eq!(e.lookup("level"), None);
        assert_eq!(e.lookup("fields.level").as_deref(), Some("shadow"));
        assert_eq!(e.lookup("missing"), None);
        assert_eq!(
            e.lookup("timestamp").as_deref(),
            Some("1970-01-01T00:00:00.000000000Z")
        );
    }

    #[test]
    fn level_aliases_normalize() {
        for (name, level) in [
            ("WARNING", Level::Warn),
            ("err", Level::Error),
            ("Crit", Level::Fatal),
            ("emerg", Level::Fatal),
            ("informational", Level::Info),
        ] {
            assert_eq!(Level::from_name(name), Some(level), "{name}");
        }
        assert_eq!(Level::from_name("loud"), None);
        assert_eq!(Level::from_name(""), None);
    }
}

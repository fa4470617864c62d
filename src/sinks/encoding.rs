//! How sinks that write lines (file, console) or records (kafka) turn an event into
//! bytes.

use json_escape_simd::escape_into;
use serde::Deserialize;
use serde_json::Value;

use crate::event::{Event, write_rfc3339_nanos};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// One JSON object per line: `timestamp`, `message`, `level`, `stream`, `source`,
    /// `provider`, the origin names that are set (`app` … `host`, `file`), and `fields`
    /// when any were parsed.
    #[default]
    Json,
    /// The message alone, one per line.
    Text,
}

/// The event's time as an [`EventObject`] writes it.
#[derive(Debug, Clone, Copy)]
pub enum Timestamp {
    /// RFC 3339 text with nanoseconds, UTC (`json`).
    Rfc3339(i64),
    /// Unix nanoseconds as a number (`native`).
    Nanos(i64),
}

/// The event as one JSON object, as the `json` encoding writes it and, with the time
/// in nanoseconds and a version key, as Kafka's `native` encoding does. Keys in this
/// order: `ferry` (the `native` format version; absent in `json`), `timestamp`,
/// `message`, `level` (null when unknown), `stream`, `source`, `provider`, the
/// origin names `app` … `host` and `file`, and `fields`; absent names and empty
/// fields are left out.
///
/// Written by hand rather than through serde: strings are escaped by
/// `json-escape-simd` (sonic-rs's SIMD escaping), which on log lines full of quotes
/// takes a fraction of serde_json's byte-at-a-time loop. The output is serde_json's
/// (`tests::the_writer_writes_what_serde_json_writes`).
pub struct EventObject<'a> {
    event: &'a Event,
    timestamp: Timestamp,
    version: Option<u32>,
}

impl<'a> EventObject<'a> {
    pub fn new(event: &'a Event, timestamp: Timestamp, version: Option<u32>) -> Self {
        EventObject {
            event,
            timestamp,
            version,
        }
    }

    /// Appends the object to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let event = self.event;
        out.push(b'{');
        if let Some(version) = self.version {
            out.extend_from_slice(b"\"ferry\":");
            out.extend_from_slice(itoa::Buffer::new().format(version).as_bytes());
            out.push(b',');
        }
        out.extend_from_slice(b"\"timestamp\":");
        match self.timestamp {
            Timestamp::Rfc3339(nanos) => {
                out.push(b'"');
                write_rfc3339_nanos(nanos, out);
                out.push(b'"');
            }
            Timestamp::Nanos(nanos) => {
                out.extend_from_slice(itoa::Buffer::new().format(nanos).as_bytes())
            }
        }
        out.extend_from_slice(b",\"message\":");
        escape_into(&event.message, out);
        out.extend_from_slice(b",\"level\":");
        match event.level {
            Some(level) => escape_into(level.as_str(), out),
            None => out.extend_from_slice(b"null"),
        }
        let origin = &event.origin;
        let names = [
            ("stream", event.stream.as_deref()),
            ("source", Some(&*event.source)),
            ("provider", Some(&*event.provider)),
            ("app", origin.app.as_deref()),
            ("deployment", origin.deployment.as_deref()),
            ("component", origin.component.as_deref()),
            ("instance", origin.instance.as_deref()),
            ("host", origin.host.as_deref()),
            ("file", origin.file.as_deref()),
        ];
        for (key, value) in names {
            if let Some(value) = value {
                write_key(key, out);
                escape_into(value, out);
            }
        }
        if !event.fields.is_empty() {
            write_key("fields", out);
            write_object(event.fields.iter(), out);
        }
        out.push(b'}');
    }
}

/// `,"key":` for a key that needs no escaping.
fn write_key(key: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// A JSON value as serde_json writes it, strings escaped by `escape_into`.
fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Writing a number into a Vec cannot fail.
        Value::Number(number) => drop(serde_json::to_writer(&mut *out, number)),
        Value::String(text) => escape_into(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map.iter(), out),
    }
}

/// A JSON object of `entries`, in their order.
fn write_object<'v, K: AsRef<str>>(
    entries: impl Iterator<Item = (K, &'v Value)>,
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        escape_into(key, out);
        out.push(b':');
        write_value(value, out);
    }
    out.push(b'}');
}

impl Encoding {
    /// Appends the event and a newline to `out`. A text message's own line breaks are
    /// kept as they are.
    pub fn encode(self, event: &Event, out: &mut Vec<u8>) {
        self.encode_record(event, out);
        out.push(b'\n');
    }

    /// Appends the event alone, for sinks whose records are framed already (Kafka).
    pub fn encode_record(self, event: &Event, out: &mut Vec<u8>) {
        match self {
            Encoding::Text => out.extend_from_slice(event.message.as_bytes()),
            Encoding::Json => {
                EventObject::new(event, Timestamp::Rfc3339(event.timestamp), None).write(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Fields, Level, format_rfc3339_nanos};
    use proptest::prelude::*;

    #[test]
    fn json_lines_carry_the_required_keys() {
        let mut event = Event::new("web".into(), "demo".into(), "say \"hi\"".into(), 0);
        event.level = Some(Level::Warn);
        event.origin.app = Some("shop".into());
        let mut out = Vec::new();
        Encoding::Json.encode(&event, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["message"], "say \"hi\"");
        assert_eq!(value["level"], "warn");
        assert_eq!(value["source"], "web");
        assert_eq!(value["provider"], "demo");
        assert_eq!(value["app"], "shop");
        assert_eq!(value["timestamp"], "1970-01-01T00:00:00.000000000Z");
        assert!(value.get("fields").is_none());
        let mut text = Vec::new();
        Encoding::Text.encode(&event, &mut text);
        assert_eq!(text, b"say \"hi\"\n");
    }

    #[test]
    fn keys_come_in_their_order_and_absent_names_are_left_out() {
        let mut event = Event::new("web".into(), "demo".into(), "a\tb".into(), 1_500_000_000);
        event.origin.host = Some("h".into());
        event
            .fields
            .insert("n".into(), serde_json::json!([1, -2, 2.5, null, true]));
        let mut out = Vec::new();
        EventObject::new(&event, Timestamp::Nanos(event.timestamp), Some(1)).write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"ferry":1,"timestamp":1500000000,"message":"a\tb","level":null,"source":"web","provider":"demo","host":"h","fields":{"n":[1,-2,2.5,null,true]}}"#
        );
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[\"\\\\\u{0}-\u{1f}\u{7f}a/é€😀 ]{0,40}",]
    }

    fn any_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            any_text().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(any_text(), inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_writer_writes_what_serde_json_writes(
            message in any_text(),
            app in proptest::option::of(any_text()),
            fields in prop::collection::vec((any_text(), any_value()), 0..4),
            nanos in any::<i64>(),
        ) {
            let mut event = Event::new("in".into(), "file".into(), message.clone(), nanos);
            event.origin.app = app.clone();
            let mut expected_fields = Fields::new();
            for (key, value) in fields {
                expected_fields.insert(key, value);
            }
            event.fields = expected_fields.clone();
            let mut out = Vec::new();
            EventObject::new(&event, Timestamp::Rfc3339(nanos), None).write(&mut out);
            // Every string is escaped byte for byte as serde_json escapes it ...
            let mut escaped = Vec::new();
            escape_into(&message, &mut escaped);
            prop_assert_eq!(&escaped, &serde_json::to_vec(&message).unwrap());
            let mut written = Vec::new();
            for (_, value) in expected_fields.iter() {
                written.clear();
                write_value(value, &mut written);
                prop_assert_eq!(&written, &serde_json::to_vec(value).unwrap());
            }
            // ... and the object reads back as the event.
            let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(&back["message"], &serde_json::Value::from(message));
            prop_assert_eq!(&back["timestamp"], &serde_json::Value::from(format_rfc3339_nanos(nanos)));
            prop_assert_eq!(back.get("app").cloned(), app.map(serde_json::Value::from));
            // (Values are compared as written above: serde_json reads some floats back
            // a last digit off.)
            let mut keys_back: Vec<&String> = back
                .get("fields")
                .and_then(serde_json::Value::as_object)
                .map(|fields| fields.keys().collect())
                .unwrap_or_default();
            let mut keys: Vec<&String> = expected_fields.iter().map(|(k, _)| k).collect();
            keys_back.sort();
            keys.sort();
            prop_assert_eq!(keys_back, keys);
        }

        #[test]
        fn timestamps_are_written_as_chrono_writes_them(nanos in any::<i64>()) {
            let expected = chrono::DateTime::from_timestamp_nanos(nanos)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            prop_assert_eq!(format_rfc3339_nanos(nanos), expected);
        }
    }
}

//! How sinks that write lines (file, console) or records (kafka) turn an event into
//! bytes.

use serde::{Deserialize, Serialize};

use crate::event::{Event, Fields, format_rfc3339_nanos};

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

/// The event as one JSON object, as the `json` encoding writes it and, with the time
/// in nanoseconds and a version key, as Kafka's `native` encoding does.
#[derive(Serialize)]
pub struct EventObject<'a, T> {
    /// The `native` format version; absent in the `json` encoding.
    #[serde(skip_serializing_if = "Option::is_none")]
    ferry: Option<u32>,
    timestamp: T,
    message: &'a str,
    level: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a str>,
    source: &'a str,
    provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    #[serde(skip_serializing_if = "Fields::is_empty")]
    fields: &'a Fields,
}

impl<'a, T: Serialize> EventObject<'a, T> {
    pub fn new(event: &'a Event, timestamp: T, version: Option<u32>) -> Self {
        EventObject {
            ferry: version,
            timestamp,
            message: &event.message,
            level: event.level.map(|l| l.as_str()),
            stream: event.stream.as_deref(),
            source: &event.source,
            provider: &event.provider,
            app: event.origin.app.as_deref(),
            deployment: event.origin.deployment.as_deref(),
            component: event.origin.component.as_deref(),
            instance: event.origin.instance.as_deref(),
            host: event.origin.host.as_deref(),
            file: event.origin.file.as_deref(),
            fields: &event.fields,
        }
    }

    /// Appends the object to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        // Serializing strings, numbers and JSON values into a Vec cannot fail.
        let _ = serde_json::to_writer(out, self);
    }
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
                EventObject::new(event, format_rfc3339_nanos(event.timestamp), None).write(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Level;

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
}

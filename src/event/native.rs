//! The `native` encoding: a whole normalized event as one JSON object, so a ferry
//! reading it (an aggregator behind Kafka) rebuilds exactly the event the sending
//! ferry had, field for field — time to the nanosecond, level, stream, source,
//! provider, every origin name, and the parsed fields with their JSON types.
//!
//! ```json
//! {"ferry":1,"timestamp":1763632800123456789,"message":"…","level":"warn",
//!  "stream":"stdout","source":"app_logs","provider":"file","app":"shop",
//!  "host":"web-1","file":"/var/log/shop.log","fields":{"status":503}}
//! ```
//!
//! `ferry` is the format version; apart from it and the time, the object is what the
//! `json` encoding writes (`level` is null when unknown; absent origin names and empty
//! fields are left out). Keys a reader does not know are ignored, so a later version
//! can add some.

use std::sync::Arc;

use serde::Deserialize;

use crate::event::{Event, Fields, Level, Origin};
use crate::sinks::encoding::{EventObject, Timestamp};

/// The version written in the `ferry` key.
const VERSION: u32 = 1;

#[derive(Deserialize)]
struct NativeIn {
    ferry: u32,
    timestamp: i64,
    message: String,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    stream: Option<String>,
    source: String,
    provider: String,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    deployment: Option<String>,
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    fields: Fields,
}

/// Appends the native form of `event` to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    EventObject::new(event, Timestamp::Nanos(event.timestamp), Some(VERSION)).write(out);
}

/// Rebuilds the event `encode` wrote; says why when `bytes` is not a native event.
pub fn decode(bytes: &[u8]) -> Result<Event, String> {
    let native: NativeIn =
        serde_json::from_slice(bytes).map_err(|e| format!("not a native ferry event: {e}"))?;
    if native.ferry != VERSION {
        return Err(format!(
            "native ferry event of version {}; this ferry reads version {VERSION}",
            native.ferry
        ));
    }
    let level = match native.level {
        None => None,
        Some(name) => {
            Some(Level::from_name(&name).ok_or_else(|| format!("unknown level `{name}`"))?)
        }
    };
    Ok(Event {
        timestamp: native.timestamp,
        message: native.message,
        level,
        stream: native.stream,
        source: Arc::from(native.source),
        provider: Arc::from(native.provider),
        origin: Origin {
            app: native.app,
            deployment: native.deployment,
            component: native.component,
            instance: native.instance,
            host: native.host,
            file: native.file.map(Arc::from),
        },
        fields: native.fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_round_trips_field_for_field() {
        let mut event = Event::new(
            "app_logs".into(),
            "file".into(),
            "line with \"quotes\", ünïcode and \n a break".into(),
            1_763_632_800_123_456_789,
        );
        event.level = Some(Level::Notice);
        event.stream = Some("stderr".into());
        event.origin = Origin {
            app: Some("shop".into()),
            deployment: Some("d-1".into()),
            component: Some("api".into()),
            instance: Some("api-7".into()),
            host: Some("web-1".into()),
            file: Some("/var/log/shop.log".into()),
        };
        event.fields.insert(
            "http".into(),
            json!({"status": 503, "ok": false, "t": 0.25, "tags": ["a", null]}),
        );
        let mut bytes = Vec::new();
        encode(&event, &mut bytes);
        assert_eq!(decode(&bytes).unwrap(), event);

        let bare = Event::new("s".into(), "demo".into(), String::new(), -5);
        let mut bytes = Vec::new();
        encode(&bare, &mut bytes);
        assert_eq!(decode(&bytes).unwrap(), bare);
    }

    #[test]
    fn foreign_or_newer_records_are_refused_with_a_reason() {
        assert!(decode(b"plain text").unwrap_err().contains("not a native"));
        assert!(decode(br#"{"message":"x"}"#).is_err());
        let newer = br#"{"ferry":2,"timestamp":0,"message":"","source":"s","provider":"p"}"#;
        assert!(decode(newer).unwrap_err().contains("version 2"));
        let extra =
            br#"{"ferry":1,"timestamp":0,"message":"","source":"s","provider":"p","later":true}"#;
        assert!(decode(extra).is_ok());
    }
}

//! What the log stream sends: one JSON object per websocket message (or per SSE
//! `data:` when the server falls back to SSE), its type under `event` (what
//! Scalingo's CLI and scalingo.js read) or `name` (what the documentation shows):
//! `{"event":"log","log":"<lines>"}` — one or several `\n`-separated lines — and the
//! keepalive `{"event":"ping","timestamp":…}`. Unknown types are ignored. An
//! object with no type but a `log` (as an SSE fallback may send under `event: log`)
//! is a log event; a frame that is not such an object is taken as log text itself
//! (an SSE fallback that sends the lines bare). A log event's own `timestamp` is
//! kept for lines that do not carry Scalingo's time prefix.

use std::borrow::Cow;

use chrono::DateTime;
use serde::Deserialize;

/// One decoded stream message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// Log text: one or several lines, and the event's `timestamp` as sent (read
    /// with [`event_time`] only for a line without Scalingo's own time prefix).
    Log {
        text: Cow<'a, str>,
        timestamp: Option<Cow<'a, str>>,
    },
    /// A keepalive, or an event type ferry does not ship.
    Ignored,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    log: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

/// Decodes one message; `sse_event` is the SSE `event:` field, if any.
pub fn decode<'a>(data: &'a str, sse_event: Option<&str>) -> StreamEvent<'a> {
    if sse_event.is_some_and(|e| e != "log" && e != "message") {
        return StreamEvent::Ignored;
    }
    let bare = StreamEvent::Log {
        text: Cow::Borrowed(data),
        timestamp: None,
    };
    if !data.trim_start().starts_with('{') {
        return bare;
    }
    let Ok(raw) = serde_json::from_str::<Raw<'_>>(data) else {
        return bare;
    };
    match (raw.event.or(raw.name).as_deref(), raw.log) {
        (Some("log") | None, Some(text)) => StreamEvent::Log {
            text,
            timestamp: raw.timestamp,
        },
        (None, None) => bare,
        _ => StreamEvent::Ignored,
    }
}

/// A log event's `timestamp` (RFC 3339) in Unix ns, if it is readable.
pub fn event_time(timestamp: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(timestamp.trim())
        .ok()?
        .timestamp_nanos_opt()
}

pub use crate::http::connection::text_lines as lines;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn log(text: &str) -> StreamEvent<'_> {
        StreamEvent::Log {
            text: Cow::Borrowed(text),
            timestamp: None,
        }
    }

    #[test]
    fn events_are_keyed_by_event_or_name() {
        let line = "2015-02-16 02:02:43.93 +0000 UTC [web-1] hi";
        let by_event =
            format!(r#"{{"event":"log","log":"{line}\n","timestamp":"2015-02-16T02:02:43Z"}}"#);
        assert_eq!(
            decode(&by_event, None),
            StreamEvent::Log {
                text: Cow::Owned(format!("{line}\n")),
                timestamp: Some(Cow::Borrowed("2015-02-16T02:02:43Z")),
            }
        );
        let by_name = format!(r#"{{"name":"log","log":"{line}"}}"#);
        assert_eq!(decode(&by_name, None), log(line));
        assert_eq!(
            decode(
                r#"{"event":"ping","timestamp":"2024-05-01T12:00:30Z"}"#,
                None
            ),
            StreamEvent::Ignored
        );
        assert_eq!(decode(r#"{"name":"ping"}"#, None), StreamEvent::Ignored);
        assert_eq!(
            decode(r#"{"event":"deploy","log":"x"}"#, None),
            StreamEvent::Ignored
        );
        assert_eq!(decode(r#"{"event":"log"}"#, None), StreamEvent::Ignored);
    }

    #[test]
    fn escaped_text_is_unescaped_and_bare_text_is_log() {
        assert_eq!(
            decode(
                r#"{"event":"log","log":"a \"quoted\" line\nand another\n"}"#,
                None
            ),
            StreamEvent::Log {
                text: Cow::Owned("a \"quoted\" line\nand another\n".into()),
                timestamp: None,
            }
        );
        assert_eq!(decode("plain line", None), log("plain line"));
        assert_eq!(decode("{not json", None), log("{not json"));
        assert_eq!(decode(r#"{"other":1}"#, None), log(r#"{"other":1}"#));
        assert_eq!(decode("x", Some("ping")), StreamEvent::Ignored);
        assert_eq!(decode("x", Some("log")), log("x"));
    }

    /// An SSE fallback may name the type in its `event:` field and send only the
    /// rest, and a `log` may be the bare message with the time beside it.
    #[test]
    fn an_untyped_object_with_a_log_is_a_log_event_with_its_timestamp() {
        assert_eq!(decode(r#"{"log":"hi"}"#, Some("log")), log("hi"));
        assert_eq!(decode(r#"{"log":"hi"}"#, None), log("hi"));
        assert_eq!(
            decode(
                r#"{"event":"log","log":"hi","timestamp":"2024-05-01T12:00:00.123456789Z"}"#,
                None
            ),
            StreamEvent::Log {
                text: Cow::Borrowed("hi"),
                timestamp: Some(Cow::Borrowed("2024-05-01T12:00:00.123456789Z")),
            }
        );
        assert_eq!(
            event_time("2024-05-01T12:00:00.123456789Z"),
            Some(1_714_564_800_123_456_789)
        );
        assert_eq!(
            event_time("2015-02-16T02:02:43Z"),
            Some(1_424_052_163_000_000_000)
        );
        assert_eq!(event_time("yesterday"), None);
    }

    #[test]
    fn log_text_splits_into_lines() {
        let got: Vec<&str> = lines("one\r\ntwo\n\nthree").collect();
        assert_eq!(got, ["one", "two", "three"]);
        assert_eq!(lines("\n\r\n").count(), 0);
    }

    proptest! {
        /// Lines packed into one `log` event, by either key, come back as sent.
        #[test]
        fn packed_lines_come_back(
            sent in proptest::collection::vec("[^\n\r]{1,40}", 1..8),
            key in prop_oneof![Just("event"), Just("name")],
            trailing in any::<bool>(),
        ) {
            let mut text = sent.join("\n");
            if trailing {
                text.push('\n');
            }
            let message = serde_json::json!({ key: "log", "log": text }).to_string();
            let StreamEvent::Log { text: decoded, .. } = decode(&message, None) else {
                panic!("not a log event");
            };
            let got: Vec<&str> = lines(&decoded).collect();
            let expected: Vec<&str> = sent.iter().map(String::as_str).filter(|l| !l.is_empty()).collect();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn any_message_decodes_without_panic(data in "\\PC{0,200}") {
            let _ = decode(&data, None).clone();
        }
    }
}

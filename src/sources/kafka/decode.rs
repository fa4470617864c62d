//! A Kafka record as an event: its value decoded as JSON, text or a native ferry
//! event, and the record's topic, partition, offset, key and headers added under the
//! metadata field. A value that does not decode is kept whole as the message (lossy
//! UTF-8) with a `decode_error` field saying why, and counted: nothing is dropped.

use std::sync::Arc;

use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Headers};
use serde_json::{Map, Value};

use super::config::KafkaDecoding;
use crate::event::native;
use crate::event::{Event, Level, now_nanos};
use crate::telemetry::catalog;

/// The field that says why a record's value did not decode.
pub const DECODE_ERROR_FIELD: &str = "decode_error";

pub struct Decoder {
    decoding: KafkaDecoding,
    source: Arc<str>,
    provider: Arc<str>,
    metadata_field: Option<String>,
    errors: metrics::Counter,
}

impl Decoder {
    pub fn new(source: Arc<str>, decoding: KafkaDecoding, metadata_field: &str) -> Self {
        Decoder {
            decoding,
            errors: catalog::counting_as_errors(
                metrics::counter!("ferry_kafka_decode_errors_total", "source" => source.to_string()),
                "source",
                &source,
            ),
            source,
            provider: Arc::from("kafka"),
            metadata_field: (!metadata_field.is_empty()).then(|| metadata_field.to_string()),
        }
    }

    pub fn decode(&self, message: &BorrowedMessage<'_>) -> Event {
        let payload = message.payload().unwrap_or_default();
        let timestamp = message
            .timestamp()
            .to_millis()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .unwrap_or_else(now_nanos);
        let mut event = self.decode_value(payload, timestamp);
        if let Some(field) = &self.metadata_field {
            event.fields.insert(field.clone(), metadata(message));
        }
        event
    }

    fn decode_value(&self, payload: &[u8], timestamp: i64) -> Event {
        let decoded = match self.decoding {
            KafkaDecoding::Text => Ok(self.text(payload, timestamp)),
            KafkaDecoding::Native => native::decode(payload),
            KafkaDecoding::Json => self.json(payload, timestamp),
        };
        decoded.unwrap_or_else(|reason| {
            self.errors.increment(1);
            let mut event = self.text(payload, timestamp);
            event
                .fields
                .insert(DECODE_ERROR_FIELD.into(), Value::String(reason));
            event
        })
    }

    fn text(&self, payload: &[u8], timestamp: i64) -> Event {
        Event::new(
            Arc::clone(&self.source),
            Arc::clone(&self.provider),
            crate::event::lossy_text(payload),
            timestamp,
        )
    }

    /// The keys the `json` encoding writes (`message`, `timestamp`, `level`, `stream`,
    /// `source`, `provider`, the origin names) fill the event's own parts; the others
    /// and the `fields` object become fields. Without a `message` string the whole
    /// value is the message.
    fn json(&self, payload: &[u8], timestamp: i64) -> Result<Event, String> {
        let mut object: Map<String, Value> =
            serde_json::from_slice(payload).map_err(|e| format!("not a JSON object: {e}"))?;
        let mut event = match object.remove("message") {
            Some(Value::String(message)) => Event::new(
                Arc::clone(&self.source),
                Arc::clone(&self.provider),
                message,
                timestamp,
            ),
            other => {
                if let Some(other) = other {
                    object.insert("message".into(), other);
                }
                self.text(payload, timestamp)
            }
        };
        if let Some(Value::String(text)) = object.get("timestamp")
            && let Ok(time) = chrono::DateTime::parse_from_rfc3339(text)
            && let Some(nanos) = time.timestamp_nanos_opt()
        {
            event.timestamp = nanos;
            object.remove("timestamp");
        }
        if let Some(Value::String(name)) = object.get("level")
            && let Some(level) = Level::from_name(name)
        {
            event.level = Some(level);
            object.remove("level");
        }
        if matches!(object.get("level"), Some(Value::Null)) {
            object.remove("level");
        }
        let origin = &mut event.origin;
        for (key, slot) in [
            ("stream", &mut event.stream),
            ("app", &mut origin.app),
            ("deployment", &mut origin.deployment),
            ("component", &mut origin.component),
            ("instance", &mut origin.instance),
            ("host", &mut origin.host),
        ] {
            if let Some(Value::String(_)) = object.get(key)
                && let Some(Value::String(value)) = object.remove(key)
            {
                *slot = Some(value);
            }
        }
        for (key, slot) in [
            ("source", &mut event.source),
            ("provider", &mut event.provider),
        ] {
            if let Some(Value::String(_)) = object.get(key)
                && let Some(Value::String(value)) = object.remove(key)
            {
                *slot = Arc::from(value);
            }
        }
        if let Some(Value::String(_)) = object.get("file")
            && let Some(Value::String(file)) = object.remove("file")
        {
            origin.file = Some(Arc::from(file));
        }
        if let Some(Value::Object(_)) = object.get("fields")
            && let Some(Value::Object(fields)) = object.remove("fields")
        {
            event.fields = fields.into();
        }
        event.fields.extend(object);
        Ok(event)
    }
}

/// `{"topic", "partition", "offset", "key", "headers": {name: value}}`; a key or
/// header value that is not UTF-8 is decoded lossily.
fn metadata(message: &BorrowedMessage<'_>) -> Value {
    let mut meta = Map::with_capacity(5);
    meta.insert("topic".into(), Value::String(message.topic().to_string()));
    meta.insert("partition".into(), Value::from(message.partition()));
    meta.insert("offset".into(), Value::from(message.offset()));
    if let Some(key) = message.key() {
        meta.insert(
            "key".into(),
            Value::String(String::from_utf8_lossy(key).into_owned()),
        );
    }
    if let Some(headers) = message.headers() {
        let mut map = Map::with_capacity(headers.count());
        for header in headers.iter() {
            let value = header.value.map_or(Value::Null, |v| {
                Value::String(String::from_utf8_lossy(v).into_owned())
            });
            map.insert(header.key.to_string(), value);
        }
        meta.insert("headers".into(), Value::Object(map));
    }
    Value::Object(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::encoding::Encoding;

    fn decoder(decoding: KafkaDecoding) -> Decoder {
        Decoder::new("agg".into(), decoding, "kafka")
    }

    #[test]
    fn json_written_by_the_json_encoding_reads_back_into_the_same_parts() {
        let mut event = Event::new("app_logs".into(), "file".into(), "hi".into(), 1_500_000_123);
        event.level = Some(Level::Error);
        event.stream = Some("stderr".into());
        event.origin.app = Some("shop".into());
        event.origin.file = Some("/var/log/a.log".into());
        event.fields.insert("status".into(), Value::from(503));
        let mut bytes = Vec::new();
        Encoding::Json.encode_record(&event, &mut bytes);
        let decoded = decoder(KafkaDecoding::Json).decode_value(&bytes, 0);
        assert_eq!(decoded, event);
    }

    #[test]
    fn foreign_json_keeps_its_keys_as_fields_and_the_value_as_message() {
        let decoded =
            decoder(KafkaDecoding::Json).decode_value(br#"{"msg":"x","level":"loud"}"#, 7);
        assert_eq!(decoded.message, r#"{"msg":"x","level":"loud"}"#);
        assert_eq!(decoded.fields["msg"], "x");
        assert_eq!(decoded.fields["level"], "loud");
        assert_eq!(decoded.level, None);
        assert_eq!(decoded.timestamp, 7);
    }

    #[test]
    fn undecodable_values_are_kept_with_the_reason() {
        for decoding in [KafkaDecoding::Json, KafkaDecoding::Native] {
            let decoded = decoder(decoding).decode_value(b"\xffnot json", 1);
            assert_eq!(decoded.message, "\u{fffd}not json");
            assert!(decoded.fields[DECODE_ERROR_FIELD].is_string());
            assert_eq!(&*decoded.source, "agg");
        }
        let text = decoder(KafkaDecoding::Text).decode_value(b"plain", 1);
        assert_eq!(text.message, "plain");
        assert!(text.fields.is_empty());
    }
}

//! An event as a Kafka record: its topic and key (templates), its headers (templates),
//! and its value in the configured encoding. One `RecordBuilder` per task reuses its
//! buffers, so building a record allocates nothing for a static topic and no key.

use rdkafka::message::{Header, OwnedHeaders};

use super::config::{KafkaEncoding, KafkaSinkConfig};
use crate::event::Event;
use crate::event::native;
use crate::sinks::encoding::Encoding;
use crate::template::Template;

/// What every record is made from; shared by the tasks of one sink.
#[derive(Debug, Clone)]
pub struct RecordFormat {
    topic: Topic,
    key: Option<Template>,
    headers: Vec<(String, Template)>,
    encoding: KafkaEncoding,
}

#[derive(Debug, Clone)]
enum Topic {
    Static(String),
    PerEvent(Template),
}

/// A record's parts, borrowed from its builder.
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: Option<&'a str>,
    pub payload: &'a [u8],
    pub headers: Option<OwnedHeaders>,
}

impl RecordFormat {
    pub fn new(config: &KafkaSinkConfig) -> Self {
        let topic = if config.topic.is_static() {
            Topic::Static(config.topic.as_str().to_string())
        } else {
            Topic::PerEvent(config.topic.clone())
        };
        RecordFormat {
            topic,
            key: config.key.clone(),
            headers: config
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            encoding: config.encoding,
        }
    }
}

/// Reusable buffers for building records.
#[derive(Default)]
pub struct RecordBuilder {
    topic: String,
    key: String,
    payload: Vec<u8>,
    header: String,
}

impl RecordBuilder {
    /// The record for `event`; `Err` with the reason when it can never be a valid
    /// record (its topic renders empty).
    pub fn build<'a>(
        &'a mut self,
        format: &'a RecordFormat,
        event: &Event,
    ) -> Result<Record<'a>, &'static str> {
        let topic = match &format.topic {
            Topic::Static(name) => name.as_str(),
            Topic::PerEvent(template) => {
                self.topic.clear();
                template.render_into(event, &mut self.topic);
                if self.topic.is_empty() {
                    return Err("empty_topic");
                }
                self.topic.as_str()
            }
        };
        let key = match &format.key {
            None => None,
            Some(template) => {
                self.key.clear();
                template.render_into(event, &mut self.key);
                Some(self.key.as_str())
            }
        };
        let headers = if format.headers.is_empty() {
            None
        } else {
            let mut headers = OwnedHeaders::new_with_capacity(format.headers.len());
            for (name, template) in &format.headers {
                self.header.clear();
                template.render_into(event, &mut self.header);
                if !self.header.is_empty() {
                    headers = headers.insert(Header {
                        key: name,
                        value: Some(self.header.as_str()),
                    });
                }
            }
            Some(headers)
        };
        self.payload.clear();
        match format.encoding {
            KafkaEncoding::Json => Encoding::Json.encode_record(event, &mut self.payload),
            KafkaEncoding::Text => Encoding::Text.encode_record(event, &mut self.payload),
            KafkaEncoding::Native => native::encode(event, &mut self.payload),
        }
        Ok(Record {
            topic,
            key,
            payload: &self.payload,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;
    use crate::event::Level;
    use crate::kafka::test_config::sink;

    fn format(options: &str) -> RecordFormat {
        RecordFormat::new(&sink(&format!("bootstrap_servers = \"b:9092\"\n{options}")).unwrap())
    }

    fn event() -> Event {
        let mut event = Event::new("src".into(), "demo".into(), "hello".into(), 0);
        event.level = Some(Level::Warn);
        event.origin.app = Some("shop".into());
        event
    }

    #[test]
    fn topic_key_headers_and_value_follow_the_templates() {
        let format = format(
            "topic = \"logs-{{ provider }}\"\nkey = \"{{ app }}\"\nencoding = \"text\"\nheaders = { level = \"{{ level }}\", host = \"{{ host }}\" }",
        );
        let mut builder = RecordBuilder::default();
        let record = builder.build(&format, &event()).unwrap();
        assert_eq!(record.topic, "logs-demo");
        assert_eq!(record.key, Some("shop"));
        assert_eq!(record.payload, b"hello");
        let headers = record.headers.unwrap();
        assert_eq!(headers.count(), 1, "an empty header is left out");
        let header = headers.get(0);
        assert_eq!((header.key, header.value), ("level", Some(&b"warn"[..])));
    }

    #[test]
    fn json_and_native_values_carry_the_event() {
        let mut builder = RecordBuilder::default();
        let json = format("topic = \"t\"");
        let record = builder.build(&json, &event()).unwrap();
        let value: serde_json::Value = serde_json::from_slice(record.payload).unwrap();
        assert_eq!(value["level"], "warn");
        assert!(record.key.is_none() && record.headers.is_none());
        let native_format = format("topic = \"t\"\nencoding = \"native\"");
        let record = builder.build(&native_format, &event()).unwrap();
        assert_eq!(native::decode(record.payload).unwrap(), event());
        let empty = format("topic = \"{{ missing }}\"");
        assert_eq!(builder.build(&empty, &event()).err(), Some("empty_topic"));
    }
}

//! Push bodies: a [`Part`] of a payload as snappy-compressed protobuf
//! `logproto.PushRequest`, or as Loki's JSON (optionally gzipped), with the headers
//! that describe it.

use std::io::Write;

use prost::Message;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use super::batch::{Entry, Part, PartStream};
use super::config::{Compression, LokiEncoding};
use super::proto;

/// An encoded push body.
#[derive(Debug, Clone)]
pub struct Body {
    pub bytes: bytes::Bytes,
    pub content_type: &'static str,
    pub content_encoding: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("snappy compression failed: {0}")]
    Snappy(#[from] snap::Error),
    #[error("gzip compression failed: {0}")]
    Gzip(#[from] std::io::Error),
    #[error("JSON encoding failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reusable buffers for encoding bodies.
pub struct Encoder {
    protobuf: Vec<u8>,
    snappy: snap::raw::Encoder,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            protobuf: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }
}

impl Encoder {
    pub fn encode(
        &mut self,
        part: &Part<'_>,
        encoding: LokiEncoding,
        compression: Compression,
    ) -> Result<Body, EncodeError> {
        match encoding {
            LokiEncoding::Protobuf => {
                let request = push_request(part);
                self.protobuf.clear();
                self.protobuf.reserve(request.encoded_len());
                // Encoding into a Vec that was just given room cannot fail.
                let _ = request.encode(&mut self.protobuf);
                let compressed = self.snappy.compress_vec(&self.protobuf)?;
                Ok(Body {
                    bytes: compressed.into(),
                    content_type: "application/x-protobuf",
                    content_encoding: None,
                })
            }
            LokiEncoding::Json => {
                let json = serde_json::to_vec(&JsonPush(part))?;
                let (bytes, content_encoding) = match compression {
                    Compression::None => (json, None),
                    Compression::Gzip => {
                        let mut gz = flate2::write::GzEncoder::new(
                            Vec::with_capacity(json.len() / 4),
                            flate2::Compression::fast(),
                        );
                        gz.write_all(&json)?;
                        (gz.finish()?, Some("gzip"))
                    }
                };
                Ok(Body {
                    bytes: bytes.into(),
                    content_type: "application/json",
                    content_encoding,
                })
            }
        }
    }
}

/// The protobuf message for `part`.
pub fn push_request(part: &Part<'_>) -> proto::PushRequest {
    proto::PushRequest {
        streams: part
            .streams
            .iter()
            .map(|part| proto::StreamAdapter {
                labels: part.stream.labels.clone(),
                entries: part.entries.iter().map(|(_, e)| entry_adapter(e)).collect(),
                hash: 0,
            })
            .collect(),
    }
}

fn entry_adapter(entry: &Entry) -> proto::EntryAdapter {
    let ts = entry.event.timestamp;
    proto::EntryAdapter {
        timestamp: Some(prost_types::Timestamp {
            seconds: ts.div_euclid(1_000_000_000),
            nanos: ts.rem_euclid(1_000_000_000) as i32,
        }),
        line: entry.event.message.clone(),
        structured_metadata: entry
            .metadata
            .iter()
            .map(|(name, value)| proto::LabelPairAdapter {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    }
}

/// `{"streams":[{"stream":{…},"values":[["ns","line",{meta}]]}]}`
struct JsonPush<'a>(&'a Part<'a>);

impl Serialize for JsonPush<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("streams", &JsonStreams(&self.0.streams))?;
        map.end()
    }
}

struct JsonStreams<'a>(&'a [PartStream<'a>]);

impl Serialize for JsonStreams<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for stream in self.0 {
            seq.serialize_element(&JsonStream(stream))?;
        }
        seq.end()
    }
}

struct JsonStream<'a>(&'a PartStream<'a>);

impl Serialize for JsonStream<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("stream", &Pairs(&self.0.stream.pairs))?;
        map.serialize_entry("values", &JsonValues(&self.0.entries))?;
        map.end()
    }
}

struct Pairs<'a>(&'a [(String, String)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

struct JsonValues<'a>(&'a [(usize, &'a Entry)]);

impl Serialize for JsonValues<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (_, entry) in self.0 {
            seq.serialize_element(&JsonValue(entry))?;
        }
        seq.end()
    }
}

struct JsonValue<'a>(&'a Entry);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entry = self.0;
        let with_metadata = !entry.metadata.is_empty();
        let mut seq = serializer.serialize_seq(Some(if with_metadata { 3 } else { 2 }))?;
        seq.serialize_element(&entry.event.timestamp.to_string())?;
        seq.serialize_element(&entry.event.message)?;
        if with_metadata {
            seq.serialize_element(&Pairs(&entry.metadata))?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::BatchStatus;
    use crate::event::Event;
    use crate::sinks::loki::batch::{Payload, Stream};

    fn payload() -> Payload {
        let mut event = Event::new(
            "s".into(),
            "demo".into(),
            "line \"one\"".into(),
            1_500_000_000_123_456_789,
        );
        event.level = None;
        Payload {
            tenant: String::new(),
            streams: vec![Stream {
                labels: "{app=\"web\"}".into(),
                pairs: vec![("app".into(), "web".into())],
                entries: vec![Entry {
                    event,
                    metadata: vec![("pod".into(), "p-1".into())],
                    batch: 0,
                }],
                deliveries: Vec::new(),
            }],
        }
    }

    #[test]
    fn json_bodies_carry_nanosecond_strings_and_metadata() {
        let payload = payload();
        let body = Encoder::default()
            .encode(&payload.part(&[0]), LokiEncoding::Json, Compression::None)
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"streams": [{"stream": {"app": "web"}, "values": [
                ["1500000000123456789", "line \"one\"", {"pod": "p-1"}]
            ]}]})
        );
        payload.settle(BatchStatus::Delivered);
    }

    #[test]
    fn protobuf_bodies_are_snappy_blocks_of_push_requests() {
        let payload = payload();
        let body = Encoder::default()
            .encode(
                &payload.part(&[0]),
                LokiEncoding::Protobuf,
                Compression::None,
            )
            .unwrap();
        assert_eq!(body.content_type, "application/x-protobuf");
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body.bytes)
            .unwrap();
        let request = proto::PushRequest::decode(raw.as_slice()).unwrap();
        let entry = &request.streams[0].entries[0];
        assert_eq!(request.streams[0].labels, "{app=\"web\"}");
        assert_eq!(
            entry.timestamp,
            Some(prost_types::Timestamp {
                seconds: 1_500_000_000,
                nanos: 123_456_789
            })
        );
        assert_eq!(entry.structured_metadata[0].value, "p-1");
    }
}

//! The payload of a buffer record: a batch's events in a compact binary form, written
//! and read back by copying bytes (no JSON escaping or parsing on the way), exact to
//! the bit — nanosecond and negative times, absent against empty names, and the JSON
//! types of the fields (a float keeps its bits).
//!
//! ```text
//! per event, one after another (integers little endian):
//!   i64   timestamp   Unix nanoseconds
//!   u16   present     bit 0 level, 1 stream, 2 app, 3 deployment, 4 component,
//!                     5 instance, 6 host, 7 file, 8 fields (non-empty);
//!                     bit 9 source, 10 provider, 11 file: the same as the event before
//!   u8    level       if bit 0: 0 trace, 1 debug, 2 info, 3 notice, 4 warn, 5 error, 6 fatal
//!   str   message
//!   str   source      unless bit 9
//!   str   provider    unless bit 10
//!   str   stream, app, deployment, component, instance, host: each if its bit is set
//!   str   file        if bit 7, unless bit 11
//!   u32   count, then count × (str name, value): the fields, if bit 8
//! str   = u32 length, then that many bytes of UTF-8
//! value = u8 tag, then per tag: 0 null, 1 false, 2 true, 3 u64, 4 i64 (negative),
//!         5 f64 (its bits), 6 str, 7 array: u32 count, values,
//!         8 object: u32 count, count × (str key, value)
//! ```
//!
//! The bytes are checked by the record's CRC before they get here, yet decoding trusts
//! nothing: any bytes give events or an error, never a panic, and no count read from
//! them allocates more than the bytes could hold.

use std::sync::Arc;

use serde_json::{Map, Number, Value};

use crate::event::{Event, Fields, Level, Origin};

const LEVEL: u16 = 1 << 0;
const STREAM: u16 = 1 << 1;
const APP: u16 = 1 << 2;
const DEPLOYMENT: u16 = 1 << 3;
const COMPONENT: u16 = 1 << 4;
const INSTANCE: u16 = 1 << 5;
const HOST: u16 = 1 << 6;
const FILE: u16 = 1 << 7;
const FIELDS: u16 = 1 << 8;
const SAME_SOURCE: u16 = 1 << 9;
const SAME_PROVIDER: u16 = 1 << 10;
const SAME_FILE: u16 = 1 << 11;
const KNOWN: u16 = (1 << 12) - 1;

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const UNSIGNED: u8 = 3;
const NEGATIVE: u8 = 4;
const FLOAT: u8 = 5;
const STRING: u8 = 6;
const ARRAY: u8 = 7;
const OBJECT: u8 = 8;

/// The fewest bytes an event takes (timestamp, presence bits, an empty message).
const MIN_EVENT_LEN: usize = 8 + 2 + 4;
/// Values nested deeper are refused: far deeper than anything ferry builds (its JSON
/// parser stops at 128), shallow enough for the reader's stack.
const MAX_DEPTH: usize = 512;

/// Appends the payload of `events` to `out`.
pub fn encode(events: &[Event], out: &mut Vec<u8>) {
    let mut before: Option<&Event> = None;
    for event in events {
        let same =
            |name: fn(&Event) -> Option<&Arc<str>>| match (before.and_then(name), name(event)) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                _ => false,
            };
        let origin = &event.origin;
        let mut present = 0;
        for (bit, set) in [
            (LEVEL, event.level.is_some()),
            (STREAM, event.stream.is_some()),
            (APP, origin.app.is_some()),
            (DEPLOYMENT, origin.deployment.is_some()),
            (COMPONENT, origin.component.is_some()),
            (INSTANCE, origin.instance.is_some()),
            (HOST, origin.host.is_some()),
            (FILE, origin.file.is_some()),
            (FIELDS, !event.fields.is_empty()),
            (SAME_SOURCE, same(|e| Some(&e.source))),
            (SAME_PROVIDER, same(|e| Some(&e.provider))),
            (SAME_FILE, same(|e| e.origin.file.as_ref())),
        ] {
            if set {
                present |= bit;
            }
        }
        out.extend_from_slice(&event.timestamp.to_le_bytes());
        out.extend_from_slice(&present.to_le_bytes());
        if let Some(level) = event.level {
            out.push(level as u8);
        }
        put_str(out, &event.message);
        if present & SAME_SOURCE == 0 {
            put_str(out, &event.source);
        }
        if present & SAME_PROVIDER == 0 {
            put_str(out, &event.provider);
        }
        for name in std::iter::once(&event.stream)
            .chain(origin.names())
            .flatten()
        {
            put_str(out, name);
        }
        if present & (FILE | SAME_FILE) == FILE {
            put_str(out, origin.file.as_deref().unwrap_or_default());
        }
        if present & FIELDS != 0 {
            put_len(out, event.fields.len());
            for (name, value) in event.fields.iter() {
                put_str(out, name);
                put_value(out, value);
            }
        }
        before = Some(event);
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // A record holds at most MAX_PAYLOAD bytes, so no length here reaches u32::MAX.
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_len(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(number) => {
            if let Some(n) = number.as_u64() {
                out.push(UNSIGNED);
                out.extend_from_slice(&n.to_le_bytes());
            } else if let Some(n) = number.as_i64() {
                out.push(NEGATIVE);
                out.extend_from_slice(&n.to_le_bytes());
            } else {
                out.push(FLOAT);
                let n = number.as_f64().unwrap_or(f64::NAN);
                out.extend_from_slice(&n.to_bits().to_le_bytes());
            }
        }
        Value::String(text) => {
            out.push(STRING);
            put_str(out, text);
        }
        Value::Array(items) => {
            out.push(ARRAY);
            put_len(out, items.len());
            for item in items {
                put_value(out, item);
            }
        }
        Value::Object(map) => {
            out.push(OBJECT);
            put_len(out, map.len());
            for (key, item) in map {
                put_str(out, key);
                put_value(out, item);
            }
        }
    }
}

/// The events of a payload `encode` wrote; `expected` (the record's event count)
/// only sizes the result.
pub fn decode(payload: &[u8], expected: usize) -> Result<Vec<Event>, String> {
    let mut input = Input { rest: payload };
    let mut events: Vec<Event> = Vec::with_capacity(expected.min(payload.len() / MIN_EVENT_LEN));
    while !input.rest.is_empty() {
        let event = input
            .event(events.last())
            .map_err(|reason| format!("event {} of the record: {reason}", events.len() + 1))?;
        events.push(event);
    }
    Ok(events)
}

/// The payload bytes not read yet.
struct Input<'a> {
    rest: &'a [u8],
}

type Decoded<T> = Result<T, &'static str>;

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        if n > self.rest.len() {
            return Err("cut short");
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Decoded<[u8; N]> {
        let mut bytes = [0; N];
        bytes.copy_from_slice(self.take(N)?);
        Ok(bytes)
    }

    fn u8(&mut self) -> Decoded<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Decoded<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count of items that each take at least one byte: more than the bytes left
    /// is damage, which keeps what it allocates bounded by the payload.
    fn count(&mut self) -> Decoded<usize> {
        let count = u32::from_le_bytes(self.array()?) as usize;
        if count > self.rest.len() {
            return Err("a count runs past the record");
        }
        Ok(count)
    }

    fn str(&mut self) -> Decoded<&'a str> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| "text is not UTF-8")
    }

    fn string(&mut self) -> Decoded<String> {
        self.str().map(str::to_owned)
    }

    /// An `Arc` name: `before`'s when the presence bit says so, else read.
    fn name(&mut self, same: bool, before: Option<&Arc<str>>) -> Decoded<Arc<str>> {
        match (same, before) {
            (true, Some(name)) => Ok(Arc::clone(name)),
            (true, None) => Err("repeats a name no event before it has"),
            (false, _) => self.str().map(Arc::from),
        }
    }

    fn optional(&mut self, present: u16, bit: u16) -> Decoded<Option<String>> {
        if present & bit == 0 {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    fn event(&mut self, before: Option<&Event>) -> Decoded<Event> {
        let timestamp = i64::from_le_bytes(self.array()?);
        let present = u16::from_le_bytes(self.array()?);
        if present & !KNOWN != 0 {
            return Err("unknown presence bits");
        }
        let level = if present & LEVEL == 0 {
            None
        } else {
            let index = self.u8()?;
            Some(*Level::ALL.get(usize::from(index)).ok_or("unknown level")?)
        };
        let message = self.string()?;
        let source = self.name(present & SAME_SOURCE != 0, before.map(|e| &e.source))?;
        let provider = self.name(present & SAME_PROVIDER != 0, before.map(|e| &e.provider))?;
        let stream = self.optional(present, STREAM)?;
        let origin = Origin {
            app: self.optional(present, APP)?,
            deployment: self.optional(present, DEPLOYMENT)?,
            component: self.optional(present, COMPONENT)?,
            instance: self.optional(present, INSTANCE)?,
            host: self.optional(present, HOST)?,
            file: if present & FILE == 0 {
                None
            } else {
                let before = before.and_then(|e| e.origin.file.as_ref());
                Some(self.name(present & SAME_FILE != 0, before)?)
            },
        };
        let fields = if present & FIELDS == 0 {
            Fields::new()
        } else {
            let count = self.count()?;
            (0..count)
                .map(|_| Ok((self.string()?, self.value(0)?)))
                .collect::<Decoded<Fields>>()?
        };
        Ok(Event {
            timestamp,
            message,
            level,
            stream,
            source,
            provider,
            origin,
            fields,
        })
    }

    fn value(&mut self, depth: usize) -> Decoded<Value> {
        if depth > MAX_DEPTH {
            return Err("values nested too deep");
        }
        Ok(match self.u8()? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            UNSIGNED => Value::from(self.u64()?),
            NEGATIVE => Value::from(self.u64()? as i64),
            FLOAT => {
                let float = f64::from_bits(self.u64()?);
                Value::Number(Number::from_f64(float).ok_or("a number is not finite")?)
            }
            STRING => Value::String(self.string()?),
            ARRAY => {
                let count = self.count()?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            OBJECT => {
                let count = self.count()?;
                let mut map = Map::new();
                for _ in 0..count {
                    let key = self.string()?;
                    map.insert(key, self.value(depth + 1)?);
                }
                Value::Object(map)
            }
            _ => return Err("unknown value type"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// Names drawn from a few (so that events repeat them) or any text at all.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["", "app_logs", "file"]).prop_map(String::from),
            any::<String>(),
        ]
    }

    fn event() -> impl Strategy<Value = Event> {
        let names = (
            name(),
            name(),
            prop::option::of(name()),
            prop::collection::vec(prop::option::of(name()), 6),
        );
        let level = prop::option::of(prop::sample::select(Level::ALL.to_vec()));
        let fields = prop::collection::vec((name(), json_value()), 0..4);
        (any::<i64>(), any::<String>(), level, names, fields).prop_map(
            |(timestamp, message, level, (source, provider, file, mut optional), fields)| {
                let mut next = || optional.pop().flatten();
                Event {
                    timestamp,
                    message,
                    level,
                    stream: next(),
                    source: source.into(),
                    provider: provider.into(),
                    origin: Origin {
                        app: next(),
                        deployment: next(),
                        component: next(),
                        instance: next(),
                        host: next(),
                        file: file.map(Arc::from),
                    },
                    fields: fields.into_iter().collect(),
                }
            },
        )
    }

    fn round_trip(events: &[Event]) -> Vec<Event> {
        let mut bytes = Vec::new();
        encode(events, &mut bytes);
        decode(&bytes, events.len()).unwrap()
    }

    proptest! {
        #[test]
        fn any_events_survive_encoding_exactly(events in prop::collection::vec(event(), 0..8)) {
            prop_assert_eq!(round_trip(&events), events);
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes, 4);
        }

        #[test]
        fn a_damaged_payload_decodes_or_fails_without_panicking(
            events in prop::collection::vec(event(), 1..4),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = Vec::new();
            encode(&events, &mut bytes);
            for (at, byte) in flips {
                let at = at.index(bytes.len());
                bytes[at] ^= byte;
            }
            let _ = decode(&bytes, events.len());
            let _ = decode(&bytes[..cut.index(bytes.len())], events.len());
        }
    }

    #[test]
    fn absent_and_empty_names_differ_and_every_level_keeps_its_name() {
        let mut events: Vec<Event> = Level::ALL
            .iter()
            .map(|&level| {
                let mut event = Event::new("s".into(), "p".into(), String::new(), -1);
                event.level = Some(level);
                event
            })
            .collect();
        events[0].stream = Some(String::new());
        events[1].origin.file = Some("".into());
        events[2]
            .fields
            .insert("n".into(), json!([-0.0, 1.5e300, u64::MAX, i64::MIN]));
        let decoded = round_trip(&events);
        assert_eq!(decoded, events);
        for (event, level) in decoded.iter().zip(Level::ALL) {
            assert_eq!(event.level, Some(level));
        }
        assert_eq!(decoded[1].stream, None);
        assert_eq!(decoded[0].origin.file, None);
    }

    #[test]
    fn names_repeated_from_event_to_event_are_written_once_and_shared() {
        let mut first = Event::new("app_logs".into(), "file".into(), "a".into(), 1);
        first.origin.file = Some("/var/log/shop.log".into());
        let mut second = first.clone();
        second.message = "b".into();
        let mut bytes = Vec::new();
        encode(&[first.clone(), second.clone()], &mut bytes);
        assert_eq!(
            memchr::memmem::find_iter(&bytes, b"/var/log/shop.log").count(),
            1
        );
        let decoded = decode(&bytes, 2).unwrap();
        assert_eq!(decoded, [first, second]);
        assert!(Arc::ptr_eq(&decoded[0].source, &decoded[1].source));
        assert!(Arc::ptr_eq(
            decoded[0].origin.file.as_ref().unwrap(),
            decoded[1].origin.file.as_ref().unwrap()
        ));
    }

    #[test]
    fn damage_is_refused_with_a_reason() {
        let event = Event::new("s".into(), "p".into(), "line".into(), 5);
        let mut bytes = Vec::new();
        encode(std::slice::from_ref(&event), &mut bytes);
        let mut unknown_bits = bytes.clone();
        unknown_bits[9] = 0x80;
        assert!(
            decode(&unknown_bits, 1)
                .unwrap_err()
                .contains("unknown presence bits")
        );
        assert!(
            decode(&bytes[..bytes.len() - 1], 1)
                .unwrap_err()
                .contains("cut short")
        );
        let mut repeats_nothing = bytes.clone();
        repeats_nothing[9] = (SAME_SOURCE >> 8) as u8;
        assert!(decode(&repeats_nothing, 1).is_err());

        let mut deep = Vec::new();
        deep.extend_from_slice(&0i64.to_le_bytes());
        deep.extend_from_slice(&FIELDS.to_le_bytes());
        for text in ["", "s", "p"] {
            put_str(&mut deep, text);
        }
        put_len(&mut deep, 1);
        put_str(&mut deep, "n");
        for _ in 0..=MAX_DEPTH + 1 {
            deep.push(ARRAY);
            put_len(&mut deep, 1);
        }
        deep.push(NULL);
        assert!(decode(&deep, 1).unwrap_err().contains("too deep"));
    }
}

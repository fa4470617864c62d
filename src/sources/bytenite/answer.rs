//! The decoder of a `POST /v1/customer/logs` answer (`logsGetLogsResponse`):
//!
//! ```json
//! {"partitioner": [{"log": "…", "timestamp": "2025-06-24T16:19:02.101Z", "level": "INFO", "container": "partitioner"}],
//!  "assembler":   [ … ],
//!  "taskrunner":  {"<task id>": {"logs": [ … ]}, …}}
//! ```
//!
//! flattened into lines, each of one sub-stream (service, task, container). What
//! grpc-gateway may leave out is taken as empty (a service, `log`, `container`) or
//! unknown (`level`, `timestamp`); levels are names or enum numbers; unknown keys
//! are skipped.
//!
//! Every answer repeats all of the job's lines so far, newest first, so the
//! decoder keeps only what may be new, as it reads: lines older than their
//! sub-stream's high-water mark are dropped at once; lines at the mark are kept
//! (the dedupe cursor tells them apart); lines past it are kept up to
//! [`Selection::budget`] bytes — the oldest first, so that each sub-stream's kept
//! lines run without a gap from its mark — and [`Answer::more`] says the answer
//! held more than that. Memory is bounded by the budget (plus the lines that
//! share their sub-stream's last shipped timestamp), whatever the answer's size;
//! time is linear in it.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::io::{BufReader, Cursor, Read};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::wire::{LogLevel, Service, parse_timestamp};

/// Bytes read from a large answer at a time.
const DECODE_BUFFER: usize = 64 << 10;

/// Answers up to this size are read whole before they are parsed.
const WHOLE_ANSWER_BYTES: usize = 8 << 20;

/// Bytes a kept line costs besides its text.
pub const LINE_OVERHEAD: usize = 80;

/// What to keep from an answer.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The high-water mark (Unix ns) of each sub-stream, by its key
    /// `{service}/{task}/{container}`; sub-streams not listed start at 0.
    pub marks: HashMap<String, i64>,
    /// Most bytes of lines past their mark kept from one answer (at least one
    /// line is always kept).
    pub budget: usize,
    /// Longer log texts are cut to this many bytes.
    pub max_line_bytes: usize,
    /// Services to keep; empty: all.
    pub services: Vec<Service>,
    /// Tasks of the task runner to keep; empty: all.
    pub task_ids: HashSet<String>,
    /// Levels to keep; empty: all.
    pub levels: Vec<LogLevel>,
}

/// One sub-stream seen in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubStream {
    /// `{service}/{task}/{container}`.
    pub key: String,
    pub service: Service,
    /// The task id (task runner lines only, else empty).
    pub task: String,
    pub container: String,
    /// Its mark when the answer was read.
    pub mark: i64,
    /// The answer held a line at or before the mark.
    pub reached: bool,
}

/// A kept line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Index into [`Answer::streams`].
    pub stream: u32,
    /// Unix ns; 0 when the line had no readable timestamp.
    pub time: i64,
    /// Whether `time` came from the line.
    pub timed: bool,
    /// Position in the answer.
    pub seq: u64,
    pub log: String,
    /// `log` was cut at `max_line_bytes`.
    pub truncated: bool,
    pub level: LogLevel,
}

impl Line {
    fn cost(&self) -> usize {
        self.log.len() + LINE_OVERHEAD
    }
}

impl PartialOrd for Line {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Oldest first: by time, then — answers being newest first — later in the
/// answer first.
impl Ord for Line {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time, other.seq).cmp(&(other.time, self.seq))
    }
}

/// What an answer held that may be new.
#[derive(Debug, Default)]
pub struct Answer {
    /// The sub-streams of the lines read, in the order first seen
    /// ([`Line::stream`] indexes this).
    pub streams: Vec<SubStream>,
    /// Kept lines, in no particular order.
    pub lines: Vec<Line>,
    /// Lines past the budget were left for the next poll.
    pub more: bool,
    /// The answer listed lines newest first (as ByteNite does), or could not tell.
    pub newest_first: bool,
    /// Lines in the answer (after the filters).
    pub total: u64,
}

/// Reads an answer from `reader`, keeping what `selection` says.
///
/// An answer of at most [`WHOLE_ANSWER_BYTES`] (or the budget, if smaller) —
/// what ByteNite returns within Loki's usual limit of 5,000 lines — is read
/// whole and parsed from memory, several times faster than serde_json's byte by
/// byte reader. A larger one is parsed as it arrives, so that memory stays
/// bounded; its reader is a `BufReader` of a concrete type, which serves each
/// byte from its buffer without a call through `reader` (a `dyn BufRead`).
pub fn decode(reader: impl Read, selection: &Selection) -> Result<Answer, serde_json::Error> {
    decode_whole_up_to(reader, selection, WHOLE_ANSWER_BYTES.min(selection.budget))
}

fn decode_whole_up_to(
    mut reader: impl Read,
    selection: &Selection,
    whole: usize,
) -> Result<Answer, serde_json::Error> {
    let mut head = Vec::new();
    reader
        .by_ref()
        .take((whole as u64).saturating_add(1))
        .read_to_end(&mut head)
        .map_err(serde_json::Error::io)?;
    let mut decoder = Decoder::new(selection);
    if head.len() <= whole {
        let mut de = serde_json::Deserializer::from_slice(&head);
        Top(&mut decoder).deserialize(&mut de)?;
        de.end()?;
    } else {
        let reader = BufReader::with_capacity(DECODE_BUFFER, Cursor::new(head).chain(reader));
        let mut de = serde_json::Deserializer::from_reader(reader);
        Top(&mut decoder).deserialize(&mut de)?;
        de.end()?;
    }
    Ok(decoder.finish())
}

/// The decoding state, with buffers reused for every line.
struct Decoder<'s> {
    selection: &'s Selection,
    index: HashMap<String, u32>,
    streams: Vec<SubStream>,
    /// Lines at their sub-stream's mark.
    at_mark: Vec<Line>,
    /// Lines past their mark, newest on top.
    past: BinaryHeap<Line>,
    past_bytes: usize,
    /// Lines at or after this time were left out for the budget.
    cutoff: Option<i64>,
    more: bool,
    seq: u64,
    ascending: u64,
    descending: u64,
    /// The service and task of the array being read.
    service: Service,
    task: String,
    /// The time of the previous line of the array being read.
    previous: Option<i64>,
    log: String,
    timestamp: String,
    container: String,
    level: LogLevel,
    key: String,
}

impl<'s> Decoder<'s> {
    fn new(selection: &'s Selection) -> Self {
        Decoder {
            selection,
            index: HashMap::new(),
            streams: Vec::new(),
            at_mark: Vec::new(),
            past: BinaryHeap::new(),
            past_bytes: 0,
            cutoff: None,
            more: false,
            seq: 0,
            ascending: 0,
            descending: 0,
            service: Service::Partitioner,
            task: String::new(),
            previous: None,
            log: String::new(),
            timestamp: String::new(),
            container: String::new(),
            level: LogLevel::Unknown,
            key: String::new(),
        }
    }

    fn keeps_service(&self, service: Service) -> bool {
        self.selection.services.is_empty() || self.selection.services.contains(&service)
    }

    fn keeps_task(&self, task: &str) -> bool {
        self.selection.task_ids.is_empty() || self.selection.task_ids.contains(task)
    }

    /// Starts reading the lines of `service` (and `task`).
    fn start_array(&mut self, service: Service, task: &str) {
        self.service = service;
        self.task.clear();
        self.task.push_str(task);
        self.previous = None;
    }

    /// The line just read (in `log`, `timestamp`, `container`, `level`).
    fn line(&mut self) {
        let seq = self.seq;
        self.seq += 1;
        let level = std::mem::replace(&mut self.level, LogLevel::Unknown);
        if !self.selection.levels.is_empty() && !self.selection.levels.contains(&level) {
            return;
        }
        let parsed = parse_timestamp(&self.timestamp);
        let time = parsed.unwrap_or(0);
        if let (Some(previous), Some(_)) = (self.previous, parsed) {
            if time > previous {
                self.ascending += 1;
            } else if time < previous {
                self.descending += 1;
            }
        }
        if parsed.is_some() {
            self.previous = Some(time);
        }
        let stream = self.stream();
        let sub = &mut self.streams[stream as usize];
        if time <= sub.mark {
            sub.reached = true;
            if time < sub.mark {
                return;
            }
        }
        let at_mark = time == sub.mark;
        if !at_mark && self.cutoff.is_some_and(|cutoff| time > cutoff) {
            self.more = true;
            return;
        }
        let (log, truncated) = cut(&self.log, self.selection.max_line_bytes);
        let line = Line {
            stream,
            time,
            timed: parsed.is_some(),
            seq,
            log: log.to_string(),
            truncated,
            level,
        };
        if at_mark {
            self.at_mark.push(line);
            return;
        }
        self.past_bytes += line.cost();
        self.past.push(line);
        while self.past_bytes > self.selection.budget && self.past.len() > 1 {
            let Some(newest) = self.past.pop() else {
                break;
            };
            self.past_bytes -= newest.cost();
            self.more = true;
            self.cutoff = Some(self.cutoff.map_or(newest.time, |c| c.min(newest.time)));
        }
    }

    /// The index of the current line's sub-stream, added on first sight.
    fn stream(&mut self) -> u32 {
        self.key.clear();
        use std::fmt::Write;
        let _ = write!(
            self.key,
            "{}/{}/{}",
            self.service, self.task, self.container
        );
        if let Some(&index) = self.index.get(&self.key) {
            return index;
        }
        let index = self.streams.len() as u32;
        self.streams.push(SubStream {
            key: self.key.clone(),
            service: self.service,
            task: self.task.clone(),
            container: self.container.clone(),
            mark: self.selection.marks.get(&self.key).copied().unwrap_or(0),
            reached: false,
        });
        self.index.insert(self.key.clone(), index);
        index
    }

    fn finish(self) -> Answer {
        let mut lines = self.at_mark;
        lines.extend(self.past.into_vec());
        Answer {
            streams: self.streams,
            lines,
            more: self.more,
            newest_first: self.descending >= self.ascending,
            total: self.seq,
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, and whether it was.
fn cut(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// The whole answer: services by name, unknown keys skipped.
struct Top<'d, 's>(&'d mut Decoder<'s>);

impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a logs answer object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match Service::from_name(&key) {
                Some(service) if !self.0.keeps_service(service) => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(Service::TaskRunner) => map.next_value_seed(Tasks(self.0))?,
                Some(service) => {
                    self.0.start_array(service, "");
                    map.next_value_seed(Lines(self.0))?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The task runner's `{"<task id>": {"logs": [...]}}` (or `{"<task id>": [...]}`).
struct Tasks<'d, 's>(&'d mut Decoder<'s>);

impl<'de> DeserializeSeed<'de> for Tasks<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Tasks<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the task runner's logs by task id")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(task) = map.next_key::<String>()? {
            if self.0.keeps_task(&task) {
                self.0.start_array(Service::TaskRunner, &task);
                map.next_value_seed(Lines(self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// The lines of one service or task: `[entry, …]`, `{"logs": [entry, …]}` or null.
struct Lines<'d, 's>(&'d mut Decoder<'s>);

impl<'de> DeserializeSeed<'de> for Lines<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Lines<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of log lines")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Entry(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "logs" {
                map.next_value_seed(Lines(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// One `logsLogInstance`.
struct Entry<'d, 's>(&'d mut Decoder<'s>);

impl<'de> DeserializeSeed<'de> for Entry<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Entry<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a log line object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let d = self.0;
        d.log.clear();
        d.timestamp.clear();
        d.container.clear();
        d.level = LogLevel::Unknown;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Log => map.next_value_seed(Text(&mut d.log))?,
                Key::Timestamp => map.next_value_seed(Text(&mut d.timestamp))?,
                Key::Container => map.next_value_seed(Text(&mut d.container))?,
                Key::Level => d.level = map.next_value_seed(LevelValue)?,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        d.line();
        Ok(())
    }
}

/// The fields of a line, read without allocating.
enum Key {
    Log,
    Timestamp,
    Level,
    Container,
    Other,
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "log" => Key::Log,
                    "timestamp" => Key::Timestamp,
                    "level" => Key::Level,
                    "container" => Key::Container,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A string (or null, taken as empty) copied into a reused buffer.
struct Text<'b>(&'b mut String);

impl<'de> DeserializeSeed<'de> for Text<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E>(self, text: &str) -> Result<(), E> {
        self.0.push_str(text);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A level: an enum name, an enum number, or null (unknown).
struct LevelValue;

impl<'de> DeserializeSeed<'de> for LevelValue {
    type Value = LogLevel;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<LogLevel, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LevelValue {
    type Value = LogLevel;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a level name or number")
    }
    fn visit_str<E>(self, name: &str) -> Result<LogLevel, E> {
        Ok(LogLevel::from_name(name).unwrap_or(LogLevel::Unknown))
    }
    fn visit_u64<E>(self, number: u64) -> Result<LogLevel, E> {
        Ok(LogLevel::from_number(number))
    }
    fn visit_i64<E>(self, number: i64) -> Result<LogLevel, E> {
        Ok(u64::try_from(number).map_or(LogLevel::Unknown, LogLevel::from_number))
    }
    fn visit_unit<E>(self) -> Result<LogLevel, E> {
        Ok(LogLevel::Unknown)
    }
}

#[cfg(test)]
mod tests;

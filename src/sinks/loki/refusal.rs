//! Reading Loki's 400 answers: which entries of a push it refused, and why, in Loki's
//! own wording (`pkg/validation/validate.go`, `pkg/distributor`, `pkg/ingester`).
//!
//! Loki answers a push it refused in part in one of two shapes:
//!
//! - **Validation errors** (the distributor): too old, too new, line too long, bad
//!   labels, grouped by exact text — `300 errors like: entry for stream '{app="x"}' has
//!   timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: …; 50
//!   errors like: Max entry size '262144' bytes exceeded for stream '{app="x"}' while
//!   adding an entry with length '300000' bytes` (a lone error comes without the
//!   count). Such an answer covers the whole push: the ingesters took the rest.
//!   Timestamps there have second precision, so a group names "the entries of this
//!   stream in this second"; it names them exactly when their number matches the count.
//! - **An ingester's refusals** for one stream (out of order, too far behind): up to
//!   `max_returned_stream_errors` (10) lines `entry with timestamp 2024-05-06
//!   15:58:50.123456789 +0000 UTC ignored, reason: '…',` then `user 'fake', total
//!   ignored: 20 out of 2650 for stream: {app="x"}`. Nanosecond timestamps name entries
//!   exactly; the total tells how many the list left out, and `out of` less than what
//!   was sent counts the entries the distributor had already refused (whose errors
//!   this answer does not carry).
//!
//! [`judge`] turns an answer into an [`Answer`] for the [isolation](super::isolate): the
//! entries named for certain and, when the answer allows, how many others were refused.

use std::collections::HashSet;

use super::batch::{Entry, Part, PartStream};
use super::isolate::Answer;

/// Why Loki refused an entry: the `reason` label of `ferry_loki_refused_entries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Older than `reject_old_samples_max_age` (or ferry's `reject_older_than`).
    TooOld,
    /// Further in the future than `creation_grace_period`.
    TooNew,
    /// Out of order, or too far behind the stream's newest entry.
    OutOfOrder,
    /// Longer than `max_line_size`.
    LineTooLong,
    /// The stream's labels: unparsable, too many, too long, duplicated, missing.
    Labels,
    /// The tenant's active stream limit.
    StreamLimit,
    Other,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::TooOld,
        Reason::TooNew,
        Reason::OutOfOrder,
        Reason::LineTooLong,
        Reason::Labels,
        Reason::StreamLimit,
        Reason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooOld => "too_old",
            Reason::TooNew => "too_new",
            Reason::OutOfOrder => "out_of_order",
            Reason::LineTooLong => "line_too_long",
            Reason::Labels => "labels",
            Reason::StreamLimit => "stream_limit",
            Reason::Other => "other",
        }
    }

    /// The reason a message gives, by its words (for messages not parsed otherwise).
    pub fn classify(message: &str) -> Reason {
        let message = message.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| message.contains(w));
        if has(&["too old", "greater_than_max_sample_age"]) {
            Reason::TooOld
        } else if has(&["too new", "too_far_in_future"]) {
            Reason::TooNew
        } else if has(&["out of order", "too far behind", "out_of_order"]) {
            Reason::OutOfOrder
        } else if has(&["max entry size", "line too long", "line_too_long"]) {
            Reason::LineTooLong
        } else if has(&["stream limit"]) {
            Reason::StreamLimit
        } else if has(&["label"]) {
            Reason::Labels
        } else {
            Reason::Other
        }
    }
}

/// The text of an error body: Loki writes plain text; a gateway may wrap it in JSON
/// (`{"code":400,"message":"…"}`).
pub fn message(body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.starts_with('{')
        && let Ok(serde_json::Value::Object(object)) = serde_json::from_str(trimmed)
        && let Some(serde_json::Value::String(message)) = object.get("message")
    {
        return message.clone();
    }
    trimmed.to_string()
}

/// Reads Loki's 400 `message` about the entries of `part` that were pushed.
pub fn judge(message: &str, part: &Part<'_>) -> Answer<Reason> {
    let streams: Vec<Candidate<'_, '_>> = part
        .streams
        .iter()
        .map(|s| Candidate {
            pushed: &s.stream.labels,
            printed: printed_labels(&s.stream.pairs),
            part: s,
        })
        .collect();
    let judged = Judged::new(&streams);
    if message.contains(" ignored, reason: '") || message.contains("total ignored: ") {
        judged.ingester(message)
    } else {
        judged.validation(message)
    }
}

/// A stream of the part, with the two ways Loki may print its labels.
struct Candidate<'p, 'a> {
    /// As ferry sent it (Loki prints this in stream-level errors).
    pushed: &'a str,
    /// As Loki renders a parsed label set (entry-level errors, ingester errors).
    printed: String,
    part: &'p PartStream<'a>,
}

/// What one error message claims.
#[derive(Debug, PartialEq, Eq)]
struct Claim<'m> {
    reason: Reason,
    target: Target<'m>,
}

/// The entries an error message is about.
#[derive(Debug, PartialEq, Eq)]
enum Target<'m> {
    /// Entries of `stream` whose timestamp falls in this second (Unix seconds).
    Second { stream: &'m str, second: i64 },
    /// Entries of `stream` at exactly this time (Unix nanoseconds).
    Exact { stream: &'m str, nanos: i64 },
    /// Entries of `stream` whose line is this many bytes long.
    Length { stream: &'m str, bytes: usize },
    /// Entries of `stream` that carry structured metadata.
    WithMetadata { stream: &'m str },
    /// Every entry of `stream`: the stream itself is refused (one error per stream).
    Stream { stream: &'m str },
    /// Entries of some stream that no detail of the message singles out.
    SomeEntries,
    /// Anything else: not even how many entries it covers is known.
    Unknown,
}

impl Target<'_> {
    /// The stream the claim is about, when it singles out entries of it.
    fn stream(&self) -> Option<&str> {
        match self {
            Target::Second { stream, .. }
            | Target::Exact { stream, .. }
            | Target::Length { stream, .. }
            | Target::WithMetadata { stream }
            | Target::Stream { stream } => Some(stream),
            Target::SomeEntries | Target::Unknown => None,
        }
    }

    /// Whether `entry` (of the claim's stream) fits the claim.
    fn covers(&self, entry: &Entry) -> bool {
        match self {
            Target::Second { second, .. } => {
                entry.event.timestamp.div_euclid(1_000_000_000) == *second
            }
            Target::Exact { nanos, .. } => entry.event.timestamp == *nanos,
            Target::Length { bytes, .. } => entry.event.message.len() == *bytes,
            Target::WithMetadata { .. } => !entry.metadata.is_empty(),
            Target::Stream { .. } => true,
            Target::SomeEntries | Target::Unknown => false,
        }
    }
}

struct Judged<'c, 'p, 'a> {
    streams: &'c [Candidate<'p, 'a>],
    named: Vec<(usize, Reason)>,
    taken: HashSet<usize>,
}

impl<'c, 'p, 'a> Judged<'c, 'p, 'a> {
    fn new(streams: &'c [Candidate<'p, 'a>]) -> Self {
        Judged {
            streams,
            named: Vec::new(),
            taken: HashSet::new(),
        }
    }

    fn stream(&self, text: &str) -> Option<&'c Candidate<'p, 'a>> {
        let text = text.trim();
        self.streams
            .iter()
            .find(|s| s.pushed == text || s.printed == text)
    }

    /// Names the entries `claim` covers if there are exactly `count` of them.
    fn resolve(&mut self, claim: &Claim<'_>, count: usize) -> bool {
        let Some(candidate) = claim.target.stream().and_then(|s| self.stream(s)) else {
            return false;
        };
        let matches: Vec<usize> = candidate
            .part
            .entries
            .iter()
            .filter(|(position, entry)| {
                !self.taken.contains(position) && claim.target.covers(entry)
            })
            .map(|(position, _)| *position)
            .collect();
        let whole_stream = matches!(claim.target, Target::Stream { .. });
        if matches.is_empty() || (!whole_stream && matches.len() != count) {
            return false;
        }
        self.taken.extend(matches.iter().copied());
        self.named
            .extend(matches.into_iter().map(|position| (position, claim.reason)));
        true
    }

    /// Resolves what it can of `claims` (count, claim); returns those left open.
    fn resolve_all<'m>(&mut self, claims: Vec<(usize, Claim<'m>)>) -> Vec<(usize, Claim<'m>)> {
        let mut open = claims;
        loop {
            let before = open.len();
            open.retain(|(count, claim)| !self.resolve(claim, *count));
            if open.len() == before {
                return open;
            }
        }
    }

    /// The distributor's grouped validation errors.
    fn validation(mut self, message: &str) -> Answer<Reason> {
        let claims: Vec<(usize, Claim<'_>)> = groups(message)
            .into_iter()
            .map(|(count, text)| (count, claim(text)))
            .collect();
        let reason = claims
            .first()
            .map_or_else(|| Reason::classify(message), |(_, c)| c.reason);
        // A stream-limit refusal comes from an ingester: whatever else the push broke
        // is not in this answer.
        let mut unnamed = if claims.iter().any(|(_, c)| c.reason == Reason::StreamLimit) {
            None
        } else {
            Some(0)
        };
        let open = self.resolve_all(claims);
        for (count, claim) in &open {
            unnamed = match claim.target {
                Target::Stream { .. } | Target::Unknown => None,
                _ => unnamed.map(|n| n + count),
            };
        }
        Answer::Refused {
            reason: open.first().map_or(reason, |(_, c)| c.reason),
            named: self.named,
            unnamed,
        }
    }

    /// An ingester's list of refused entries for one stream.
    fn ingester(mut self, message: &str) -> Answer<Reason> {
        let mut total: Option<(usize, usize, &str)> = None;
        let mut listed: Vec<(i64, Reason, Option<&str>)> = Vec::new();
        for line in message.lines() {
            if let Some(found) = total_line(line) {
                total = Some(found);
            } else if let Some(entry) = ignored_line(line) {
                listed.push(entry);
            }
        }
        let reason = listed
            .first()
            .map_or_else(|| Reason::classify(message), |(_, r, _)| *r);
        let mut claims: Vec<(usize, Claim<'_>)> = Vec::new();
        for (nanos, reason, stream) in listed {
            let Some(stream) = stream.or(total.map(|(_, _, s)| s)) else {
                continue;
            };
            let target = Target::Exact { stream, nanos };
            match claims.iter_mut().find(|(_, c)| c.target == target) {
                Some((count, _)) => *count += 1,
                None => claims.push((1, Claim { reason, target })),
            }
        }
        self.resolve_all(claims);
        let unnamed = total.and_then(|(ignored, out_of, stream)| {
            let [only] = self.streams else {
                return None;
            };
            let sent = only.part.entries.len();
            let same = self.stream(stream).is_some_and(|s| std::ptr::eq(s, only));
            (same && sent >= out_of)
                .then(|| (ignored + (sent - out_of)).saturating_sub(self.named.len()))
        });
        Answer::Refused {
            named: self.named,
            unnamed,
            reason,
        }
    }
}

/// Splits the distributor's grouped errors: `N errors like: A; M errors like: B`, or a
/// single error as is.
fn groups(message: &str) -> Vec<(usize, &str)> {
    let message = message.trim();
    let Some((count, mut rest)) = counted(message) else {
        return vec![(1, message)];
    };
    let mut out = Vec::new();
    let mut count = count;
    loop {
        let next = rest
            .match_indices("; ")
            .find_map(|(at, _)| counted(&rest[at + 2..]).map(|(n, after)| (at, n, after)));
        match next {
            Some((at, n, after)) => {
                out.push((count, &rest[..at]));
                count = n;
                rest = after;
            }
            None => {
                out.push((count, rest));
                return out;
            }
        }
    }
}

/// `N errors like: REST` → (N, REST).
fn counted(text: &str) -> Option<(usize, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let rest = text[digits..].strip_prefix(" errors like: ")?;
    Some((text[..digits].parse().ok()?, rest))
}

/// What one validation error (Loki's wording) claims.
fn claim(text: &str) -> Claim<'_> {
    let text = text.trim();
    let found = |reason, target| Claim { reason, target };
    if let Some(rest) = text.strip_prefix("entry for stream '") {
        if let Some((stream, tail)) = rest.rsplit_once("' has timestamp too old: ") {
            let time = tail.split(", oldest acceptable").next().unwrap_or(tail);
            return found(Reason::TooOld, second(stream, time));
        }
        if let Some((stream, tail)) = rest.rsplit_once("' has timestamp too new: ") {
            return found(Reason::TooNew, second(stream, tail));
        }
        if let Some((stream, tail)) = rest.rsplit_once("' has ")
            && tail.contains(" label names; limit ")
        {
            return found(Reason::Labels, Target::Stream { stream });
        }
    }
    if let Some(rest) = text.strip_prefix("Max entry size '")
        && let Some((_, rest)) = rest.split_once("' bytes exceeded for stream '")
        && let Some((stream, tail)) = rest.rsplit_once("' while adding an entry with length '")
    {
        let target = match tail.trim_end_matches("' bytes").parse() {
            Ok(bytes) => Target::Length { stream, bytes },
            Err(_) => Target::SomeEntries,
        };
        return found(Reason::LineTooLong, target);
    }
    if let Some(rest) = text.strip_prefix("stream '") {
        for marker in [
            "' has label name too long: '",
            "' has label value too long: '",
            "' has duplicate label name: '",
        ] {
            if let Some((stream, _)) = rest.rsplit_once(marker) {
                return found(Reason::Labels, Target::Stream { stream });
            }
        }
        if let Some((stream, _)) =
            rest.rsplit_once("' includes structured metadata, but this feature is disallowed")
        {
            return found(Reason::Other, Target::WithMetadata { stream });
        }
        if rest.contains("' has structured metadata too large: ")
            || rest.contains("' has too many structured metadata labels: ")
        {
            return found(Reason::Other, Target::SomeEntries);
        }
    }
    if let Some(rest) = text.strip_prefix("Error parsing labels '")
        && let Some((stream, _)) = rest.rsplit_once("' with error: ")
    {
        return found(Reason::Labels, Target::Stream { stream });
    }
    if text.starts_with("missing required labels ")
        && let Some((_, stream)) = text.rsplit_once(" for stream ")
    {
        return found(Reason::Labels, Target::Stream { stream });
    }
    if let Some(rest) =
        text.strip_prefix("Maximum active stream limit exceeded when trying to create stream ")
        && let Some((stream, _)) = rest.rsplit_once(", reduce the number of active streams")
    {
        return found(Reason::StreamLimit, Target::Stream { stream });
    }
    found(Reason::classify(text), Target::Unknown)
}

/// A second-precision claim: `time` is RFC 3339 (Go's `time.RFC3339`).
fn second<'m>(stream: &'m str, time: &str) -> Target<'m> {
    match chrono::DateTime::parse_from_rfc3339(time.trim()) {
        Ok(time) => Target::Second {
            stream,
            second: time.timestamp(),
        },
        Err(_) => Target::SomeEntries,
    }
}

/// `entry with timestamp TIME ignored, reason: 'WHY',` (older Loki: `… reason: 'WHY'
/// for stream: {…},`) → (nanoseconds, reason, stream when the line names it).
fn ignored_line(line: &str) -> Option<(i64, Reason, Option<&str>)> {
    let at = line.find("entry with timestamp ")?;
    let rest = &line[at + "entry with timestamp ".len()..];
    let (time, why) = rest.split_once(" ignored, reason: '")?;
    let (why, stream) = match why.rsplit_once("' for stream: ") {
        Some((why, stream)) => (why, Some(stream.trim().trim_end_matches(',').trim_end())),
        None => (
            why.trim_end().trim_end_matches(',').trim_end_matches('\''),
            None,
        ),
    };
    Some((go_time(time)?, Reason::classify(why), stream))
}

/// `user 'T', total ignored: N out of M for stream: {…}` → (N, M, stream).
fn total_line(line: &str) -> Option<(usize, usize, &str)> {
    let at = line.find("total ignored: ")?;
    let rest = &line[at + "total ignored: ".len()..];
    let (ignored, rest) = rest.split_once(" out of ")?;
    let (out_of, stream) = rest.split_once(" for stream: ")?;
    Some((
        ignored.trim().parse().ok()?,
        out_of.trim().parse().ok()?,
        stream.trim(),
    ))
}

/// Go's `time.Time.String()`: `2006-01-02 15:04:05.999999999 -0700 MST` → Unix ns.
fn go_time(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let (date, clock, offset) = (parts.next()?, parts.next()?, parts.next()?);
    let naive =
        chrono::NaiveDateTime::parse_from_str(&format!("{date} {clock}"), "%Y-%m-%d %H:%M:%S%.f")
            .ok()?;
    let offset = chrono::DateTime::parse_from_str(
        &format!("2000-01-01 00:00:00 {offset}"),
        "%Y-%m-%d %H:%M:%S %z",
    )
    .ok()?
    .offset()
    .local_minus_utc();
    naive
        .and_utc()
        .timestamp_nanos_opt()?
        .checked_sub(i64::from(offset) * 1_000_000_000)
}

/// A label set as Loki prints a parsed one (Prometheus `Labels.String()`): sorted,
/// `{a="x", b="y"}`, values quoted as Go's `strconv.Quote` does.
pub fn printed_labels(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();
    let mut out = String::from("{");
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push('=');
        go_quote(value, &mut out);
    }
    out.push('}');
    out
}

fn go_quote(value: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{BatchStatus, Delivery};
    use crate::event::Event;
    use crate::sinks::loki::batch::{Payload, Stream};

    /// 2020-01-01T00:00:00Z
    const Y2020: i64 = 1_577_836_800_000_000_000;

    fn stream(labels: &[(&str, &str)], entries: &[(i64, &str)]) -> Stream {
        let pairs: Vec<(String, String)> = labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Stream {
            labels: printed_labels(&pairs),
            pairs,
            entries: entries
                .iter()
                .map(|(ts, line)| Entry {
                    event: Event::new("s".into(), "demo".into(), line.to_string(), *ts),
                    metadata: Vec::new(),
                    batch: 0,
                })
                .collect(),
            deliveries: vec![(0, Delivery::detached())],
        }
    }

    fn judged(message: &str, streams: Vec<Stream>) -> Answer<Reason> {
        let payload = Payload {
            tenant: String::new(),
            streams,
        };
        let all: Vec<usize> = (0..payload.event_count()).collect();
        let answer = judge(message, &payload.part(&all));
        payload.settle(BatchStatus::Delivered);
        answer
    }

    fn app() -> [(&'static str, &'static str); 1] {
        [("app", "dlqcheck")]
    }

    #[test]
    fn grouped_validation_errors_name_each_group_by_second_and_length() {
        let long = "x".repeat(300);
        let entries = [
            (Y2020, "old 1"),
            (Y2020 + 5, "old 2"),
            (Y2020 + 1_000_000_000, "old 3"),
            (1_900_000_000_000_000_000, long.as_str()),
            (1_900_000_000_000_000_001, "fine"),
        ];
        let message = "2 errors like: entry for stream '{app=\"dlqcheck\"}' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2026-11-24T22:06:35Z; \
            1 errors like: entry for stream '{app=\"dlqcheck\"}' has timestamp too old: 2020-01-01T00:00:01Z, oldest acceptable timestamp is: 2026-11-24T22:06:35Z; \
            1 errors like: Max entry size '256' bytes exceeded for stream '{app=\"dlqcheck\"}' while adding an entry with length '300' bytes";
        let answer = judged(message, vec![stream(&app(), &entries)]);
        assert_eq!(
            answer,
            Answer::Refused {
                named: vec![
                    (0, Reason::TooOld),
                    (1, Reason::TooOld),
                    (2, Reason::TooOld),
                    (3, Reason::LineTooLong)
                ],
                unnamed: Some(0),
                reason: Reason::TooOld,
            }
        );
    }

    #[test]
    fn a_lone_error_has_no_count_and_a_mismatch_names_nothing() {
        let entries = [(Y2020, "a"), (Y2020 + 1, "b")];
        let message = "entry for stream '{app=\"dlqcheck\"}' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2026-11-24T22:06:35Z";
        assert_eq!(
            judged(message, vec![stream(&app(), &entries)]),
            Answer::Refused {
                named: Vec::new(),
                unnamed: Some(1),
                reason: Reason::TooOld
            },
            "two entries in that second, one refused: which one is unknown"
        );
        let too_new =
            "entry for stream '{app=\"dlqcheck\"}' has timestamp too new: 2020-01-01T00:00:00Z";
        assert_eq!(
            judged(too_new, vec![stream(&app(), &entries[..1])]),
            Answer::Refused {
                named: vec![(0, Reason::TooNew)],
                unnamed: Some(0),
                reason: Reason::TooNew
            }
        );
    }

    #[test]
    fn stream_level_errors_name_the_whole_stream_as_pushed_or_as_printed() {
        let good = stream(&[("app", "a")], &[(1, "x"), (2, "y")]);
        let bad = stream(
            &[("app", "b"), ("level", "tab\there")],
            &[(1, "z"), (3, "w")],
        );
        let message =
            "stream '{app=\"b\", level=\"tab\\there\"}' has label value too long: 'tab\there'";
        assert_eq!(
            judged(message, vec![good, bad]),
            Answer::Refused {
                named: vec![(2, Reason::Labels), (3, Reason::Labels)],
                unnamed: Some(0),
                reason: Reason::Labels
            }
        );
        let unknown = stream(&[("app", "a")], &[(1, "x")]);
        assert_eq!(
            judged(
                "Error parsing labels '{app=\"zzz\"}' with error: 1:4: parse error",
                vec![unknown]
            ),
            Answer::Refused {
                named: Vec::new(),
                unnamed: None,
                reason: Reason::Labels
            },
            "a stream not in the push: nothing known"
        );
    }

    #[test]
    fn an_ingester_list_names_entries_to_the_nanosecond_and_counts_the_rest() {
        let entries = [
            (Y2020, "too old: dropped by the distributor"),
            (1_700_000_000_123_456_789, "behind 1"),
            (1_700_000_001_000_000_000, "behind 2"),
            (1_700_000_002_000_000_000, "behind 3"),
            (1_800_000_000_000_000_000, "fine"),
        ];
        let message = "entry with timestamp 2023-11-14 22:13:20.123456789 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2023-11-14T22:13:20Z, oldest acceptable timestamp is: 2027-01-15T07:00:00Z',\n\
            entry with timestamp 2023-11-14 23:13:21 +0100 CET ignored, reason: 'entry too far behind, entry timestamp is: 2023-11-14T23:13:21+01:00, oldest acceptable timestamp is: 2027-01-15T07:00:00Z',\n\
            user 'fake', total ignored: 3 out of 4 for stream: {app=\"dlqcheck\"}";
        assert_eq!(
            judged(message, vec![stream(&app(), &entries)]),
            Answer::Refused {
                named: vec![(1, Reason::OutOfOrder), (2, Reason::OutOfOrder)],
                unnamed: Some(2),
                reason: Reason::OutOfOrder
            },
            "one more behind, one refused before the ingester"
        );
        let older = "entry with timestamp 2023-11-14 22:13:20.123456789 +0000 UTC ignored, reason: 'entry out of order' for stream: {app=\"dlqcheck\"},";
        assert_eq!(
            judged(older, vec![stream(&app(), &entries)]),
            Answer::Refused {
                named: vec![(1, Reason::OutOfOrder)],
                unnamed: None,
                reason: Reason::OutOfOrder
            }
        );
    }

    #[test]
    fn an_ingester_total_counts_nothing_when_other_streams_were_pushed() {
        let message = "entry with timestamp 1970-01-01 00:00:00.000000001 +0000 UTC ignored, reason: 'entry out of order',\n\
            user 'fake', total ignored: 1 out of 1 for stream: {app=\"b\"}";
        let answer = judged(
            message,
            vec![
                stream(&[("app", "a")], &[(1, "x")]),
                stream(&[("app", "b")], &[(1, "y")]),
            ],
        );
        assert_eq!(
            answer,
            Answer::Refused {
                named: vec![(1, Reason::OutOfOrder)],
                unnamed: None,
                reason: Reason::OutOfOrder
            }
        );
    }

    #[test]
    fn unknown_messages_name_nothing_and_are_classified_by_their_words() {
        let answer = judged("some proxy says no", vec![stream(&app(), &[(1, "x")])]);
        assert_eq!(
            answer,
            Answer::Refused {
                named: Vec::new(),
                unnamed: None,
                reason: Reason::Other
            }
        );
        assert_eq!(
            Reason::classify(
                "Maximum active stream limit exceeded, reduce the number of active streams (reduce labels or reduce label values)"
            ),
            Reason::StreamLimit
        );
        assert_eq!(Reason::classify("entry out of order"), Reason::OutOfOrder);
        assert_eq!(
            Reason::classify("error at least one label pair is required per stream"),
            Reason::Labels
        );
    }

    #[test]
    fn json_wrapped_bodies_are_unwrapped() {
        assert_eq!(
            message("{\"code\":400,\"status\":\"error\",\"message\":\"entry out of order\"}\n"),
            "entry out of order"
        );
        assert_eq!(message("  plain\n"), "plain");
    }

    #[test]
    fn groups_split_only_at_counted_boundaries() {
        assert_eq!(
            groups("entry for stream '{a=\"b\"}' has 16 label names; limit 15"),
            [(
                1,
                "entry for stream '{a=\"b\"}' has 16 label names; limit 15"
            )]
        );
        assert_eq!(
            groups("3 errors like: a; b; 2 errors like: c"),
            [(3, "a; b"), (2, "c")]
        );
    }

    #[test]
    fn labels_print_as_go_quotes_them() {
        let pairs = vec![
            ("b".to_string(), "q\"\\\n\u{1}é".to_string()),
            ("a".to_string(), "x".to_string()),
        ];
        assert_eq!(
            printed_labels(&pairs),
            "{a=\"x\", b=\"q\\\"\\\\\\n\\x01é\"}"
        );
    }
}

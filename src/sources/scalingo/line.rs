//! Scalingo's log line: `2015-02-16 02:02:43.930163178 +0000 UTC [web-1] message`,
//! the same in a dump, in a websocket `log` event and in a log drain. The time is Go's
//! `time.Time.String()`: `YYYY-MM-DD HH:MM:SS`, a fraction of 1 to 9 digits with its
//! trailing zeros trimmed (none at all on a whole second), a `±HHMM` offset and a zone
//! abbreviation (`UTC`, `CEST`, or `+03` for zones without one); a value read from a
//! clock with a monotonic reading may be followed by `m=±S.fffffffff`, which is
//! skipped. Then the container in brackets — its name is the instance (`web-1`), its
//! type the component (`web`; `router` has no number) — and the message.
//!
//! The parser borrows from the line and allocates nothing; the `parse` transform's
//! `scalingo` format uses it too.

use crate::sources::provider::time;

/// One parsed line, borrowing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// Unix nanoseconds (UTC).
    pub time: i64,
    /// The container name, `web-1`.
    pub container: &'a str,
    /// The text after `[container] `.
    pub message: &'a str,
}

impl<'a> Line<'a> {
    /// The container type: `web` for `web-1`, `one-off` for `one-off-1234`, the
    /// whole name when it does not end in `-<number>` (`router`).
    pub fn component(&self) -> &'a str {
        component(self.container)
    }
}

/// The container type of a container name (see [`Line::component`]).
pub fn component(container: &str) -> &str {
    match container.rsplit_once('-') {
        Some((kind, n))
            if !kind.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            kind
        }
        _ => container,
    }
}

/// Reads one line (without its `\n`).
pub fn parse(line: &str) -> Result<Line<'_>, String> {
    let b = line.as_bytes();
    let (time, rest) = parse_time(b).ok_or_else(|| {
        let shown: String = line.chars().take(40).collect();
        format!("expected `YYYY-MM-DD HH:MM:SS[.f] ±HHMM ZONE [container] message`, got `{shown}`")
    })?;
    let rest = &line[line.len() - rest.len()..];
    let rest = rest.strip_prefix('[').ok_or("missing `[container]`")?;
    let (container, message) = rest.split_once(']').ok_or("unclosed `[container`")?;
    if container.is_empty() {
        return Err("empty container name".into());
    }
    Ok(Line {
        time,
        container,
        message: message.strip_prefix(' ').unwrap_or(message),
    })
}

/// True for a line that starts like `YYYY-MM-DD HH:MM:SS… ±HHMM ZONE [`.
pub fn looks_like(line: &str) -> bool {
    parse_time(line.as_bytes()).is_some_and(|(_, rest)| rest.first() == Some(&b'['))
}

/// The time at the start of `b` and what follows it (after the zone and its space).
fn parse_time(b: &[u8]) -> Option<(i64, &[u8])> {
    let (local, rest) = time::date_time_prefix(b, b" ")?;
    let rest = rest.strip_prefix(b" ")?;
    if rest.len() < 6 || rest[5] != b' ' {
        return None;
    }
    let offset = time::zone_offset_seconds(rest[0], &rest[1..3], &rest[3..5])?;
    let zone_and_rest = &rest[6..];
    let zone_len = zone_and_rest.iter().position(|&c| c == b' ')?;
    if zone_len == 0 {
        return None;
    }
    let mut rest = &zone_and_rest[zone_len + 1..];
    if rest.starts_with(b"m=+") || rest.starts_with(b"m=-") {
        let end = rest.iter().position(|&c| c == b' ')?;
        rest = &rest[end + 1..];
    }
    let utc = time::to_utc(local, offset)?;
    Some((utc, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Datelike, FixedOffset, Timelike};
    use proptest::prelude::*;

    #[test]
    fn the_documented_lines_parse() {
        let line =
            parse("2015-02-16 02:02:43.930163178 +0000 UTC [web-1] [martini] Started GET / for [filtered IP]")
                .unwrap();
        assert_eq!(line.time, 1_424_052_163_930_163_178);
        assert_eq!(line.container, "web-1");
        assert_eq!(line.component(), "web");
        assert_eq!(line.message, "[martini] Started GET / for [filtered IP]");
        let router = parse("2024-05-01 12:00:00.1 +0200 CEST [router] GET / 200").unwrap();
        assert_eq!(router.time, 1_714_557_600_100_000_000);
        assert_eq!(router.component(), "router");
        let whole = parse("2024-05-01 12:00:00 -0130 -0130 [worker-12] done").unwrap();
        assert_eq!(whole.time, 1_714_570_200_000_000_000);
        assert_eq!(whole.component(), "worker");
        let monotonic =
            parse("2024-05-01 12:00:00.5 +0000 UTC m=+0.001234567 [one-off-4821] x").unwrap();
        assert_eq!(
            (
                monotonic.container,
                monotonic.component(),
                monotonic.message
            ),
            ("one-off-4821", "one-off", "x")
        );
        assert_eq!(
            parse("2024-05-01 12:00:00 +0000 UTC [web-1]")
                .unwrap()
                .message,
            ""
        );
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "2015-02-16 02:02:43 +0000 UTC web-1 x",
            "2015-02-16 nope +0000 UTC [web-1] x",
            "2015-02-16 02:02:43 +0000 UTC [] x",
            "2015-02-16 02:02:43. +0000 UTC [web-1] x",
            "2015-02-30 02:02:43 +0000 UTC [web-1] x",
            "2015-02-16 02:02:43 +0060 UTC [web-1] x",
            "2015-02-16 02:02:43 +0000  [web-1] x",
            "2015-02-16 02:02:43 +0000 UTC [web-1 x",
            "short",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // Digits past the ninth (finer than Go writes) are ignored, as for ByteNite.
        let line = parse("2015-02-16 02:02:43.1234567890 +0000 UTC [web-1] x").unwrap();
        assert_eq!(line.time % 1_000_000_000, 123_456_789);
        assert!(looks_like(
            "2015-02-16 02:02:43.930163178 +0000 UTC [web-1] x"
        ));
        assert!(!looks_like(
            "2015-02-16 02:02:43.930 INFO [main] started the thing"
        ));
    }

    #[test]
    fn components_drop_only_a_numeric_suffix() {
        assert_eq!(component("web-1"), "web");
        assert_eq!(component("postdeploy-3"), "postdeploy");
        assert_eq!(component("my-worker"), "my-worker");
        assert_eq!(component("web-"), "web-");
        assert_eq!(component("-1"), "-1");
    }

    /// Go's `time.Time.String()` of `t`, with the zone named `zone`.
    fn go_format(t: DateTime<FixedOffset>, zone: &str) -> String {
        let mut text = t.format("%Y-%m-%d %H:%M:%S").to_string();
        let nanos = t.nanosecond();
        if nanos > 0 {
            let fraction = format!("{nanos:09}");
            text.push('.');
            text.push_str(fraction.trim_end_matches('0'));
        }
        text.push_str(&t.format(" %z ").to_string());
        text.push_str(zone);
        text
    }

    proptest! {
        /// Whatever the time, offset, container and message, a line in Go's format
        /// reads back to the same instant, container and message.
        #[test]
        fn go_formatted_lines_read_back(
            seconds in 0i64..7_258_118_400,
            nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000, (1u32..1000).prop_map(|n| n * 1_000_000)],
            offset_minutes in -14 * 60i32..=14 * 60,
            zone in "[A-Z]{3,4}|UTC|[+-][0-9]{2}",
            kind in "[a-z][a-z-]{0,10}[a-z]",
            number in proptest::option::of(1u32..100_000),
            message in "[^\n]{0,80}",
        ) {
            let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
            let t = DateTime::from_timestamp(seconds, nanos).unwrap().with_timezone(&offset);
            prop_assume!(t.year() <= 9999);
            let container = match number {
                Some(n) => format!("{kind}-{n}"),
                None => kind.clone(),
            };
            let text = format!("{} [{container}] {message}", go_format(t, &zone));
            let line = parse(&text).unwrap();
            prop_assert_eq!(line.time, seconds * 1_000_000_000 + i64::from(nanos));
            prop_assert_eq!(line.container, container.as_str());
            prop_assert_eq!(line.message, message.as_str());
            if number.is_some() {
                prop_assert_eq!(line.component(), kind.as_str());
            }
            prop_assert!(looks_like(&text));
        }

        /// Any text is read or refused without a panic; what is read is part of it.
        #[test]
        fn any_text_is_read_or_refused(text in "\\PC{0,80}|[0-9 :.+-]{0,40}\\[[a-z0-9-]{0,8}\\] ?.{0,10}") {
            if let Ok(line) = parse(&text) {
                prop_assert!(text.contains(line.container));
                prop_assert!(text.ends_with(line.message));
            }
        }
    }
}

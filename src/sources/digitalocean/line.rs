//! DigitalOcean App Platform's log line, as the live socket and the archived log
//! files carry it: `<component> <RFC3339Nano timestamp> <message>` (doctl cuts it
//! with `SplitN(line, " ", 3)`). Shared by the `digitalocean` source and the
//! `parse` transform's `digitalocean` format.

use chrono::DateTime;

/// One parsed line, borrowing from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    pub component: &'a str,
    /// Unix nanoseconds.
    pub timestamp: i64,
    /// Everything after the timestamp (may be empty).
    pub message: &'a str,
}

/// Parses `<component> <RFC3339Nano> <message>`; the error says what is wrong.
pub fn parse(line: &str) -> Result<Line<'_>, String> {
    let (component, rest) = line
        .split_once(' ')
        .ok_or("expected `component time message`")?;
    let (stamp, message) = rest.split_once(' ').unwrap_or((rest, ""));
    if component.is_empty() {
        return Err("empty component".into());
    }
    let timestamp = DateTime::parse_from_rfc3339(stamp.trim())
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| format!("bad time `{stamp}`"))?;
    Ok(Line {
        component,
        timestamp,
        message,
    })
}

/// True when the second word starts like an RFC 3339 time (for format detection).
pub fn looks_like(line: &str) -> bool {
    let Some((first, rest)) = line.split_once(' ') else {
        return false;
    };
    let b = rest.as_bytes();
    !first.is_empty()
        && !first.contains('=')
        && b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b'T'
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SecondsFormat, TimeZone, Utc};
    use proptest::prelude::*;

    #[test]
    fn lines_split_into_component_time_and_message() {
        let l = parse("api 2024-05-01T12:00:00.123456789Z GET /health 200").unwrap();
        assert_eq!(l.component, "api");
        assert_eq!(l.message, "GET /health 200");
        assert_eq!(l.timestamp, 1_714_564_800_123_456_789);
        let bare = parse("web 2024-05-01T12:00:01Z").unwrap();
        assert_eq!(
            (bare.message, bare.timestamp),
            ("", 1_714_564_801_000_000_000)
        );
        let offset = parse("web 2024-05-01T14:00:01+02:00  two spaces").unwrap();
        assert_eq!(offset.timestamp, 1_714_564_801_000_000_000);
        assert_eq!(offset.message, " two spaces");
        assert!(parse("api yesterday hello").is_err());
        assert!(parse("lonely").is_err());
        assert!(parse(" 2024-05-01T12:00:01Z x").is_err());
        assert!(parse("web 9999-12-31T23:59:59Z too late for nanoseconds").is_err());
        assert!(looks_like("web 2024-05-01T12:00:00Z x"));
        assert!(!looks_like("level=info 2024-05-01T12:00:00Z"));
        assert!(!looks_like("plain text"));
    }

    proptest! {
        /// Any component, time (in the nanosecond range) and message comes back as
        /// written, with the time in Go's RFC3339Nano or any other RFC 3339 form.
        #[test]
        fn formatted_lines_parse_back(
            component in "[a-z0-9][a-z0-9_.-]{0,20}",
            nanos in 0i64..4_102_444_800_000_000_000,
            message in "[^\n]{0,60}",
            form in 0usize..3,
        ) {
            let time = Utc.timestamp_nanos(nanos);
            let stamp = match form {
                0 => time.to_rfc3339_opts(SecondsFormat::Nanos, true),
                1 => time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                _ => time.to_rfc3339_opts(SecondsFormat::Nanos, false),
            };
            let text = format!("{component} {stamp} {message}");
            let line = parse(&text).unwrap();
            prop_assert_eq!(line.component, component.as_str());
            prop_assert_eq!(line.timestamp, nanos);
            prop_assert_eq!(line.message, message.as_str());
            prop_assert!(looks_like(&text));
        }

        /// Any text either parses or gives an error; it never panics.
        #[test]
        fn any_text_is_handled(text in "\\PC{0,80}") {
            if let Ok(line) = parse(&text) {
                prop_assert!(!line.component.is_empty());
                prop_assert!(text.ends_with(line.message));
            }
            let _ = looks_like(&text);
        }
    }
}

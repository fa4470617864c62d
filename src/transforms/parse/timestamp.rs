//! Reading an event time out of a parsed value: RFC 3339, Unix epochs in any unit,
//! or a strftime pattern.

use chrono::{DateTime, NaiveDateTime};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One way to read a timestamp, as written in `timestamp_formats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampFormat {
    /// `"rfc3339"`: `2026-11-20T10:00:00.123Z`, any offset, `T` or a space.
    Rfc3339,
    /// `"unix"`, `"unix_ms"`, `"unix_us"`, `"unix_ns"`: a number (or numeric string)
    /// of seconds (fractions allowed), milli-, micro- or nanoseconds.
    Unix(Unit),
    /// Anything else is a strftime pattern (`%d/%b/%Y:%H:%M:%S %z`); without an
    /// offset (`%z`) the time is taken as UTC.
    Strftime(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl<'de> Deserialize<'de> for TimestampFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(match text.as_str() {
            "rfc3339" => TimestampFormat::Rfc3339,
            "unix" => TimestampFormat::Unix(Unit::Seconds),
            "unix_ms" => TimestampFormat::Unix(Unit::Millis),
            "unix_us" => TimestampFormat::Unix(Unit::Micros),
            "unix_ns" => TimestampFormat::Unix(Unit::Nanos),
            _ if text.contains('%') => {
                let invalid = chrono::format::StrftimeItems::new(&text)
                    .any(|item| matches!(item, chrono::format::Item::Error));
                if invalid {
                    return Err(serde::de::Error::custom(format!(
                        "invalid strftime pattern `{text}`"
                    )));
                }
                TimestampFormat::Strftime(text)
            }
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "unknown timestamp format `{text}`: use rfc3339, unix, unix_ms, unix_us, unix_ns or a strftime pattern"
                )));
            }
        })
    }
}

pub fn default_formats() -> Vec<TimestampFormat> {
    vec![
        TimestampFormat::Rfc3339,
        TimestampFormat::Unix(Unit::Seconds),
    ]
}

/// Unix nanoseconds from `value`, trying each format in turn.
pub fn read(value: &Value, formats: &[TimestampFormat]) -> Option<i64> {
    formats.iter().find_map(|format| read_one(value, format))
}

fn read_one(value: &Value, format: &TimestampFormat) -> Option<i64> {
    match (format, value) {
        (TimestampFormat::Unix(unit), Value::Number(n)) => match n.as_i64() {
            Some(i) => scale_int(i, *unit),
            None => scale_float(n.as_f64()?, *unit),
        },
        (TimestampFormat::Unix(unit), Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(i) => scale_int(i, *unit),
            Err(_) => scale_float(s.trim().parse().ok()?, *unit),
        },
        (TimestampFormat::Rfc3339, Value::String(s)) => rfc3339(s),
        (TimestampFormat::Strftime(pattern), Value::String(s)) => strftime(s, pattern),
        _ => None,
    }
}

pub fn rfc3339(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()?
        .timestamp_nanos_opt()
}

fn strftime(text: &str, pattern: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_str(text, pattern) {
        return t.timestamp_nanos_opt();
    }
    NaiveDateTime::parse_from_str(text, pattern)
        .ok()?
        .and_utc()
        .timestamp_nanos_opt()
}

fn scale_int(value: i64, unit: Unit) -> Option<i64> {
    let factor = match unit {
        Unit::Seconds => 1_000_000_000,
        Unit::Millis => 1_000_000,
        Unit::Micros => 1_000,
        Unit::Nanos => 1,
    };
    value.checked_mul(factor)
}

fn scale_float(value: f64, unit: Unit) -> Option<i64> {
    let factor = match unit {
        Unit::Seconds => 1e9,
        Unit::Millis => 1e6,
        Unit::Micros => 1e3,
        Unit::Nanos => 1.0,
    };
    let nanos = (value * factor).round();
    // `as` saturates, so check the range first to refuse rather than clamp.
    (nanos.is_finite() && nanos.abs() < i64::MAX as f64).then_some(nanos as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_format() {
        let strf = TimestampFormat::Strftime("%d/%b/%Y:%H:%M:%S %z".into());
        let naive = TimestampFormat::Strftime("%Y-%m-%d %H:%M:%S".into());
        let cases: &[(Value, TimestampFormat, Option<i64>)] = &[
            (
                json!("1970-01-01T00:00:01.5Z"),
                TimestampFormat::Rfc3339,
                Some(1_500_000_000),
            ),
            (
                json!("1970-01-01 01:00:01+01:00"),
                TimestampFormat::Rfc3339,
                Some(1_000_000_000),
            ),
            (
                json!(2),
                TimestampFormat::Unix(Unit::Seconds),
                Some(2_000_000_000),
            ),
            (
                json!(1.25),
                TimestampFormat::Unix(Unit::Seconds),
                Some(1_250_000_000),
            ),
            (
                json!("3"),
                TimestampFormat::Unix(Unit::Millis),
                Some(3_000_000),
            ),
            (json!(7), TimestampFormat::Unix(Unit::Micros), Some(7_000)),
            (json!(9), TimestampFormat::Unix(Unit::Nanos), Some(9)),
            (
                json!("01/Jan/1970:00:00:02 +0000"),
                strf,
                Some(2_000_000_000),
            ),
            (json!("1970-01-01 00:00:03"), naive, Some(3_000_000_000)),
            (json!(i64::MAX), TimestampFormat::Unix(Unit::Seconds), None),
            (json!(1e300), TimestampFormat::Unix(Unit::Seconds), None),
            (json!("soon"), TimestampFormat::Rfc3339, None),
            (json!(true), TimestampFormat::Unix(Unit::Seconds), None),
        ];
        for (value, format, expected) in cases {
            assert_eq!(read_one(value, format), *expected, "{value} {format:?}");
        }
    }
}

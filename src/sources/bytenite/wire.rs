//! ByteNite's wire values: the services (`logsLogService`) and log levels
//! (`logsLogLevel`) as names or numbers — grpc-gateway writes enums either way —
//! and the RFC 3339 timestamps of log lines and jobs, with 0, 3, 6 or 9 (in fact
//! any number of) fractional digits.

use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::event::Level;
use crate::sources::provider::time;

/// The part of a job a log line comes from (`logsLogService`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Partitioner,
    Assembler,
    TaskRunner,
}

impl Service {
    pub const ALL: [Service; 3] = [
        Service::Partitioner,
        Service::Assembler,
        Service::TaskRunner,
    ];

    /// The enum name ByteNite takes in requests.
    pub fn wire_name(self) -> &'static str {
        match self {
            Service::Partitioner => "PARTITIONER",
            Service::Assembler => "ASSEMBLER",
            Service::TaskRunner => "TASKRUNNER",
        }
    }

    /// The event's `component`, and the key of the service in an answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Partitioner => "partitioner",
            Service::Assembler => "assembler",
            Service::TaskRunner => "taskrunner",
        }
    }

    /// A service named in any case, with or without `_`/`-` (`taskRunner`,
    /// `task_runner`, `TASKRUNNER`), or by its enum number.
    pub fn from_name(name: &str) -> Option<Service> {
        let name = name.trim();
        if let Ok(number) = name.parse::<u64>() {
            return Service::ALL.get(usize::try_from(number).ok()?).copied();
        }
        let folded: String = name
            .chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let folded = folded.strip_prefix("logservice").unwrap_or(&folded);
        Service::ALL.into_iter().find(|s| s.as_str() == folded)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Service {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        by_name(
            deserializer,
            Service::from_name,
            "service",
            "partitioner, assembler, taskrunner",
        )
    }
}

/// A config option's value read by name with `from_name`; an unknown one is an
/// error that names `what` it is and the `names` it may be.
fn by_name<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    from_name: fn(&str) -> Option<T>,
    what: &str,
    names: &str,
) -> Result<T, D::Error> {
    let name = String::deserialize(deserializer)?;
    from_name(&name).ok_or_else(|| {
        serde::de::Error::custom(format!("unknown {what} `{name}`, expected one of: {names}"))
    })
}

/// ByteNite's log level (`logsLogLevel`), in enum order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Unknown,
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
    Panic,
}

impl LogLevel {
    pub const ALL: [LogLevel; 8] = [
        LogLevel::Unknown,
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
        LogLevel::Fatal,
        LogLevel::Panic,
    ];

    /// The enum name ByteNite takes in requests.
    pub fn wire_name(self) -> &'static str {
        match self {
            LogLevel::Unknown => "UNKNOWN",
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
            LogLevel::Panic => "PANIC",
        }
    }

    /// The event's level: `UNKNOWN` is none (unknown), `PANIC` is fatal.
    pub fn level(self) -> Option<Level> {
        match self {
            LogLevel::Unknown => None,
            LogLevel::Trace => Some(Level::Trace),
            LogLevel::Debug => Some(Level::Debug),
            LogLevel::Info => Some(Level::Info),
            LogLevel::Warn => Some(Level::Warn),
            LogLevel::Error => Some(Level::Error),
            LogLevel::Fatal | LogLevel::Panic => Some(Level::Fatal),
        }
    }

    /// The level of enum number `number` (unknown numbers are `Unknown`).
    pub fn from_number(number: u64) -> LogLevel {
        usize::try_from(number)
            .ok()
            .and_then(|n| LogLevel::ALL.get(n).copied())
            .unwrap_or(LogLevel::Unknown)
    }

    /// A level by enum name (any case, an optional `LOG_LEVEL_` or `LEVEL_`
    /// prefix), enum number written as text, or a common alias (`warning`, `err`).
    pub fn from_name(name: &str) -> Option<LogLevel> {
        let name = name.trim();
        if let Ok(number) = name.parse::<u64>() {
            return Some(LogLevel::from_number(number));
        }
        let upper = name.to_ascii_uppercase();
        let bare = ["LOG_LEVEL_", "LOGLEVEL_", "LEVEL_"]
            .iter()
            .find_map(|prefix| upper.strip_prefix(prefix))
            .unwrap_or(&upper);
        if let Some(level) = LogLevel::ALL.into_iter().find(|l| l.wire_name() == bare) {
            return Some(level);
        }
        Some(match Level::from_name(bare)? {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info | Level::Notice => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
            Level::Fatal => LogLevel::Fatal,
        })
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        by_name(
            deserializer,
            LogLevel::from_name,
            "level",
            "unknown, trace, debug, info, warn, error, fatal, panic",
        )
    }
}

/// An RFC 3339 time as Unix nanoseconds: `2025-06-24T16:19:02Z`,
/// `…:02.1Z`, `…:02.101Z`, `…:02.000000001Z`, `…:02.5+02:00` (`t`, `z` and a
/// space for the `T` accepted; digits past the ninth ignored). `None` if `text`
/// is not such a time or lies outside the years 1678–2261 (Unix ns in an `i64`).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let (local, rest) = time::date_time_prefix(text.trim().as_bytes(), b"Tt ")?;
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign, h1, h2, b':', m1, m2] => time::zone_offset_seconds(*sign, &[*h1, *h2], &[*m1, *m2])?,
        _ => return None,
    };
    time::to_utc(local, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat};
    use proptest::prelude::*;

    #[test]
    fn documented_timestamps_parse() {
        let second = 1_750_781_942_000_000_000;
        assert_eq!(parse_timestamp("2025-06-24T16:19:02Z"), Some(second));
        assert_eq!(
            parse_timestamp("2025-06-24T16:19:02.101Z"),
            Some(second + 101_000_000)
        );
        assert_eq!(
            parse_timestamp("2025-06-24T16:19:02.5Z"),
            Some(second + 500_000_000)
        );
        assert_eq!(
            parse_timestamp("2025-06-24T16:19:02.000001Z"),
            Some(second + 1_000)
        );
        assert_eq!(
            parse_timestamp("2025-06-24T16:19:02.000000001Z"),
            Some(second + 1)
        );
        assert_eq!(
            parse_timestamp("2025-06-24T16:19:02.0000000019Z"),
            Some(second + 1),
            "digits past the ninth are ignored"
        );
        assert_eq!(parse_timestamp("2025-06-24T18:19:02+02:00"), Some(second));
        assert_eq!(parse_timestamp("2025-06-24 16:19:02z"), Some(second));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_timestamp("1969-12-31T23:59:59.5Z"),
            Some(-500_000_000)
        );
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for bad in [
            "",
            "2025-06-24",
            "2025-06-24T16:19:02",
            "2025-06-24T16:19:02.Z",
            "2025-13-24T16:19:02Z",
            "2025-02-29T16:19:02Z",
            "2025-06-31T16:19:02Z",
            "2025-06-24T24:00:00Z",
            "2025-06-24T16:60:02Z",
            "2025-06-24T16:19:02+2:00",
            "2025-06-24T16:19:02Zjunk",
            "2025/06/24T16:19:02Z",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "２０２５-06-24T16:19:02Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_timestamp("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000_000_000)
        );
    }

    #[test]
    fn levels_are_names_numbers_or_aliases() {
        assert_eq!(LogLevel::from_name("INFO"), Some(LogLevel::Info));
        assert_eq!(LogLevel::from_name("warn"), Some(LogLevel::Warn));
        assert_eq!(
            LogLevel::from_name("LOG_LEVEL_ERROR"),
            Some(LogLevel::Error)
        );
        assert_eq!(LogLevel::from_name("warning"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::from_name("7"), Some(LogLevel::Panic));
        assert_eq!(LogLevel::from_name("42"), Some(LogLevel::Unknown));
        assert_eq!(LogLevel::from_name("loud"), None);
        assert_eq!(LogLevel::from_number(3), LogLevel::Info);
        assert_eq!(LogLevel::Panic.level(), Some(Level::Fatal));
        assert_eq!(LogLevel::Unknown.level(), None);
        for level in LogLevel::ALL {
            assert_eq!(LogLevel::from_name(level.wire_name()), Some(level));
            assert_eq!(LogLevel::from_number(level as u64), level);
        }
    }

    #[test]
    fn services_are_names_or_numbers() {
        for (name, service) in [
            ("PARTITIONER", Service::Partitioner),
            ("assembler", Service::Assembler),
            ("taskRunner", Service::TaskRunner),
            ("task_runner", Service::TaskRunner),
            ("LOG_SERVICE_TASKRUNNER", Service::TaskRunner),
            ("2", Service::TaskRunner),
        ] {
            assert_eq!(Service::from_name(name), Some(service), "{name}");
        }
        assert_eq!(Service::from_name("scheduler"), None);
        assert_eq!(Service::from_name("3"), None);
    }

    fn format(nanos: i64, digits: usize) -> String {
        let format = match digits {
            0 => SecondsFormat::Secs,
            3 => SecondsFormat::Millis,
            6 => SecondsFormat::Micros,
            _ => SecondsFormat::Nanos,
        };
        DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(format, true)
    }

    proptest! {
        #[test]
        fn formatted_times_read_back_truncated(
            nanos in -5_000_000_000_000_000_000i64..7_000_000_000_000_000_000,
            digits in prop::sample::select(vec![0usize, 3, 6, 9]),
        ) {
            let unit = 10i64.pow(9 - digits as u32);
            let truncated = nanos.div_euclid(unit) * unit;
            prop_assert_eq!(parse_timestamp(&format(nanos, digits)), Some(truncated));
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,40}") {
            let _ = parse_timestamp(&text);
            let _ = LogLevel::from_name(&text);
            let _ = Service::from_name(&text);
        }

        #[test]
        fn parsed_times_agree_with_chrono(
            text in "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-][01][0-9]:[0-5][0-9])",
        ) {
            let chrono = DateTime::parse_from_rfc3339(&text).ok().and_then(|t| t.timestamp_nanos_opt());
            prop_assert_eq!(parse_timestamp(&text), chrono);
        }
    }
}

//! DC/OS log entries (the JSON in each SSE `data:`) and their mapping to events.
//!
//! journald entries: `{"fields":{…},"cursor":…,"realtime_timestamp":µs,…}` →
//! message `MESSAGE`, time `realtime_timestamp` (else the `_SOURCE_REALTIME_TIMESTAMP`
//! field, else the time of receipt), level from `PRIORITY` (0–2 fatal,
//! 3 error, 4 warn, 5 notice, 6 info, 7 debug), host `_HOSTNAME`, component `UNIT`
//! / `_SYSTEMD_UNIT` / `SYSLOG_IDENTIFIER`, and `pid`, `syslog_identifier`,
//! `transport` fields. Task entries: `{"fields":{"MESSAGE","FILE","AGENT_ID",
//! "CONTAINER_ID","EXECUTOR_ID","FRAMEWORK_ID"}}` → stream `FILE` (`stdout`/`stderr`,
//! else a `file` field), host `AGENT_ID`, instance `CONTAINER_ID`, component the
//! task id, `framework_id`/`executor_id` fields; time of receipt. An entry that is
//! not such JSON is shipped as it is, with `dcos_parse_error = true`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::event::{Event, Level};
use crate::http::sse::SseEvent;

#[derive(Debug, Deserialize)]
pub(crate) struct Entry {
    #[serde(default)]
    pub fields: Map<String, Value>,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub realtime_timestamp: Option<u64>,
}

impl Entry {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }
}

pub(crate) fn parse(data: &str) -> Option<Entry> {
    serde_json::from_str(data).ok()
}

pub(crate) fn priority_level(priority: &str) -> Option<Level> {
    Some(match priority.trim() {
        "0" | "1" | "2" => Level::Fatal,
        "3" => Level::Error,
        "4" => Level::Warn,
        "5" => Level::Notice,
        "6" => Level::Info,
        "7" => Level::Debug,
        _ => return None,
    })
}

/// Who an event is from: the source id and the provider name.
pub(crate) type Who<'a> = (&'a Arc<str>, &'a Arc<str>);

fn base((source, provider): Who, message: String, timestamp: i64) -> Event {
    Event::new(Arc::clone(source), Arc::clone(provider), message, timestamp)
}

/// An unparseable entry, shipped as received (`truncated` if it was cut).
pub(crate) fn raw_event(from: Who, sse: SseEvent, now: i64) -> Event {
    let mut event = base(from, sse.data, now);
    event
        .fields
        .insert("dcos_parse_error".into(), Value::Bool(true));
    if sse.truncated {
        event.fields.insert("truncated".into(), Value::Bool(true));
    }
    event
}

pub(crate) fn journal_event(from: Who, entry: &Entry, now: i64) -> Event {
    let message = entry.field("MESSAGE").unwrap_or_default().to_string();
    let timestamp = entry
        .realtime_timestamp
        .or_else(|| entry.field("_SOURCE_REALTIME_TIMESTAMP")?.parse().ok())
        .and_then(|us| i64::try_from(us).ok())
        .and_then(|us| us.checked_mul(1000))
        .unwrap_or(now);
    let mut event = base(from, message, timestamp);
    event.level = entry.field("PRIORITY").and_then(priority_level);
    event.origin.host = entry.field("_HOSTNAME").map(str::to_string);
    event.origin.component = entry
        .field("UNIT")
        .or_else(|| entry.field("_SYSTEMD_UNIT"))
        .or_else(|| entry.field("SYSLOG_IDENTIFIER"))
        .map(str::to_string);
    copy_fields(
        entry,
        &mut event,
        &[
            ("_PID", "pid"),
            ("SYSLOG_IDENTIFIER", "syslog_identifier"),
            ("_TRANSPORT", "transport"),
        ],
    );
    event
}

pub(crate) fn task_event(from: Who, task: &str, entry: &Entry, now: i64) -> Event {
    let message = entry.field("MESSAGE").unwrap_or_default().to_string();
    let mut event = base(from, message, now);
    match entry.field("FILE") {
        Some(file @ ("stdout" | "stderr")) => event.stream = Some(file.to_string()),
        Some(file) => event.origin.file = Some(file.into()),
        None => {}
    }
    event.origin.component = Some(task.to_string());
    event.origin.host = entry.field("AGENT_ID").map(str::to_string);
    event.origin.instance = entry.field("CONTAINER_ID").map(str::to_string);
    copy_fields(
        entry,
        &mut event,
        &[
            ("FRAMEWORK_ID", "framework_id"),
            ("EXECUTOR_ID", "executor_id"),
        ],
    );
    event
}

/// Each of the entry's fields `from` that it has, as the event's field `to`.
fn copy_fields(entry: &Entry, event: &mut Event, names: &[(&str, &str)]) {
    for (from, to) in names {
        if let Some(value) = entry.field(from) {
            event
                .fields
                .insert((*to).into(), Value::String(value.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journald_entries_map_to_events() {
        let data = r#"{"fields":{"MESSAGE":"Starting Daily Cleanup of Temporary Directories.","PRIORITY":"6","SYSLOG_IDENTIFIER":"systemd","UNIT":"systemd-tmpfiles-clean.timer","_HOSTNAME":"a60c1d059aea","_PID":"1","_TRANSPORT":"journal"},"cursor":"s=f7;i=262","monotonic_timestamp":29993006955,"realtime_timestamp":1476253700204926}"#;
        let entry = parse(data).unwrap();
        let event = journal_event((&Arc::from("s"), &Arc::from("dcos")), &entry, 0);
        assert_eq!(
            event.message,
            "Starting Daily Cleanup of Temporary Directories."
        );
        assert_eq!(event.timestamp, 1_476_253_700_204_926_000);
        assert_eq!(event.level, Some(Level::Info));
        assert_eq!(event.origin.host.as_deref(), Some("a60c1d059aea"));
        assert_eq!(
            event.origin.component.as_deref(),
            Some("systemd-tmpfiles-clean.timer")
        );
        assert_eq!(event.fields["pid"], "1");
        assert_eq!(entry.cursor.as_deref(), Some("s=f7;i=262"));

        let from = (&Arc::from("s"), &Arc::from("dcos"));
        let source_time =
            r#"{"fields":{"MESSAGE":"m","_SOURCE_REALTIME_TIMESTAMP":"1476253700204900"}}"#;
        let event = journal_event(from, &parse(source_time).unwrap(), 7);
        assert_eq!(event.timestamp, 1_476_253_700_204_900_000);
        let untimed = parse(r#"{"fields":{"MESSAGE":"m"}}"#).unwrap();
        assert_eq!(journal_event(from, &untimed, 7).timestamp, 7);
    }

    #[test]
    fn priorities_map_to_levels() {
        let levels: Vec<_> = (0..9).map(|p| priority_level(&p.to_string())).collect();
        use Level::*;
        assert_eq!(
            levels,
            [
                Some(Fatal),
                Some(Fatal),
                Some(Fatal),
                Some(Error),
                Some(Warn),
                Some(Notice),
                Some(Info),
                Some(Debug),
                None
            ]
        );
    }

    #[test]
    fn task_entries_map_to_events() {
        let data = r#"{"fields":{"AGENT_ID":"a-S1","CONTAINER_ID":"c1f5","EXECUTOR_ID":"nginx.2f9d","FILE":"stderr","FRAMEWORK_ID":"f-0001","MESSAGE":"two"}}"#;
        let event = task_event(
            (&Arc::from("s"), &Arc::from("dcos")),
            "nginx.2f9d",
            &parse(data).unwrap(),
            7,
        );
        assert_eq!(event.message, "two");
        assert_eq!(event.stream.as_deref(), Some("stderr"));
        assert_eq!(event.origin.host.as_deref(), Some("a-S1"));
        assert_eq!(event.origin.instance.as_deref(), Some("c1f5"));
        assert_eq!(event.origin.component.as_deref(), Some("nginx.2f9d"));
        assert_eq!(event.timestamp, 7);
        assert_eq!(event.fields["framework_id"], "f-0001");
    }
}

//! What `ferry checkpoints list` shows: every committed cursor of every source and
//! sub-stream, when it was committed, and how far behind it is where that can be known
//! (bytes left to read in a followed file, records a Kafka consumer group has not
//! committed), as a table for people or JSON for scripts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use crate::checkpoint::{CheckpointStore, CommittedCursor};
use crate::sources::{SourceConfig, file, kafka};
use crate::topology::config;

/// One committed cursor of one source's sub-stream.
#[derive(Debug, Serialize)]
pub struct CheckpointRow {
    pub source: String,
    /// The source's type, or `None` for a source no longer in the config.
    #[serde(rename = "type")]
    pub type_name: Option<&'static str>,
    /// The sub-stream: a file's device:inode, a partition, a deployment…
    pub stream: String,
    pub cursor: Value,
    /// RFC 3339, UTC; `None` for cursors committed by a ferry that did not record it.
    pub committed_at: Option<String>,
    /// Bytes of the followed file not yet read and committed.
    pub lag_bytes: Option<u64>,
    /// Records of the Kafka partition its consumer group has not committed, as the
    /// brokers answer when the command runs.
    pub lag_records: Option<u64>,
}

/// How long `checkpoints list` waits for a Kafka broker's answer about lag.
const KAFKA_LAG_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the store named by the config at `config_path` (ferry must be stopped).
pub fn checkpoint_rows(config_path: &Path) -> Result<Vec<CheckpointRow>> {
    let config = config::load(config_path)?;
    let store = CheckpointStore::open(&config.data_dir)?;
    let mut rows = rows(&config, store.load_all()?);
    add_kafka_lag(&config, &mut rows);
    Ok(rows)
}

/// Asks the brokers of each Kafka source how far its group is behind; a source whose
/// brokers do not answer keeps an unknown lag, with a warning.
fn add_kafka_lag(config: &config::Config, rows: &mut [CheckpointRow]) {
    for (id, spec) in &config.sources {
        let SourceConfig::Kafka(kafka_config) = &spec.config else {
            continue;
        };
        let streams: Vec<&str> = rows
            .iter()
            .filter(|row| &row.source == id)
            .map(|row| row.stream.as_str())
            .collect();
        match kafka::group_lag(kafka_config, &streams, KAFKA_LAG_TIMEOUT) {
            Ok(lag) => {
                for row in rows.iter_mut().filter(|row| &row.source == id) {
                    row.lag_records = lag.get(&row.stream).copied();
                }
            }
            Err(error) => tracing::warn!(source = %id, "consumer lag unknown: {error:#}"),
        }
    }
}

fn rows(
    config: &config::Config,
    all: BTreeMap<String, BTreeMap<String, CommittedCursor>>,
) -> Vec<CheckpointRow> {
    let mut rows = Vec::new();
    for (source, cursors) in all {
        let spec = config.sources.get(&source).map(|spec| &spec.config);
        for (stream, committed) in cursors {
            let lag_bytes = match spec {
                Some(SourceConfig::File(_)) => file::lag_bytes(&committed.value),
                _ => None,
            };
            rows.push(CheckpointRow {
                source: source.clone(),
                type_name: spec.map(SourceConfig::type_name),
                stream,
                committed_at: committed.committed_at.map(rfc3339),
                cursor: committed.value,
                lag_bytes,
                lag_records: None,
            });
        }
    }
    rows
}

fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The rows as an aligned text table, one line per cursor.
pub fn table(rows: &[CheckpointRow]) -> String {
    let header = ["SOURCE", "TYPE", "STREAM", "COMMITTED", "LAG", "CURSOR"].map(String::from);
    let mut lines = vec![header];
    for row in rows {
        lines.push([
            row.source.clone(),
            row.type_name.unwrap_or("(removed)").to_string(),
            row.stream.clone(),
            row.committed_at.clone().unwrap_or_else(|| "-".into()),
            match (row.lag_bytes, row.lag_records) {
                (Some(bytes), _) => format!("{bytes} B"),
                (None, Some(records)) => format!("{records} records"),
                (None, None) => "-".into(),
            },
            cursor_text(&row.cursor),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|column| {
            lines
                .iter()
                .map(|l| l[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no committed cursors)\n");
    }
    out
}

/// A cursor in a few words: a file's path and offset, else its JSON.
fn cursor_text(cursor: &Value) -> String {
    match (cursor.get("path"), cursor.get("offset")) {
        (Some(Value::String(path)), Some(Value::Number(offset))) => {
            format!("{path} @ {offset}")
        }
        _ => cursor.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_aligns_columns_and_shows_what_is_unknown_as_a_dash() {
        let rows = vec![
            CheckpointRow {
                source: "logs".into(),
                type_name: Some("file"),
                stream: "2049:12".into(),
                cursor: json!({"path": "/var/log/a.log", "offset": 42, "dev": 2049}),
                committed_at: Some("2026-12-02T05:00:00Z".into()),
                lag_bytes: Some(8),
                lag_records: None,
            },
            CheckpointRow {
                source: "agg".into(),
                type_name: Some("kafka"),
                stream: "logs:0".into(),
                cursor: json!({"offset": 120, "generation": 1}),
                committed_at: Some("2026-12-02T05:00:00Z".into()),
                lag_bytes: None,
                lag_records: Some(30),
            },
            CheckpointRow {
                source: "gone".into(),
                type_name: None,
                stream: "sequence".into(),
                cursor: json!(7),
                committed_at: None,
                lag_bytes: None,
                lag_records: None,
            },
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("SOURCE  TYPE       STREAM    COMMITTED"),
            "{text}"
        );
        assert!(lines[1].contains("/var/log/a.log @ 42"), "{text}");
        assert!(lines[1].contains("8 B"), "{text}");
        assert!(lines[2].contains("30 records"), "{text}");
        assert!(
            lines[3].starts_with("gone    (removed)  sequence  -"),
            "{text}"
        );
        assert_eq!(table(&[]).lines().nth(1), Some("(no committed cursors)"));
    }
}

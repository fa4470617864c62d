//! The catalog of every metric ferry exports: its name, kind and help text, in one
//! table, described to the recorder once at startup (so `/metrics` carries a
//! `# HELP` line for each family), and the buckets of its histograms.
//!
//! Per-component throughput follows one scheme across sources, transforms and sinks:
//! `ferry_component_received_events_total`, `ferry_component_sent_events_total` and
//! `ferry_component_errors_total`, labelled `component_kind` (`source`, `transform`,
//! `sink`) and `component_id`. Component-specific families keep their `source`,
//! `transform` or `sink` label and break these totals down (by status, reason…).

use metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

use Kind::{Counter, Gauge, Histogram};

pub const RECEIVED_EVENTS: &str = "ferry_component_received_events_total";
pub const SENT_EVENTS: &str = "ferry_component_sent_events_total";
pub const ERRORS: &str = "ferry_component_errors_total";

/// The per-component counter `name` (one of [`RECEIVED_EVENTS`], [`SENT_EVENTS`],
/// [`ERRORS`]) of component `id` of `kind` (`source`, `transform` or `sink`).
pub fn component_counter(name: &'static str, kind: &'static str, id: &str) -> metrics::Counter {
    metrics::counter!(name, "component_kind" => kind, "component_id" => id.to_string())
}

/// `specific` (a breakdown of a component's errors, by status or format) that also
/// counts into the component's `ferry_component_errors_total`.
pub fn counting_as_errors(
    specific: metrics::Counter,
    kind: &'static str,
    id: &str,
) -> metrics::Counter {
    let total = component_counter(ERRORS, kind, id);
    metrics::Counter::from_arc(std::sync::Arc::new(Both(specific, total)))
}

struct Both(metrics::Counter, metrics::Counter);

impl metrics::CounterFn for Both {
    fn increment(&self, value: u64) {
        self.0.increment(value);
        self.1.increment(value);
    }

    fn absolute(&self, value: u64) {
        self.0.absolute(value);
        self.1.absolute(value);
    }
}

/// Seconds one sink request took: from a few milliseconds to Loki's 30 s timeouts.
pub const REQUEST_DURATION: &str = "ferry_sink_request_duration_seconds";
const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Events in one sink request (Loki push) or batch (Kafka, file).
pub const BATCH_EVENTS: &str = "ferry_sink_batch_events";
const BATCH_EVENTS_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// The resident memory of the process, refreshed at each scrape.
pub const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";

const METRICS: &[(Kind, &str, &str)] = &[
    (
        Counter,
        RECEIVED_EVENTS,
        "Events that entered a component: read by a source, taken in by a transform or sink.",
    ),
    (
        Counter,
        SENT_EVENTS,
        "Events that left a component: sent on by a source or transform, durably delivered by a sink.",
    ),
    (
        Counter,
        ERRORS,
        "Errors of a component: failed requests or reads of a source, events a transform could not process, failed delivery attempts of a sink (each is retried).",
    ),
    (
        Counter,
        "ferry_source_bytes_total",
        "Message bytes a source sent into the pipeline.",
    ),
    (
        Counter,
        "ferry_source_gaps_total",
        "Gaps a source detected in its input (events it can no longer read).",
    ),
    (
        Counter,
        "ferry_sink_bytes_total",
        "Bytes a sink durably delivered (as sent on the wire or written).",
    ),
    (
        Histogram,
        REQUEST_DURATION,
        "Seconds one sink request took, failed ones included.",
    ),
    (
        Histogram,
        BATCH_EVENTS,
        "Events in one sink request or batch.",
    ),
    (
        Counter,
        "ferry_checkpoint_commits_total",
        "Checkpoint commits of a source (or a disk buffer's ledger).",
    ),
    (
        Gauge,
        "ferry_checkpoint_last_commit_timestamp_seconds",
        "Unix time of the last checkpoint commit of a source (or a disk buffer's ledger).",
    ),
    (
        Counter,
        "ferry_checkpoint_errors_total",
        "Failed checkpoint commits; the cursor is committed again with the next batch.",
    ),
    (
        Counter,
        "ferry_batches_rejected_total",
        "Batches a sink refused for good (dead-lettered where configured); the checkpoint moves past them.",
    ),
    (
        Counter,
        "ferry_batches_errored_total",
        "Batches not delivered (or given back at a stop); the checkpoint waits and a restart reads them again.",
    ),
    (
        Counter,
        "ferry_transform_dropped_events_total",
        "Events a transform dropped on purpose, by reason.",
    ),
    (
        Counter,
        "ferry_parse_errors_total",
        "Events the parse transform could not parse, by format.",
    ),
    (
        Counter,
        "ferry_redact_matches_total",
        "Values the redact transform masked, by detector.",
    ),
    (
        Counter,
        "ferry_multiline_merged_events_total",
        "Events the multiline transform merged from several lines.",
    ),
    (
        Counter,
        "ferry_multiline_truncated_total",
        "Merged events cut at max_lines or max_bytes.",
    ),
    (
        Counter,
        "ferry_multiline_over_budget_total",
        "Events emitted early past max_streams or max_pending_bytes.",
    ),
    (
        Counter,
        "ferry_reloads_total",
        "Reloads applied (ok) or refused with the running pipeline kept (rejected).",
    ),
    (
        Gauge,
        "ferry_last_reload_timestamp_seconds",
        "Unix time the last reload ended.",
    ),
    (
        Gauge,
        "ferry_last_reload_successful",
        "1 if the last reload was applied, 0 if it was refused.",
    ),
    (
        Gauge,
        "ferry_buffer_events",
        "Undelivered events in a sink's disk buffer.",
    ),
    (
        Gauge,
        "ferry_buffer_bytes",
        "Record bytes of a sink's disk buffer not yet delivered.",
    ),
    (
        Gauge,
        "ferry_buffer_disk_bytes",
        "Size of a disk buffer's segment files.",
    ),
    (
        Gauge,
        "ferry_buffer_oldest_event_age_seconds",
        "Age of the oldest undelivered event in a disk buffer.",
    ),
    (
        Counter,
        "ferry_buffer_corrupt_records_total",
        "Damaged disk buffer records cut off or skipped on replay.",
    ),
    (
        Counter,
        "ferry_buffer_dropped_events_total",
        "Events a full disk buffer dropped (when_full = drop_newest).",
    ),
    (
        Gauge,
        "ferry_file_open_files",
        "Files a file source follows.",
    ),
    (
        Counter,
        "ferry_file_lines_truncated_total",
        "Lines cut at max_line_bytes.",
    ),
    (
        Counter,
        "ferry_file_invalid_utf8_total",
        "Lines with invalid UTF-8, kept lossily decoded.",
    ),
    (
        Counter,
        "ferry_file_truncations_total",
        "Followed files truncated or rewritten.",
    ),
    (
        Counter,
        "ferry_http_connections_total",
        "Streaming connections a provider source opened.",
    ),
    (
        Counter,
        "ferry_http_reconnects_total",
        "Reconnections of a provider source's stream.",
    ),
    (
        Counter,
        "ferry_http_errors_total",
        "Failures of a provider source's requests, by HTTP status or network.",
    ),
    (
        Gauge,
        "ferry_kafka_consumer_lag",
        "Records behind the end of each partition a Kafka source reads.",
    ),
    (
        Counter,
        "ferry_kafka_decode_errors_total",
        "Kafka records whose value did not decode.",
    ),
    (
        Counter,
        "ferry_kafka_retried_events_total",
        "Records the Kafka sink produced again (possible duplicates).",
    ),
    (
        Counter,
        "ferry_kafka_rejected_events_total",
        "Records the broker refused for good, by reason.",
    ),
    (
        Counter,
        "ferry_kafka_dead_letter_events_total",
        "Records the Kafka sink sent to its dead-letter sink.",
    ),
    (
        Counter,
        "ferry_loki_requests_total",
        "Loki push requests, by status class.",
    ),
    (
        Counter,
        "ferry_loki_refused_entries_total",
        "Entries Loki refused for good, by reason.",
    ),
    (
        Counter,
        "ferry_loki_isolation_requests_total",
        "Extra requests spent isolating the entries Loki refused.",
    ),
    (
        Counter,
        "ferry_loki_dead_letter_events_total",
        "Entries the Loki sink sent to its dead-letter sink.",
    ),
    (
        Counter,
        "ferry_loki_labels_dropped_total",
        "Labels the Loki sink dropped (invalid or over the limit).",
    ),
    (
        Gauge,
        "ferry_loki_active_streams",
        "Label sets the Loki sink currently tracks.",
    ),
    (
        Gauge,
        RESIDENT_MEMORY,
        "Resident memory of the ferry process, in bytes.",
    ),
];

/// Describes every metric in [`METRICS`] to the installed recorder.
pub fn describe() {
    for &(kind, name, help) in METRICS {
        match kind {
            Counter => describe_counter!(name, help),
            Gauge => describe_gauge!(name, help),
            Histogram => describe_histogram!(name, help),
        }
    }
}

/// Renders ferry's histograms as Prometheus histograms (without buckets the exporter
/// renders summaries, which cannot be aggregated across hosts).
pub fn with_buckets(builder: PrometheusBuilder) -> Result<PrometheusBuilder, BuildError> {
    builder
        .set_buckets_for_metric(
            Matcher::Full(REQUEST_DURATION.into()),
            REQUEST_DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(BATCH_EVENTS.into()), BATCH_EVENTS_BUCKETS)
}

/// Every metric name in the catalog.
pub fn names() -> impl Iterator<Item = &'static str> {
    METRICS.iter().map(|&(_, name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `"ferry_…"` metric name written in the source tree is described here.
    #[test]
    fn every_metric_in_the_source_is_in_the_catalog() {
        let known: std::collections::BTreeSet<&str> = names().collect();
        let mut missing = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for line in text.lines().filter(|l| {
                    l.contains("counter")
                        || l.contains("gauge")
                        || l.contains("histogram")
                        || l.trim_start().starts_with("\"ferry_")
                }) {
                    for piece in line.split('"').skip(1).step_by(2) {
                        let metric = piece.starts_with("ferry_")
                            && piece
                                .bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                        if metric && !known.contains(piece) {
                            missing.push(format!("{}: {piece}", path.display()));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "not in the catalog: {missing:#?}");
    }
}

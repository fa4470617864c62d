//! `/metrics` explains itself and the Grafana dashboard queries only what it serves:
//! the real `ferry` binary runs a pipeline with a source, pure and stateful
//! transforms, a Loki sink behind a disk buffer and a file sink; its `/metrics` is
//! scraped, every family must carry a `# HELP` line, and every `ferry_*` or
//! `process_*` name in `examples/grafana/ferry.json`'s expressions must be served.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/loki_receiver.rs"]
mod loki_receiver;

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_process::{Ferry, free_port, http_get, metric, wait_until};
use loki_receiver::LokiReceiver;

const WAIT: Duration = Duration::from_secs(60);

fn config(dir: &std::path::Path, loki: &str, api: u16) -> String {
    format!(
        r#"data_dir = "{data}"

[api]
address = "127.0.0.1:{api}"

[sources.shop]
type = "demo"
rate = 500

[transforms.parsed]
type = "parse"
inputs = ["shop"]
format = "auto"

[transforms.traces]
type = "multiline"
inputs = ["parsed"]

[transforms.tagged]
type = "level"
inputs = ["traces"]
min_level = "info"

[transforms.important]
type = "filter"
inputs = ["tagged"]
condition = {{ level = ">= warn" }}

[sinks.loki]
type = "loki"
inputs = ["tagged"]
endpoint = "{loki}"
labels = {{ app = "{{{{ app }}}}" }}
batch_timeout = "100ms"
buffer = {{ type = "disk" }}

[sinks.files]
type = "file"
inputs = ["important"]
path = "{out}"
"#,
        data = dir.join("data").display(),
        out = dir.join("out.log").display(),
    )
}

/// The metric families of a Prometheus text exposition, by the samples' names
/// (`_bucket`, `_sum` and `_count` belong to their histogram's family).
fn served_families(body: &str) -> BTreeSet<String> {
    let typed: BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .find(|family| typed.contains(family))
                .unwrap_or(name)
                .to_string()
        })
        .collect()
}

/// The `ferry_*` and `process_*` identifiers in `expr`, histogram suffixes cut.
fn queried_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("ferry_") || word.starts_with("process_"))
        .map(|word| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_string()
        })
        .collect()
}

fn dashboard_exprs() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/grafana/ferry.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(!exprs.is_empty());
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_has_help_and_the_dashboard_queries_only_served_metrics() {
    let loki = LokiReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, config(dir.path(), &loki.endpoint(), api)).unwrap();
    let ferry = Ferry::start(&path);
    assert!(loki.wait_for_entries(200, WAIT).await, "events reach Loki");
    let body = tokio::task::block_in_place(|| {
        wait_until(WAIT, "both sinks delivering", || {
            ["loki", "files"].iter().all(|sink| {
                let labels = format!("component_kind=\"sink\",component_id=\"{sink}\"");
                metric(api, "ferry_component_sent_events_total", &labels).unwrap_or(0.0) > 0.0
            })
        });
        http_get(api, "/metrics").expect("/metrics answers").1
    });

    let families = served_families(&body);
    let described: BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let undescribed: Vec<&String> = families
        .iter()
        .filter(|f| !described.contains(f.as_str()))
        .collect();
    assert!(undescribed.is_empty(), "no # HELP: {undescribed:?}\n{body}");
    for kind in ["source", "transform", "sink"] {
        for name in [
            "ferry_component_received_events_total",
            "ferry_component_sent_events_total",
        ] {
            assert!(
                body.contains(&format!("{name}{{component_kind=\"{kind}\"")),
                "{name} of a {kind}\n{body}"
            );
        }
    }
    assert!(
        body.contains("ferry_sink_request_duration_seconds_bucket{"),
        "request latency is a histogram\n{body}"
    );

    let mut missing = BTreeSet::new();
    for expr in dashboard_exprs() {
        for name in queried_names(&expr) {
            if !families.contains(&name) {
                missing.insert(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics does not serve: {missing:?}"
    );
    drop(ferry);
}

//! The Loki sink through the real pipeline (demo sources → loki sink → the test
//! receiver): every event arrives once, with its labels, structured metadata, tenant
//! and nanosecond timestamp, in protobuf and in JSON.

#[path = "support/loki_receiver.rs"]
mod loki_receiver;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry::checkpoint::CheckpointStore;
use ferry::event::now_nanos;
use ferry::sources::demo::{DemoFormat, demo_line};
use ferry::telemetry::Health;
use ferry::topology::Outcome;
use loki_receiver::{LokiReceiver, ReceivedEntry};

const INSTANCES: [&str; 3] = ["web-1", "web-2", "worker-1"];

/// Runs the pipeline of `config` (TOML) to its end.
async fn run_pipeline(config: &str, data_dir: &Path) -> Outcome {
    let config = ferry::topology::config::parse(config, Path::new("test.toml"), |_| None)
        .expect("valid config");
    let store = Arc::new(CheckpointStore::open(data_dir).expect("store"));
    let pipeline = ferry::topology::start(&config, store, Arc::new(Health::default()))
        .expect("pipeline starts");
    pipeline
        .run(std::future::pending::<()>(), Duration::from_secs(30))
        .await
        .0
}

fn config(endpoint: &str, data_dir: &Path, encoding: &str) -> String {
    format!(
        r#"
data_dir = "{data_dir}"
[api]
enabled = false

[sources.shop]
type = "demo"
count = 3000
app = "shop"
batch_max_events = 250

[sources.blog]
type = "demo"
count = 2000
app = "blog"
batch_max_events = 300

[sinks.loki]
type = "loki"
inputs = ["shop", "blog"]
endpoint = "{endpoint}"
{encoding}
tenant_id = "team-{{{{ app }}}}"
labels = {{ app = "{{{{ app }}}}", provider = "{{{{ provider }}}}", stream = "{{{{ stream }}}}" }}
structured_metadata = {{ instance = "{{{{ instance }}}}", source = "{{{{ source }}}}" }}
batch_max_events = 700
batch_timeout = "100ms"
"#,
        data_dir = data_dir.display()
    )
}

/// Checks every entry against the demo line it must be, and that each arrived once.
fn check_entries(entries: &[ReceivedEntry], started: i64, ended: i64) {
    let expected: HashMap<(String, String), u64> = [("shop", 3000u64), ("blog", 2000)]
        .into_iter()
        .flat_map(|(app, count)| {
            (0..count).map(move |n| ((app.to_string(), demo_line(n, DemoFormat::Mixed)), n))
        })
        .collect();
    assert_eq!(entries.len(), 5000, "every event arrives exactly once");
    let mut seen = HashSet::new();
    let mut sub_millisecond = 0;
    for entry in entries {
        let app = entry.labels["app"].clone();
        let n = expected[&(app.clone(), entry.line.clone())];
        assert!(seen.insert((app.clone(), n)), "duplicate {app} #{n}");
        assert_eq!(entry.tenant, format!("team-{app}"));
        assert_eq!(entry.labels["provider"], "demo");
        assert_eq!(
            entry.labels["stream"],
            if n % 20 == 0 { "stderr" } else { "stdout" }
        );
        assert_eq!(entry.labels.len(), 3);
        assert_eq!(entry.metadata["instance"], INSTANCES[(n % 3) as usize]);
        assert_eq!(entry.metadata["source"], app);
        assert!(
            (started..=ended).contains(&entry.timestamp),
            "timestamp {}",
            entry.timestamp
        );
        if entry.timestamp % 1_000_000 != 0 {
            sub_millisecond += 1;
        }
    }
    assert!(sub_millisecond > 0, "timestamps keep their nanoseconds");
}

#[tokio::test]
async fn protobuf_pushes_deliver_every_event_once_with_labels_metadata_and_tenant() {
    let loki = LokiReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let started = now_nanos();
    let outcome = run_pipeline(&config(&loki.endpoint(), dir.path(), ""), dir.path()).await;
    assert_eq!(outcome, Outcome::Completed);
    check_entries(&loki.entries(), started, now_nanos());
    assert_eq!(loki.duplicates(), 0);
    let requests = loki.requests();
    assert!(requests.iter().all(|r| r.status == 204 && r.sorted));
    assert!(requests.iter().all(
        |r| r.content_type.as_deref() == Some("application/x-protobuf")
            && r.content_encoding.is_none()
    ));
    assert!(requests.iter().all(|r| r.entries <= 700));
    let tenants: HashSet<_> = requests.iter().filter_map(|r| r.tenant.clone()).collect();
    assert_eq!(
        tenants,
        HashSet::from(["team-shop".to_string(), "team-blog".to_string()])
    );
    let store = CheckpointStore::open(dir.path()).unwrap();
    assert_eq!(
        store.load("shop").unwrap()["sequence"],
        3000,
        "acknowledged to the end"
    );
}

#[tokio::test]
async fn json_pushes_gzipped_deliver_the_same() {
    let loki = LokiReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let started = now_nanos();
    let encoding = "encoding = \"json\"\ncompression = \"gzip\"";
    let outcome = run_pipeline(&config(&loki.endpoint(), dir.path(), encoding), dir.path()).await;
    assert_eq!(outcome, Outcome::Completed);
    check_entries(&loki.entries(), started, now_nanos());
    let requests = loki.requests();
    assert!(requests.iter().all(|r| r.status == 204
        && r.content_type.as_deref() == Some("application/json")
        && r.content_encoding.as_deref() == Some("gzip")));
}

/// Serves the receiver on `LOKI_RECEIVER_ADDR` (default 127.0.0.1:3100) until killed,
/// printing every entry: point a hand-run ferry at it.
#[tokio::test]
#[ignore = "runs until stopped; for trying ferry by hand"]
async fn serve_by_hand() {
    let addr = std::env::var("LOKI_RECEIVER_ADDR").unwrap_or_else(|_| "127.0.0.1:3100".into());
    let loki = LokiReceiver::start_on(addr.parse().expect("LOKI_RECEIVER_ADDR is host:port")).await;
    loki.print_entries();
    println!("Loki receiver on {}", loki.endpoint());
    std::future::pending::<()>().await;
}

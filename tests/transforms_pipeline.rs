//! The transforms in a real pipeline: a config is parsed, the topology started, and
//! what the file sink wrote is checked line by line.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry::checkpoint::CheckpointStore;
use ferry::telemetry::Health;
use ferry::topology::{self, Outcome};
use serde_json::Value;

async fn run_pipeline(
    config_text: &str,
    data_dir: &Path,
    stop_after_lines: Option<(&Path, usize)>,
) -> Outcome {
    let config = ferry::topology::config::parse(config_text, Path::new("test.toml"), |_| None)
        .expect("config is valid");
    let store = Arc::new(CheckpointStore::open(data_dir).expect("store opens"));
    let pipeline =
        topology::start(&config, store, Arc::new(Health::default())).expect("pipeline starts");
    let stop = async move {
        match stop_after_lines {
            Some((path, lines)) => {
                while read_lines(path).len() < lines {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            None => std::future::pending().await,
        }
    };
    pipeline.run(stop, Duration::from_secs(30)).await.0
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("the sink writes JSON lines"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_events_are_parsed_tagged_redacted_and_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let config = format!(
        r#"
data_dir = "{data}"
[api]
enabled = false

[sources.demo]
type = "demo"
format = "mixed"
count = 400

[transforms.parsed]
type = "parse"
inputs = ["demo"]
format = "auto"

[transforms.tagged]
type = "level"
inputs = ["parsed"]

[transforms.clean]
type = "redact"
inputs = ["tagged"]
fields = ["user", "client_ip"]

[transforms.important]
type = "filter"
inputs = ["clean"]
condition = {{ level = ">= info" }}

[sinks.out]
type = "file"
inputs = ["important"]
path = "{out}"
fsync = "none"
"#,
        data = dir.path().join("data").display(),
        out = out.display(),
    );
    assert_eq!(
        run_pipeline(&config, &dir.path().join("data"), None).await,
        Outcome::Completed
    );

    let lines = read_lines(&out);
    // The demo's debug lines (n % 20 == 3) are the only ones below info.
    let debug = (0..400).filter(|n| n % 20 == 3).count();
    assert_eq!(lines.len(), 400 - debug);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("@example.com"), "an e-mail address survived");
    assert!(!text.contains("parse_error"), "a demo line failed to parse");
    for line in &lines {
        let level = line["level"].as_str().expect("every event has a level");
        assert_ne!(level, "debug");
        let message = line["message"].as_str().unwrap();
        assert!(!message.contains("10.0."), "an IP survived: {message}");
    }
    let syslog = lines
        .iter()
        .find(|l| l["fields"]["appname"] == "shop")
        .expect("syslog lines were parsed");
    assert_eq!(syslog["host"], "web-1");
    assert!(
        syslog["message"]
            .as_str()
            .unwrap()
            .contains("[REDACTED:ipv4]")
    );
    let json = lines
        .iter()
        .find(|l| l["fields"]["req_id"].is_number())
        .expect("JSON lines were parsed");
    assert_eq!(json["fields"]["user"], "[REDACTED:email]");
    assert_eq!(json["fields"]["client_ip"], "[REDACTED:ipv4]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_from_a_file_pass_tagged_and_drops_are_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.log");
    let out = dir.path().join("out.log");
    std::fs::write(
        &input,
        concat!(
            "{\"level\":\"error\",\"msg\":\"card 4111-1111-1111-1111 refused\",\"ts\":\"2026-11-20T10:00:00Z\"}\n",
            "{\"level\":\"info\",\"msg\":\"truncated\"\n",
            "{\"level\":\"debug\",\"msg\":\"noise\"}\n",
            "{\"level\":\"warn\",\"msg\":\"password=hunter2\",\"ts\":\"2026-11-20T10:00:01Z\"}\n",
        ),
    )
    .unwrap();
    let config = format!(
        r#"
data_dir = "{data}"
[api]
enabled = false

[sources.app]
type = "file"
include = ["{input}"]

[transforms.parsed]
type = "parse"
inputs = ["app"]
format = "json"
timestamp_field = "ts"

[transforms.tagged]
type = "level"
inputs = ["parsed"]
min_level = "info"

[transforms.clean]
type = "redact"
inputs = ["tagged"]
fields = ["msg"]
mode = "partial"

[sinks.out]
type = "file"
inputs = ["clean"]
path = "{out}"
fsync = "none"
"#,
        data = dir.path().join("data").display(),
        input = input.display(),
        out = out.display(),
    );
    let outcome = run_pipeline(&config, &dir.path().join("data"), Some((&out, 3))).await;
    assert_eq!(outcome, Outcome::Completed);

    let lines = read_lines(&out);
    assert_eq!(lines.len(), 3, "the debug line is dropped, the others pass");
    assert_eq!(lines[0]["level"], "error");
    assert_eq!(lines[0]["timestamp"], "2026-11-20T10:00:00.000000000Z");
    assert_eq!(
        lines[0]["fields"]["msg"],
        "card ***************1111 refused"
    );
    assert!(
        !lines[0]["message"]
            .as_str()
            .unwrap()
            .contains("4111-1111-1111-1111")
    );
    assert!(
        lines[1]["fields"]["parse_error"]
            .as_str()
            .unwrap()
            .starts_with("json: ")
    );
    assert_eq!(
        lines[1]["message"],
        "{\"level\":\"info\",\"msg\":\"truncated\""
    );
    assert_eq!(lines[2]["level"], "warn");
    assert_eq!(lines[2]["fields"]["msg"], "password=***ter2");
}

#[test]
fn broken_transform_options_are_refused_with_their_position() {
    let base =
        "[sources.in]\ntype = \"demo\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"t\"]\n\n";
    let cases = [
        (
            "[transforms.t]\ntype = \"parse\"\ninputs = [\"in\"]\nformat = \"regex\"\npattern = '(?P<a>'\n",
            "test.toml:12:",
            "invalid regex",
        ),
        (
            "[transforms.t]\ntype = \"parse\"\ninputs = [\"in\"]\nformat = \"regex\"\n",
            "test.toml:8:",
            "needs a `pattern`",
        ),
        (
            "[transforms.t]\ntype = \"level\"\ninputs = [\"in\"]\nmin_level = \"loud\"\n",
            "test.toml:11:",
            "unknown level `loud`",
        ),
        (
            "[transforms.t]\ntype = \"redact\"\ninputs = [\"in\"]\nmode = \"hash\"\n",
            "test.toml:8:",
            "needs `key` or `key_file`",
        ),
        (
            "[transforms.t]\ntype = \"filter\"\ninputs = [\"in\"]\ncondition = { field = \"x\" }\n",
            "test.toml:11:",
            "holds exactly one of",
        ),
    ];
    for (table, position, problem) in cases {
        let text = format!("{base}{table}");
        let error = ferry::topology::config::parse(&text, Path::new("test.toml"), |_| None)
            .expect_err(table)
            .to_string();
        assert!(error.starts_with(position), "{table}: {error}");
        assert!(error.contains(problem), "{table}: {error}");
    }
}

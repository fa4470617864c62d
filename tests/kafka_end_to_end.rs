//! The scale-out topology end to end with real processes: an agent (file source →
//! parse → level → kafka sink, `native` encoding) ships to the test broker, two
//! aggregators in one consumer group (kafka source → file sinks) share the topic,
//! and the agent is SIGKILLed once mid-run and restarted. Every line arrives, with
//! the agent's level, origin and parsed fields intact.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/kafka.rs"]
mod kafka;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use ferry_process::{Ferry, free_port, metric, scaled, wait_until};
use kafka::{
    Subscription, aggregator_config, broker, complete_lines, create_topic, unique, wait_slowly,
};
use serde_json::Value;

const LEVELS: [&str; 3] = ["info", "warn", "error"];

fn agent_config(dir: &Path, api: u16, broker: &str, topic: &str) -> std::path::PathBuf {
    let config = format!(
        r#"data_dir = "{data}"
[api]
address = "127.0.0.1:{api}"

[sources.app]
type = "file"
include = ["{input}"]
poll_interval = "20ms"

[transforms.parsed]
type = "parse"
inputs = ["app"]
format = "json"

[transforms.tagged]
type = "level"
inputs = ["parsed"]

[sinks.bus]
type = "kafka"
inputs = ["tagged"]
bootstrap_servers = "{broker}"
topic = "{topic}"
key = "{{{{ user }}}}"
encoding = "native"
compression = "lz4"
"#,
        data = dir.join("agent-data").display(),
        input = dir.join("app.log").display(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn agent_to_kafka_to_two_aggregators_survives_a_sigkilled_agent() {
    let broker = broker();
    let topic = unique("e2e");
    let group = unique("e2e-aggregators");
    create_topic(&broker, &topic, 4);
    let dir = tempfile::tempdir().unwrap();
    let total = scaled(50_000);

    let outputs = [
        dir.path().join("agg-a.jsonl"),
        dir.path().join("agg-b.jsonl"),
    ];
    let aggregators: Vec<Ferry> = outputs
        .iter()
        .enumerate()
        .map(|(n, out)| {
            Ferry::start(&aggregator_config(
                &dir.path().join(format!("agg-{n}")),
                free_port(),
                &Subscription {
                    broker: &broker,
                    group: &group,
                    topic: &topic,
                },
                out,
                "json",
                "decoding = \"native\"\nmetadata_field = \"\"",
            ))
        })
        .collect();

    let input = dir.path().join("app.log");
    let writer = {
        let input = input.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&input).unwrap();
            for start in (0..total).step_by(1_000) {
                let mut text = String::new();
                for n in start..(start + 1_000).min(total) {
                    text.push_str(&format!(
                        "{{\"level\":\"{}\",\"msg\":\"event {n}\",\"n\":{n},\"user\":\"u{}\",\"ctx\":{{\"attempt\":{}}}}}\n",
                        LEVELS[n % 3],
                        n % 17,
                        n % 5
                    ));
                }
                file.write_all(text.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };

    let api = free_port();
    let agent = Ferry::start(&agent_config(dir.path(), api, &broker, &topic));
    wait_until(Duration::from_secs(60), "the agent to ship a third", || {
        metric(
            api,
            "ferry_component_sent_events_total",
            "component_kind=\"sink\"",
        )
        .unwrap_or(0.0) as usize
            >= total / 3
    });
    agent.kill();
    let api = free_port();
    let agent = Ferry::start(&agent_config(dir.path(), api, &broker, &topic));
    writer.join().unwrap();

    let mut received: HashMap<usize, Value> = HashMap::new();
    wait_slowly(
        Duration::from_secs(180),
        "every line at an aggregator",
        || {
            for out in &outputs {
                for line in complete_lines(out) {
                    let event: Value = serde_json::from_str(&line).unwrap();
                    let n = event["fields"]["n"].as_u64().unwrap() as usize;
                    received.insert(n, event);
                }
            }
            received.len() == total
        },
    );
    assert!(agent.terminate().success());
    for aggregator in aggregators {
        assert!(aggregator.terminate().success());
    }
    let file = input.display().to_string();
    for n in 0..total {
        let event = &received[&n];
        let text = format!("event {n}");
        assert!(
            event["message"] == text.as_str() || event["fields"]["msg"] == text.as_str(),
            "{event}"
        );
        assert_eq!(event["level"], LEVELS[n % 3], "{event}");
        assert_eq!(event["source"], "app", "the agent's source id");
        assert_eq!(event["provider"], "file");
        assert_eq!(event["file"], file.as_str());
        assert!(event["host"].is_string());
        assert_eq!(event["fields"]["user"], format!("u{}", n % 17));
        assert_eq!(event["fields"]["ctx"]["attempt"], n % 5);
    }
    assert!(
        outputs.iter().all(|out| !complete_lines(out).is_empty()),
        "both aggregators took part"
    );
}

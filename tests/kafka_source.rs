//! The `kafka` source through the real binary against the test broker: two
//! aggregators in one consumer group share 200,000 records into file sinks, one is
//! SIGKILLed mid-run and the other takes its partitions over with nothing lost; after
//! a restart of both nothing committed is delivered again. And records decode with
//! their Kafka metadata (topic, partition, offset, key, headers) as fields.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/kafka.rs"]
mod kafka;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use ferry_process::{Ferry, free_port, metric, scaled};
use kafka::{
    Subscription, aggregator_config, broker, complete_lines, create_topic, produce, unique,
    wait_slowly,
};

/// The in-flight window of the aggregators (`aggregator_config`): what a restart may
/// deliver again at most.
const WINDOW: usize = 8 * 500;

fn record(seq: usize) -> (Option<String>, Vec<(String, String)>, Vec<u8>) {
    (
        Some(format!("k{}", seq % 64)),
        Vec::new(),
        format!("rec {seq:09} lorem ipsum dolor sit amet").into_bytes(),
    )
}

fn seqs(path: &Path) -> Vec<usize> {
    complete_lines(path)
        .iter()
        .map(|line| {
            line.strip_prefix("rec ")
                .and_then(|rest| rest.get(..9))
                .and_then(|seq| seq.parse().ok())
                .unwrap_or_else(|| panic!("corrupt output line {line:?}"))
        })
        .collect()
}

struct Aggregator {
    config: std::path::PathBuf,
    out: std::path::PathBuf,
}

impl Aggregator {
    fn new(dir: &Path, name: &str, broker: &str, group: &str, topic: &str) -> Aggregator {
        let out = dir.join(format!("{name}.out"));
        let config = aggregator_config(
            &dir.join(name),
            free_port(),
            &Subscription {
                broker,
                group,
                topic,
            },
            &out,
            "text",
            "decoding = \"text\"",
        );
        Aggregator { config, out }
    }

    fn start(&self) -> Ferry {
        Ferry::start(&self.config)
    }
}

#[test]
fn two_aggregators_share_a_topic_and_a_sigkill_loses_nothing() {
    let broker = broker();
    let topic = unique("shared");
    let group = unique("aggregators");
    create_topic(&broker, &topic, 6);
    let total = scaled(200_000);
    let dir = tempfile::tempdir().unwrap();
    let a = Aggregator::new(dir.path(), "a", &broker, &group, &topic);
    let b = Aggregator::new(dir.path(), "b", &broker, &group, &topic);
    let first_a = a.start();
    let first_b = b.start();

    // Agents keep shipping while the aggregators run.
    let producer = {
        let broker = broker.clone();
        let topic = topic.clone();
        std::thread::spawn(move || {
            let chunk = total / 10;
            for part in 0..10 {
                let end = if part == 9 { total } else { (part + 1) * chunk };
                produce(&broker, &topic, (part * chunk..end).map(record));
                std::thread::sleep(Duration::from_millis(700));
            }
        })
    };
    let union = || -> HashSet<usize> { seqs(&a.out).into_iter().chain(seqs(&b.out)).collect() };
    wait_slowly(Duration::from_secs(120), "a quarter of the records", || {
        union().len() >= total / 4
    });
    assert!(
        !seqs(&a.out).is_empty() && !seqs(&b.out).is_empty(),
        "both aggregators got partitions"
    );
    first_a.kill();
    producer.join().unwrap();
    wait_slowly(
        Duration::from_secs(180),
        "every record, A's partitions taken over by B",
        || union().len() == total,
    );
    assert!(first_b.terminate().success());

    // Restart both: what was committed is not delivered again.
    let before = seqs(&a.out).len() + seqs(&b.out).len();
    let second_a = a.start();
    let second_b = b.start();
    let extra = scaled(1_000);
    produce(&broker, &topic, (total..total + extra).map(record));
    wait_slowly(
        Duration::from_secs(120),
        "the records produced after the restart",
        || union().len() == total + extra,
    );
    assert!(second_a.terminate().success());
    assert!(second_b.terminate().success());
    let after = seqs(&a.out).len() + seqs(&b.out).len();
    let redelivered = after - before - extra;
    eprintln!(
        "aggregators: {total} records, {} lines before the restart ({} duplicates from the SIGKILL), {redelivered} delivered again after it",
        before,
        before - total
    );
    assert!(
        redelivered <= WINDOW,
        "{redelivered} records delivered again after a clean restart"
    );
    let all = union();
    assert!((0..total + extra).all(|seq| all.contains(&seq)));
}

#[test]
fn records_decode_with_their_kafka_metadata_and_lag_is_measured() {
    let broker = broker();
    let topic = unique("decode");
    create_topic(&broker, &topic, 1);
    produce(
        &broker,
        &topic,
        [
            (
                Some("user-7".to_string()),
                vec![("trace".to_string(), "abc".to_string())],
                br#"{"message":"paid","level":"warning","app":"shop","fields":{"amount":12.5},"extra":true}"#.to_vec(),
            ),
            (None, Vec::new(), b"not json at all".to_vec()),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let api = free_port();
    let config = aggregator_config(
        &dir.path().join("agg"),
        api,
        &Subscription {
            broker: &broker,
            group: &unique("decoders"),
            topic: &topic,
        },
        &out,
        "json",
        "lag_interval = \"1s\"",
    );
    let ferry = Ferry::start(&config);
    wait_slowly(Duration::from_secs(60), "both records", || {
        complete_lines(&out).len() >= 2
    });
    wait_slowly(Duration::from_secs(30), "the consumer lag metric", || {
        metric(
            api,
            "ferry_kafka_consumer_lag",
            &format!("topic=\"{topic}\""),
        )
        .is_some()
    });
    assert!(ferry.terminate().success());
    let lines: Vec<serde_json::Value> = complete_lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let paid = &lines[0];
    assert_eq!(paid["message"], "paid");
    assert_eq!(paid["level"], "warn");
    assert_eq!(paid["app"], "shop");
    assert_eq!(paid["fields"]["amount"], 12.5);
    assert_eq!(paid["fields"]["extra"], true);
    let meta = &paid["fields"]["kafka"];
    assert_eq!(meta["topic"], topic.as_str());
    assert_eq!(meta["partition"], 0);
    assert_eq!(meta["offset"], 0);
    assert_eq!(meta["key"], "user-7");
    assert_eq!(meta["headers"]["trace"], "abc");
    let plain = &lines[1];
    assert_eq!(plain["message"], "not json at all");
    assert!(plain["fields"]["decode_error"].is_string());
    assert_eq!(plain["fields"]["kafka"]["offset"], 1);
}

#[test]
fn checkpoints_list_shows_how_many_records_the_group_has_not_committed() {
    let broker = broker();
    let topic = unique("lag");
    create_topic(&broker, &topic, 1);
    produce(&broker, &topic, (0..5).map(record));
    let dir = tempfile::tempdir().unwrap();
    let aggregator = Aggregator::new(dir.path(), "agg", &broker, &unique("laggards"), &topic);
    let ferry = aggregator.start();
    wait_slowly(Duration::from_secs(60), "five records", || {
        complete_lines(&aggregator.out).len() >= 5
    });
    assert!(ferry.terminate().success());
    // Produced while no member runs: the group is three records behind.
    for seq in 5..8 {
        produce(&broker, &topic, [record(seq)]);
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["checkpoints", "list", "--json", "-c"])
        .arg(&aggregator.config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let stream = format!("{topic}:0");
    let row = rows
        .iter()
        .find(|row| row["stream"] == stream.as_str())
        .unwrap_or_else(|| panic!("no row for {stream}: {rows:?}"));
    assert_eq!(row["type"], "kafka");
    assert_eq!(row["lag_records"], 3, "{row}");
    assert_eq!(row["cursor"]["offset"], 5, "{row}");
}

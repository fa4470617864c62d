//! The `kafka` sink through the real binary against the test broker, checked by the
//! tests' own consumer: 200,000 events exactly once with their topic, key and headers;
//! every compression codec; the `native` encoding field for field; a record too large
//! for the broker dead-lettered while the rest is delivered.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/kafka.rs"]
mod kafka;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_process::{Ferry, free_port, metric, scaled, wait_until};
use kafka::{broker, consume, create_topic, unique};

const PADDING: &str = "lorem ipsum dolor sit amet, consectetur adipiscing elit";

fn write_lines(path: &Path, file: usize, count: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for seq in 0..count {
        writeln!(out, "f{file} {seq:09} {PADDING}").unwrap();
    }
    out.flush().unwrap();
}

/// `(file, seq)` of a line written by `write_lines`.
fn parse_line(text: &str) -> (usize, usize) {
    let mut parts = text.splitn(3, ' ');
    let file = parts.next().and_then(|f| f.strip_prefix('f')?.parse().ok());
    let seq = parts.next().and_then(|s| s.parse().ok());
    match (file, seq, parts.next()) {
        (Some(file), Some(seq), Some(PADDING)) => (file, seq),
        _ => panic!("corrupt record {text:?}"),
    }
}

struct Setup {
    dir: tempfile::TempDir,
    api: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("in")).unwrap();
        Setup {
            dir,
            api: free_port(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A file source on `in/*.log` (plus `transforms`) feeding `sinks`.
    fn start(&self, transforms: &str, sinks: &str) -> Ferry {
        let config = format!(
            r#"data_dir = "{data}"
[api]
address = "127.0.0.1:{api}"

[sources.logs]
type = "file"
include = ["{input}/*.log"]
poll_interval = "20ms"
max_line_bytes = 4194304
{transforms}
{sinks}
"#,
            data = self.path("data").display(),
            api = self.api,
            input = self.path("in").display(),
        );
        let path = self.path("ferry.toml");
        std::fs::write(&path, config).unwrap();
        Ferry::start(&path)
    }

    fn delivered(&self, sink: &str) -> usize {
        metric(
            self.api,
            "ferry_component_sent_events_total",
            &format!("component_kind=\"sink\",component_id=\"{sink}\""),
        )
        .unwrap_or(0.0) as usize
    }
}

#[test]
fn two_hundred_thousand_events_arrive_exactly_once_with_topic_key_and_headers() {
    let broker = broker();
    let prefix = unique("sink");
    let topic = format!("{prefix}-file");
    create_topic(&broker, &topic, 4);
    let setup = Setup::new();
    let per_file = scaled(100_000);
    for file in 0..2 {
        write_lines(&setup.path(&format!("in/{file}.log")), file, per_file);
    }
    let ferry = setup.start(
        "",
        &format!(
            r#"[sinks.kafka]
type = "kafka"
inputs = ["logs"]
bootstrap_servers = "{broker}"
topic = "{prefix}-{{{{ provider }}}}"
key = "{{{{ file }}}}"
encoding = "text"
compression = "lz4"
headers = {{ source = "{{{{ source }}}}", file = "{{{{ file }}}}" }}
"#
        ),
    );
    let total = 2 * per_file;
    wait_until(Duration::from_secs(120), "every event delivered", || {
        setup.delivered("kafka") >= total
    });
    assert!(ferry.terminate().success());

    let records = consume(&broker, &topic, total, Duration::from_secs(120));
    let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    for record in &records {
        assert_eq!(record.topic, topic);
        let (file, seq) = parse_line(record.text());
        let path = setup.path(&format!("in/{file}.log")).display().to_string();
        assert_eq!(record.key.as_deref(), Some(path.as_str()), "key");
        assert_eq!(record.header("file"), Some(path.as_str()), "file header");
        assert_eq!(record.header("source"), Some("logs"), "source header");
        let partition = *partition_of_key.entry(path).or_insert(record.partition);
        assert_eq!(record.partition, partition, "one key, one partition");
        *seen.entry((file, seq)).or_default() += 1;
    }
    assert_eq!(seen.len(), total, "every event is in the topic");
    let duplicated = seen.values().filter(|n| **n > 1).count();
    assert_eq!(duplicated, 0, "{duplicated} events were produced twice");
}

#[test]
fn every_compression_codec_round_trips() {
    let broker = broker();
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let prefix = unique("codec");
    let setup = Setup::new();
    let count = scaled(2_000);
    write_lines(&setup.path("in/0.log"), 0, count);
    let mut sinks = String::new();
    for codec in codecs {
        create_topic(&broker, &format!("{prefix}-{codec}"), 2);
        sinks.push_str(&format!(
            r#"[sinks.{codec}]
type = "kafka"
inputs = ["logs"]
bootstrap_servers = "{broker}"
topic = "{prefix}-{codec}"
encoding = "text"
compression = "{codec}"
"#
        ));
    }
    let ferry = setup.start("", &sinks);
    for codec in codecs {
        wait_until(Duration::from_secs(60), codec, || {
            setup.delivered(codec) >= count
        });
    }
    assert!(ferry.terminate().success());
    for codec in codecs {
        let records = consume(
            &broker,
            &format!("{prefix}-{codec}"),
            count,
            Duration::from_secs(60),
        );
        let mut seqs: Vec<usize> = records.iter().map(|r| parse_line(r.text()).1).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..count).collect::<Vec<_>>(), "codec {codec}");
    }
}

#[test]
fn native_encoding_carries_an_event_field_for_field() {
    let broker = broker();
    let topic = unique("native");
    create_topic(&broker, &topic, 1);
    let setup = Setup::new();
    let lines = [
        r#"{"level":"warn","msg":"disk almost full","disk":{"used":0.93,"mount":"/"},"tags":["a","b"],"user":null}"#,
        r#"{"level":"ERROR","msg":"payment failed","amount":12.5,"ok":false}"#,
        "plain text with ünïcode",
    ];
    std::fs::write(setup.path("in/app.log"), lines.join("\n") + "\n").unwrap();
    let ferry = setup.start(
        r#"[transforms.parsed]
type = "parse"
inputs = ["logs"]
format = "auto"
[transforms.tagged]
type = "level"
inputs = ["parsed"]
"#,
        &format!(
            r#"[sinks.kafka]
type = "kafka"
inputs = ["tagged"]
bootstrap_servers = "{broker}"
topic = "{topic}"
encoding = "native"
[sinks.copy]
type = "file"
inputs = ["tagged"]
path = "{copy}"
encoding = "json"
"#,
            copy = setup.path("copy.jsonl").display()
        ),
    );
    wait_until(Duration::from_secs(60), "delivery", || {
        setup.delivered("kafka") >= lines.len() && setup.delivered("copy") >= lines.len()
    });
    assert!(ferry.terminate().success());

    let records = consume(&broker, &topic, lines.len(), Duration::from_secs(60));
    let copies = std::fs::read_to_string(setup.path("copy.jsonl")).unwrap();
    let copies: Vec<serde_json::Value> = copies
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), copies.len());
    for (record, copy) in records.iter().zip(&copies) {
        let event = ferry::event::native::decode(&record.payload).unwrap();
        assert_eq!(
            &event.to_json(),
            copy,
            "the native record is the event the file sink wrote"
        );
    }
    let warn = ferry::event::native::decode(&records[0].payload).unwrap();
    assert_eq!(warn.level, Some(ferry::event::Level::Warn));
    assert_eq!(warn.fields["disk"]["used"], 0.93);
    assert!(warn.origin.file.as_deref().unwrap().ends_with("in/app.log"));
    assert!(warn.origin.host.is_some());
}

#[test]
fn a_record_too_large_for_the_broker_goes_to_the_dead_letter_sink() {
    let broker = broker();
    let topic = unique("too-large");
    create_topic(&broker, &topic, 1);
    let setup = Setup::new();
    let huge = "x".repeat(2 << 20);
    std::fs::write(setup.path("in/app.log"), format!("before\n{huge}\nafter\n")).unwrap();
    let ferry = setup.start(
        "",
        &format!(
            r#"[sinks.kafka]
type = "kafka"
inputs = ["logs"]
bootstrap_servers = "{broker}"
topic = "{topic}"
encoding = "text"
dead_letter = {{ type = "file", path = "{rejected}", encoding = "text" }}
"#,
            rejected = setup.path("rejected.log").display()
        ),
    );
    wait_until(Duration::from_secs(60), "the dead letter", || {
        std::fs::metadata(setup.path("rejected.log")).is_ok_and(|m| m.len() > huge.len() as u64)
    });
    wait_until(Duration::from_secs(60), "the small records", || {
        setup.delivered("kafka") >= 2
    });
    let rejected = metric(
        setup.api,
        "ferry_kafka_rejected_events_total",
        "reason=\"too_large\"",
    );
    assert_eq!(rejected, Some(1.0));
    assert!(ferry.terminate().success());
    assert_eq!(
        std::fs::read_to_string(setup.path("rejected.log")).unwrap(),
        format!("{huge}\n")
    );
    let records = consume(&broker, &topic, 2, Duration::from_secs(60));
    let texts: Vec<&str> = records.iter().map(|r| r.text()).collect();
    assert_eq!(texts, ["before", "after"]);
}

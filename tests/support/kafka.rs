//! The Kafka side of the Kafka tests: the test broker's address (`FERRY_TEST_KAFKA`,
//! set by `scripts/kafka-broker start`, which `scripts/test` runs), topics created
//! fresh per test, and the tests' own rdkafka producer and consumer, independent of
//! ferry's. A test that must cut the broker off starts a broker of its own
//! (`FERRY_TEST_TANSU`) that advertises a proxy's address.
//!
//! Known facts about the test broker (tansu): a group join takes about half of
//! `session.timeout.ms` (6000 here); partition end offsets are reported wrongly, so
//! nothing here relies on watermarks or `latest`; every test uses fresh topics and
//! groups.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// The test broker's `host:port`. Panics (the tests fail, never skip) when it is not
/// set or does not answer.
pub fn broker() -> String {
    let address = std::env::var("FERRY_TEST_KAFKA").unwrap_or_else(|_| {
        panic!(
            "FERRY_TEST_KAFKA is not set: run the Kafka tests through ./scripts/test, or start the broker with `eval \"$(scripts/kafka-broker start)\"; export FERRY_TEST_KAFKA FERRY_TEST_TANSU`"
        )
    });
    if let Err(error) = TcpStream::connect_timeout(
        &address.parse().expect("FERRY_TEST_KAFKA is host:port"),
        Duration::from_secs(5),
    ) {
        panic!(
            "the test broker at {address} does not answer ({error}): start it with scripts/kafka-broker start"
        );
    }
    address
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn create_topic(broker: &str, name: &str, partitions: i32) {
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .unwrap();
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = runtime()
        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .unwrap();
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("cannot create topic {topic}: {code}"));
    }
}

/// A record as the tests' own consumer saw it.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("UTF-8 record")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads every partition of `topic` from its start until at least `expected` records
/// came and then nothing more for a second (so duplicates are seen too); panics after
/// `limit` (a guard against hangs).
pub fn consume(broker: &str, topic: &str, expected: usize, limit: Duration) -> Vec<Record> {
    consume_until(broker, topic, limit, |records| records.len() >= expected)
}

/// Reads every partition of `topic` from its start until `done` holds for what came
/// and then nothing more came for a second; panics after `limit`.
pub fn consume_until(
    broker: &str,
    topic: &str,
    limit: Duration,
    mut done: impl FnMut(&[Record]) -> bool,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len();
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let start = Instant::now();
    let mut last_record = Instant::now();
    let mut records = Vec::new();
    let mut finished = false;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                last_record = Instant::now();
                let headers = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|Header { key, value }| {
                                (
                                    key.to_string(),
                                    String::from_utf8_lossy(value.unwrap_or_default()).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                records.push(Record {
                    topic: message.topic().to_string(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    headers,
                    payload: message.payload().unwrap_or_default().to_vec(),
                });
            }
            Some(Err(error)) => panic!("test consumer: {error}"),
            None => {}
        }
        if !finished && last_record.elapsed() > Duration::from_millis(200) {
            finished = done(&records);
        }
        if finished && last_record.elapsed() > Duration::from_secs(1) {
            return records;
        }
        assert!(
            start.elapsed() < limit,
            "timed out reading {topic}: {} records so far",
            records.len()
        );
    }
}

/// Produces `records` (key, headers, value) to `topic` with the tests' own producer
/// and waits for every delivery.
pub fn produce(
    broker: &str,
    topic: &str,
    records: impl IntoIterator<Item = (Option<String>, Vec<(String, String)>, Vec<u8>)>,
) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for (key, headers, value) in records {
        let mut owned = OwnedHeaders::new();
        for (name, header) in &headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(header),
            });
        }
        let mut record = BaseRecord::<String, Vec<u8>>::to(topic)
            .payload(&value)
            .headers(owned);
        if let Some(key) = &key {
            record = record.key(key);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    assert_eq!(
        producer.in_flight_count(),
        0,
        "test producer: undelivered records"
    );
}

/// A broker of the test's own: listens on `listen_port` and advertises
/// `advertised_port` (a proxy in front of it). Killed when dropped.
pub struct OwnBroker {
    child: Child,
}

impl OwnBroker {
    pub fn start(listen_port: u16, advertised_port: u16) -> OwnBroker {
        let tansu = std::env::var("FERRY_TEST_TANSU").map(PathBuf::from).unwrap_or_else(|_| {
            panic!("FERRY_TEST_TANSU is not set: run the Kafka tests through ./scripts/test or scripts/kafka-broker start")
        });
        let child = Command::new(&tansu)
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{listen_port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{advertised_port}"))
            .arg("--storage-engine")
            .arg("memory://tansu/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", tansu.display()));
        let mut broker = OwnBroker { child };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", listen_port)).is_err() {
            assert!(
                broker.child.try_wait().unwrap().is_none(),
                "the test's own broker exited (port {listen_port} taken?)"
            );
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "own broker did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where an aggregator reads from.
pub struct Subscription<'a> {
    pub broker: &'a str,
    pub group: &'a str,
    pub topic: &'a str,
}

/// A ferry aggregator's config: a `kafka` source on `subscription` into a file sink
/// at `out` (`encoding` text or json), with `source_extra` options.
pub fn aggregator_config(
    dir: &std::path::Path,
    api: u16,
    subscription: &Subscription,
    out: &std::path::Path,
    encoding: &str,
    source_extra: &str,
) -> PathBuf {
    let Subscription {
        broker,
        group,
        topic,
    } = subscription;
    let config = format!(
        r#"data_dir = "{data}"
[api]
address = "127.0.0.1:{api}"

[sources.bus]
type = "kafka"
bootstrap_servers = "{broker}"
group_id = "{group}"
topics = ["{topic}"]
session_timeout = "6s"
commit_interval = "1s"
max_in_flight_batches = 8
batch_max_events = 500
{source_extra}

[sinks.out]
type = "file"
inputs = ["bus"]
path = "{out}"
encoding = "{encoding}"
"#,
        data = dir.join("data").display(),
        out = out.display(),
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("ferry.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The complete lines of a file a sink may be writing.
pub fn complete_lines(path: &std::path::Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    String::from_utf8(bytes[..end].to_vec())
        .expect("UTF-8 output")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Polls `check` every 300 ms until it holds; panics with `what` after `limit`.
pub fn wait_slowly(limit: Duration, what: &str, check: impl FnMut() -> bool) {
    super::ferry_process::wait_every(Duration::from_millis(300), limit, what, check);
}

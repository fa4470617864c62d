//! The Loki sink driven directly with hand-made events: the wire format proved by an
//! independent decoder (snappy block format and protobuf fields by number, written
//! here from the formats' specifications, sharing nothing with ferry's encoder), exact
//! nanosecond timestamps, per-stream sorting, tenant split, basic auth, the
//! active-stream cap, acknowledgement only after a 2xx, refused entries isolated even
//! when a gateway hides Loki's messages (with a 5xx on the way retried, not
//! dead-lettered), and `reject_older_than`.

#[path = "support/loki_receiver.rs"]
mod loki_receiver;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ferry::checkpoint::{CheckpointStore, CursorUpdate, Delivery, spawn_tracker};
use ferry::event::{Batch, Event};
use ferry::sinks::loki::{LokiSink, LokiSinkConfig};
use ferry::sinks::{Sink, SinkContext};
use ferry::telemetry::Health;
use ferry::topology::{BatchSender, batch_channel};
use loki_receiver::{LokiReceiver, OrderRule, dead_letter_messages};

/// A minute ago, with nanoseconds: recent enough for Loki's age limits.
static T0: LazyLock<i64> = LazyLock::new(|| {
    (ferry::event::now_nanos() / 1_000_000_000 - 60) * 1_000_000_000 + 123_456_789
});

fn event(app: &str, message: &str, timestamp: i64) -> Event {
    let mut event = Event::new("src".into(), "demo".into(), message.into(), timestamp);
    event.origin.app = Some(app.into());
    event.origin.instance = Some("web-1".into());
    event
}

/// Starts a loki sink with `options` (TOML) and returns its input and its task.
fn start_sink(options: &str) -> (BatchSender, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let config: LokiSinkConfig = toml::from_str(options).expect("valid options");
    let sink = Box::new(LokiSink::new(&config).expect("sink builds"));
    let (input, receiver) = batch_channel(1 << 24);
    let ctx = SinkContext {
        id: "loki".into(),
        health: Arc::new(Health::default()),
        stopping: Default::default(),
        disk_buffered: false,
    };
    (input, tokio::spawn(sink.run(receiver, ctx)))
}

async fn send_all(options: &str, batches: Vec<Vec<Event>>) {
    let (input, task) = start_sink(options);
    for events in batches {
        input
            .send(Batch {
                events,
                delivery: Delivery::detached(),
            })
            .await
            .unwrap();
    }
    drop(input);
    task.await.unwrap().unwrap();
}

/// Reads a base-128 varint at `*at`.
fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    value
}

/// Decodes the snappy block format: a varint length, then literals and copies.
fn snappy_block(input: &[u8]) -> Vec<u8> {
    let mut at = 0;
    let length = varint(input, &mut at) as usize;
    let mut out = Vec::with_capacity(length);
    while at < input.len() {
        let tag = input[at];
        at += 1;
        match tag & 3 {
            0 => {
                let mut len = usize::from(tag >> 2);
                if len >= 60 {
                    let extra = len - 59;
                    len = input[at..at + extra]
                        .iter()
                        .rev()
                        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
                    at += extra;
                }
                len += 1;
                out.extend_from_slice(&input[at..at + len]);
                at += len;
            }
            kind => {
                let (len, offset) = match kind {
                    1 => {
                        let len = 4 + usize::from((tag >> 2) & 7);
                        let offset = (usize::from(tag >> 5) << 8) | usize::from(input[at]);
                        at += 1;
                        (len, offset)
                    }
                    2 => {
                        let offset = usize::from(u16::from_le_bytes([input[at], input[at + 1]]));
                        at += 2;
                        (1 + usize::from(tag >> 2), offset)
                    }
                    _ => {
                        let offset =
                            u32::from_le_bytes(input[at..at + 4].try_into().unwrap()) as usize;
                        at += 4;
                        (1 + usize::from(tag >> 2), offset)
                    }
                };
                let start = out.len() - offset;
                for i in 0..len {
                    let byte = out[start + i];
                    out.push(byte);
                }
            }
        }
    }
    assert_eq!(out.len(), length, "snappy length prefix matches");
    out
}

/// A protobuf field: number and value (varint or length-delimited bytes).
#[derive(Debug)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn fields(message: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < message.len() {
        let key = varint(message, &mut at);
        let value = match key & 7 {
            0 => Field::Varint(varint(message, &mut at)),
            2 => {
                let len = varint(message, &mut at) as usize;
                at += len;
                Field::Bytes(&message[at - len..at])
            }
            other => panic!("unexpected wire type {other}"),
        };
        out.push((key >> 3, value));
    }
    out
}

fn bytes_of<'a>(fields: &[(u64, Field<'a>)], number: u64) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter(|(n, _)| *n == number)
        .filter_map(|(_, f)| match f {
            Field::Bytes(b) => Some(*b),
            Field::Varint(_) => None,
        })
        .collect()
}

fn varint_of(fields: &[(u64, Field<'_>)], number: u64) -> u64 {
    fields
        .iter()
        .find_map(|(n, f)| match f {
            Field::Varint(v) if *n == number => Some(*v),
            _ => None,
        })
        .unwrap_or(0)
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn a_captured_push_decodes_independently_by_field_numbers() {
    let loki = LokiReceiver::start().await;
    let options = format!(
        r#"endpoint = "{}"
labels = {{ app = "{{{{ app }}}}" }}
structured_metadata = {{ pod = "{{{{ instance }}}}" }}"#,
        loki.endpoint()
    );
    let long = format!("second {}", "abc".repeat(100));
    send_all(
        &options,
        vec![vec![
            event("web", &long, *T0 + 1),
            event("web", "first", *T0),
        ]],
    )
    .await;
    let request = &loki.requests()[0];
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(request.content_encoding, None);
    assert_ne!(
        request.body[0], 0xff,
        "snappy block format, not the framed stream format"
    );

    let raw = snappy_block(&request.body);
    let push = fields(&raw);
    let streams = bytes_of(&push, 1);
    assert_eq!(streams.len(), 1);
    let stream = fields(streams[0]);
    assert_eq!(text(bytes_of(&stream, 1)[0]), "{app=\"web\"}");
    assert_eq!(varint_of(&stream, 3), 0, "hash is left to Loki");
    let entries = bytes_of(&stream, 2);
    assert_eq!(entries.len(), 2);
    let mut decoded = Vec::new();
    for entry in entries {
        let entry = fields(entry);
        let timestamp = fields(bytes_of(&entry, 1)[0]);
        let seconds = varint_of(&timestamp, 1) as i64;
        let nanos = varint_of(&timestamp, 2) as i64;
        let line = text(bytes_of(&entry, 2)[0]).to_string();
        let pair = fields(bytes_of(&entry, 3)[0]);
        let metadata = (
            text(bytes_of(&pair, 1)[0]).to_string(),
            text(bytes_of(&pair, 2)[0]).to_string(),
        );
        decoded.push((seconds * 1_000_000_000 + nanos, line, metadata));
    }
    let pod = ("pod".to_string(), "web-1".to_string());
    assert_eq!(
        decoded,
        vec![
            (*T0, "first".to_string(), pod.clone()),
            (*T0 + 1, long, pod)
        ],
        "exact nanoseconds, sorted within the stream"
    );
}

#[tokio::test]
async fn tenants_are_split_and_auth_is_sent() {
    let loki = LokiReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let options = format!(
        r#"endpoint = "{}"
tenant_id = "{{{{ app }}}}"
labels = {{ app = "{{{{ app }}}}" }}
auth = {{ strategy = "basic", user = "12345", password_file = "{}" }}"#,
        loki.endpoint(),
        password.display()
    );
    let events = vec![
        event("a", "a1", *T0),
        event("b", "b1", *T0 + 5),
        event("a", "a2", *T0 - 5),
    ];
    send_all(&options, vec![events]).await;
    let requests = loki.requests();
    assert_eq!(requests.len(), 2, "one request per tenant");
    for request in &requests {
        // base64("12345:s3cret")
        assert_eq!(
            request.authorization.as_deref(),
            Some("Basic MTIzNDU6czNjcmV0")
        );
    }
    let entries = loki.entries();
    for entry in &entries {
        assert_eq!(entry.tenant, entry.labels["app"]);
    }
    let a: Vec<(i64, &str)> = entries
        .iter()
        .filter(|e| e.tenant == "a")
        .map(|e| (e.timestamp, e.line.as_str()))
        .collect();
    assert_eq!(a, [(*T0 - 5, "a2"), (*T0, "a1")]);
}

#[tokio::test]
async fn the_stream_cap_moves_high_cardinality_labels_to_metadata() {
    let loki = LokiReceiver::start().await;
    let options = format!(
        r#"endpoint = "{}"
labels = {{ app = "{{{{ app }}}}", pod = "{{{{ pod }}}}" }}
max_streams = 3"#,
        loki.endpoint()
    );
    let mut events = vec![event("web", "no pod", *T0)];
    for pod in 0..10 {
        let mut e = event("web", &format!("pod {pod}"), *T0 + pod);
        e.fields.insert("pod".into(), format!("p{pod}").into());
        events.push(e);
    }
    send_all(&options, vec![events]).await;
    let entries = loki.entries();
    assert_eq!(entries.len(), 11);
    let streams: std::collections::HashSet<&str> =
        entries.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(streams.len(), 3, "{streams:?}");
    let moved = entries.iter().find(|e| e.line == "pod 9").unwrap();
    assert_eq!(moved.stream, "{app=\"web\"}");
    assert_eq!(moved.metadata["pod"], "p9");
}

#[tokio::test]
async fn batches_are_acknowledged_only_after_a_2xx() {
    let loki = LokiReceiver::start().await;
    loki.begin_outage(500);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CheckpointStore::open(dir.path()).unwrap());
    let (mut acker, tracker) = spawn_tracker(
        "s".into(),
        Arc::clone(&store),
        8,
        Arc::new(Health::default()),
    );
    let options = format!(
        r#"endpoint = "{}"
batch_timeout = "10ms"
retry_initial_backoff = "10ms"
retry_max_backoff = "100ms""#,
        loki.endpoint()
    );
    let (input, task) = start_sink(&options);
    let delivery = acker
        .delivery(CursorUpdate::set("k", serde_json::json!(1)))
        .await;
    input
        .send(Batch {
            events: vec![event("web", "held", *T0)],
            delivery,
        })
        .await
        .unwrap();
    assert!(loki.wait_for_status(500, 3, Duration::from_secs(10)).await);
    assert!(
        store.load("s").unwrap().is_empty(),
        "nothing committed while Loki fails"
    );
    loki.end_outage();
    drop(input);
    task.await.unwrap().unwrap();
    drop(acker);
    tracker.await.unwrap();
    assert_eq!(store.load("s").unwrap()["k"], 1);
    assert_eq!(loki.entries().len(), 1);
}

#[tokio::test]
async fn lokis_own_refusals_reach_the_dead_letter_with_their_reason() {
    let loki = LokiReceiver::start().await;
    loki.set_order(OrderRule::Strict);
    loki.set_max_line(100);
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.log");
    let options = format!(
        r#"endpoint = "{}"
labels = {{ app = "{{{{ app }}}}" }}
batch_timeout = "10ms"
max_in_flight_requests = 1
dead_letter = {{ type = "file", path = "{}", encoding = "text" }}"#,
        loki.endpoint(),
        dead.display()
    );
    let (input, task) = start_sink(&options);
    let batches = [
        vec![event("web", "newest", *T0 + 10)],
        vec![event("web", "older", *T0), event("api", "fine", *T0)],
        vec![event("web", &"x".repeat(101), *T0 + 20)],
    ];
    for events in batches {
        input
            .send(Batch {
                events,
                delivery: Delivery::detached(),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(input);
    task.await.unwrap().unwrap();
    let lines: Vec<String> = loki.entries().into_iter().map(|e| e.line).collect();
    assert_eq!(lines, ["newest", "fine"]);
    let dead_lettered = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(dead_lettered, format!("older\n{}\n", "x".repeat(101)));
    let refusals: Vec<u16> = loki.requests().iter().map(|r| r.status).collect();
    assert!(refusals.contains(&400));
}

#[tokio::test]
async fn refused_entries_are_found_by_splitting_when_a_gateway_hides_lokis_message() {
    let loki = LokiReceiver::start().await;
    loki.set_max_line(100);
    loki.hide_messages();
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.log");
    let options = format!(
        r#"endpoint = "{}"
labels = {{ app = "{{{{ app }}}}" }}
dead_letter = {{ type = "file", path = "{}" }}"#,
        loki.endpoint(),
        dead.display()
    );
    let entries = 200;
    let too_long = [3usize, 4, 77, 120, 121, 180, 199];
    let message = |n: usize| {
        if too_long.contains(&n) {
            format!("long {n} {}", "x".repeat(100))
        } else {
            format!("line {n}")
        }
    };
    let events = (0..entries)
        .map(|n| event("web", &message(n), *T0 + n as i64))
        .collect();
    send_all(&options, vec![events]).await;

    let stored: Vec<String> = loki.entries().into_iter().map(|e| e.line).collect();
    let valid: Vec<String> = (0..entries)
        .filter(|n| !too_long.contains(n))
        .map(message)
        .collect();
    assert_eq!(stored, valid, "the valid entries, each once");
    let refused: Vec<String> = too_long.iter().map(|&n| message(n)).collect();
    assert_eq!(dead_letter_messages(&dead), refused);
    let extra = loki.requests().len() - 1;
    // ⌈log₂ 200⌉ = 8: at most 2·8 + 1 extra requests per refused entry.
    assert!(extra <= too_long.len() * 17, "{extra} extra requests");
    println!("isolation without Loki's messages: {extra} extra requests for 7 of 200");
}

#[tokio::test]
async fn a_5xx_on_an_isolation_request_is_retried_not_dead_lettered() {
    let loki = LokiReceiver::start().await;
    loki.set_max_line(100);
    loki.hide_messages();
    // The push is refused (opaque), its first half is then answered 503 once.
    loki.plan(1, 503);
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.log");
    let options = format!(
        r#"endpoint = "{}"
labels = {{ app = "{{{{ app }}}}" }}
retry_initial_backoff = "10ms"
dead_letter = {{ type = "file", path = "{}" }}"#,
        loki.endpoint(),
        dead.display()
    );
    let long = "x".repeat(101);
    let events = (0..50)
        .map(|n| {
            let line = if n == 7 {
                long.clone()
            } else {
                format!("line {n}")
            };
            event("web", &line, *T0 + n)
        })
        .collect();
    send_all(&options, vec![events]).await;
    assert_eq!(dead_letter_messages(&dead), [long]);
    assert_eq!(loki.entries().len(), 49);
    let statuses: Vec<u16> = loki.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        &statuses[..3],
        [400, 503, 400],
        "the 503 was retried: {statuses:?}"
    );
}

#[tokio::test]
async fn entries_older_than_reject_older_than_are_dead_lettered_without_being_sent() {
    let loki = LokiReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.log");
    let options = format!(
        r#"endpoint = "{}"
labels = {{ app = "{{{{ app }}}}" }}
reject_older_than = "1h"
dead_letter = {{ type = "file", path = "{}" }}"#,
        loki.endpoint(),
        dead.display()
    );
    let two_hours = 2 * 3_600_000_000_000;
    send_all(
        &options,
        vec![
            vec![
                event("web", "old", *T0 - two_hours),
                event("web", "new", *T0),
            ],
            vec![event("web", "also old", *T0 - two_hours - 1)],
        ],
    )
    .await;
    let stored: Vec<String> = loki.entries().into_iter().map(|e| e.line).collect();
    assert_eq!(stored, ["new"]);
    let mut dead = dead_letter_messages(&dead);
    dead.sort();
    assert_eq!(dead, ["also old", "old"]);
    assert!(
        loki.requests()
            .iter()
            .all(|r| r.entries == 1 && r.status == 204),
        "nothing old was sent"
    );
}

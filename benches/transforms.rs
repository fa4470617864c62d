//! Throughput of each transform and of the chain parse(json) → level → redact, on
//! batches of 1000 realistic 200–300 byte lines. Criterion prints `thrpt` in
//! elements (events) per second; only `apply` is timed, not the batch copies.
//! `multiline` (a stateful transform: `process` is timed) runs on the standard
//! benchmark line shape with no trace, and on a trace-heavy input where it counts
//! input lines.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ferry::checkpoint::Delivery;
use ferry::event::{Batch, Event};
use ferry::transforms::{Stage, StatefulTransform, Transform, TransformConfig};

const BATCH: usize = 1000;
const LEVELS: [&str; 6] = ["info", "info", "info", "warn", "error", "debug"];
const PATHS: [&str; 4] = [
    "/api/orders",
    "/api/cart/items",
    "/api/users/42/profile",
    "/healthz",
];

/// A JSON line in the shape of `shared/bench/gen_json_logs.py`, widened to 200–300
/// bytes; `secret` puts one e-mail address in `msg`.
fn json_line(n: usize, secret: bool) -> String {
    let who = if secret {
        format!("user{}@example.com", n % 97)
    } else {
        format!("user #{}", n % 97)
    };
    format!(
        r#"{{"ts":"2026-11-20T10:{:02}:{:02}.{:03}Z","level":"{}","msg":"{} GET {} answered 200 in {}ms","req_id":{},"service":"checkout-api","region":"eu-west-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e{:04x}","agent":"Mozilla/5.0 (X11; Linux x86_64)"}}"#,
        (n / 60) % 60,
        n % 60,
        n % 1000,
        LEVELS[n % LEVELS.len()],
        who,
        PATHS[n % PATHS.len()],
        n % 900 + 3,
        n,
        n % 65536,
    )
}

/// A plain-text line of the same size, as a Java or Python service writes it.
fn text_line(n: usize, secret: bool) -> String {
    let who = if secret {
        format!("user{}@example.com", n % 97)
    } else {
        format!("user #{}", n % 97)
    };
    format!(
        "2026-11-20 10:{:02}:{:02}.{:03} {} [http-nio-8080-exec-{}] c.e.checkout.OrderController : {} GET {} answered 200 in {}ms (trace 4bf92f3577b34da6a3ce929d0e0e{:04x}, region eu-west-1, client web-frontend v2.14.3)",
        (n / 60) % 60,
        n % 60,
        n % 1000,
        LEVELS[n % LEVELS.len()].to_ascii_uppercase(),
        n % 16,
        who,
        PATHS[n % PATHS.len()],
        n % 900 + 3,
        n % 65536,
    )
}

fn batch(line: impl Fn(usize) -> String) -> Vec<Event> {
    (0..BATCH)
        .map(|n| {
            let mut e = Event::new("bench".into(), "file".into(), line(n), 0);
            e.stream = Some("stdout".into());
            e
        })
        .collect()
}

fn build(type_name: &str, options: &str) -> Stage {
    let value: toml::Value = toml::from_str(options).expect("bench options are TOML");
    let config = TransformConfig::deserialize_type(type_name, value)
        .expect("known type")
        .expect("valid options");
    config.validate().expect("consistent options");
    config.build("bench").expect("builds")
}

fn transform(type_name: &str, options: &str) -> Box<dyn Transform> {
    build(type_name, options)
        .into_pure()
        .expect("a pure transform")
}

fn multiline() -> Box<dyn StatefulTransform> {
    match build("multiline", "") {
        Stage::Stateful(transform) => transform,
        Stage::Pure(_) => unreachable!("multiline is stateful"),
    }
}

/// A line of the standard benchmark input (`shared/bench/gen_json_logs.py`).
fn standard_line(n: usize) -> String {
    const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "eve"];
    let s = n % 86400;
    format!(
        "{{\"ts\":\"2026-11-20T{:02}:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"msg\":\"user {}@example.com logged in from 10.1.{}.{}\",\"req_id\":{}}}",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        n % 1000,
        LEVELS[n % 6],
        USERS[n % 5],
        (n >> 8) & 255,
        n & 255,
        n
    )
}

/// Lines of four containers interleaved, nine in ten of them inside a trace (Java,
/// Python, Go or Node, 10–25 lines each).
fn trace_heavy() -> Vec<Event> {
    let trace = |n: usize| -> Vec<String> {
        let frames = 8 + n % 16;
        match n % 4 {
            0 => std::iter::once(format!(
                "java.lang.IllegalStateException: order {n} has no items"
            ))
            .chain((0..frames).map(|f| {
                format!(
                    "\tat com.example.shop.OrderService.step{f}(OrderService.java:{})",
                    80 + f
                )
            }))
            .chain(["\t... 12 more".to_string()])
            .collect(),
            1 => std::iter::once("Traceback (most recent call last):".to_string())
                .chain((0..frames / 2).flat_map(|f| {
                    [
                        format!("  File \"/app/worker.py\", line {}, in step{f}", 20 + f),
                        format!("    result = step{}(order)", f + 1),
                    ]
                }))
                .chain([format!("KeyError: 'items {n}'")])
                .collect(),
            2 => [
                format!("panic: runtime error: index out of range [{n}] with length 3"),
                String::new(),
                "goroutine 1 [running]:".into(),
            ]
            .into_iter()
            .chain((0..frames / 2).flat_map(|f| {
                [
                    format!("main.step{f}(0xc000012345, {{0x6b3a40, 0x{f}}})"),
                    format!("\t/app/main.go:{} +0x1d", 10 + f),
                ]
            }))
            .collect(),
            _ => std::iter::once(format!(
                "TypeError: Cannot read properties of undefined (reading 'id{n}')"
            ))
            .chain(
                (0..frames).map(|f| format!("    at step{f} (/app/src/orders.js:{}:22)", 10 + f)),
            )
            .collect(),
        }
    };
    let mut streams: Vec<std::vec::IntoIter<String>> = (0..4)
        .map(|c| {
            (0..40)
                .flat_map(|n| {
                    let mut lines = trace(n + c);
                    lines.push(standard_line(n));
                    lines
                })
                .collect::<Vec<_>>()
                .into_iter()
        })
        .collect();
    let mut events = Vec::new();
    while events.len() < BATCH {
        for (c, lines) in streams.iter_mut().enumerate() {
            let mut e = Event::new(
                "bench".into(),
                "ionet".into(),
                lines.next().unwrap_or_default(),
                0,
            );
            e.origin.instance = Some(format!("container-{c}"));
            e.stream = Some("stderr".into());
            events.push(e);
        }
    }
    events
}

fn run_stateful(c: &mut Criterion, name: &str, events: &[Event]) {
    let sizes: usize = events.iter().map(|e| e.message.len()).sum();
    println!("{name}: mean line {} bytes", sizes / events.len());
    let mut transform = multiline();
    let mut group = c.benchmark_group("transforms");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function(name, |b| {
        b.iter_batched(
            || Batch {
                events: events.to_vec(),
                delivery: Delivery::detached(),
            },
            |batch| black_box(transform.process(batch, tokio::time::Instant::now())),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn run(c: &mut Criterion, name: &str, events: &[Event], chain: &mut [Box<dyn Transform>]) {
    let sizes: usize = events.iter().map(|e| e.message.len()).sum();
    println!("{name}: mean line {} bytes", sizes / events.len());
    let mut group = c.benchmark_group("transforms");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function(name, |b| {
        b.iter_batched(
            || events.to_vec(),
            |mut batch| {
                for t in chain.iter_mut() {
                    t.apply(&mut batch);
                }
                black_box(batch)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn parsed(events: &[Event]) -> Vec<Event> {
    let mut events = events.to_vec();
    transform("parse", r#"format = "json""#).apply(&mut events);
    events
}

fn benches(c: &mut Criterion) {
    let json = batch(|n| json_line(n, false));
    let json_secret = batch(|n| json_line(n, true));
    let text = batch(|n| text_line(n, false));
    let text_secret = batch(|n| text_line(n, true));

    // Whatever runs first in this process measures about a third slower than the
    // same work run after it (a warm-up loop before it does not help; a fresh heap
    // is the likely cause). It is reported apart; the figures after it are those of
    // a process that has been running for a while, as an agent is.
    run(
        c,
        "parse_json_cold_start",
        &json,
        &mut [transform("parse", r#"format = "json""#)],
    );
    run(
        c,
        "parse_json",
        &json,
        &mut [transform("parse", r#"format = "json""#)],
    );
    run(
        c,
        "parse_auto_json",
        &json,
        &mut [transform("parse", r#"format = "auto""#)],
    );
    run(
        c,
        "level_from_field",
        &parsed(&json),
        &mut [transform("level", "")],
    );
    run(c, "level_from_text", &text, &mut [transform("level", "")]);
    run(c, "redact_no_secret", &text, &mut [transform("redact", "")]);
    run(
        c,
        "redact_one_secret",
        &text_secret,
        &mut [transform("redact", "")],
    );
    run(
        c,
        "redact_hash_one_secret",
        &text_secret,
        &mut [transform("redact", "mode = \"hash\"\nkey = \"bench\"")],
    );
    run(
        c,
        "filter",
        &parsed(&json),
        &mut [transform(
            "filter",
            r#"condition = { any = [{ level = ">= warn" }, { field = "service", equals = "billing" }] }"#,
        )],
    );
    // As the file source sends them: one file, one host.
    let file: std::sync::Arc<str> = "/var/log/app/input.log".into();
    let mut standard = batch(standard_line);
    for e in &mut standard {
        e.origin.file = Some(file.clone());
        e.origin.host = Some("bench-host".into());
    }
    run_stateful(c, "multiline_no_trace", &standard);
    run_stateful(c, "multiline_trace_heavy", &trace_heavy());
    // The default redact scans the message and every parsed field; `_msg_only`
    // narrows it to one field, as the chain ran before fields were scanned by default.
    for (name, events, redact) in [
        ("chain_no_secret", &json, ""),
        ("chain_one_secret", &json_secret, ""),
        ("chain_no_secret_msg_only", &json, r#"fields = ["msg"]"#),
    ] {
        run(
            c,
            name,
            events,
            &mut [
                transform("parse", r#"format = "json""#),
                transform("level", ""),
                transform("redact", redact),
            ],
        );
    }
}

criterion_group! {
    name = transforms;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(transforms);

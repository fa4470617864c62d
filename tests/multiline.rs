//! The `multiline` transform in real pipelines: the real binary reading a file of
//! traces interleaved with single lines, killed with SIGKILL mid-run and restarted
//! (every line inside its whole merged event, duplicates only of whole events from
//! the in-flight window); and an io.net stream whose two containers' traces arrive
//! interleaved, merged per container and stream.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/ionet_sim.rs"]
mod ionet_sim;

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_process::{Ferry, scaled, wait_until};
use serde_json::Value;

const HANG_GUARD: Duration = Duration::from_secs(600);

/// Item `n` of the input: one in five is a trace (Java, Python or Go in turn), the
/// others single lines. Every line names its item, so the output can be checked line
/// by line.
fn item(n: usize) -> Vec<String> {
    if n % 5 != 4 {
        return vec![format!(
            "2026-11-20 10:00:00.000 INFO [main] c.e.Shop : item {n:07} request handled in 12ms"
        )];
    }
    let frames = 2 + n % 7;
    match (n / 5) % 3 {
        0 => std::iter::once(format!(
            "java.lang.IllegalStateException: item {n:07} has no order"
        ))
        .chain((0..frames).map(|f| format!("\tat com.example.shop.Item{n}.step{f}(Item.java:{f})")))
        .chain([
            format!("Caused by: java.io.IOException: item {n:07} cause"),
            "\t... 4 more".into(),
        ])
        .collect(),
        1 => std::iter::once("Traceback (most recent call last):".to_string())
            .chain((0..frames).flat_map(|f| {
                [
                    format!("  File \"/app/item{n}.py\", line {f}, in step{f}"),
                    format!("    step{}(item_{n})", f + 1),
                ]
            }))
            .chain([format!("KeyError: 'item {n:07}'")])
            .collect(),
        _ => [
            format!("panic: item {n:07}: index out of range [5] with length 3"),
            String::new(),
            "goroutine 1 [running]:".into(),
        ]
        .into_iter()
        .chain((0..frames).flat_map(|f| {
            [
                format!("main.item{n}step{f}(0xc000012345)"),
                format!("\t/app/item{n}.go:{f} +0x1d"),
            ]
        }))
        .collect(),
    }
}

/// The item an output event belongs to, read from its first line.
fn item_of(message: &str) -> usize {
    let first = message.lines().next().unwrap_or("");
    let from_text = first
        .split_once("item ")
        .and_then(|(_, rest)| rest.get(..7))
        .and_then(|n| n.parse().ok());
    // A traceback's first line names nothing; its second line does.
    from_text.unwrap_or_else(|| {
        let second = message.lines().nth(1).unwrap_or("");
        second
            .split_once("/app/item")
            .and_then(|(_, rest)| rest.split_once('.'))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("an event of no item: {message:?}"))
    })
}

fn write_input(path: &Path, items: usize) -> usize {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    let mut lines = 0;
    for n in 0..items {
        for line in item(n) {
            writeln!(out, "{line}").unwrap();
            lines += 1;
        }
    }
    out.flush().unwrap();
    lines
}

/// Complete lines in the sink's output (cheaper than reading them).
fn output_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |bytes| bytes.iter().filter(|b| **b == b'\n').count())
}

fn output_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).expect("the sink writes JSON lines"))
        .collect()
}

#[test]
fn sigkill_while_traces_are_merged_loses_no_line_and_replays_only_whole_events() {
    let dir = tempfile::tempdir().unwrap();
    let items = 5 * scaled(10_000);
    let input = dir.path().join("app.log");
    let lines = write_input(&input, items);
    let out = dir.path().join("out.json");
    let (window, batch) = (32, 200);
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[api]
enabled = false

[sources.app]
type = "file"
include = ["{input}"]
poll_interval = "20ms"
max_in_flight_batches = {window}
batch_max_events = {batch}

[transforms.traces]
type = "multiline"
inputs = ["app"]

[transforms.tagged]
type = "level"
inputs = ["traces"]

[sinks.out]
type = "file"
inputs = ["tagged"]
path = "{out}"
encoding = "json"
"#,
            data = dir.path().join("data").display(),
            input = input.display(),
            out = out.display(),
        ),
    )
    .unwrap();

    // Kill ferry three times as the output grows, each time somewhere mid-file.
    let kills = 3;
    for k in 1..=kills {
        let ferry = Ferry::start(&config);
        let target = k * items / (kills + 1);
        wait_until(HANG_GUARD, "output to grow", || {
            output_lines(&out) >= target
        });
        ferry.kill();
    }
    let ferry = Ferry::start(&config);
    wait_until(HANG_GUARD, "every item delivered", || {
        if output_lines(&out) < items {
            return false;
        }
        let mut seen = vec![false; items];
        for event in output_events(&out) {
            seen[item_of(event["message"].as_str().unwrap())] = true;
        }
        seen.iter().all(|s| *s)
    });
    assert!(ferry.terminate().success());

    let events = output_events(&out);
    let mut copies = vec![0usize; items];
    for event in &events {
        let message = event["message"].as_str().unwrap();
        let n = item_of(message);
        assert_eq!(
            message,
            item(n).join("\n"),
            "item {n} is not one whole event"
        );
        let level = event["level"].as_str();
        if n % 5 == 4 {
            let expected = if (n / 5) % 3 == 2 { "fatal" } else { "error" };
            assert_eq!(level, Some(expected), "the level of trace {n}");
        }
        copies[n] += 1;
    }
    assert!(copies.iter().all(|c| *c >= 1), "an item was lost");
    let duplicates = events.len() - items;
    let bound = kills * window * batch;
    eprintln!(
        "{items} items ({lines} lines), {kills} kills, {} events out, {duplicates} duplicate events (bound {bound})",
        events.len()
    );
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates exceed {bound}"
    );
}

/// Traces of two io.net containers, arriving over four SSE streams at once, are
/// merged per container and stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ionet_stream_is_merged_per_container_and_stream() {
    let sim = ionet_sim::IonetSim::start(ionet_sim::SimConfig::default()).await;
    sim.add_container("c1", "running", "dev-1");
    sim.add_container("c2", "running", "dev-2");
    let java = |n: usize| {
        std::iter::once(format!("java.lang.IllegalStateException: order {n}"))
            .chain((0..5).map(|f| format!("\tat com.example.Orders.step{f}(Orders.java:{n})")))
            .collect::<Vec<_>>()
    };
    let python = |n: usize| {
        vec![
            "Traceback (most recent call last):".to_string(),
            format!("  File \"/app/jobs.py\", line {n}, in run"),
            "    total = price(order)".into(),
            format!("ValueError: job {n} failed"),
        ]
    };
    let go = |n: usize| {
        vec![
            format!("2026/11/20 10:00:00 http: panic serving 10.0.0.7:{n}: nil map"),
            format!("goroutine {n} [running]:"),
            "main.handler(0xc000012345)".into(),
            format!("\t/app/main.go:{n} +0x2a"),
        ]
    };
    let node = |n: usize| {
        std::iter::once(format!(
            "TypeError: Cannot read properties of undefined (reading 'id{n}')"
        ))
        .chain((0..4).map(|f| format!("    at step{f} (/app/src/users.js:{n}:{f})")))
        .collect::<Vec<_>>()
    };
    let count = 60;
    let mut expected: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (container, stream, trace) in [
        ("c1", "stdout", &java as &dyn Fn(usize) -> Vec<String>),
        ("c1", "stderr", &python),
        ("c2", "stdout", &go),
        ("c2", "stderr", &node),
    ] {
        let mut events = Vec::new();
        for n in 0..count {
            events.push(vec![format!("{container} {stream} single line {n}")]);
            events.push(trace(n));
        }
        sim.append(container, stream, events.iter().flatten());
        expected.insert(
            (container.to_string(), stream.to_string()),
            events.iter().map(|e| e.join("\n")).collect(),
        );
    }
    let total: usize = expected.values().map(Vec::len).sum();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let config_text = format!(
        r#"data_dir = "{data}"
[api]
enabled = false

[sources.io]
type = "ionet"
endpoint = "{endpoint}"
api_key = "{key}"
deployment_id = "{deployment}"
discovery_interval = "200ms"

[transforms.traces]
type = "multiline"
inputs = ["io"]
flush_timeout = "300ms"

[sinks.out]
type = "file"
inputs = ["traces"]
path = "{out}"
fsync = "none"
"#,
        data = dir.path().join("data").display(),
        endpoint = sim.url(),
        key = sim.config().api_key,
        deployment = sim.config().deployment_id,
        out = out.display(),
    );
    let config = ferry::topology::config::parse(&config_text, Path::new("test.toml"), |_| None)
        .expect("config is valid");
    let store = Arc::new(
        ferry::checkpoint::CheckpointStore::open(&dir.path().join("data")).expect("store opens"),
    );
    let pipeline = ferry::topology::start(
        &config,
        store,
        Arc::new(ferry::telemetry::Health::default()),
    )
    .expect("pipeline starts");
    let watched = out.clone();
    let stop = async move {
        while output_events(&watched).len() < total {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (outcome, _) =
        tokio::time::timeout(HANG_GUARD, pipeline.run(stop, Duration::from_secs(30)))
            .await
            .expect("all events within the hang guard");
    assert_eq!(outcome, ferry::topology::Outcome::Completed);

    let mut got: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for event in output_events(&out) {
        let key = (
            event["instance"].as_str().unwrap().to_string(),
            event["stream"].as_str().unwrap().to_string(),
        );
        got.entry(key)
            .or_default()
            .push(event["message"].as_str().unwrap().to_string());
    }
    assert_eq!(got, expected);
}

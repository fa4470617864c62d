//! The `scalingo` source against the Scalingo simulator, through the real pipeline
//! into a file sink: history and live lines merged once each through drops, expired
//! JWTs and signed URLs, 2 % 5xx and 429 with `Retry-After`; SIGKILL and SIGTERM
//! restarts; the request budget while reconnecting in a loop (scaled down, and
//! Scalingo's own 60 a minute over real minutes); the container filter,
//! `name`-keyed events and the SSE fallback; no secret in ferry's output or metrics.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/provider_harness.rs"]
mod provider_harness;
#[path = "support/scalingo_sim.rs"]
mod scalingo_sim;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_process::{Ferry, free_port, scaled};
use provider_harness::{Harness, eventually};
use scalingo_sim::{EventKey, Fault, Kind, ScalingoSim, Seen, SimConfig, message};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const CONTAINERS: [&str; 4] = ["web-1", "web-2", "worker-1", "router"];

fn source(sim: &ScalingoSim, extra: &str) -> String {
    let config = sim.config();
    format!(
        r#"type = "scalingo"
endpoint = "{url}"
auth_endpoint = "{url}"
api_token = "{token}"
app = "{app}"
idle_timeout = "30s"
retry_min_backoff = "50ms"
retry_max_backoff = "500ms"
{extra}"#,
        url = sim.url(),
        token = config.api_token,
        app = config.app,
    )
}

/// A published line as it comes out: (instance, message).
type Line = (String, String);

/// Publishes `count` lines round-robin over `containers`, numbered from `first`.
fn publish(sim: &ScalingoSim, containers: &[&str], first: usize, count: usize) -> Vec<Line> {
    (first..first + count)
        .map(|n| {
            let container = containers[n % containers.len()];
            let text = message(container, n, 100);
            sim.publish(container, [&text]);
            (container.to_string(), text)
        })
        .collect()
}

fn identity(event: &Value) -> Line {
    (
        event["instance"].as_str().unwrap_or("").to_string(),
        event["message"].as_str().unwrap().to_string(),
    )
}

/// Every line exactly once, each container's lines in published order.
fn assert_exactly(events: &[Value], expected: &[Line]) {
    let got: Vec<Line> = events.iter().map(identity).collect();
    let mut sorted_got = got.clone();
    sorted_got.sort();
    let mut sorted_expected = expected.to_vec();
    sorted_expected.sort();
    if sorted_got != sorted_expected {
        let got_set: BTreeSet<&Line> = got.iter().collect();
        let missing: Vec<&Line> = expected.iter().filter(|l| !got_set.contains(l)).collect();
        panic!(
            "{} events for {} lines; missing {}: {:?}",
            got.len(),
            expected.len(),
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
    }
    for container in CONTAINERS {
        let of = |lines: &[Line]| -> Vec<String> {
            lines
                .iter()
                .filter(|(c, _)| c == container)
                .map(|(_, m)| m.clone())
                .collect()
        };
        assert_eq!(of(&got), of(expected), "{container}: order");
    }
}

async fn wait_distinct(harness: &Harness, expected: &[Line]) -> Vec<Value> {
    let wanted: BTreeSet<&Line> = expected.iter().collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let events = harness.events();
        let got: BTreeSet<Line> = events.iter().map(identity).collect();
        if wanted.iter().all(|l| got.contains(*l)) {
            return events;
        }
        if Instant::now() > deadline {
            let missing: Vec<&&Line> = wanted.iter().filter(|l| !got.contains(**l)).collect();
            let log = std::fs::read_to_string(harness.dir.path().join("stderr.log"));
            panic!(
                "{} of {} lines missing, e.g. {:?}\nferry's log:\n{}",
                missing.len(),
                wanted.len(),
                &missing[..missing.len().min(5)],
                log.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_live_lines_arrive_once_through_drops_expiry_5xx_and_429() {
    let sim = Arc::new(
        ScalingoSim::start(SimConfig {
            token_ttl: Duration::from_secs(3),
            ..SimConfig::default()
        })
        .await,
    );
    let mut expected = publish(&sim, &CONTAINERS, 0, 300);
    // Identical lines at one timestamp are delivered as often as they were sent.
    let same = sim.clock() + 1000;
    for _ in 0..2 {
        sim.publish_at(same, "web-2", "the same line twice");
        expected.push(("web-2".into(), "the same line twice".into()));
    }
    let harness = Harness::new();
    let running = harness.start(&source(&sim, "resume_lines = 3000"));
    harness.wait_for(expected.len(), WAIT).await;

    sim.set_error_rate(20, 11);
    let live = scaled(1500);
    let publisher = {
        let sim = Arc::clone(&sim);
        tokio::spawn(async move {
            let mut lines = Vec::new();
            for batch in 0..30 {
                lines.extend(publish(
                    &sim,
                    &CONTAINERS,
                    300 + batch * live / 30,
                    live / 30,
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            lines
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for fault in [
        Fault::DropAfter(5),
        Fault::Status(429, Some("1".into())),
        Fault::CloseAfter(4),
    ] {
        sim.push_fault(fault);
    }
    sim.disconnect_all();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sim.expire_urls();
    sim.disconnect_all();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    sim.expire_tokens();
    sim.expire_urls();
    sim.disconnect_all();
    expected.extend(publisher.await.unwrap());
    sim.set_error_rate(0, 0);
    let second = sim.clock() + 1;
    for _ in 0..2 {
        sim.publish_at(second, "web-1", "again the same line");
        expected.push(("web-1".into(), "again the same line".into()));
    }
    wait_distinct(&harness, &expected).await;
    harness.wait_quiet(Duration::from_millis(1000)).await;
    assert!(running.stop().await.success());

    let events = harness.events();
    assert_exactly(&events, &expected);
    let first = &events[0];
    assert_eq!(first["provider"], "scalingo");
    assert_eq!(first["app"], "my-app");
    assert_eq!(first["instance"], "web-1");
    assert_eq!(first["component"], "web");
    assert_eq!(first["timestamp"], "2026-03-01T00:00:00.001250000Z");
    let router = events.iter().find(|e| e["instance"] == "router").unwrap();
    assert_eq!(router["component"], "router");

    let requests = sim.requests();
    let count = |kind: Kind, status: u16| {
        requests
            .iter()
            .filter(|r| r.view == kind && r.status == status)
            .count()
    };
    assert!(count(Kind::Exchange, 200) >= 2, "JWT renewed: {requests:?}");
    assert!(count(Kind::LogsUrl, 200) >= 3, "logs URL refetched");
    assert!(
        count(Kind::Stream, 401) + count(Kind::Dump, 401) >= 2,
        "expired signed URLs refused"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.status == 429 && matches!(r.view, Kind::Dump | Kind::Stream)),
        "a 429 was served"
    );
    let dumps: Vec<_> = requests.iter().filter(|r| r.view == Kind::Dump).collect();
    assert_eq!(
        dumps[0].param("n").as_deref(),
        Some("1000"),
        "first start: history_lines"
    );
    assert!(
        dumps[1..]
            .iter()
            .all(|r| r.param("n").as_deref() == Some("3000")),
        "after an outage: resume_lines"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.view == Kind::Stream)
            .all(|r| r.header("upgrade").is_some() && r.param("n").as_deref() == Some("0")),
        "streams are websockets from n=0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_and_sigterm_repeats_nothing() {
    let sim = Arc::new(ScalingoSim::start(SimConfig::default()).await);
    let mut expected = publish(&sim, &CONTAINERS, 0, 1000);
    let harness = Harness::new();
    // After the kill, the history read must reach back over the burst.
    let config = source(&sim, "resume_lines = 30000");
    // The first start ships the last `history_lines` (1000): all of them.
    let mut ferry = harness.start(&config);
    harness.wait_for(1000, WAIT).await;
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let publisher = {
        let (sim, running) = (Arc::clone(&sim), Arc::clone(&running));
        tokio::spawn(async move {
            let mut lines = Vec::new();
            let mut n = 1000;
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                lines.extend(publish(&sim, &CONTAINERS, n, 25));
                n += 25;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            lines
        })
    };

    // Killed while a burst is on its way: batches are in flight.
    let burst = scaled(20_000);
    expected.extend(publish(&sim, &CONTAINERS, 2_000_000, burst));
    harness.wait_for(3000, WAIT).await;
    ferry.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ferry = harness.start(&config);
    harness.wait_for(harness.events().len() + 1500, WAIT).await;
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    expected.extend(publisher.await.unwrap());
    let before_term = wait_distinct(&harness, &expected).await;
    harness.wait_quiet(Duration::from_millis(500)).await;
    assert!(ferry.terminate().success());

    // Killed mid-stream: nothing lost, and only batches in flight repeated.
    let events = harness.events();
    let distinct: BTreeSet<Line> = events.iter().map(identity).collect();
    assert_eq!(
        distinct.len(),
        expected.len(),
        "no line lost, none invented"
    );
    let duplicates = events.len() - distinct.len();
    println!(
        "SIGKILL: {duplicates} duplicates of {} lines",
        expected.len()
    );
    assert!(
        duplicates <= 32 * 1000,
        "duplicates bounded by the in-flight window"
    );
    assert!(before_term.len() <= events.len());

    // Stopped cleanly: lines logged while down come once, nothing repeats.
    let shipped = events.len();
    let down = publish(&sim, &CONTAINERS, 1_000_000, 500);
    let mut ferry = harness.start(&config);
    harness.wait_for(shipped + down.len(), WAIT).await;
    harness.wait_quiet(Duration::from_millis(1000)).await;
    assert!(ferry.terminate().success());
    let after: Vec<Line> = harness.events()[shipped..].iter().map(identity).collect();
    assert_eq!(
        after, down,
        "exactly the lines logged while stopped, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_budget_holds_while_reconnecting_in_a_loop() {
    let window = Duration::from_secs(3);
    let sim = ScalingoSim::start(SimConfig {
        drops: Some(3),
        api_limit: 10,
        api_window: window,
        ..SimConfig::default()
    })
    .await;
    let extra = "rate_limit = 10\nrate_limit_window = \"3s\"\nresume_lines = 2000";
    let pause = Duration::from_millis(250);
    let requests = publish_while_reconnecting(&sim, extra, scaled(40), pause, false).await;
    assert_within_budget(&requests, 10, window, 5);
}

/// The issue's own figure, over real minutes: with Scalingo's default budget (60
/// API calls a minute) and every stream cut each second for 80 s — reconnects that
/// would want well over 60 calls a minute — no minute holds more than 60 requests
/// (token exchanges, logs URLs, dumps and streams alike), and no line is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_60_calls_in_any_minute_while_every_stream_is_cut_each_second() {
    let sim = ScalingoSim::start(SimConfig::default()).await;
    let pause = Duration::from_secs(1);
    let requests = publish_while_reconnecting(&sim, "", scaled(80), pause, true).await;
    assert_within_budget(&requests, 60, Duration::from_secs(60), 20);
}

/// Publishes ten lines each `pause` for `rounds` rounds into ferry (with `extra`
/// options), cutting every stream after each round if `cut` (else the simulator's
/// own drops do); checks that every line arrived once; gives the requests.
async fn publish_while_reconnecting(
    sim: &ScalingoSim,
    extra: &str,
    rounds: usize,
    pause: Duration,
    cut: bool,
) -> Vec<Seen<Kind>> {
    let harness = Harness::new();
    let running = harness.start(&source(sim, extra));
    let mut expected = Vec::new();
    for round in 0..rounds {
        expected.extend(publish(sim, &CONTAINERS, round * 10, 10));
        tokio::time::sleep(pause).await;
        if cut {
            sim.disconnect_all();
        }
    }
    wait_distinct(&harness, &expected).await;
    harness.wait_quiet(Duration::from_millis(500)).await;
    running.stop().await;
    assert_exactly(&harness.events(), &expected);
    sim.requests()
}

/// The streams were opened at least `streams` times; no `window` (as the
/// simulator's clock saw the requests) holds more than `limit` requests, and none
/// was refused with a 429.
fn assert_within_budget(requests: &[Seen<Kind>], limit: usize, window: Duration, streams: usize) {
    let opened = requests.iter().filter(|r| r.view == Kind::Stream).count();
    assert!(opened >= streams, "the streams were reopened: {opened}");
    let busiest = (0..requests.len())
        .map(|i| {
            requests[i..]
                .iter()
                .take_while(|r| r.at.duration_since(requests[i].at) < window)
                .count()
        })
        .max()
        .unwrap_or(0);
    println!(
        "{} requests; at most {busiest} in any {window:?}",
        requests.len()
    );
    assert!(busiest <= limit, "{busiest} requests within one window");
    assert!(
        requests.iter().all(|r| r.status != 429),
        "the API never had to refuse"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_name_keyed_events_and_the_sse_fallback() {
    let sim = ScalingoSim::start(SimConfig {
        event_key: EventKey::Name,
        websocket: false,
        lines_per_event: 3,
        ..SimConfig::default()
    })
    .await;
    let harness = Harness::new();
    let running = harness.start(&source(&sim, "filter = \"web\""));
    eventually(WAIT, "a stream opens", || sim.open_streams() > 0).await;
    let published = publish(&sim, &["web-1", "worker-1", "web-2"], 0, 90);
    let web: Vec<Line> = published
        .into_iter()
        .filter(|(c, _)| c.starts_with("web"))
        .collect();
    wait_distinct(&harness, &web).await;
    harness.wait_quiet(Duration::from_millis(500)).await;
    running.stop().await;
    assert_exactly(&harness.events(), &web);
    let requests = sim.requests();
    let first_dump = requests.iter().find(|r| r.view == Kind::Dump).unwrap();
    assert_eq!(first_dump.status, 204, "nothing logged yet");
    assert!(
        requests
            .iter()
            .filter(|r| matches!(r.view, Kind::Dump | Kind::Stream))
            .all(|r| r.param("filter").as_deref() == Some("web"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_or_the_metrics() {
    // JWTs live long here, so that expired ones are renewed only when refused
    // (renewal ahead of `exp` is the first test's).
    let sim = ScalingoSim::start(SimConfig::default()).await;
    let harness = Harness::new();
    let port = free_port();
    let write_config = |source: &str| {
        let text = harness.config(source).replace(
            "enabled = false",
            &format!("address = \"127.0.0.1:{port}\""),
        );
        std::fs::write(harness.config_path(), text).unwrap();
    };

    // A refused API token: one clear error line, without the token.
    let wrong = "tk-us-wrong-9Zq7LmX2";
    write_config(
        &source(&sim, "auth_retry_interval = \"300ms\"").replace(&sim.config().api_token, wrong),
    );
    let ferry = Ferry::start(&harness.config_path());
    eventually(WAIT, "three refused exchanges", || {
        let requests = sim.requests();
        let refused = requests
            .iter()
            .filter(|r| r.view == Kind::Exchange && r.status == 401);
        refused.count() >= 3
    })
    .await;
    let metrics = ferry_process::http_get(port, "/metrics").unwrap().1;
    let log_path = ferry.log.clone();
    ferry.terminate();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains(wrong) && !metrics.contains(wrong), "{log}");
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("credentials refused"))
        .collect();
    assert_eq!(refused.len(), 1, "one error line:\n{log}");
    assert!(
        refused[0].contains("invalid API token ***"),
        "{}",
        refused[0]
    );

    // Working credentials through expired JWTs, expired signed URLs and 5xx.
    publish(&sim, &CONTAINERS, 0, 100);
    write_config(&source(&sim, ""));
    let ferry = Ferry::start(&harness.config_path());
    harness.wait_for(100, WAIT).await;
    sim.set_error_rate(100, 5);
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        if round % 2 == 0 {
            sim.expire_tokens();
        }
        sim.expire_urls();
        sim.disconnect_all();
        publish(&sim, &CONTAINERS, 100 + round * 10, 10);
    }
    sim.set_error_rate(0, 0);
    harness.wait_for(140, WAIT).await;
    let metrics = ferry_process::http_get(port, "/metrics").unwrap().1;
    let log_path = ferry.log.clone();
    ferry.terminate();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let requests = sim.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.view == Kind::LogsUrl && r.status == 401)
    );
    assert!(
        requests
            .iter()
            .any(|r| r.view != Kind::LogsUrl && r.status == 401)
    );
    let secrets = sim.secrets();
    assert!(secrets.len() >= 5, "{secrets:?}");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{secret} in the log:\n{log}"
        );
        assert!(
            !metrics.contains(secret.as_str()),
            "{secret} in the metrics"
        );
    }
    assert!(log.contains("refused the signed logs URL"), "{log}");
    let output = std::fs::read_to_string(harness.out_path()).unwrap();
    for secret in &secrets {
        assert!(!output.contains(secret.as_str()), "{secret} in the events");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_answers_like_scalingo() {
    let sim = ScalingoSim::start(SimConfig {
        api_limit: 2,
        ..SimConfig::default()
    })
    .await;
    let config = sim.config();
    let client = reqwest::Client::new();
    let exchanged: Value = client
        .post(format!("{}/v1/tokens/exchange", sim.url()))
        .basic_auth("", Some(&config.api_token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = exchanged["token"].as_str().unwrap();
    assert!(ferry::http::auth::jwt_lifetime(jwt).unwrap() > Duration::from_secs(3500));
    let logs_url = |app: &str| {
        client
            .get(format!("{}/v1/apps/{app}/logs", sim.url()))
            .bearer_auth(jwt)
    };
    let answer: Value = logs_url("my-app")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let signed = answer["logs_url"].as_str().unwrap().to_string();
    assert!(signed.contains(&format!("/apps/{}/logs?timestamp=", config.app_id)));
    let missing = logs_url("nope").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"resource": "app", "error": "not found"})
    );
    let limited = logs_url("my-app").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.text().await.unwrap().trim(), "Retry later");

    let empty = client.get(format!("{signed}&n=5")).send().await.unwrap();
    assert_eq!(empty.status(), 204);
    publish(&sim, &CONTAINERS, 0, 12);
    let dump = client
        .get(format!("{signed}&n=2&filter=web|router"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].contains("[web-2] web-2 message 0000009 "),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("[router] router message 0000011"),
        "{}",
        lines[1]
    );
    let parsed = ferry::sources::scalingo::line::parse(lines[1]).unwrap();
    assert_eq!(parsed.container, "router");
    let forged = signed.replace("token=", "token=0");
    let refused = client.get(&forged).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    sim.expire_urls();
    assert_eq!(client.get(&signed).send().await.unwrap().status(), 401);
    let counted: BTreeMap<String, usize> =
        sim.requests().iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(format!("{:?}", r.view)).or_default() += 1;
            m
        });
    assert_eq!(counted["LogsUrl"], 3);
}

//! The `ionet` source against the io.net simulator, through the real pipeline into a
//! file sink: delivery in order across drops, restarts (SIGKILL included),
//! ignored offsets, bare lines, rate limits, stalls and refused credentials.

#[path = "support/ionet_sim.rs"]
mod ionet_sim;
#[path = "support/provider_harness.rs"]
mod provider_harness;

use std::time::Duration;

use ionet_sim::{Fault, Framing, IonetSim, SimConfig, line};
use provider_harness::{Harness, messages_where};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn source(sim: &IonetSim, extra: &str) -> String {
    let config = sim.config();
    format!(
        r#"type = "ionet"
endpoint = "{}"
api_key = "{}"
deployment_id = "{}"
idle_timeout = "5s"
retry_min_backoff = "50ms"
retry_max_backoff = "500ms"
discovery_interval = "200ms"
{extra}"#,
        sim.url(),
        config.api_key,
        config.deployment_id
    )
}

fn lines(stream: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| line(stream, n, 80)).collect()
}

/// The messages of one container stream, in output order.
fn stream_of<'a>(events: &'a [Value], container: &str, stream: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e["instance"] == container && e["stream"] == stream)
        .map(|e| e["message"].as_str().unwrap())
        .collect()
}

fn assert_exactly(events: &[Value], container: &str, stream: &str, expected: &[String]) {
    let got = stream_of(events, container, stream);
    assert_eq!(got.len(), expected.len(), "{container}/{stream}: count");
    assert!(
        got.iter().zip(expected).all(|(g, e)| g == e),
        "{container}/{stream}: order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_containers_are_followed_in_order_through_drops() {
    let sim = IonetSim::start(SimConfig::default()).await;
    sim.add_container("c1", "running", "dev-1");
    sim.add_container("c2", "running", "dev-2");
    sim.add_event("c1", "2026-11-20T09:00:01Z", "Pulling image");
    sim.add_event("c1", "2026-11-20T09:00:05Z", "Container started");
    let c1_out = lines("out", 0..500);
    let c1_err = lines("err", 0..300);
    let c2_out = lines("c2", 0..200);
    sim.append("c1", "stdout", &c1_out);
    sim.append("c1", "stderr", &c1_err);
    sim.append("c2", "stdout", &c2_out);
    sim.push_fault(Fault::DropAfter(100));
    sim.push_fault(Fault::DropAfter(37));
    sim.push_fault(Fault::DropAfter(0));

    let harness = Harness::new();
    let running = harness.start(&source(&sim, ""));
    harness.wait_for(1002, WAIT).await;
    sim.add_container("c3", "running", "dev-3");
    let c3_err = lines("c3", 0..50);
    sim.append("c3", "stderr", &c3_err);
    let events = harness.wait_for(1052, WAIT).await;
    assert!(running.stop().await.success());

    assert_eq!(events.len(), 1052, "no duplicates");
    assert_exactly(&events, "c1", "stdout", &c1_out);
    assert_exactly(&events, "c1", "stderr", &c1_err);
    assert_exactly(&events, "c2", "stdout", &c2_out);
    assert_exactly(&events, "c3", "stderr", &c3_err);
    let system = messages_where(&events, "stream", "system");
    assert_eq!(system, ["Pulling image", "Container started"]);
    let first = &events.iter().find(|e| e["instance"] == "c2").unwrap();
    assert_eq!(first["provider"], "ionet");
    assert_eq!(first["deployment"], sim.config().deployment_id);
    assert_eq!(first["host"], "dev-2");
    assert_eq!(first["source"], "src");
    let resumed: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.offset.is_some())
        .collect();
    assert!(
        !resumed.is_empty(),
        "drops resumed with ?offset=: {:?}",
        sim.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_committed_offset() {
    let sim = IonetSim::start(SimConfig::default()).await;
    sim.add_container("c1", "running", "dev-1");
    sim.add_event("c1", "2026-11-20T09:00:01Z", "Container started");
    let first = lines("out", 0..300);
    sim.append("c1", "stdout", &first);
    let harness = Harness::new();
    let config = source(&sim, "streams = [\"stdout\"]");
    let running = harness.start(&config);
    harness.wait_for(301, WAIT).await;
    assert!(running.stop().await.success());

    let second = lines("out", 300..600);
    sim.append("c1", "stdout", &second);
    let running = harness.start(&config);
    let events = harness.wait_for(601, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    let events_after = harness.events();
    assert_eq!(events_after.len(), events.len(), "nothing replayed late");
    let all: Vec<String> = first.into_iter().chain(second).collect();
    assert_exactly(&events_after, "c1", "stdout", &all);
    assert_eq!(
        messages_where(&events_after, "stream", "system").len(),
        1,
        "lifecycle event once"
    );
    let last = sim.requests().into_iter().last().unwrap();
    assert!(last.offset.unwrap() > 0, "second run asked for ?offset=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lines_without_ids_resume_by_byte_count() {
    let sim = IonetSim::start(SimConfig {
        framing: Framing::Bare,
        ids: false,
        ..SimConfig::default()
    })
    .await;
    sim.add_container("c1", "running", "dev-1");
    let expected = lines("bare", 0..400);
    sim.append("c1", "stdout", &expected);
    for n in [50, 120, 1] {
        sim.push_fault(Fault::DropAfter(n));
    }
    let harness = Harness::new();
    let running = harness.start(&source(
        &sim,
        "streams = [\"stdout\"]\ncontainer_ids = [\"c1\"]",
    ));
    let events = harness.wait_for(400, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_eq!(harness.events().len(), 400);
    assert_exactly(&events, "c1", "stdout", &expected);
}

async fn replay_is_skipped(framing: Framing, ids: bool) {
    let sim = IonetSim::start(SimConfig {
        framing,
        ids,
        honour_offset: false,
        ..SimConfig::default()
    })
    .await;
    sim.add_container("c1", "running", "dev-1");
    let first = lines("replayed", 0..200);
    sim.append("c1", "stdout", &first);
    sim.push_fault(Fault::DropAfter(150));
    let harness = Harness::new();
    let config = source(&sim, "streams = [\"stdout\"]\ncontainer_ids = [\"c1\"]");
    let running = harness.start(&config);
    harness.wait_for(200, WAIT).await;
    running.stop().await;
    let second = lines("replayed", 200..260);
    sim.append("c1", "stdout", &second);
    let running = harness.start(&config);
    harness.wait_for(260, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    let all: Vec<String> = first.into_iter().chain(second).collect();
    assert_exactly(&harness.events(), "c1", "stdout", &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_offset_replay_is_skipped_by_id() {
    replay_is_skipped(Framing::Sse, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_offset_replay_is_skipped_without_ids() {
    replay_is_skipped(Framing::Bare, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_stalls_reconnect() {
    let sim = IonetSim::start(SimConfig::default()).await;
    sim.add_container("c1", "running", "dev-1");
    let expected = lines("out", 0..100);
    sim.append("c1", "stdout", &expected);
    sim.push_fault(Fault::Status(429, Some("2".into())));
    sim.push_fault(Fault::Stall(Duration::from_secs(30)));
    sim.push_fault(Fault::Status(503, None));
    let harness = Harness::new();
    let config = source(
        &sim,
        "streams = [\"stdout\"]\ncontainer_ids = [\"c1\"]\nidle_timeout = \"500ms\"",
    )
    .replace("idle_timeout = \"5s\"\n", "");
    let running = harness.start(&config);
    let events = harness.wait_for(100, WAIT).await;
    running.stop().await;
    assert_exactly(&events, "c1", "stdout", &expected);
    let requests = sim.requests();
    assert_eq!(requests[0].status, 429);
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_millis(1900),
        "Retry-After: 2 waited only {waited:?}"
    );
    assert_eq!(requests[1].status, 200, "the stalled connection");
    assert_eq!(requests[2].status, 503, "idle timeout reconnected");
    assert_eq!(requests.len(), 4, "no tight loop: {requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_retry_field_sets_the_reconnect_delay() {
    let sim = IonetSim::start(SimConfig {
        retry_ms: Some(1500),
        ..SimConfig::default()
    })
    .await;
    sim.add_container("c1", "running", "dev-1");
    let expected = lines("out", 0..20);
    sim.append("c1", "stdout", &expected);
    sim.push_fault(Fault::DropAfter(5));
    let harness = Harness::new();
    let running = harness.start(&source(
        &sim,
        "streams = [\"stdout\"]\ncontainer_ids = [\"c1\"]",
    ));
    harness.wait_for(20, WAIT).await;
    running.stop().await;
    assert_exactly(&harness.events(), "c1", "stdout", &expected);
    let requests = sim.requests();
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_millis(1400),
        "retry: 1500 waited only {waited:?}"
    );
    assert_eq!(
        requests[1].offset,
        Some(5 * 81),
        "resumed after the fifth line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_is_retried_slowly_until_it_works_again() {
    let sim = IonetSim::start(SimConfig::default()).await;
    sim.add_container("c1", "running", "dev-1");
    sim.append("c1", "stdout", lines("out", 0..10));
    sim.expire_key(true);
    let harness = Harness::new();
    let config = source(
        &sim,
        "streams = [\"stdout\"]\ncontainer_ids = [\"c1\"]\nauth_retry_interval = \"400ms\"",
    );
    let running = harness.start(&config);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let refused = sim.requests().iter().filter(|r| r.status == 401).count();
    assert!((2..=4).contains(&refused), "slow retries, got {refused}");
    sim.expire_key(false);
    harness.wait_for(10, WAIT).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_one_clear_error_line_without_the_key() {
    let sim = IonetSim::start(SimConfig::default()).await;
    sim.add_container("c1", "running", "dev-1");
    let harness = Harness::new();
    let secret = "wrong-key-7Hq9ZpX";
    let config = source(
        &sim,
        "container_ids = [\"c1\"]\nauth_retry_interval = \"300ms\"",
    )
    .replace(&sim.config().api_key, secret);
    let mut ferry = harness.start(&config);
    let deadline = std::time::Instant::now() + WAIT;
    while sim.requests().iter().filter(|r| r.status == 401).count() < 3 {
        assert!(std::time::Instant::now() < deadline, "no retries seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ferry.terminate();
    let stderr = ferry.stderr();
    assert!(!stderr.contains(secret), "secret leaked:\n{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("credentials refused"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line for the stream:\n{stderr}");
    assert!(errors[0].contains("401"), "{}", errors[0]);
    assert!(errors[0].contains("Invalid API key ***"), "{}", errors[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_error_is_reported_with_the_providers_detail() {
    let sim = IonetSim::start(SimConfig::default()).await;
    sim.add_container("c1", "running", "dev-1");
    let harness = Harness::new();
    let config =
        source(&sim, "container_ids = [\"c1\"]").replace(&sim.config().deployment_id, "not-a-uuid");
    let mut ferry = harness.start(&config);
    let deadline = std::time::Instant::now() + WAIT;
    while sim.requests().iter().filter(|r| r.status == 422).count() < 2 {
        assert!(std::time::Instant::now() < deadline, "no 422 seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ferry.terminate();
    let stderr = ferry.stderr();
    assert!(
        stderr.contains(
            "HTTP 422 Unprocessable Entity: path.deployment_id: value is not a valid uuid"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_resume_from_the_committed_cursor() {
    let sim = IonetSim::start(SimConfig::default()).await;
    sim.add_container("c1", "running", "dev-1");
    let first = lines("out", 0..2000);
    sim.append("c1", "stdout", &first);
    let harness = Harness::new();
    let config = source(&sim, "streams = [\"stdout\"]\ncontainer_ids = [\"c1\"]");

    // Killed while idle: everything delivered was committed, so nothing repeats.
    let mut ferry = harness.start(&config);
    harness.wait_for(2000, WAIT).await;
    harness.wait_quiet(Duration::from_millis(2000)).await;
    ferry.kill9();
    let cursor = &harness.checkpoints()["src"][format!("{}/c1/stdout", sim.config().deployment_id)];
    assert!(
        cursor["offset"].as_u64().unwrap() > 0,
        "committed: {cursor}"
    );
    let second = lines("out", 2000..4000);
    sim.append("c1", "stdout", &second);
    let mut ferry = harness.start(&config);
    harness.wait_for(4000, WAIT).await;
    harness.wait_quiet(Duration::from_millis(500)).await;
    ferry.terminate();
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_exactly(&harness.events(), "c1", "stdout", &all);

    // Killed mid-stream: nothing is lost; only what was in flight may repeat.
    let third = lines("out", 4000..40000);
    sim.append("c1", "stdout", &third);
    let mut ferry = harness.start(&config);
    harness.wait_for(6000, WAIT).await;
    ferry.kill9();
    let mut ferry = harness.start(&config);
    let deadline = std::time::Instant::now() + WAIT;
    let events = loop {
        let events = harness.events();
        let distinct: std::collections::BTreeSet<&str> =
            stream_of(&events, "c1", "stdout").into_iter().collect();
        if distinct.len() == 40000 {
            break events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} distinct lines",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ferry.terminate();
    let got = stream_of(&events, "c1", "stdout");
    assert!(
        got.len() - 40000 <= 32 * 1000,
        "duplicates bounded by the in-flight window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_events_survive_ten_disconnects() {
    let scale: f64 = std::env::var("FERRY_TEST_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let total = ((100_000.0 * scale) as usize).max(1000);
    let sim = IonetSim::start(SimConfig::default()).await;
    sim.add_container("c1", "running", "dev-1");
    let expected: Vec<String> = (0..total).map(|n| line("load", n, 100)).collect();
    sim.append("c1", "stdout", &expected);
    for _ in 0..10 {
        sim.push_fault(Fault::DropAfter(total / 11));
    }
    let harness = Harness::new();
    let running = harness.start(&source(
        &sim,
        "streams = [\"stdout\"]\ncontainer_ids = [\"c1\"]",
    ));
    let events = harness.wait_for(total, WAIT * 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_eq!(harness.events().len(), total, "no duplicates");
    assert_exactly(&events, "c1", "stdout", &expected);
    let dropped = sim.requests().iter().filter(|r| r.offset.is_some()).count();
    assert!(
        dropped >= 10,
        "ten forced disconnects resumed, saw {dropped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_validates_like_fastapi() {
    let sim = IonetSim::start(SimConfig::default()).await;
    sim.add_container("c1", "running", "dev-1");
    let config = sim.config();
    let client = reqwest::Client::new();
    let logs = format!(
        "{}{}/deployment/{}/log/c1",
        sim.url(),
        ionet_sim::PREFIX,
        config.deployment_id
    );
    let bad_stream = client
        .get(format!("{logs}?stream=stdin"))
        .header("x-api-key", &config.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_stream.status(), 422);
    let body: Value = bad_stream.json().await.unwrap();
    assert_eq!(
        body["detail"][0]["loc"],
        serde_json::json!(["query", "stream"])
    );
    let no_key = client.get(&logs).send().await.unwrap();
    assert_eq!(no_key.status(), 422);
    let body: Value = no_key.json().await.unwrap();
    assert_eq!(body["detail"][0]["msg"], "field required");
    let unknown = client
        .get(format!(
            "{}{}/deployment/{}/log/nope",
            sim.url(),
            ionet_sim::PREFIX,
            config.deployment_id
        ))
        .header("x-api-key", &config.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let list: Value = client
        .get(format!(
            "{}{}/deployment/{}/containers",
            sim.url(),
            ionet_sim::PREFIX,
            config.deployment_id
        ))
        .header("x-api-key", &config.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"]["workers"][0]["container_id"], "c1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_goes_away_stops_being_followed() {
    let sim = IonetSim::start(SimConfig::default()).await;
    sim.add_container("c1", "running", "dev-1");
    sim.add_container("c2", "running", "dev-2");
    sim.append("c1", "stdout", lines("c1", 0..10));
    sim.append("c2", "stdout", lines("c2", 0..10));
    let harness = Harness::new();
    let running = harness.start(&source(&sim, "streams = [\"stdout\"]"));
    harness.wait_for(20, WAIT).await;
    sim.remove_container("c2");
    let c2_requests = || {
        sim.requests()
            .iter()
            .filter(|r| r.container == "c2")
            .count()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = c2_requests();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        c2_requests(),
        settled,
        "no more requests for a removed container"
    );
    sim.append("c1", "stdout", lines("c1", 10..20));
    harness.wait_for(30, WAIT).await;
    running.stop().await;
}

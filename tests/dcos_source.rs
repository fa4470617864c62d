//! The `dcos` source against the DC/OS simulator, through the real pipeline into a
//! file sink: journald units and task files in order across drops, exact resume
//! after restarts (SIGKILL included), the first task line without id, a refused
//! cursor, token renewal, Retry-After, refused credentials and 100k events.

#[path = "support/dcos_sim.rs"]
mod dcos_sim;
#[path = "support/provider_harness.rs"]
mod provider_harness;

use std::time::Duration;

use axum::http::StatusCode;
use dcos_sim::{DcosSim, Fault, SimConfig};
use provider_harness::Harness;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const MASTER: &str = "dcos-mesos-master.service";
const LOG: &str = "dcos-log.service";
const TASK: &str = "nginx.2f9d1c2e-9b0a-11e6-8e3a-0242ac110005";

fn source(sim: &DcosSim, extra: &str) -> String {
    format!(
        r#"type = "dcos"
endpoint = "{}"
token = "{}"
idle_timeout = "5s"
retry_min_backoff = "50ms"
retry_max_backoff = "500ms"
{extra}"#,
        sim.url(),
        sim.config().token
    )
}

fn entries(prefix: &str, range: std::ops::Range<usize>) -> Vec<(u8, String)> {
    range
        .map(|n| ((n % 8) as u8, format!("{prefix} entry {n:06}")))
        .collect()
}

fn messages(entries: &[(u8, String)]) -> Vec<String> {
    entries.iter().map(|(_, m)| m.clone()).collect()
}

fn task_lines(file: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|n| format!("{file} line {n:06} GET /index.html 200"))
        .collect()
}

fn component_of<'a>(events: &'a [Value], component: &str, stream: Option<&str>) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e["component"] == component && stream.is_none_or(|s| e["stream"] == s))
        .map(|e| e["message"].as_str().unwrap())
        .collect()
}

fn assert_exactly(got: Vec<&str>, expected: &[String], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: count");
    assert!(
        got.iter().zip(expected).all(|(g, e)| g == e),
        "{what}: order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_and_task_files_arrive_in_order_through_drops() {
    let sim = DcosSim::start(SimConfig {
        keepalive: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let master = entries("master", 0..200);
    sim.journal(MASTER, master[..100].to_vec());
    sim.journal(LOG, entries("log", 0..100));
    sim.journal(MASTER, master[100..].to_vec());
    sim.add_task(TASK, "fe406283-a2d2-4e1c-8d43-1d2b1d4f6a3e-S1");
    let stdout = task_lines("out", 0..150);
    let stderr = task_lines("err", 0..40);
    sim.task_lines(TASK, "stdout", &stdout);
    sim.task_lines(TASK, "stderr", &stderr);
    for n in [30, 1, 0] {
        sim.push_fault(Fault::DropAfter(n));
    }
    let harness = Harness::new();
    let running = harness.start(&source(
        &sim,
        &format!("components = [\"{MASTER}\"]\ntasks = [\"{TASK}\"]"),
    ));
    harness.wait_for(390, WAIT).await;
    let more = entries("master", 200..220);
    sim.journal(MASTER, more.clone());
    let events = harness.wait_for(410, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    assert_eq!(harness.events().len(), 410, "no duplicates");

    let all_master: Vec<String> = messages(&master)
        .into_iter()
        .chain(messages(&more))
        .collect();
    assert_exactly(
        component_of(&events, MASTER, None),
        &all_master,
        "master unit",
    );
    assert_exactly(
        component_of(&events, TASK, Some("stdout")),
        &stdout,
        "task stdout",
    );
    assert_exactly(
        component_of(&events, TASK, Some("stderr")),
        &stderr,
        "task stderr",
    );

    let journal = events
        .iter()
        .find(|e| e["message"] == "master entry 000003")
        .unwrap();
    assert_eq!(journal["provider"], "dcos");
    assert_eq!(journal["level"], "error", "PRIORITY 3");
    assert_eq!(journal["host"], sim.config().hostname);
    assert_eq!(journal["timestamp"], "2025-11-20T00:53:20.003000000Z");
    assert_eq!(journal["fields"]["transport"], "journal");
    let task = events.iter().find(|e| e["stream"] == "stderr").unwrap();
    assert_eq!(task["host"], "fe406283-a2d2-4e1c-8d43-1d2b1d4f6a3e-S1");
    assert!(task["instance"].as_str().unwrap().starts_with("c1f5-"));
    assert!(
        task["fields"]["framework_id"]
            .as_str()
            .unwrap()
            .ends_with("-0001")
    );
    let resumed = sim
        .requests()
        .iter()
        .filter(|r| r.last_event_id.is_some())
        .count();
    assert!(
        resumed >= 1,
        "drops resumed with Last-Event-ID: {:?}",
        sim.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_after_the_first_task_line_without_id_resumes_exactly() {
    let sim = DcosSim::start(SimConfig::default()).await;
    sim.add_task(TASK, "agent-S1");
    let lines = task_lines("out", 0..20);
    sim.task_lines(TASK, "stdout", &lines);
    sim.push_fault(Fault::DropAfter(1));
    let harness = Harness::new();
    let running = harness.start(&source(
        &sim,
        &format!("tasks = [\"{TASK}\"]\nfiles = [\"stdout\"]"),
    ));
    let events = harness.wait_for(20, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_exactly(component_of(&harness.events(), TASK, None), &lines, "task");
    assert_eq!(events.len(), 20);
    let redirected: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/agent/"))
        .collect();
    assert_eq!(redirected.len(), 2, "{redirected:?}");
    assert_eq!(
        redirected[1].last_event_id.as_deref(),
        Some(lines[0].len().to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_exactly_from_the_committed_cursors() {
    let sim = DcosSim::start(SimConfig::default()).await;
    sim.journal(MASTER, entries("master", 0..100));
    sim.add_task(TASK, "agent-S1");
    sim.task_lines(TASK, "stdout", task_lines("out", 0..50));
    let harness = Harness::new();
    let config = source(
        &sim,
        &format!("components = [\"{MASTER}\"]\ntasks = [\"{TASK}\"]\nfiles = [\"stdout\"]"),
    );
    let running = harness.start(&config);
    harness.wait_for(150, WAIT).await;
    running.stop().await;
    sim.journal(MASTER, entries("master", 100..130));
    sim.task_lines(TASK, "stdout", task_lines("out", 50..70));
    let running = harness.start(&config);
    harness.wait_for(200, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    let events = harness.events();
    assert_exactly(
        component_of(&events, MASTER, None),
        &messages(&entries("master", 0..130)),
        "unit",
    );
    assert_exactly(
        component_of(&events, TASK, None),
        &task_lines("out", 0..70),
        "task",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_cursor_falls_back_to_recent_entries_without_duplicates() {
    for status in [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::BAD_REQUEST] {
        a_cursor_refused_with(status).await;
    }
}

async fn a_cursor_refused_with(status: StatusCode) {
    let sim = DcosSim::start(SimConfig {
        refused_cursor_status: status,
        ..SimConfig::default()
    })
    .await;
    sim.journal(MASTER, entries("master", 0..100));
    let harness = Harness::new();
    let config = source(&sim, "journal = true\nfallback_entries = 50");
    let running = harness.start(&config);
    harness.wait_for(100, WAIT).await;
    running.stop().await;
    sim.rotate_journal();
    sim.journal(MASTER, entries("master", 100..120));
    let running = harness.start(&config);
    harness.wait_for(120, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    assert_exactly(
        component_of(&harness.events(), MASTER, None),
        &messages(&entries("master", 0..120)),
        "journal",
    );
    let requests = sim.requests();
    let refused = requests
        .iter()
        .position(|r| r.status == status.as_u16())
        .expect("cursor refused");
    assert_eq!(requests[refused + 1].query, "skip=-50");
    assert_eq!(requests[refused + 1].last_event_id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_login_token_is_renewed() {
    let sim = DcosSim::start(SimConfig::default()).await;
    sim.journal(LOG, entries("log", 0..10));
    let harness = Harness::new();
    let config = source(&sim, &format!("components = [\"{LOG}\"]")).replace(
        &format!("token = \"{}\"", sim.config().token),
        "uid = \"ferry\"\npassword = \"hunter2-dcos\"",
    );
    let running = harness.start(&config);
    harness.wait_for(10, WAIT).await;
    sim.expire_tokens();
    sim.disconnect_all();
    sim.journal(LOG, entries("log", 10..20));
    harness.wait_for(20, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_exactly(
        component_of(&harness.events(), LOG, None),
        &messages(&entries("log", 0..20)),
        "unit",
    );
    assert_eq!(sim.logins(), 2, "logged in again after the token expired");
    assert!(sim.requests().iter().any(|r| r.status == 401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_logs_in_with_a_signed_token() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
    use base64::Engine;
    let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let sim = DcosSim::start(SimConfig::default()).await;
    sim.set_config(|c| {
        c.service_accounts
            .insert("ferry-svc".into(), key.public_key().as_ref().to_vec());
    });
    sim.journal(LOG, entries("log", 0..5));
    let harness = Harness::new();
    let key_file = harness.dir.path().join("svc.pem");
    std::fs::write(&key_file, pem).unwrap();
    let config = source(&sim, &format!("components = [\"{LOG}\"]")).replace(
        &format!("token = \"{}\"", sim.config().token),
        &format!(
            "uid = \"ferry-svc\"\nservice_key_file = \"{}\"",
            key_file.display()
        ),
    );
    let running = harness.start(&config);
    harness.wait_for(5, WAIT).await;
    running.stop().await;
    assert_eq!(sim.logins(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let sim = DcosSim::start(SimConfig::default()).await;
    sim.journal(LOG, entries("log", 0..10));
    sim.push_fault(Fault::Status(429, Some("2".into())));
    sim.push_fault(Fault::Status(500, None));
    let harness = Harness::new();
    let running = harness.start(&source(&sim, &format!("components = [\"{LOG}\"]")));
    harness.wait_for(10, WAIT).await;
    running.stop().await;
    let requests = sim.requests();
    assert_eq!(requests[0].status, 429);
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_millis(1900),
        "Retry-After: 2 waited only {waited:?}"
    );
    assert_eq!(requests[1].status, 500);
    assert_eq!(requests.len(), 3, "no tight loop: {requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_one_clear_error_line_without_the_token() {
    let sim = DcosSim::start(SimConfig::default()).await;
    sim.journal(LOG, entries("log", 0..5));
    sim.add_task(TASK, "agent-S1");
    let harness = Harness::new();
    let secret = "eyJhbGciOiJSUzI1NiJ9.wrong-5Kq2.sig";
    let config = source(
        &sim,
        &format!("components = [\"{LOG}\"]\ntasks = [\"{TASK}\"]\nauth_retry_interval = \"300ms\""),
    )
    .replace(&sim.config().token, secret);
    let mut ferry = harness.start(&config);
    let deadline = std::time::Instant::now() + WAIT;
    while sim.requests().iter().filter(|r| r.status == 401).count() < 6 {
        assert!(std::time::Instant::now() < deadline, "no retries seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ferry.terminate();
    let stderr = ferry.stderr();
    assert!(!stderr.contains(secret), "token leaked:\n{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("credentials refused"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    assert!(
        errors[0].contains("401") && errors[0].contains("authentication token"),
        "{}",
        errors[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_resume_without_duplicates() {
    let sim = DcosSim::start(SimConfig::default()).await;
    sim.journal(MASTER, entries("master", 0..1500));
    sim.add_task(TASK, "agent-S1");
    sim.task_lines(TASK, "stdout", task_lines("out", 0..1000));
    let harness = Harness::new();
    let config = source(
        &sim,
        &format!("components = [\"{MASTER}\"]\ntasks = [\"{TASK}\"]\nfiles = [\"stdout\"]"),
    );
    let mut ferry = harness.start(&config);
    harness.wait_for(2500, WAIT).await;
    harness.wait_quiet(Duration::from_millis(2000)).await;
    ferry.kill9();
    sim.journal(MASTER, entries("master", 1500..2000));
    sim.task_lines(TASK, "stdout", task_lines("out", 1000..1500));
    let mut ferry = harness.start(&config);
    harness.wait_for(3500, WAIT).await;
    harness.wait_quiet(Duration::from_millis(500)).await;
    ferry.terminate();
    let events = harness.events();
    assert_exactly(
        component_of(&events, MASTER, None),
        &messages(&entries("master", 0..2000)),
        "unit",
    );
    assert_exactly(
        component_of(&events, TASK, None),
        &task_lines("out", 0..1500),
        "task",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_entries_survive_ten_disconnects() {
    let scale: f64 = std::env::var("FERRY_TEST_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let total = ((100_000.0 * scale) as usize).max(1000);
    let sim = DcosSim::start(SimConfig::default()).await;
    let expected = entries("load", 0..total);
    sim.journal(MASTER, expected.clone());
    for _ in 0..10 {
        sim.push_fault(Fault::DropAfter(total / 11));
    }
    let harness = Harness::new();
    let running = harness.start(&source(&sim, "journal = true"));
    harness.wait_for(total, WAIT * 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_exactly(
        component_of(&harness.events(), MASTER, None),
        &messages(&expected),
        "journal",
    );
    let resumed = sim
        .requests()
        .iter()
        .filter(|r| r.last_event_id.is_some())
        .count();
    assert_eq!(
        resumed, 10,
        "ten forced disconnects resumed with Last-Event-ID"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_speaks_the_documented_variants() {
    let sim = DcosSim::start(SimConfig::default()).await;
    sim.journal(MASTER, entries("master", 0..5));
    sim.journal(LOG, entries("log", 0..3));
    sim.add_task(TASK, "agent-S1");
    sim.task_lines(TASK, "stdout", ["one", "", "two"]);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let auth = format!("token={}", sim.config().token);
    let get = |path: &str, accept: &str| {
        client
            .get(format!("{}{path}", sim.url()))
            .header("authorization", &auth)
            .header("accept", accept)
    };
    let ndjson = get(
        &format!("/system/v1/logs/v2/component/{MASTER}?skip=-2"),
        "application/json",
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "skip=-2 gives the last two");
    assert_eq!(lines[1]["fields"]["MESSAGE"], "master entry 000004");
    let text = get("/system/v1/logs/v2/component?limit=1", "text/plain")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.ends_with(": master entry 000000\n"), "{text}");
    let filtered = get(
        &format!("/system/v1/logs/v2/component?filter=UNIT:{LOG}"),
        "application/json",
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert_eq!(filtered.lines().count(), 3);
    let bad = get(
        "/system/v1/logs/v2/component?filter=nocolon",
        "application/json",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    let none = get(
        "/system/v1/logs/v2/component?filter=UNIT:nope",
        "application/json",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(none.status(), 204);
    let unknown = get(
        "/system/v1/logs/v2/component?cursor=s%3Dnope",
        "text/event-stream",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(unknown.status(), 500);
    let redirect = get(
        &format!("/system/v1/logs/v2/task/{TASK}/file/stdout?cursor=BEG"),
        "text/plain",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(redirect.status(), 303);
    let location = redirect.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/system/v1/agent/agent-S1/logs/v2/task/frameworks/")
            && location.ends_with("/stdout?cursor=BEG")
    );
    let raw = get(&location, "text/plain")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(raw, "one\n\ntwo\n");
    let unauthenticated = client
        .get(format!("{}{location}", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let state: Value = get("/mesos/master/state", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["frameworks"][0]["tasks"][0]["id"], TASK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_task_is_read_to_its_end_then_left() {
    let sim = DcosSim::start(SimConfig::default()).await;
    sim.add_task(TASK, "agent-S1");
    sim.task_lines(TASK, "stdout", task_lines("out", 0..10));
    let harness = Harness::new();
    let config = source(
        &sim,
        &format!(
            "tasks = [\"{TASK}\"]\nfiles = [\"stdout\"]\ntask_poll_interval = \"100ms\"\nfinished_task_grace = \"500ms\""
        ),
    );
    let running = harness.start(&config);
    harness.wait_for(10, WAIT).await;
    sim.set_task_state(TASK, "TASK_FINISHED");
    sim.task_lines(TASK, "stdout", task_lines("out", 10..15));
    harness.wait_for(15, WAIT).await;
    let deadline = std::time::Instant::now() + WAIT;
    while sim.open_streams() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the finished task's stream stayed open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let requests = sim.requests().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sim.requests().len(),
        requests,
        "no reconnects to a finished task"
    );
    assert!(running.stop().await.success());
    assert_exactly(
        component_of(&harness.events(), TASK, None),
        &task_lines("out", 0..15),
        "task",
    );
}

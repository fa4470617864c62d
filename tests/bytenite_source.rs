//! The `bytenite` source against the ByteNite simulator, through the real
//! pipeline (the real binary where it is killed or its output and metrics are
//! read) into a file sink: jobs discovered and followed past their end, expiring
//! tokens, 5xx, 429, cut answers, SIGKILL and SIGTERM restarts, filters, the wire
//! variants, long jobs read in bounded polls, and no secret anywhere.

#[path = "support/bytenite_sim.rs"]
mod bytenite_sim;
#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/provider_harness.rs"]
mod provider_harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytenite_sim::{ByteniteSim, Fault, LogLine, Origin, SimConfig, rfc3339};
use ferry_process::{Ferry, free_port, http_get, metric, scaled};
use provider_harness::Harness;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
/// 2025-06-24T16:00:00Z, where the test jobs' clocks start.
const START: i64 = 1_750_780_800_000_000_000;

fn source(sim: &ByteniteSim, extra: &str) -> String {
    format!(
        r#"type = "bytenite"
endpoint = "{}"
api_key = "{}"
poll_interval = "100ms"
finished_job_grace = "1s"
retry_min_backoff = "50ms"
retry_max_backoff = "500ms"
auth_retry_interval = "300ms"
{extra}"#,
        sim.url(),
        sim.config().api_key
    )
}

/// Writes the lines of a test job and remembers what each sub-stream must ship.
#[derive(Default)]
struct Job {
    /// (component, instance, container) → messages in time order.
    expected: BTreeMap<(String, String, String), Vec<String>>,
    /// Per sub-stream, the time of its next line.
    clocks: BTreeMap<(String, String, String), i64>,
}

impl Job {
    /// Appends `count` lines of `origin` in `container` (10 ms apart), at `level`.
    fn append(
        &mut self,
        sim: &ByteniteSim,
        job: &str,
        origin: &Origin,
        container: &str,
        count: usize,
        level: &str,
    ) {
        let (component, instance) = match origin {
            Origin::Partitioner => ("partitioner", ""),
            Origin::Assembler => ("assembler", ""),
            Origin::Task(task) => ("taskrunner", task.as_str()),
        };
        let key = (
            component.to_string(),
            instance.to_string(),
            container.to_string(),
        );
        let clock = self.clocks.entry(key.clone()).or_insert(START);
        let expected = self.expected.entry(key).or_default();
        let mut lines = Vec::with_capacity(count);
        for _ in 0..count {
            let n = expected.len();
            let mut log = format!("{job} {component} {instance} {container} line {n:06} ");
            while log.len() < 120 {
                log.push('x');
            }
            lines.push(LogLine::new(log.clone(), *clock, level, container));
            expected.push(log);
            *clock += 10_000_000;
        }
        sim.append(job, origin.clone(), lines);
    }

    fn total(&self) -> usize {
        self.expected.values().map(Vec::len).sum()
    }
}

/// The shipped messages of every sub-stream, in output order.
fn shipped(events: &[Value]) -> BTreeMap<(String, String, String), Vec<String>> {
    let mut by_stream: BTreeMap<_, Vec<String>> = BTreeMap::new();
    for event in events {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let key = (
            text(&event["component"]),
            text(&event["instance"]),
            text(&event["fields"]["container"]),
        );
        by_stream
            .entry(key)
            .or_default()
            .push(text(&event["message"]));
    }
    by_stream
}

fn task(id: &str) -> Origin {
    Origin::Task(id.to_string())
}

/// Waits until `check` holds; panics after [`WAIT`].
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no logs request has come for `quiet`.
async fn until_polls_stop(sim: &ByteniteSim, quiet: Duration) {
    let mut count = sim.logs_requests().len();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sim.logs_requests().len();
        if now != count {
            (count, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            return;
        }
        assert!(since.elapsed() < WAIT, "polls never stopped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_ships_once_through_faults_expiring_tokens_and_its_end() {
    let sim = ByteniteSim::start(SimConfig {
        token_ttl: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await;
    sim.add_job("job-1", "img-gen-diffusers@v1");
    sim.start_job("job-1");
    let mut job = Job::default();
    job.append(
        &sim,
        "job-1",
        &Origin::Partitioner,
        "partitioner",
        20,
        "INFO",
    );
    for id in ["t0", "t1", "t2"] {
        job.append(&sim, "job-1", &task(id), "app", 100, "INFO");
    }
    job.append(&sim, "job-1", &task("t0"), "sidecar", 30, "DEBUG");
    sim.set_error_rate(20, 9);
    sim.push_fault(Fault::Status(429, Some("1".into())));
    sim.push_fault(Fault::DropAfter(40));
    sim.push_fault(Fault::CloseAfter(25));
    sim.push_fault(Fault::Status(503, None));

    let harness = Harness::new();
    let port = free_port();
    let config = harness.config(&source(&sim, "")).replace(
        "enabled = false",
        &format!("address = \"127.0.0.1:{port}\""),
    );
    std::fs::write(harness.config_path(), config).unwrap();
    let ferry = Ferry::start(&harness.config_path());

    for round in 0..20 {
        for id in ["t0", "t1", "t2"] {
            job.append(&sim, "job-1", &task(id), "app", 5, "ERROR");
        }
        if round == 8 {
            sim.expire_tokens();
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    job.append(&sim, "job-1", &Origin::Assembler, "assembler", 10, "INFO");
    sim.end_job("job-1", "JOB_STATE_COMPLETE");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Ingestion lag: lines keep arriving after `endedAt`.
    job.append(&sim, "job-1", &task("t2"), "app", 7, "WARN");
    job.append(&sim, "job-1", &Origin::Assembler, "assembler", 3, "INFO");

    let total = job.total();
    let events = harness.wait_for(total, WAIT).await;
    until_polls_stop(&sim, Duration::from_secs(2)).await;
    let events_after = harness.events();
    assert_eq!(events_after.len(), total, "no duplicates");
    assert_eq!(shipped(&events), job.expected, "every line once, in order");

    let first_task = events.iter().find(|e| e["instance"] == "t1").unwrap();
    assert_eq!(first_task["provider"], "bytenite");
    assert_eq!(first_task["component"], "taskrunner");
    assert_eq!(first_task["deployment"], "job-1");
    assert_eq!(first_task["app"], "img-gen-diffusers@v1");
    assert_eq!(first_task["level"], "info");
    assert_eq!(first_task["fields"]["container"], "app");
    assert_eq!(first_task["timestamp"], rfc3339(START, 9));
    let partitioner = events
        .iter()
        .find(|e| e["component"] == "partitioner")
        .unwrap();
    assert!(partitioner.get("instance").is_none());
    let sidecar = events
        .iter()
        .find(|e| e["fields"]["container"] == "sidecar")
        .unwrap();
    assert_eq!(sidecar["level"], "debug");

    let requests = sim.logs_requests();
    assert!(
        requests.iter().all(|r| r
            .authorization
            .as_deref()
            .is_some_and(|a| !a.starts_with("Bearer"))),
        "the token goes raw"
    );
    assert!(sim.refused() >= 1, "an expired token was refused");
    assert!(requests.iter().any(|r| r.status == 429));
    assert!(sim.exchanges() >= 3, "tokens renewed: {}", sim.exchanges());

    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let shipped_count = metric(
        port,
        "ferry_component_sent_events_total",
        "component_kind=\"source\",component_id=\"src\"",
    )
    .unwrap();
    assert_eq!(shipped_count as usize, total);
    let log = ferry.log_text();
    let mut secrets: BTreeSet<String> = requests
        .iter()
        .filter_map(|r| r.authorization.clone())
        .collect();
    secrets.insert(sim.config().api_key);
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret in the log:\n{log}"
        );
        assert!(
            !metrics.contains(secret.as_str()),
            "a secret in the metrics"
        );
        for event in &events_after {
            assert!(!event.to_string().contains(secret.as_str()));
        }
    }
    assert!(ferry.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_repeats_only_what_was_in_flight_and_sigterm_nothing() {
    let sim = ByteniteSim::start(SimConfig::default()).await;
    sim.add_job("job-k", "t@v1");
    sim.start_job("job-k");
    let mut job = Job::default();
    let per_task = scaled(5000);
    for id in ["t0", "t1", "t2"] {
        job.append(&sim, "job-k", &task(id), "app", per_task, "INFO");
    }
    let harness = Harness::new();
    // About 1000 new lines per poll, so that the kill lands while the job is
    // still being read, with pieces in flight.
    let config = source(&sim, "job_ids = [\"job-k\"]\nmax_poll_bytes = 200000");

    let mut ferry = harness.start(&config);
    harness.wait_for(per_task, WAIT).await;
    ferry.kill9();
    let at_kill = harness.events().len();
    let total = job.total();
    assert!(
        at_kill < total,
        "killed mid-job: {at_kill} of {total} shipped"
    );
    let mut ferry = harness.start(&config);
    until("every line after the SIGKILL", || {
        let events = harness.events();
        let distinct: BTreeSet<String> = events.iter().map(|e| e["message"].to_string()).collect();
        distinct.len() == total
    })
    .await;
    harness.wait_quiet(Duration::from_millis(700)).await;
    let events = harness.events();
    let duplicates = events.len() - total;
    println!("SIGKILL after {at_kill} lines: {duplicates} duplicates of {total} lines");
    assert!(duplicates <= 32 * 1000, "bounded by the in-flight window");
    let sets = |by_stream: BTreeMap<_, Vec<String>>| -> BTreeMap<_, BTreeSet<String>> {
        by_stream
            .into_iter()
            .map(|(key, logs)| (key, logs.into_iter().collect()))
            .collect()
    };
    assert_eq!(
        sets(shipped(&events)),
        sets(job.expected.clone()),
        "nothing lost"
    );

    // A clean stop commits everything delivered: nothing repeats.
    assert!(ferry.terminate().success());
    let before = harness.events().len();
    job.append(&sim, "job-k", &task("t1"), "app", 500, "INFO");
    let mut ferry = harness.start(&config);
    harness.wait_for(before + 500, WAIT).await;
    harness.wait_quiet(Duration::from_millis(700)).await;
    assert!(ferry.terminate().success());
    let events = harness.events();
    assert_eq!(events.len(), before + 500, "none duplicated after SIGTERM");
    let new: Vec<String> = events[before..]
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    let key = (
        "taskrunner".to_string(),
        "t1".to_string(),
        "app".to_string(),
    );
    assert_eq!(
        new,
        job.expected[&key][per_task..],
        "the new lines, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_follows_running_jobs_and_leaves_ended_ones() {
    let sim = ByteniteSim::start(SimConfig::default()).await;
    let mut job = Job::default();
    sim.add_job("old", "t@v1");
    sim.start_job("old");
    job.append(&sim, "old", &task("t0"), "app", 5, "INFO");
    sim.end_job("old", "JOB_STATE_FAILED");
    sim.add_job("run", "t@v1");
    sim.start_job("run");
    job.append(&sim, "run", &task("t0"), "app", 50, "INFO");
    sim.add_job("later", "t@v2");

    let harness = Harness::new();
    let running = harness.start(&source(&sim, ""));
    harness.wait_for(50, WAIT).await;
    let polls = |id: &str| {
        sim.logs_requests()
            .iter()
            .filter(|r| r.job_id.as_deref() == Some(id))
            .count()
    };
    assert_eq!(polls("later"), 0, "a new job has no logs to poll");
    sim.start_job("later");
    job.append(
        &sim,
        "later",
        &Origin::Partitioner,
        "partitioner",
        10,
        "INFO",
    );
    harness.wait_for(60, WAIT).await;

    sim.end_job("run", "JOB_STATE_COMPLETE");
    tokio::time::sleep(Duration::from_millis(400)).await;
    job.append(&sim, "run", &task("t0"), "app", 4, "INFO");
    harness.wait_for(64, WAIT).await;
    until("the ended job to be left", || {
        let last = sim
            .logs_requests()
            .iter()
            .rev()
            .find(|r| r.job_id.as_deref() == Some("run"))
            .map(|r| r.at);
        last.is_some_and(|at| at.elapsed() > Duration::from_millis(800))
    })
    .await;
    let run_polls = polls("run");
    sim.remove_job("later");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let later_polls = polls("later");
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;

    assert_eq!(polls("run"), run_polls, "no polls after the grace");
    assert_eq!(polls("later"), later_polls, "a removed job is left");
    assert_eq!(
        polls("old"),
        0,
        "jobs ended before ferry looked are left alone"
    );
    let events = harness.events();
    assert_eq!(events.len(), 64);
    let mut expected = job.expected.clone();
    expected
        .values_mut()
        .for_each(|logs| logs.retain(|l| !l.starts_with("old ")));
    assert_eq!(shipped(&events), expected);
    assert_eq!(
        events.iter().filter(|e| e["deployment"] == "later").count(),
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_wire_variants_are_honoured() {
    let sim = ByteniteSim::start(SimConfig {
        newest_first: false,
        omit_empty: false,
        level_numbers: true,
        expires_in_number: true,
        fraction_digits: vec![0, 3, 6, 9],
        ..SimConfig::default()
    })
    .await;
    sim.add_job("job-f", "t@v1");
    sim.start_job("job-f");
    let line = |log: &str, ms: i64, level: &str, container: &str| {
        LogLine::new(log, START + ms * 1_000_000 + 123_456_789, level, container)
    };
    sim.append(
        "job-f",
        Origin::Partitioner,
        [
            line("p info", 0, "INFO", "partitioner"),
            line("p debug", 1, "DEBUG", "partitioner"),
        ],
    );
    sim.append("job-f", Origin::Assembler, [line("a info", 2, "INFO", "")]);
    sim.append(
        "job-f",
        task("t1"),
        [
            line("t1 error", 3, "ERROR", "app"),
            line("t1 unknown", 4, "UNKNOWN", ""),
            line("t1 panic", 5, "PANIC", "app"),
            line("t1 info", 6, "INFO", "app"),
        ],
    );
    sim.append("job-f", task("t2"), [line("t2 error", 7, "ERROR", "app")]);
    let harness = Harness::new();
    let running = harness.start(&source(
        &sim,
        "job_ids = [\"job-f\"]\nservices = [\"taskrunner\", \"partitioner\"]\nlevels = [\"info\", \"error\", \"unknown\"]\ntask_ids = [\"t1\"]",
    ));
    let events = harness.wait_for(4, WAIT).await;
    harness.wait_quiet(Duration::from_millis(500)).await;
    running.stop().await;
    let events_after = harness.events();
    assert_eq!(events_after.len(), 4, "{events_after:#?}");
    let message = |e: &Value| e["message"].as_str().unwrap().to_string();
    let mut messages: Vec<String> = events.iter().map(message).collect();
    messages.sort();
    assert_eq!(messages, ["p info", "t1 error", "t1 info", "t1 unknown"]);
    let find = |text: &str| events.iter().find(|e| e["message"] == text).unwrap();
    assert_eq!(
        find("t1 unknown")["level"],
        Value::Null,
        "UNKNOWN is no level"
    );
    assert_eq!(find("t1 unknown")["fields"]["container"], "");
    assert_eq!(find("t1 error")["level"], "error");
    // Line n of a sub-stream has n % 4 × 3 fractional digits.
    assert_eq!(
        find("p info")["timestamp"],
        "2025-06-24T16:00:00.000000000Z"
    );
    assert_eq!(
        find("t1 error")["timestamp"],
        "2025-06-24T16:00:00.000000000Z"
    );
    assert_eq!(
        find("t1 unknown")["timestamp"],
        "2025-06-24T16:00:00.127000000Z"
    );
    assert_eq!(
        find("t1 info")["timestamp"],
        "2025-06-24T16:00:00.129456789Z"
    );

    let request = &sim.logs_requests()[0];
    assert_eq!(request.task_ids, ["t1"]);
    assert_eq!(
        request.levels,
        [
            Value::from("INFO"),
            Value::from("ERROR"),
            Value::from("UNKNOWN")
        ]
    );
    assert_eq!(
        request.services,
        [Value::from("TASKRUNNER"), Value::from("PARTITIONER")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_is_read_in_bounded_polls() {
    let sim = ByteniteSim::start(SimConfig::default()).await;
    sim.add_job("job-l", "t@v1");
    sim.start_job("job-l");
    let mut job = Job::default();
    let per_task = scaled(5000);
    for id in ["t0", "t1"] {
        job.append(&sim, "job-l", &task(id), "app", per_task, "INFO");
    }
    job.append(
        &sim,
        "job-l",
        &Origin::Partitioner,
        "partitioner",
        100,
        "INFO",
    );
    let harness = Harness::new();
    let config = source(&sim, "job_ids = [\"job-l\"]\nmax_poll_bytes = 200000")
        .replace("poll_interval = \"100ms\"", "poll_interval = \"1h\"");
    let running = harness.start(&config);
    let total = job.total();
    let events = harness.wait_for(total, WAIT).await;
    harness.wait_quiet(Duration::from_millis(300)).await;
    running.stop().await;
    assert_eq!(harness.events().len(), total);
    assert_eq!(shipped(&events), job.expected);
    let polls = sim.logs_requests().len();
    let lines_per_poll = 200_000 / (120 + 80);
    assert!(
        polls > total / lines_per_poll,
        "{polls} polls of at most {lines_per_poll} lines"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_one_clear_error_line_without_the_key() {
    let sim = ByteniteSim::start(SimConfig::default()).await;
    sim.add_job("job-r", "t@v1");
    let harness = Harness::new();
    let secret = "wrong-bytenite-key-Zq81";
    let config = source(&sim, "job_ids = [\"job-r\"]").replace(&sim.config().api_key, secret);
    let mut ferry = harness.start(&config);
    until("three refused exchanges", || sim.refused() >= 3).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    ferry.terminate();
    let stderr = ferry.stderr();
    assert!(!stderr.contains(secret), "secret leaked:\n{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("credentials refused"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line for the source:\n{stderr}");
    assert!(errors[0].contains("401"), "{}", errors[0]);
    assert!(
        errors[0].contains("access token exchange: invalid API key ***"),
        "{}",
        errors[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_answers_as_documented() {
    let sim = ByteniteSim::start(SimConfig::default()).await;
    sim.add_job("job-s", "t@v1");
    sim.start_job("job-s");
    sim.append(
        "job-s",
        task("t0"),
        [
            LogLine::new("first", START, "UNKNOWN", ""),
            LogLine::new("second", START + 1, "WARN", "app"),
        ],
    );
    let client = reqwest::Client::new();
    let url = sim.url();
    let exchange: Value = client
        .post(format!("{url}/v1/auth/access_token"))
        .json(&serde_json::json!({ "apiKey": sim.config().api_key }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(exchange["expiresIn"], "3600", "int64 as a JSON string");
    let token = exchange["token"].as_str().unwrap().to_string();
    let logs = |authorization: String, body: Value| {
        client
            .post(format!("{url}/v1/customer/logs"))
            .header("authorization", authorization)
            .json(&body)
            .send()
    };
    let bearer = logs(
        format!("Bearer {token}"),
        serde_json::json!({"jobId": "job-s"}),
    )
    .await
    .unwrap();
    assert_eq!(bearer.status(), 401, "a Bearer prefix is refused");
    let answer: Value = logs(token.clone(), serde_json::json!({"jobId": "job-s"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        answer.get("partitioner").is_none(),
        "empty services left out"
    );
    let lines = &answer["taskrunner"]["t0"]["logs"];
    assert_eq!(lines[0]["log"], "second", "newest first");
    assert!(lines[1].get("level").is_none() && lines[1].get("container").is_none());
    for (body, status) in [
        (serde_json::json!({}), 400),
        (
            serde_json::json!({"jobId": "job-s", "levels": ["LOUD"]}),
            400,
        ),
        (serde_json::json!({"jobId": "nope"}), 404),
    ] {
        let answer = logs(token.clone(), body).await.unwrap();
        assert_eq!(answer.status(), status);
    }
    let get = |path: &str| {
        client
            .get(format!("{url}{path}"))
            .header("authorization", &token)
            .send()
    };
    let job: Value = get("/v1/customer/jobs/job-s")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["job"]["state"], "JOB_STATE_RUNNING");
    assert!(job["job"].get("endedAt").is_none());
    sim.end_job("job-s", "JOB_STATE_COMPLETE");
    let list: Value = get("/v1/customer/jobs?pagination.limit=1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["state"], "JOB_STATE_COMPLETE");
    assert!(list["data"][0]["endedAt"].is_string());
    assert_eq!(list["pagination"]["hasNext"], false);
}

/// Each job holds one of the source's poll permits from its request until its
/// lines are shipped, so however many jobs it follows, at most two answers are
/// read at once (the source's memory is two answers' budgets); slow answers make
/// the polls of twenty jobs contend for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_jobs_are_polled_two_at_a_time_and_all_ship() {
    let sim = ByteniteSim::start(SimConfig {
        answer_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await;
    let ids: Vec<String> = (0..20).map(|n| format!("job-{n:02}")).collect();
    let mut expected = Vec::new();
    for id in &ids {
        sim.add_job(id, "t@v1");
        sim.start_job(id);
        let mut job = Job::default();
        job.append(&sim, id, &task("t0"), "app", scaled(40), "INFO");
        job.append(&sim, id, &Origin::Partitioner, "partitioner", 10, "INFO");
        expected.extend(job.expected.into_values().flatten());
    }
    let harness = Harness::new();
    let config = source(&sim, &format!("job_ids = {ids:?}"));
    let running = harness.start(&config);
    harness.wait_for(expected.len(), WAIT).await;
    harness.wait_quiet(Duration::from_millis(300)).await;
    running.stop().await;

    let mut delivered: Vec<String> = harness
        .events()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    delivered.sort();
    expected.sort();
    assert_eq!(delivered, expected, "every line of every job, once");
    let most = sim.most_logs_in_flight();
    assert!(
        (1..=2).contains(&most),
        "{most} logs answers were read at once; the source allows 2"
    );
}

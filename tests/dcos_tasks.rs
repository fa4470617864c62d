//! The `dcos` source's tasks against the DC/OS simulator: with `tasks` left empty,
//! the running tasks are discovered from Mesos state and new ones are picked up as
//! they start (tasks that had ended before ferry looked are left alone); a task
//! file truncated below the saved offset is read again from its start, after a
//! restart and while followed; a login token is renewed before its `exp`.

#[path = "support/dcos_sim.rs"]
mod dcos_sim;
#[path = "support/provider_harness.rs"]
mod provider_harness;

use std::time::Duration;

use dcos_sim::{DcosSim, SimConfig};
use provider_harness::{Harness, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn source(sim: &DcosSim, extra: &str) -> String {
    format!(
        r#"type = "dcos"
endpoint = "{}"
token = "{}"
files = ["stdout"]
task_poll_interval = "100ms"
finished_task_grace = "300ms"
retry_min_backoff = "50ms"
retry_max_backoff = "500ms"
{extra}"#,
        sim.url(),
        sim.config().token
    )
}

fn lines(task: &str, range: std::ops::Range<usize>, pad: usize) -> Vec<String> {
    range
        .map(|n| format!("{task} line {n:05} {}", "x".repeat(pad)))
        .collect()
}

fn of_task<'a>(events: &'a [Value], task: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e["component"] == task)
        .map(|e| e["message"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_tasks_are_discovered_and_new_ones_followed_as_they_start() {
    let sim = DcosSim::start(SimConfig::default()).await;
    sim.add_task("web.1", "agent-S1");
    sim.task_lines("web.1", "stdout", lines("web.1", 0..20, 10));
    sim.add_task("old.1", "agent-S1");
    sim.task_lines("old.1", "stdout", lines("old.1", 0..5, 10));
    sim.set_task_state("old.1", "TASK_FINISHED");
    let harness = Harness::new();
    let running = harness.start(&source(&sim, ""));
    harness.wait_for(20, WAIT).await;

    sim.add_task("worker.1", "agent-S2");
    sim.task_lines("worker.1", "stdout", lines("worker.1", 0..15, 10));
    harness.wait_for(35, WAIT).await;
    sim.task_lines("web.1", "stdout", lines("web.1", 20..30, 10));
    harness.wait_for(45, WAIT).await;

    // A task that starts and ends between two looks is still read.
    sim.add_task("batch.1", "agent-S2");
    sim.task_lines("batch.1", "stdout", lines("batch.1", 0..7, 10));
    sim.set_task_state("batch.1", "TASK_FINISHED");
    harness.wait_for(52, WAIT).await;

    // An ended task is left once its file is quiet.
    sim.set_task_state("web.1", "TASK_KILLED");
    sim.set_task_state("worker.1", "TASK_FAILED");
    eventually(WAIT, "streams of ended tasks closed", || {
        sim.open_streams() == 0
    })
    .await;
    running.stop().await;

    let events = harness.events();
    assert_eq!(of_task(&events, "web.1"), lines("web.1", 0..30, 10));
    assert_eq!(of_task(&events, "worker.1"), lines("worker.1", 0..15, 10));
    assert_eq!(of_task(&events, "batch.1"), lines("batch.1", 0..7, 10));
    assert!(
        of_task(&events, "old.1").is_empty(),
        "a task that ended before ferry looked is left alone"
    );
    assert_eq!(events.len(), 52);
    assert!(sim.state_requests() >= 3, "Mesos state polled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_task_file_is_read_again_from_its_start() {
    let sim = DcosSim::start(SimConfig::default()).await;
    let task = "web.1";
    sim.add_task(task, "agent-S1");
    let before = lines(task, 0..50, 80);
    sim.task_lines(task, "stdout", &before);
    let harness = Harness::new();
    let config = source(
        &sim,
        &format!("tasks = [\"{task}\"]\nidle_timeout = \"1s\""),
    );
    let running = harness.start(&config);
    harness.wait_for(50, WAIT).await;
    running.stop().await;

    // Rotated while ferry was stopped: shorter than the saved offset.
    sim.truncate_task_file(task, "stdout");
    let rotated = lines("rotated", 0..10, 5);
    sim.task_lines(task, "stdout", &rotated);
    let running = harness.start(&config);
    harness.wait_for(60, WAIT).await;

    // Rotated again while followed: the silent stream is reopened and checked.
    sim.truncate_task_file(task, "stdout");
    let again = lines("again", 0..3, 0);
    sim.task_lines(task, "stdout", &again);
    harness.wait_for(63, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;

    let expected: Vec<String> = before.into_iter().chain(rotated).chain(again).collect();
    assert_eq!(of_task(&harness.events(), task), expected);
    assert!(sim.browse_requests() >= 2, "sandbox listed before resuming");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_token_is_renewed_before_it_expires() {
    let sim = DcosSim::start(SimConfig {
        token_ttl: Some(Duration::from_secs(4)),
        ..SimConfig::default()
    })
    .await;
    sim.add_task("web.1", "agent-S1");
    sim.task_lines("web.1", "stdout", lines("web.1", 0..5, 10));
    let harness = Harness::new();
    let config = source(&sim, "").replace(
        &format!("token = \"{}\"", sim.config().token),
        "uid = \"ferry\"\npassword = \"hunter2-dcos\"",
    );
    let running = harness.start(&config);
    harness.wait_for(5, WAIT).await;
    // Mesos state is read every 100 ms: each read wants a valid token.
    eventually(WAIT, "a second login", || sim.logins() >= 2).await;
    running.stop().await;
    assert_eq!(
        of_task(&harness.events(), "web.1"),
        lines("web.1", 0..5, 10)
    );
    let refused = sim.state_requests_refused();
    assert_eq!(refused, 0, "renewed ahead of expiry, never refused");
}

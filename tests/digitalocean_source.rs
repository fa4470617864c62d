//! The `digitalocean` source against the App Platform simulator, through the real
//! pipeline (and the real binary where it is killed) into a file sink: every line
//! once and in order through drops, clean closes, a redeploy, expired URL tokens,
//! 5xx, 429 with `Retry-After` and the `ratelimit-*` headers; SIGKILL and SIGTERM
//! restarts; archives of finished phases; no secret in the output or the metrics.

#[path = "support/digitalocean_sim.rs"]
mod digitalocean_sim;
#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/provider_harness.rs"]
mod provider_harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use digitalocean_sim::{DigitalOceanSim, Fault, Kind, LiveScheme, Phase, SimConfig, message};
use provider_harness::{Harness, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn source(sim: &DigitalOceanSim, extra: &str) -> String {
    let config = sim.config();
    let mut lines = vec![
        "type = \"digitalocean\"".to_string(),
        format!("endpoint = \"{}\"", sim.url()),
        format!("token = \"{}\"", config.token),
        format!("app_id = \"{}\"", config.app_id),
    ];
    let defaults = [
        ("idle_timeout", "\"5s\""),
        ("retry_min_backoff", "\"50ms\""),
        ("retry_max_backoff", "\"500ms\""),
        ("discovery_interval", "\"300ms\""),
        ("finished_deployment_grace", "\"500ms\""),
    ];
    for (key, value) in defaults {
        if !extra.lines().any(|l| l.starts_with(&format!("{key} ="))) {
            lines.push(format!("{key} = {value}"));
        }
    }
    lines.push(extra.to_string());
    lines.join("\n")
}

fn messages(tag: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| message(tag, n, 80)).collect()
}

/// Appends `web` and `api` lines to a deployment's RUN log, interleaved in blocks.
fn append_interleaved(sim: &DigitalOceanSim, deployment: &str, web: &[String], api: &[String]) {
    let (mut w, mut a) = (web.chunks(50), api.chunks(30));
    loop {
        let (next_web, next_api) = (w.next(), a.next());
        if next_web.is_none() && next_api.is_none() {
            break;
        }
        if let Some(lines) = next_web {
            sim.append(deployment, "RUN", "web", lines);
        }
        if let Some(lines) = next_api {
            sim.append(deployment, "RUN", "api", lines);
        }
    }
}

/// The messages of one deployment's component, in output order.
fn stream_of<'a>(events: &'a [Value], deployment: &str, component: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e["deployment"] == deployment && e["component"] == component)
        .map(|e| e["message"].as_str().unwrap())
        .collect()
}

fn assert_exactly(events: &[Value], deployment: &str, component: &str, expected: &[String]) {
    let got = stream_of(events, deployment, component);
    assert_eq!(
        got.len(),
        expected.len(),
        "{deployment}/{component}: count (first {:?})",
        got.first()
    );
    for (n, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g, e, "{deployment}/{component}: line {n}");
    }
}

/// Live and archive URLs never see the access token.
fn assert_no_bearer_on_signed_urls(sim: &DigitalOceanSim) {
    let requests = sim.requests();
    assert!(requests.iter().any(|r| r.view == Kind::Live));
    for r in requests.iter().filter(|r| r.view != Kind::Api) {
        assert!(
            r.header("authorization").is_none(),
            "Authorization sent to {}",
            r.path
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_arrives_once_through_drops_and_a_redeploy() {
    let sim = DigitalOceanSim::start(SimConfig {
        lines_per_message: 3,
        ..SimConfig::default()
    })
    .await;
    sim.add_deployment("d1", Phase::Active);
    let web = messages("web", 0..500);
    let api = messages("api", 0..300);
    append_interleaved(&sim, "d1", &web[..400], &api);
    for fault in [
        Fault::DropAfter(40),
        Fault::CloseAfter(70),
        Fault::DropAfter(0),
    ] {
        sim.push_stream_fault(fault);
    }

    let harness = Harness::new();
    let running = harness.start(&source(&sim, ""));
    harness.wait_for(700, WAIT).await;
    sim.append("d1", "RUN", "web", &web[400..450]);
    harness.wait_for(750, WAIT).await;

    // A redeploy: the old socket stays open (doctl #1614); the old deployment
    // still logs a little, and the new one starts.
    sim.redeploy("d2");
    sim.append("d1", "RUN", "web", &web[450..]);
    let web2 = messages("web2", 0..200);
    let api2 = messages("api2", 0..100);
    append_interleaved(&sim, "d2", &web2, &api2);
    harness.wait_for(1100, WAIT).await;
    let events = harness.wait_quiet(Duration::from_millis(1500)).await;
    assert!(running.stop().await.success());

    assert_eq!(events.len(), 1100, "no duplicates");
    assert_exactly(&events, "d1", "web", &web);
    assert_exactly(&events, "d1", "api", &api);
    assert_exactly(&events, "d2", "web", &web2);
    assert_exactly(&events, "d2", "api", &api2);
    let first = &events[0];
    assert_eq!(first["provider"], "digitalocean");
    assert_eq!(first["app"], sim.config().app_id);
    assert_eq!(first["fields"]["log_type"], "RUN");
    let written = &sim.lines("d1", "RUN")[0];
    let stamp = written.split(' ').nth(1).unwrap();
    let expected = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
    let got = chrono::DateTime::parse_from_rfc3339(first["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(got, expected, "the provider's time");
    assert_no_bearer_on_signed_urls(&sim);
    let requests = sim.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.view == Kind::Archive && r.path.starts_with("/archive/d1/RUN/")),
        "the old deployment was read from its archive once it finished"
    );
    let d2_first = requests
        .iter()
        .find(|r| r.view == Kind::Api && r.path.contains("/deployments/d2/"))
        .unwrap();
    assert_eq!(
        d2_first.param("tail_lines").as_deref(),
        Some("-1"),
        "a new deployment from its start"
    );
    assert_eq!(d2_first.param("follow").as_deref(), Some("true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_that_closes_the_socket_is_followed_through_the_archive() {
    let sim = DigitalOceanSim::start(SimConfig {
        close_on_redeploy: true,
        live_scheme: LiveScheme::Http,
        doc_example_fields: true,
        ..SimConfig::default()
    })
    .await;
    sim.add_deployment("d1", Phase::Active);
    let before = messages("before", 0..200);
    sim.append("d1", "RUN", "web", &before);
    let harness = Harness::new();
    let running = harness.start(&source(&sim, "discovery_interval = \"10s\""));
    harness.wait_for(200, WAIT).await;

    sim.redeploy("d2");
    // Written as the old instances stopped, after their socket closed.
    let late = messages("late", 0..30);
    sim.append("d1", "RUN", "web", &late);
    let after = messages("after", 0..100);
    sim.append("d2", "RUN", "web", &after);
    harness.wait_for(330, WAIT).await;
    let events = harness.wait_quiet(Duration::from_millis(1500)).await;
    running.stop().await;

    let old: Vec<String> = before.into_iter().chain(late).collect();
    assert_exactly(&events, "d1", "web", &old);
    assert_exactly(&events, "d2", "web", &after);
    assert_eq!(events.len(), 330);
    assert_no_bearer_on_signed_urls(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_expired_urls_and_a_revoked_token_lose_nothing() {
    let sim = DigitalOceanSim::start(SimConfig {
        url_token_ttl: Some(Duration::from_millis(500)),
        ..SimConfig::default()
    })
    .await;
    sim.add_deployment("d1", Phase::Active);
    let web = messages("web", 0..3000);
    sim.append("d1", "RUN", "web", &web[..1000]);
    sim.set_error_rate(20, 9);
    sim.push_api_fault(Fault::Status(429, Some("2".into())));
    for n in [150, 300, 10] {
        sim.push_stream_fault(Fault::DropAfter(n));
    }
    sim.push_stream_fault(Fault::Status(503, None));
    let harness = Harness::new();
    let running = harness.start(&source(&sim, "auth_retry_interval = \"300ms\""));
    harness.wait_for(1000, WAIT).await;

    // The URL tokens expire; every reconnect must ask for new URLs.
    tokio::time::sleep(Duration::from_millis(600)).await;
    sim.disconnect_all();
    sim.append("d1", "RUN", "web", &web[1000..2000]);
    harness.wait_for(2000, WAIT).await;

    // The access token is refused for a while.
    sim.revoke_token(true);
    sim.disconnect_all();
    sim.append("d1", "RUN", "web", &web[2000..2500]);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    sim.revoke_token(false);
    sim.append("d1", "RUN", "web", &web[2500..]);
    harness.wait_for(3000, WAIT).await;
    let events = harness.wait_quiet(Duration::from_millis(1000)).await;
    running.stop().await;

    assert_exactly(&events, "d1", "web", &web);
    let requests = sim.requests();
    let api: Vec<_> = requests.iter().filter(|r| r.view == Kind::Api).collect();
    let limited = api.iter().find(|r| r.status == 429).unwrap();
    // Requests already on their way when the 429 came may arrive just after it.
    let too_soon = api.iter().filter(|r| {
        let after = r.at.saturating_duration_since(limited.at);
        after > Duration::from_millis(100) && after < Duration::from_millis(1900)
    });
    assert_eq!(too_soon.count(), 0, "Retry-After: 2 was not honoured");
    assert!(requests.iter().any(|r| r.status == 401));
    assert!(requests.iter().any(|r| r.status >= 500));
    assert!(
        !requests
            .iter()
            .any(|r| r.view == Kind::Live && r.status == 403),
        "no expired URL reused"
    );
    assert_no_bearer_on_signed_urls(&sim);
}

/// The documented plain-HTTP mode: a live URL answering with chunked `text/plain`
/// lines instead of a websocket is read all the same. A live URL refused with 403
/// (its own token, not the API token) is asked for again after the usual backoff,
/// not after the hour a refused credential would wait here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_text_live_url_and_a_refused_one_lose_nothing() {
    let sim = DigitalOceanSim::start(SimConfig {
        live_plain: true,
        ..SimConfig::default()
    })
    .await;
    sim.add_deployment("d1", Phase::Active);
    let web = messages("web", 0..2000);
    sim.append("d1", "RUN", "web", &web[..1000]);
    sim.push_stream_fault(Fault::Status(403, None));
    let harness = Harness::new();
    let running = harness.start(&source(&sim, "auth_retry_interval = \"1h\""));
    harness.wait_for(1000, WAIT).await;
    sim.push_stream_fault(Fault::DropAfter(3));
    sim.disconnect_all();
    sim.append("d1", "RUN", "web", &web[1000..]);
    harness.wait_for(2000, WAIT).await;
    let events = harness.wait_quiet(Duration::from_millis(800)).await;
    let log = running.stderr();
    running.stop().await;

    assert_exactly(&events, "d1", "web", &web);
    let requests = sim.requests();
    let live: Vec<_> = requests.iter().filter(|r| r.view == Kind::Live).collect();
    assert!(live.iter().any(|r| r.status == 403), "a live URL refused");
    assert!(
        live.iter()
            .any(|r| r.status == 200 && r.header("upgrade").is_some()),
        "plain text answered a websocket upgrade"
    );
    assert!(!log.contains("credentials refused"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ratelimit_headers_hold_requests_back() {
    let sim = DigitalOceanSim::start(SimConfig {
        rate_limit: 3,
        rate_window: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await;
    sim.add_deployment("d1", Phase::Active);
    let web = messages("web", 0..120);
    sim.append("d1", "RUN", "web", &web);
    for _ in 0..5 {
        sim.push_stream_fault(Fault::CloseAfter(20));
    }
    let harness = Harness::new();
    let running = harness.start(&source(&sim, "discovery_interval = \"5s\""));
    harness.wait_for(120, WAIT).await;
    let events = harness.wait_quiet(Duration::from_millis(500)).await;
    running.stop().await;
    assert_exactly(&events, "d1", "web", &web);
    let requests = sim.requests();
    let api = requests.iter().filter(|r| r.view == Kind::Api).count();
    let limited = requests.iter().filter(|r| r.status == 429).count();
    assert!(api >= 6, "{api} API requests");
    assert!(
        limited <= 1,
        "{limited} requests refused: ratelimit-remaining was ignored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_deploy_and_restart_logs_come_from_archives_once() {
    let sim = DigitalOceanSim::start(SimConfig::default()).await;
    sim.add_deployment("d1", Phase::Active);
    let build = messages("build", 0..50);
    let deploy = messages("deploy", 0..20);
    let crashed = messages("crashed", 0..10);
    let run = messages("run", 0..100);
    sim.append("d1", "BUILD", "web", &build);
    sim.append("d1", "DEPLOY", "web", &deploy);
    sim.append("d1", "RUN_RESTARTED", "web", &crashed);
    sim.append("d1", "RUN", "web", &run);
    let harness = Harness::new();
    let running = harness.start(&source(
        &sim,
        "types = [\"BUILD\", \"DEPLOY\", \"RUN\", \"RUN_RESTARTED\"]",
    ));
    harness.wait_for(180, WAIT).await;
    // Read the RUN_RESTARTED archive a few more times.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let events = harness.wait_quiet(Duration::from_millis(500)).await;
    running.stop().await;
    assert_eq!(events.len(), 180, "each line once");
    let of_type = |log_type: &str| -> Vec<&str> {
        events
            .iter()
            .filter(|e| e["fields"]["log_type"] == log_type)
            .map(|e| e["message"].as_str().unwrap())
            .collect()
    };
    assert_eq!(of_type("BUILD"), build);
    assert_eq!(of_type("DEPLOY"), deploy);
    assert_eq!(of_type("RUN_RESTARTED"), crashed);
    assert_eq!(of_type("RUN"), run);
    let archive_reads = |log_type: &str| {
        sim.requests()
            .iter()
            .filter(|r| r.view == Kind::Archive && r.path.contains(&format!("/{log_type}/")))
            .count()
    };
    assert_eq!(archive_reads("BUILD"), 2, "two files, each read once");
    assert_eq!(archive_reads("DEPLOY"), 2);
    assert!(
        archive_reads("RUN_RESTARTED") > 2,
        "read again for new restarts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_not_available_yet_are_asked_for_again() {
    let sim = DigitalOceanSim::start(SimConfig::default()).await;
    sim.add_deployment("d1", Phase::Deploying);
    sim.set_image_based("d1");
    let harness = Harness::new();
    let running = harness.start(&source(&sim, "types = [\"BUILD\", \"RUN\"]"));
    let refused = |log_type: &str| {
        sim.requests()
            .iter()
            .filter(|r| r.status == 400 && r.param("type").as_deref() == Some(log_type))
            .count()
    };
    eventually(WAIT, "retries of logs not available yet", || {
        refused("RUN") >= 2 && refused("BUILD") >= 2
    })
    .await;
    let run = messages("run", 0..50);
    sim.append("d1", "RUN", "web", &run);
    sim.set_phase("d1", Phase::Active);
    let events = harness.wait_for(50, WAIT).await;
    running.stop().await;
    assert_exactly(&events, "d1", "web", &run);
    let first = sim
        .requests()
        .into_iter()
        .find(|r| r.view == Kind::Api && r.path.ends_with("/logs"))
        .unwrap();
    assert!(
        first.path.contains("/deployments/d1/logs"),
        "the in-progress deployment, via the aggregate route: {}",
        first.path
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_components_use_their_own_route() {
    let sim = DigitalOceanSim::start(SimConfig::default()).await;
    sim.add_deployment("d1", Phase::Active);
    let web = messages("web", 0..100);
    let api = messages("api", 0..60);
    append_interleaved(&sim, "d1", &web, &api);
    sim.append("d1", "RUN", "worker", messages("worker", 0..10));
    sim.push_stream_fault(Fault::DropAfter(25));
    let harness = Harness::new();
    let running = harness.start(&source(
        &sim,
        "components = [\"web\", \"api\"]\ndeployment_id = \"d1\"",
    ));
    harness.wait_for(160, WAIT).await;
    let events = harness.wait_quiet(Duration::from_millis(800)).await;
    running.stop().await;
    assert_exactly(&events, "d1", "web", &web);
    assert_exactly(&events, "d1", "api", &api);
    assert_eq!(events.len(), 160, "no worker lines");
    let routes: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|r| r.view == Kind::Api)
        .map(|r| r.path)
        .collect();
    assert!(
        routes
            .iter()
            .all(|p| p.contains("/deployments/d1/components/")),
        "{routes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_lines_at_one_time_arrive_as_often_as_sent() {
    let sim = DigitalOceanSim::start(SimConfig::default()).await;
    sim.add_deployment("d1", Phase::Active);
    sim.append("d1", "RUN", "web", ["first"]);
    // A minute ahead of the line before, whatever the clock says.
    let time = digitalocean_sim::unix_nanos() + 60_000_000_123;
    sim.append_at("d1", "RUN", "web", time, ["same", "same", "same", "other"]);
    sim.append("d1", "RUN", "web", ["last"]);
    sim.push_stream_fault(Fault::DropAfter(3));
    let harness = Harness::new();
    let running = harness.start(&source(&sim, ""));
    harness.wait_for(6, WAIT).await;
    let events = harness.wait_quiet(Duration::from_millis(800)).await;
    running.stop().await;
    let got = stream_of(&events, "d1", "web");
    assert_eq!(got, ["first", "same", "same", "same", "other", "last"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_sigterm_restarts_resume_from_the_committed_cursor() {
    let total = ferry_process::scaled(30_000);
    let sim = DigitalOceanSim::start(SimConfig::default()).await;
    sim.add_deployment("d1", Phase::Active);
    let web = messages("web", 0..total);
    sim.append("d1", "RUN", "web", &web[..total / 2]);
    let harness = Harness::new();
    let config = source(&sim, "");

    // SIGTERM mid-stream, then a restart: none lost, none repeated.
    let mut ferry = harness.start(&config);
    harness.wait_for(total / 10, WAIT).await;
    assert!(ferry.terminate().success());
    let cursors = &harness.checkpoints()["src"];
    assert!(
        cursors["d1/RUN"]["components"]["web"]["time"]
            .as_i64()
            .unwrap()
            > 0
    );
    let mut ferry = harness.start(&config);
    harness.wait_for(total / 2, WAIT).await;
    let events = harness.wait_quiet(Duration::from_millis(1000)).await;
    assert_exactly(&events, "d1", "web", &web[..total / 2]);
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.param("tail_lines").as_deref() == Some("-1")),
        "a replay that did not reach back asked for everything"
    );

    // SIGKILL mid-stream: nothing lost; only what was in flight may repeat.
    sim.append("d1", "RUN", "web", &web[total / 2..]);
    harness.wait_for(total / 2 + total / 10, WAIT).await;
    ferry.kill9();
    let mut ferry = harness.start(&config);
    let deadline = Instant::now() + WAIT;
    let events = loop {
        let events = harness.events();
        let distinct: std::collections::BTreeSet<&str> =
            stream_of(&events, "d1", "web").into_iter().collect();
        if distinct.len() == total {
            break harness.wait_quiet(Duration::from_millis(1000)).await;
        }
        assert!(Instant::now() < deadline, "only {} lines", distinct.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(ferry.terminate().success());
    let got = stream_of(&events, "d1", "web");
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &got {
        *seen.entry(m).or_default() += 1;
    }
    let duplicates = got.len() - seen.len();
    println!("SIGKILL: {duplicates} duplicates of {total} lines");
    assert!(
        duplicates <= 32 * 1000,
        "{duplicates} duplicates: more than the in-flight window"
    );
    assert!(seen.values().all(|n| *n <= 2), "a line repeated twice");
    let unique: Vec<&str> = {
        let mut done = std::collections::BTreeSet::new();
        got.into_iter().filter(|m| done.insert(*m)).collect()
    };
    assert_eq!(unique, web.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_or_the_metrics() {
    let sim = DigitalOceanSim::start(SimConfig {
        url_token_ttl: Some(Duration::ZERO),
        ..SimConfig::default()
    })
    .await;
    sim.add_deployment("d1", Phase::Active);
    sim.append("d1", "RUN", "web", messages("web", 0..20));
    sim.revoke_token(true);
    let harness = Harness::new();
    let port = ferry_process::free_port();
    let config = harness
        .config(&source(&sim, "auth_retry_interval = \"200ms\""))
        .replace(
            "[api]\nenabled = false",
            &format!("[api]\nenabled = true\naddress = \"127.0.0.1:{port}\""),
        );
    std::fs::write(harness.config_path(), &config).unwrap();
    let ferry = ferry_process::Ferry::start(&harness.config_path());
    let statuses = |status: u16| sim.requests().iter().filter(|r| r.status == status).count();
    eventually(WAIT, "refused tokens", || statuses(401) >= 2).await;
    sim.revoke_token(false);
    // Every live URL is refused (its token expired at once), echoing its token.
    eventually(WAIT, "refused live URLs", || statuses(403) >= 2).await;
    sim.set_config(|c| c.url_token_ttl = None);
    eventually(WAIT, "lines", || harness.events().len() >= 20).await;
    let (_, metrics) = ferry_process::http_get(port, "/metrics").expect("metrics served");
    let log = ferry.log_text();
    drop(ferry);

    let mut secrets = vec![sim.config().token];
    for request in sim.requests().iter().filter(|r| r.view != Kind::Api) {
        let token = request.query.trim_start_matches("token=").to_string();
        assert!(token.len() > 8, "{}", request.query);
        secrets.push(token);
    }
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
    assert!(log.contains("credentials refused"), "{log}");
    assert!(log.contains("invalid or expired token ***"), "{log}");
    assert!(metrics.contains("ferry_http_errors_total"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_speaks_the_documented_api() {
    let sim = DigitalOceanSim::start(SimConfig {
        rate_limit: 12,
        ..SimConfig::default()
    })
    .await;
    sim.add_deployment("d1", Phase::Active);
    sim.append("d1", "RUN", "web", ["hello", "world"]);
    let config = sim.config();
    let client = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = client.get(format!("{}{path}", sim.url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let app = format!("/v2/apps/{}", config.app_id);
    let token = Some(config.token.as_str());

    let anonymous = get(&app, None).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["id"], "unauthorized");

    let found = get(&app, token).await.unwrap();
    assert_eq!(found.status(), 200);
    assert_eq!(found.headers()["ratelimit-limit"], "12");
    assert_eq!(
        found.headers()["ratelimit-remaining"],
        "11",
        "the refused request was not counted"
    );
    assert!(found.headers().contains_key("ratelimit-reset"));
    let body: Value = found.json().await.unwrap();
    assert_eq!(body["app"]["active_deployment"]["id"], "d1");
    assert_eq!(body["app"]["spec"]["services"][0]["name"], "web");

    let bad_type = get(&format!("{app}/deployments/d1/logs?type=LIVE"), token)
        .await
        .unwrap();
    assert_eq!(bad_type.status(), 400);
    let unknown = get(&format!("{app}/deployments/d9/logs?type=RUN"), token)
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let not_yet = get(&format!("{app}/deployments/d1/logs?type=DEPLOY"), token)
        .await
        .unwrap();
    assert_eq!(not_yet.status(), 200, "DEPLOY is archived once active");

    let urls: Value = get(
        &format!("{app}/deployments/d1/components/web/logs?type=RUN&follow=false&tail_lines=1"),
        token,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let live = urls["live_url"].as_str().unwrap();
    assert!(
        live.starts_with("ws://") && live.contains("?token="),
        "{live}"
    );
    let api = ferry::http::api::Api::new(
        reqwest::Client::new(),
        ferry::http::auth::Credentials::anonymous(),
    );
    let options = ferry::http::stream::StreamOptions::default();
    let mut socket = ferry::http::ws::connect(&api, live, |r| r, &options)
        .await
        .unwrap();
    let mut frames = Vec::new();
    while socket.fill().await.unwrap() {
        while let Some(frame) = socket.next_frame() {
            frames.push(frame.data);
        }
    }
    assert_eq!(frames.len(), 1, "tail_lines=1 then closed: {frames:?}");
    let frame: Value = serde_json::from_str(&frames[0]).unwrap();
    let line = frame["data"].as_str().unwrap();
    assert!(
        line.starts_with("web 20") && line.ends_with("Z world\n"),
        "{line}"
    );

    sim.set_phase("d1", Phase::Superseded);
    let archived: Value = get(&format!("{app}/deployments/d1/logs?type=RUN"), token)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(archived.get("live_url").is_none(), "{archived}");
    let files = archived["historic_urls"].as_array().unwrap();
    let mut text = String::new();
    for url in files {
        let file = client.get(url.as_str().unwrap()).send().await.unwrap();
        assert_eq!(file.headers()["content-type"], "text/plain; charset=utf-8");
        text.push_str(&file.text().await.unwrap());
    }
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.starts_with("web ")), "{text}");

    let mut limited = None;
    for _ in 0..12 {
        let answer = get(&app, token).await.unwrap();
        if answer.status() == 429 {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the rate limit is enforced");
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
}

//! The `demo` source: realistic synthetic log lines in the shapes providers emit (JSON,
//! logfmt, plain text, syslog), at a steady rate or as fast as the pipeline takes them.
//! Line N is always the same text, and the committed cursor is the count sent, so a
//! restarted `count`-limited demo continues where it stopped: it doubles as a
//! deterministic load generator for tests and benchmarks.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{SendError, Source, SourceContext};
use crate::checkpoint::CursorUpdate;
use crate::event::{Event, now_nanos};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DemoFormat {
    /// A rotation of all the formats below.
    #[default]
    Mixed,
    Json,
    Logfmt,
    Plain,
    Syslog,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    #[serde(default)]
    pub format: DemoFormat,
    /// Events per second; leave it out to go as fast as the sinks allow.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Stop after this many events in total (across restarts); forever if left out.
    #[serde(default)]
    pub count: Option<u64>,
    /// The `app` the events claim to come from.
    #[serde(default = "default_app")]
    pub app: String,
}

fn default_app() -> String {
    "demo-shop".into()
}

const CURSOR_KEY: &str = "sequence";

/// The demo source needs nothing but its options.
pub type DemoSource = DemoConfig;

impl super::SourceOptions for DemoConfig {}

#[async_trait]
impl Source for DemoSource {
    async fn run(self: Box<Self>, mut ctx: SourceContext) -> anyhow::Result<()> {
        let mut next = ctx
            .checkpoint
            .get(CURSOR_KEY)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let end = self.count.unwrap_or(u64::MAX);
        let app: Arc<str> = Arc::from(self.app.as_str());
        let provider: Arc<str> = Arc::from("demo");
        const TICK: Duration = Duration::from_millis(100);
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut credit = 0.0f64;
        while next < end {
            let room = match self.rate {
                Some(rate) => {
                    tokio::select! {
                        () = ctx.shutdown.cancelled() => return Ok(()),
                        _ = ticker.tick() => {}
                    }
                    credit += rate * TICK.as_secs_f64();
                    let whole = credit.floor();
                    credit -= whole;
                    whole as u64
                }
                None => u64::MAX,
            };
            let take = room.min(ctx.limits.batch_max_events as u64).min(end - next);
            if take == 0 {
                continue;
            }
            let now = now_nanos();
            let events = (next..next + take)
                .map(|n| demo_event(n, self.format, &ctx.id, &provider, &app, now))
                .collect();
            next += take;
            match ctx
                .output
                .send(events, CursorUpdate::set(CURSOR_KEY, json!(next)))
                .await
            {
                Ok(()) => {}
                Err(SendError::ShuttingDown) => return Ok(()),
                Err(SendError::Closed) => anyhow::bail!("downstream components stopped"),
            }
        }
        tracing::info!(source = %ctx.id, count = next, "demo source sent all its events");
        Ok(())
    }
}

const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
const PATHS: [&str; 6] = [
    "/api/orders",
    "/api/cart",
    "/api/users/42",
    "/healthz",
    "/api/checkout",
    "/static/app.js",
];
const INSTANCES: [&str; 3] = ["web-1", "web-2", "worker-1"];

/// The `n`th demo line in `format`.
pub fn demo_line(n: u64, format: DemoFormat) -> String {
    let format = match format {
        DemoFormat::Mixed => [
            DemoFormat::Json,
            DemoFormat::Logfmt,
            DemoFormat::Plain,
            DemoFormat::Syslog,
        ][(n % 4) as usize],
        other => other,
    };
    let i = n as usize;
    let user = USERS[i % USERS.len()];
    let path = PATHS[i % PATHS.len()];
    let (level, status) = match n % 20 {
        0 => ("error", 500),
        1 | 2 => ("warn", 429),
        3 => ("debug", 200),
        _ => ("info", 200),
    };
    let ms = (n * 7919) % 900 + 3;
    let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
    let second = n % 60;
    let minute = (n / 60) % 60;
    match format {
        DemoFormat::Json => json!({
            "ts": format!("2026-11-20T10:{minute:02}:{second:02}.{:03}Z", n % 1000),
            "level": level,
            "msg": format!("{} {path} {status} {ms}ms", if n % 3 == 0 { "POST" } else { "GET" }),
            "user": format!("{user}@example.com"),
            "client_ip": ip,
            "req_id": n,
        })
        .to_string(),
        DemoFormat::Logfmt => format!(
            "ts=2026-11-20T10:{minute:02}:{second:02}Z level={level} msg=\"request served\" path={path} status={status} duration={ms}ms user={user} seq={n}"
        ),
        DemoFormat::Plain => {
            let upper = level.to_ascii_uppercase();
            if status == 500 {
                format!(
                    "2026-11-20 10:{minute:02}:{second:02}.{:03} {upper} [worker-3] payment failed for {user}: card 4111 1111 1111 1111 declined (seq {n})",
                    n % 1000
                )
            } else {
                format!(
                    "2026-11-20 10:{minute:02}:{second:02}.{:03} {upper} [http] {path} answered {status} in {ms}ms (seq {n})",
                    n % 1000
                )
            }
        }
        DemoFormat::Syslog | DemoFormat::Mixed => {
            let severity = match level {
                "error" => 3,
                "warn" => 4,
                "debug" => 7,
                _ => 6,
            };
            format!(
                "<{}>1 2026-11-20T10:{minute:02}:{second:02}.{:03}Z web-1 shop 4242 ID{n} - {path} answered {status} for {ip}",
                16 * 8 + severity,
                n % 1000
            )
        }
    }
}

fn demo_event(
    n: u64,
    format: DemoFormat,
    source: &Arc<str>,
    provider: &Arc<str>,
    app: &Arc<str>,
    now: i64,
) -> Event {
    let mut event = Event::new(
        Arc::clone(source),
        Arc::clone(provider),
        demo_line(n, format),
        now,
    );
    event.origin.app = Some(app.to_string());
    event.origin.instance = Some(INSTANCES[(n % 3) as usize].to_string());
    event.stream = Some(if n % 20 == 0 { "stderr" } else { "stdout" }.to_string());
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_deterministic_and_cover_every_format() {
        assert_eq!(
            demo_line(7, DemoFormat::Mixed),
            demo_line(7, DemoFormat::Mixed)
        );
        let json: serde_json::Value =
            serde_json::from_str(&demo_line(0, DemoFormat::Mixed)).unwrap();
        assert_eq!(json["level"], "error");
        assert!(demo_line(1, DemoFormat::Mixed).starts_with("ts="));
        assert!(demo_line(2, DemoFormat::Mixed).starts_with("2026-11-20 "));
        assert!(demo_line(3, DemoFormat::Mixed).starts_with("<135>1 "));
    }
}

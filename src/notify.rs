//! What ferry tells its service manager over `$NOTIFY_SOCKET` (the sd_notify
//! protocol): `READY=1` once the pipeline runs, `RELOADING=1` with `MONOTONIC_USEC`
//! and then `READY=1` around a reload, `STOPPING=1` at shutdown, a `STATUS=` line
//! every few seconds (events per second in and out, sources lagging), and
//! `WATCHDOG=1` at half of `$WATCHDOG_USEC`, sent only while every pipeline task
//! answers its liveness probe. Without `$NOTIFY_SOCKET` nothing is sent and no
//! supervisor runs.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::telemetry::Health;

/// How often the `STATUS=` line is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Sent as a reload starts; systemd ≥ 253 wants the time with it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn send(states: &[NotifyState]) {
    if enabled()
        && let Err(error) = sd_notify::notify(false, states)
    {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// Starts the task that sends `STATUS=` lines and watchdog pings, if ferry runs
/// under a service manager; it ends when `stop` fires.
pub fn spawn_supervisor(
    health: Arc<Health>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !enabled() {
        return None;
    }
    let watchdog = watchdog_usec(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
    )
    .map(|usec| Duration::from_micros(usec / 2))
    .filter(|half| !half.is_zero());
    Some(tokio::spawn(supervise(health, watchdog, stop)))
}

/// The watchdog interval the service manager asks for, as `sd_watchdog_enabled(3)`
/// reads it: `$WATCHDOG_USEC`, unless `$WATCHDOG_PID` is set to another process.
/// (The `sd-notify` crate also refuses an unset `$WATCHDOG_PID`, which libsystemd
/// accepts.)
fn watchdog_usec(usec: Option<&str>, pid: Option<&str>) -> Option<u64> {
    if pid.is_some_and(|pid| pid.parse() != Ok(std::process::id())) {
        return None;
    }
    usec?.parse().ok().filter(|usec| *usec > 0)
}

async fn supervise(health: Arc<Health>, watchdog: Option<Duration>, stop: CancellationToken) {
    let mut status = tokio::time::interval_at(Instant::now() + STATUS_INTERVAL, STATUS_INTERVAL);
    status.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pings = tokio::time::interval(watchdog.unwrap_or(Duration::MAX / 4));
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = (Instant::now(), health.throughput.sample());
    let mut withheld = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = status.tick() => {
                let now = (Instant::now(), health.throughput.sample());
                let elapsed = now.0.duration_since(last.0);
                let seconds = elapsed.as_secs_f64().max(1e-3);
                let line = format!(
                    "{:.0} events/s in, {:.0} events/s out, {} sources lagging",
                    now.1.events_in.saturating_sub(last.1.events_in) as f64 / seconds,
                    now.1.events_out.saturating_sub(last.1.events_out) as f64 / seconds,
                    now.1.lagging_since(&last.1, elapsed),
                );
                send(&[NotifyState::Status(&line)]);
                last = now;
            }
            _ = pings.tick(), if watchdog.is_some() => {
                let silent = health.liveness.check_and_probe();
                if silent.is_empty() {
                    send(&[NotifyState::Watchdog]);
                    withheld = false;
                } else if !withheld {
                    withheld = true;
                    tracing::error!(
                        tasks = %silent.join(", "),
                        "pipeline tasks are not answering; withholding watchdog pings so that systemd restarts ferry"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_ours_unless_another_pid_is_named() {
        let me = std::process::id().to_string();
        assert_eq!(watchdog_usec(Some("30000000"), None), Some(30_000_000));
        assert_eq!(watchdog_usec(Some("30000000"), Some(&me)), Some(30_000_000));
        assert_eq!(watchdog_usec(Some("30000000"), Some("1")), None);
        assert_eq!(watchdog_usec(Some("0"), None), None);
        assert_eq!(watchdog_usec(Some("soon"), None), None);
        assert_eq!(watchdog_usec(None, None), None);
    }
}

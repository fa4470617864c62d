//! A source's request budget: at most `max` requests in any sliding `window`
//! (Scalingo allows 60 API calls a minute), shared by every request the source
//! makes — discovery, token exchange, stream connects and their reconnect loops —
//! plus the pauses the provider asks for: a 429's `Retry-After`, or DigitalOcean's
//! `ratelimit-remaining: 0` until `ratelimit-reset`.
//!
//! Each request reserves the earliest slot that keeps the window within budget,
//! in arrival order, then sleeps until it: concurrent callers never burst past the
//! limit. Memory: the times of the last `max` slots.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// Longest pause a server's rate-limit headers can impose.
const PAUSE_CAP: Duration = Duration::from_secs(600);

/// A sliding-window request budget (see the module doc).
#[derive(Debug)]
pub struct RateBudget {
    slots: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    max: usize,
    window: Duration,
    /// The reserved send times of the last `max` requests, in order.
    sent: VecDeque<Instant>,
    /// No request before this (the provider asked for a pause).
    paused_until: Option<Instant>,
}

impl Slots {
    /// Reserves the earliest slot at or after `now`.
    fn reserve(&mut self, now: Instant) -> Instant {
        let mut slot = now;
        if let Some(until) = self.paused_until {
            slot = slot.max(until);
        }
        if let Some(last) = self.sent.back() {
            slot = slot.max(*last);
        }
        if self.sent.len() >= self.max {
            slot = slot.max(self.sent[self.sent.len() - self.max] + self.window);
        }
        self.sent.push_back(slot);
        while self.sent.len() > self.max {
            self.sent.pop_front();
        }
        slot
    }
}

impl RateBudget {
    /// At most `max` (at least 1) requests in any `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        let max = max.max(1) as usize;
        RateBudget {
            slots: Mutex::new(Slots {
                max,
                window,
                sent: VecDeque::with_capacity(max),
                paused_until: None,
            }),
        }
    }

    /// Waits until one more request fits the budget, and counts it as sent.
    pub async fn acquire(&self) {
        let now = Instant::now();
        let slot = self.lock().reserve(now);
        if slot > now {
            tracing::debug!(wait = ?(slot - now), "request budget spent; waiting");
            tokio::time::sleep_until(slot.into()).await;
        }
    }

    /// No request before `wait` from now (a 429's `Retry-After`).
    pub fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait.min(PAUSE_CAP);
        let mut slots = self.lock();
        slots.paused_until = Some(slots.paused_until.map_or(until, |u| u.max(until)));
    }

    /// Reads a response's `ratelimit-remaining` / `ratelimit-reset` (Unix seconds
    /// when the oldest counted request expires): none left means a pause until then.
    pub fn observe(&self, headers: &HeaderMap) {
        if let Some(wait) = exhausted_until(headers, SystemTime::now()) {
            self.pause(wait);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The wait the `ratelimit-*` headers ask for, if the budget is spent.
fn exhausted_until(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let number =
        |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    if number("ratelimit-remaining")? > 0 {
        return None;
    }
    let reset = UNIX_EPOCH + Duration::from_secs(number("ratelimit-reset")?);
    Some(reset.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slots(max: usize, window: Duration) -> Slots {
        Slots {
            max,
            window,
            sent: VecDeque::new(),
            paused_until: None,
        }
    }

    #[test]
    fn requests_within_budget_go_at_once_then_wait_for_the_window() {
        let start = Instant::now();
        let s = Duration::from_secs;
        let mut budget = slots(3, s(60));
        let got: Vec<Duration> = [0, 1, 2, 3, 4, 61, 200]
            .into_iter()
            .map(|at| budget.reserve(start + s(at)) - start)
            .collect();
        assert_eq!(got, [s(0), s(1), s(2), s(60), s(61), s(62), s(200)]);
    }

    #[test]
    fn a_pause_holds_every_request() {
        let start = Instant::now();
        let mut budget = slots(100, Duration::from_secs(60));
        budget.paused_until = Some(start + Duration::from_secs(5));
        assert_eq!(budget.reserve(start), start + Duration::from_secs(5));
        assert_eq!(
            budget.reserve(start + Duration::from_secs(9)),
            start + Duration::from_secs(9)
        );
    }

    #[test]
    fn ratelimit_headers_pause_only_when_spent() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-remaining", "4".parse().unwrap());
        headers.insert("ratelimit-reset", "1030".parse().unwrap());
        assert_eq!(exhausted_until(&headers, now), None);
        headers.insert("ratelimit-remaining", "0".parse().unwrap());
        assert_eq!(
            exhausted_until(&headers, now),
            Some(Duration::from_secs(30))
        );
        headers.insert("ratelimit-reset", "soon".parse().unwrap());
        assert_eq!(exhausted_until(&headers, now), None);
    }

    proptest! {
        /// Whatever the arrival times, no window ever holds more than `max` slots,
        /// and a slot is never before its request arrived.
        #[test]
        fn no_window_is_ever_over_budget(
            max in 1usize..8,
            gaps in proptest::collection::vec(0u64..3_000, 1..120),
        ) {
            let window = Duration::from_secs(10);
            let start = Instant::now();
            let mut budget = slots(max, window);
            let mut now = start;
            let mut granted = Vec::new();
            for gap in gaps {
                now += Duration::from_millis(gap);
                let slot = budget.reserve(now);
                prop_assert!(slot >= now);
                granted.push(slot);
            }
            for (i, first) in granted.iter().enumerate() {
                let within = granted[i..].iter().filter(|t| **t < *first + window).count();
                prop_assert!(within <= max, "{within} requests within one window");
            }
        }
    }
}

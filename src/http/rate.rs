//! A source's request budget: at most `max` requests in any sliding `window`
//! (Scalingo allows 60 API calls a minute), shared by every request the source
//! makes — discovery, token exchange, stream connects and their reconnect loops —
//! plus the pauses the provider asks for: a 429's `Retry-After`, or DigitalOcean's
//! `ratelimit-remaining: 0` until `ratelimit-reset`.
//!
//! Each request reserves the earliest slot that keeps the window within budget,
//! in arrival order, then sleeps until it: concurrent callers never burst past the
//! limit. Once answered, a request counts from the time of its answer rather than
//! of its slot: the server saw it at some moment in between, so however the network
//! delays requests, the server never sees more than `max` in one of its own
//! windows (exactly so for requests made one after another; concurrent ones rely on
//! their slots). Memory: the times of the last `max` requests.

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
    /// The last `max` requests: their number and the time they count from (their
    /// slot, then their answer), in time order.
    sent: VecDeque<(u64, Instant)>,
    /// The number of the next request.
    next: u64,
    /// No request before this (the provider asked for a pause).
    paused_until: Option<Instant>,
}

/// A request counted by a [`RateBudget`]; hand it back with
/// [`RateBudget::answered`].
#[derive(Debug)]
#[must_use]
pub struct Permit(u64);

impl Slots {
    /// Reserves the earliest slot at or after `now`.
    fn reserve(&mut self, now: Instant) -> (u64, Instant) {
        let mut slot = now;
        if let Some(until) = self.paused_until {
            slot = slot.max(until);
        }
        if let Some((_, last)) = self.sent.back() {
            slot = slot.max(*last);
        }
        if self.sent.len() >= self.max {
            slot = slot.max(self.sent[self.sent.len() - self.max].1 + self.window);
        }
        let number = self.next;
        self.next += 1;
        self.sent.push_back((number, slot));
        while self.sent.len() > self.max {
            self.sent.pop_front();
        }
        (number, slot)
    }

    /// Request `number` was answered at `now`: it counts from then.
    fn answered(&mut self, number: u64, now: Instant) {
        if let Some(entry) = self.sent.iter_mut().find(|(n, _)| *n == number) {
            entry.1 = entry.1.max(now);
            self.sent.make_contiguous().sort_by_key(|(_, at)| *at);
        }
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
                next: 0,
                paused_until: None,
            }),
        }
    }

    /// Waits until one more request fits the budget, and counts it as sent.
    pub async fn acquire(&self) -> Permit {
        let now = Instant::now();
        let (number, slot) = self.lock().reserve(now);
        if slot > now {
            tracing::debug!(wait = ?(slot - now), "request budget spent; waiting");
            tokio::time::sleep_until(slot.into()).await;
        }
        Permit(number)
    }

    /// The request of `permit` was answered (or failed) just now.
    pub fn answered(&self, permit: Permit) {
        self.lock().answered(permit.0, Instant::now());
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
            next: 0,
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
            .map(|at| budget.reserve(start + s(at)).1 - start)
            .collect();
        assert_eq!(got, [s(0), s(1), s(2), s(60), s(61), s(62), s(200)]);
    }

    #[test]
    fn a_pause_holds_every_request() {
        let start = Instant::now();
        let mut budget = slots(100, Duration::from_secs(60));
        budget.paused_until = Some(start + Duration::from_secs(5));
        assert_eq!(budget.reserve(start).1, start + Duration::from_secs(5));
        assert_eq!(
            budget.reserve(start + Duration::from_secs(9)).1,
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

    #[test]
    fn a_request_counts_from_its_answer() {
        let start = Instant::now();
        let s = Duration::from_secs;
        let mut budget = slots(2, s(10));
        let (first, _) = budget.reserve(start);
        budget.answered(first, start + s(3));
        budget.reserve(start + s(4));
        assert_eq!(
            budget.reserve(start + s(5)).1,
            start + s(13),
            "10 s after the answer"
        );
    }

    proptest! {
        /// Whatever the times requests are made, and however long the network
        /// delays each on its way (the server sees it between its slot and its
        /// answer), no window of the server ever holds more than `max` requests,
        /// and a slot is never before its request was made.
        #[test]
        fn no_window_is_ever_over_budget(
            max in 1usize..8,
            requests in proptest::collection::vec((0u64..3_000, 0u64..2_000, 0u64..1_000), 1..120),
        ) {
            let window = Duration::from_secs(10);
            let start = Instant::now();
            let mut budget = slots(max, window);
            let mut now = start;
            let mut seen = Vec::new();
            for (gap, delay, answer) in requests {
                now += Duration::from_millis(gap);
                let (number, slot) = budget.reserve(now);
                prop_assert!(slot >= now);
                let arrival = slot + Duration::from_millis(delay);
                now = arrival + Duration::from_millis(answer);
                budget.answered(number, now);
                seen.push(arrival);
            }
            for (i, first) in seen.iter().enumerate() {
                let within = seen[i..].iter().filter(|t| **t < *first + window).count();
                prop_assert!(within <= max, "{within} requests within one window");
            }
        }
    }
}

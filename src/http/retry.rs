//! Retry timing shared by every HTTP component: exponential backoff with jitter
//! (`backon`), and the server's own `Retry-After` (delay-seconds or HTTP-date), which
//! wins over the computed backoff when present.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};

/// An endless exponential backoff with full jitter between `min` and `max`.
pub fn backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Reads a `Retry-After` value: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, a delay until then; zero if it is past).
/// Anything else is `None`. The result is capped at `cap` so a hostile or broken
/// server cannot park a component for days.
pub fn parse_retry_after(value: &str, now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(cap))
}

/// `parse_retry_after` on a response's `Retry-After` header, if it has one.
pub fn retry_after(headers: &reqwest::header::HeaderMap, cap: Duration) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now(), cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(300);

    #[test]
    fn reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("3", now, CAP), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now, CAP), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now, CAP),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now, CAP),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("86400", now, CAP), Some(CAP));
        assert_eq!(parse_retry_after("soon", now, CAP), None);
        assert_eq!(parse_retry_after("-1", now, CAP), None);
    }

    #[test]
    fn backoff_grows_within_bounds() {
        let delays: Vec<Duration> = backoff(Duration::from_millis(10), Duration::from_millis(200))
            .take(20)
            .collect();
        assert_eq!(delays.len(), 20, "backoff never runs out");
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(400)));
    }
}

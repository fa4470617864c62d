//! Live taps for `ferry tap COMPONENT`: each source and transform has a tap point
//! on its output and each sink one on its input; the API subscribes to one and
//! streams a sample of the events passing it as JSON lines. A tap point nobody
//! watches costs one relaxed atomic load per batch. Events are shown as they are at
//! that point: only a `redact` transform before it hides secrets in them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::event::Event;
use crate::sinks::encoding::Encoding;

/// How many encoded chunks a slow tap client may have waiting before samples for it
/// are skipped.
const CLIENT_QUEUE: usize = 64;

/// Every tap point, by full component name (`sources.web`, `transforms.parsed`,
/// `sinks.loki`).
#[derive(Default)]
pub struct Taps {
    points: Mutex<BTreeMap<String, Arc<TapPoint>>>,
}

/// One component's tap point.
#[derive(Default)]
pub struct TapPoint {
    watchers: AtomicUsize,
    subscribers: Mutex<Vec<Subscriber>>,
}

/// What a tap client asked for.
#[derive(Debug, Clone, Copy)]
pub struct TapRequest {
    /// Stop after this many events.
    pub limit: Option<u64>,
    /// At most this many events a second.
    pub rate: f64,
}

struct Subscriber {
    chunks: mpsc::Sender<Vec<u8>>,
    remaining: Option<u64>,
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

/// Why a tap was refused.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("no component named {name:?}; running: {known}")]
    Unknown { name: String, known: String },
    #[error("{name:?} names several components ({known}); say which")]
    Ambiguous { name: String, known: String },
}

impl Taps {
    /// The tap point of `component` (`sources.web`), created on first use.
    pub fn point(&self, component: &str) -> Arc<TapPoint> {
        let mut points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(points.entry(component.to_string()).or_default())
    }

    /// Forgets the tap points of components that are no longer configured; their
    /// clients' streams end.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        points.retain(|name, _| keep(name));
    }

    /// Subscribes to the tap point `name` (a full name, or an id when only one kind
    /// of component has it): its full name and the stream of JSON-line chunks.
    pub fn subscribe(
        &self,
        name: &str,
        request: TapRequest,
    ) -> Result<(String, mpsc::Receiver<Vec<u8>>), TapError> {
        let points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        let matching: Vec<(&String, &Arc<TapPoint>)> = points
            .iter()
            .filter(|(full, _)| {
                full.as_str() == name || full.split_once('.').is_some_and(|(_, id)| id == name)
            })
            .collect();
        let list = |names: Vec<&String>| {
            names
                .into_iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (full, point) = match matching.as_slice() {
            [one] => *one,
            [] => {
                return Err(TapError::Unknown {
                    name: name.to_string(),
                    known: list(points.keys().collect()),
                });
            }
            _ => {
                return Err(TapError::Ambiguous {
                    name: name.to_string(),
                    known: list(matching.iter().map(|(full, _)| *full).collect()),
                });
            }
        };
        let (chunks, receiver) = mpsc::channel(CLIENT_QUEUE);
        point.add(Subscriber {
            chunks,
            remaining: request.limit,
            rate: request.rate,
            tokens: request.rate.min(1.0),
            refilled: Instant::now(),
        });
        Ok((full.clone(), receiver))
    }
}

impl TapPoint {
    /// Offers the events passing this point to its clients, if it has any.
    #[inline]
    pub fn observe(&self, events: &[Event]) {
        if self.watchers.load(Ordering::Relaxed) > 0 {
            self.offer(events);
        }
    }

    fn add(&self, subscriber: Subscriber) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subscribers.push(subscriber);
        self.watchers.store(subscribers.len(), Ordering::Relaxed);
    }

    #[cold]
    fn offer(&self, events: &[Event]) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        subscribers.retain_mut(|subscriber| subscriber.offer(events, now));
        self.watchers.store(subscribers.len(), Ordering::Relaxed);
    }
}

impl Subscriber {
    /// Sends this client its share of `events`; false once it is done or gone.
    fn offer(&mut self, events: &[Event], now: Instant) -> bool {
        if self.chunks.is_closed() {
            return false;
        }
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        let mut take = (self.tokens.floor() as usize).min(events.len());
        if let Some(remaining) = self.remaining {
            take = take.min(usize::try_from(remaining).unwrap_or(usize::MAX));
        }
        if take == 0 {
            return true;
        }
        // Spread the sample over the batch rather than always showing its start.
        let step = events.len() / take;
        let mut chunk = Vec::new();
        for event in events.iter().step_by(step.max(1)).take(take) {
            Encoding::Json.encode(event, &mut chunk);
        }
        match self.chunks.try_send(chunk) {
            Ok(()) => {
                self.tokens -= take as f64;
                if let Some(remaining) = &mut self.remaining {
                    *remaining -= take as u64;
                    return *remaining > 0;
                }
                true
            }
            // A slow client misses samples rather than holding the pipeline back.
            Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event::new("s".into(), "demo".into(), format!("line {i}"), 0))
            .collect()
    }

    #[tokio::test]
    async fn a_tap_gets_json_lines_up_to_its_limit_then_ends() {
        let taps = Taps::default();
        let point = taps.point("sources.web");
        point.observe(&events(10));
        let (name, mut chunks) = taps
            .subscribe(
                "web",
                TapRequest {
                    limit: Some(3),
                    rate: 1e9,
                },
            )
            .unwrap();
        assert_eq!(name, "sources.web");
        point.observe(&events(2));
        point.observe(&events(10));
        let mut lines = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            lines.extend(
                String::from_utf8(chunk)
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
        assert_eq!(lines.len(), 3);
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["message"], "line 0");
        assert_eq!(point.watchers.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn unknown_and_ambiguous_names_are_refused_with_the_known_ones() {
        let taps = Taps::default();
        taps.point("sources.web");
        taps.point("sinks.web");
        taps.point("transforms.parsed");
        let request = TapRequest {
            limit: None,
            rate: 1.0,
        };
        let error = taps.subscribe("nope", request).unwrap_err().to_string();
        assert!(
            error.contains("sinks.web, sources.web, transforms.parsed"),
            "{error}"
        );
        let error = taps.subscribe("web", request).unwrap_err().to_string();
        assert!(error.contains("several"), "{error}");
        assert!(taps.subscribe("sinks.web", request).is_ok());
    }
}

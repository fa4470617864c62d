//! The `multiline` transform: joins the lines of a stack trace (or any event written
//! over several lines) into one event, per sub-stream, so that two containers'
//! lines interleaved in one batch, or a container's stdout and stderr, are merged
//! apart.
//!
//! A line either continues the event pending in its sub-stream or starts a new one
//! ([`rules`]). The pending event is emitted when the next start line arrives, when
//! a limit is hit (`max_lines`, `max_bytes`: marked `truncated`), when its
//! sub-stream has had no line for `flush_timeout`, when `end_pattern` matches, when
//! the sub-streams' budget is exceeded (the oldest go first), and at the end of
//! input. While it is pending it holds the deliveries of the batches its lines came
//! from (see [`StatefulTransform`]), so no source checkpoint passes a line whose
//! event has not been delivered.

mod rules;
mod streams;

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use super::StatefulTransform;
use super::pattern::Pattern;
use crate::checkpoint::{BatchStatus, Delivery};
use crate::event::{Batch, Event};

pub use rules::Preset;
use rules::{Rules, Verdict};
use streams::{Finished, Pending, StreamRef, Streams};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// Built-in rules: `auto` (all), `java`, `python`, `go`, `node`, `ruby`,
    /// `dotnet`, or `none`. Default `auto`.
    #[serde(default)]
    pub preset: Preset,
    /// A line that does not match begins no new event: it continues the last one.
    #[serde(default)]
    pub start_pattern: Option<Pattern>,
    /// A line that matches continues the last event.
    #[serde(default)]
    pub continue_pattern: Option<Pattern>,
    /// A line that matches is the last of its event, which is emitted at once.
    #[serde(default)]
    pub end_pattern: Option<Pattern>,
    /// A line starting with a space or a tab continues the last event.
    #[serde(default)]
    pub indented: bool,
    /// Most lines in one event; past it the event is emitted, marked `truncated`,
    /// and the next line begins another. Default 500.
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    /// Most message bytes in one event (a single longer line is kept whole). Default
    /// 262144.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// How long a pending event waits for its next line. Default `1s`.
    #[serde(default = "default_flush_timeout", with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// Most sub-streams with a pending event; past it, the oldest is emitted.
    /// Default 4096.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Most bytes held by pending events; past it, the oldest are emitted. Default
    /// 16 MiB.
    #[serde(default = "default_max_pending_bytes")]
    pub max_pending_bytes: usize,
}

fn default_max_lines() -> usize {
    500
}

fn default_max_bytes() -> usize {
    256 * 1024
}

fn default_flush_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_max_streams() -> usize {
    4096
}

fn default_max_pending_bytes() -> usize {
    16 << 20
}

impl MultilineConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_lines == 0 || self.max_bytes == 0 || self.max_streams == 0 {
            return Err("max_lines, max_bytes and max_streams must be at least 1".into());
        }
        if self.flush_timeout.is_zero() {
            return Err("flush_timeout must be longer than 0".into());
        }
        if self.max_pending_bytes < self.max_bytes {
            return Err(format!(
                "max_pending_bytes ({}) must be at least max_bytes ({})",
                self.max_pending_bytes, self.max_bytes
            ));
        }
        let custom = self.start_pattern.is_some()
            || self.continue_pattern.is_some()
            || self.end_pattern.is_some()
            || self.indented;
        if self.preset == Preset::None && !custom {
            return Err("preset = \"none\" needs start_pattern, continue_pattern, end_pattern or indented = true".into());
        }
        Ok(())
    }
}

struct Metrics {
    merged: metrics::Counter,
    truncated_lines: metrics::Counter,
    truncated_bytes: metrics::Counter,
    over_budget: metrics::Counter,
}

impl Metrics {
    /// Sends a finished event on its way (with the deliveries it held), counted.
    fn emit(&self, done: Finished, ready: &mut Ready) {
        let Finished {
            mut event,
            lines,
            truncated,
            held,
        } = done;
        if lines > 1 {
            self.merged.increment(1);
        }
        if truncated {
            event.fields.insert("truncated".into(), Value::Bool(true));
        }
        ready.events.push(event);
        ready.held.extend(held);
    }
}

pub struct Multiline {
    rules: Rules,
    max_lines: usize,
    max_bytes: usize,
    flush_timeout: Duration,
    max_streams: usize,
    max_pending_bytes: usize,
    streams: Streams,
    /// Serial of the input batch being processed (from 1).
    serial: u64,
    /// Sub-streams touched by the batch being processed (reused buffer).
    touched: Vec<StreamRef>,
    metrics: Metrics,
}

/// Events ready to go, and the deliveries of the held batches they complete.
#[derive(Default)]
struct Ready {
    events: Vec<Event>,
    held: Vec<Delivery>,
}

impl Ready {
    /// The batch to send: on `delivery` (the input's), or else on the first held one;
    /// `None` (with `delivery` settled) when nothing is ready.
    fn into_batch(self, delivery: Option<Delivery>) -> Option<Batch> {
        if self.events.is_empty() {
            if let Some(delivery) = delivery {
                delivery.settle(BatchStatus::Delivered);
            }
            return None;
        }
        let mut held = self.held.into_iter();
        let mut carrier = delivery.or_else(|| held.next())?;
        for delivery in held {
            carrier.attach(delivery);
        }
        Some(Batch {
            events: self.events,
            delivery: carrier,
        })
    }
}

impl Multiline {
    pub fn new(id: &str, config: &MultilineConfig) -> Multiline {
        let counter = |name: &'static str| metrics::counter!(name, "transform" => id.to_string());
        let truncated = |limit: &'static str| metrics::counter!("ferry_multiline_truncated_total", "transform" => id.to_string(), "limit" => limit);
        Multiline {
            rules: Rules::new(
                config.preset,
                config.start_pattern.clone(),
                config.continue_pattern.clone(),
                config.end_pattern.clone(),
                config.indented,
            ),
            max_lines: config.max_lines,
            max_bytes: config.max_bytes,
            flush_timeout: config.flush_timeout,
            max_streams: config.max_streams,
            max_pending_bytes: config.max_pending_bytes,
            streams: Streams::default(),
            serial: 0,
            touched: Vec::new(),
            metrics: Metrics {
                merged: counter("ferry_multiline_merged_events_total"),
                truncated_lines: truncated("max_lines"),
                truncated_bytes: truncated("max_bytes"),
                over_budget: counter("ferry_multiline_over_budget_total"),
            },
        }
    }

    /// Sub-streams with a pending event.
    pub fn pending_streams(&self) -> usize {
        self.streams.len()
    }

    /// Bytes held by pending events and their sub-streams.
    pub fn pending_bytes(&self) -> usize {
        self.streams.bytes()
    }

    /// Takes one line of the input batch whose delivery is `delivery`.
    fn accept(&mut self, event: Event, now: Instant, delivery: &mut Delivery, ready: &mut Ready) {
        let ends = self.rules.ends(&event.message);
        let Some(at) = self.streams.find(&event, self.serial, now) else {
            let mode = self.rules.start_mode(&event.message);
            let pending = Pending::new(event, mode, self.serial);
            let at = self.streams.insert(pending, self.serial, now);
            self.touched.push(at);
            if ends {
                let done = self.streams.remove(at).finish();
                self.metrics.emit(done, ready);
            }
            return;
        };
        if self.touched.last() != Some(&at) {
            self.touched.push(at);
        }
        let pending = self.streams.pending_mut(at);
        let before = pending.bytes();
        let verdict = self.rules.classify(pending.mode, &event.message);
        let (mode, limit) = match verdict {
            Verdict::Continue(mode) => {
                let limit = if pending.lines >= self.max_lines {
                    Some(&self.metrics.truncated_lines)
                } else if pending.event.message.len() + 1 + event.message.len() > self.max_bytes {
                    Some(&self.metrics.truncated_bytes)
                } else {
                    pending.continues(self.serial, delivery);
                    pending.append(&event.message, mode);
                    let after = pending.bytes();
                    self.streams.recount(before, after);
                    if ends {
                        let done = self.streams.remove(at).finish();
                        self.metrics.emit(done, ready);
                    }
                    return;
                };
                (mode, limit)
            }
            Verdict::Start(mode) => (mode, None),
        };
        let mut done = pending.restart(event, mode, self.serial);
        let after = pending.bytes();
        self.streams.recount(before, after);
        if let Some(counter) = limit {
            counter.increment(1);
            done.truncated = true;
        }
        self.metrics.emit(done, ready);
        if ends {
            let done = self.streams.remove(at).finish();
            self.metrics.emit(done, ready);
        }
    }

    /// Emits the oldest pending events while the sub-streams exceed their budget.
    fn enforce_budget(&mut self, ready: &mut Ready) {
        while self.streams.len() > self.max_streams || self.streams.bytes() > self.max_pending_bytes
        {
            let Some((at, _)) = self.streams.oldest() else {
                return;
            };
            self.metrics.over_budget.increment(1);
            let done = self.streams.remove(at).finish();
            self.metrics.emit(done, ready);
        }
    }

    /// Emits pending events, oldest first, while `due` says so.
    fn emit_oldest_while(&mut self, due: impl Fn(Instant) -> bool) -> Option<Batch> {
        let mut ready = Ready::default();
        while let Some((at, stream)) = self.streams.oldest() {
            if !due(stream.last_line_at) {
                break;
            }
            let done = self.streams.remove(at).finish();
            self.metrics.emit(done, &mut ready);
        }
        ready.into_batch(None)
    }
}

impl StatefulTransform for Multiline {
    fn process(&mut self, batch: Batch, now: Instant) -> Option<Batch> {
        self.serial += 1;
        let Batch {
            events,
            mut delivery,
        } = batch;
        let mut ready = Ready {
            events: Vec::with_capacity(events.len()),
            held: Vec::new(),
        };
        for event in events {
            self.accept(event, now, &mut delivery, &mut ready);
            self.enforce_budget(&mut ready);
        }
        // What is still pending from this batch holds it back (only now, once
        // `delivery` has every rider this batch took on).
        for at in self.touched.drain(..) {
            if let Some(stream) = self.streams.get_mut(at) {
                stream.pending.hold(self.serial, &delivery);
            }
        }
        ready.into_batch(Some(delivery))
    }

    fn deadline(&self) -> Option<Instant> {
        let (_, stream) = self.streams.oldest()?;
        Some(stream.last_line_at + self.flush_timeout)
    }

    fn expire(&mut self, now: Instant) -> Option<Batch> {
        let timeout = self.flush_timeout;
        self.emit_oldest_while(|last_line_at| last_line_at + timeout <= now)
    }

    fn flush(&mut self) -> Option<Batch> {
        self.emit_oldest_while(|_| true)
    }
}

#[cfg(test)]
mod tests;

//! Routing: for each event, its tenant, its stream (label set, under the
//! `max_streams` cap) and its structured metadata; then into the [`Batcher`].

use std::time::Instant;

use super::batch::{Batcher, Entry, Payload};
use super::config::LokiSinkConfig;
use super::labels::{ActiveStreams, Admission, LabelTemplates, OVERFLOW_STREAM};
use crate::checkpoint::BatchStatus;
use crate::event::Batch;
use crate::template::Template;

pub struct Router {
    labels: LabelTemplates,
    metadata: Vec<(String, Template)>,
    tenant: Option<Template>,
    streams: ActiveStreams,
    values: Vec<String>,
    key: String,
    tenant_buf: String,
    labels_dropped: Vec<metrics::Counter>,
    active_streams: metrics::Gauge,
}

impl Router {
    pub fn new(config: &LokiSinkConfig, sink: &str) -> Self {
        let labels = LabelTemplates::new(
            config
                .labels
                .iter()
                .map(|(name, template)| (name.0.clone(), template.clone())),
        );
        let labels_dropped = labels
            .names()
            .iter()
            .map(|name| {
                metrics::counter!("ferry_loki_labels_dropped_total", "sink" => sink.to_string(), "label" => name.clone())
            })
            .collect();
        let streams = ActiveStreams::new(
            labels.names().len(),
            config.max_streams,
            config.stream_idle_timeout,
        );
        Router {
            metadata: config
                .structured_metadata
                .iter()
                .map(|(name, template)| (name.0.clone(), template.clone()))
                .collect(),
            tenant: config.tenant_id.clone(),
            streams,
            values: Vec::new(),
            key: String::new(),
            tenant_buf: String::new(),
            labels_dropped,
            active_streams: metrics::gauge!("ferry_loki_active_streams", "sink" => sink.to_string()),
            labels,
        }
    }

    /// Routes the events of input batch `batch` (given id `id`) into `batcher`; the
    /// batches that fill up on the way are appended to `full`.
    pub fn route(&mut self, batch: Batch, id: u64, batcher: &mut Batcher, full: &mut Vec<Payload>) {
        let now = Instant::now();
        self.streams.expire(now);
        let Batch { events, delivery } = batch;
        let names = self.labels.names();
        for event in events {
            self.tenant_buf.clear();
            if let Some(tenant) = &self.tenant {
                tenant.render_into(&event, &mut self.tenant_buf);
            }
            self.labels.render(&event, &mut self.values);
            let admission = self.streams.admit(names, &self.values, now, &mut self.key);
            let mut metadata = Vec::with_capacity(self.metadata.len());
            for (name, template) in &self.metadata {
                let value = template.render(&event);
                if !value.is_empty() {
                    metadata.push((name.clone(), value));
                }
            }
            let dropped: &[usize] = match &admission {
                Admission::Full => &[],
                Admission::Reduced(dropped) => dropped,
            };
            for &index in dropped {
                self.labels_dropped[index].increment(1);
                if !metadata.iter().any(|(name, _)| *name == names[index]) {
                    metadata.push((names[index].clone(), self.values[index].clone()));
                }
            }
            let values = &self.values;
            let key = &self.key;
            let pairs = || {
                if key == OVERFLOW_STREAM {
                    return vec![("ferry_overflow".to_string(), "true".to_string())];
                }
                names
                    .iter()
                    .zip(values)
                    .enumerate()
                    .filter(|(i, (_, value))| !value.is_empty() && !dropped.contains(i))
                    .map(|(_, (name, value))| (name.clone(), value.clone()))
                    .collect()
            };
            let entry = Entry {
                event,
                metadata,
                batch: id,
            };
            if let Some(payload) = batcher.push(&self.tenant_buf, key, pairs, entry, &delivery, now)
            {
                full.push(payload);
            }
        }
        self.active_streams.set(self.streams.len() as f64);
        delivery.settle(BatchStatus::Delivered);
    }
}

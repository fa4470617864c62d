//! Builds the running pipeline from the config (channels, fan-in, fan-out, one task
//! per component, one ack tracker per source) and runs it to the end: until every
//! source has finished, or a stop is requested and in-flight batches are drained
//! and their checkpoints committed, or a component fails.

mod channel;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use channel::{BatchReceiver, BatchSender, Closed, Fanout, batch_channel};

use crate::buffer::{self, BufferKind, DiskBuffer};
use crate::checkpoint::{BatchStatus, CheckpointStore, TrackerHandle, spawn_tracker};
use crate::config::Config;
use crate::sinks::{Sink, SinkContext};
use crate::sources::{Source, SourceContext, SourceOutput};
use crate::telemetry::Health;
use crate::transforms::Transform;

/// How a pipeline run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every component finished and every checkpoint was committed.
    Completed,
    /// `shutdown_timeout` passed with components still running; what they held will
    /// be read again on the next start.
    TimedOut,
    /// A component failed; the pipeline was stopped.
    Failed,
}

pub struct Pipeline {
    stop_sources: CancellationToken,
    tasks: JoinSet<(String, Result<()>)>,
    trackers: Vec<TrackerHandle>,
}

/// Builds every component, then starts them all. Nothing is started if any build fails.
pub fn start(
    config: &Config,
    store: Arc<CheckpointStore>,
    health: Arc<Health>,
) -> Result<Pipeline> {
    let mut sources: Vec<(String, Box<dyn Source>)> = Vec::new();
    for (id, spec) in &config.sources {
        let source = spec
            .config
            .build()
            .with_context(|| format!("cannot start sources.{id}"))?;
        sources.push((id.clone(), source));
    }
    let mut transforms: Vec<(String, Box<dyn Transform>)> = Vec::new();
    for (id, spec) in &config.transforms {
        let transform = spec
            .config
            .build(id)
            .with_context(|| format!("cannot start transforms.{id}"))?;
        transforms.push((id.clone(), transform));
    }
    let mut sinks: Vec<(String, Box<dyn Sink>, Option<DiskBuffer>)> = Vec::new();
    for (id, spec) in &config.sinks {
        let sink = spec
            .config
            .build()
            .with_context(|| format!("cannot start sinks.{id}"))?;
        let buffer = spec
            .buffer
            .open(&config.data_dir, id)
            .with_context(|| format!("cannot open the disk buffer of sinks.{id}"))?;
        sinks.push((id.clone(), sink, buffer));
    }
    buffer::warn_left_behind(
        &config.data_dir,
        config
            .sinks
            .iter()
            .filter(|(_, spec)| spec.buffer.kind == BufferKind::Disk)
            .map(|(id, _)| id.as_str()),
    );

    // Wire the graph: each component with inputs owns one channel; each of its inputs
    // fans out into it.
    let mut receivers: BTreeMap<String, BatchReceiver> = BTreeMap::new();
    let mut outputs: BTreeMap<String, Fanout> = BTreeMap::new();
    let consumers = config
        .transforms
        .iter()
        .map(|(id, spec)| (id, &spec.inputs, spec.common.buffer_max_bytes))
        .chain(
            config
                .sinks
                .iter()
                .map(|(id, spec)| (id, &spec.inputs, spec.common.buffer_max_bytes)),
        );
    for (id, inputs, buffer) in consumers {
        let (sender, receiver) = batch_channel(buffer);
        for input in inputs {
            outputs
                .entry(input.clone())
                .or_default()
                .push(sender.clone());
        }
        receivers.insert(id.clone(), receiver);
    }

    let mut tasks = JoinSet::new();
    let stop_sources = CancellationToken::new();
    let mut trackers = Vec::new();
    for (id, sink, buffer) in sinks {
        let mut input = receivers
            .remove(&id)
            .context("internal: sink without a channel")?;
        if let Some(buffer) = buffer {
            let attached = buffer.start(input, Arc::clone(&health), stop_sources.clone());
            for (name, task) in attached.tasks {
                tasks.spawn(async move { (name, task.await) });
            }
            trackers.push(attached.tracker);
            input = attached.input;
        }
        let ctx = SinkContext {
            id: Arc::from(id.as_str()),
            health: Arc::clone(&health),
        };
        tasks.spawn(async move {
            let result = sink.run(input, ctx).await;
            (format!("sinks.{id}"), result)
        });
    }
    for (id, transform) in transforms {
        let input = receivers
            .remove(&id)
            .context("internal: transform without a channel")?;
        let output = outputs.remove(&id).unwrap_or_default();
        tasks.spawn(async move {
            let result = run_transform(&id, transform, input, output).await;
            (format!("transforms.{id}"), result)
        });
    }
    for (id, source) in sources {
        let spec = &config.sources[&id];
        let name: Arc<str> = Arc::from(id.as_str());
        let checkpoint = store
            .load(&id)
            .with_context(|| format!("cannot read the checkpoint of sources.{id}"))?;
        let (acker, tracker) = spawn_tracker(
            Arc::clone(&name),
            Arc::clone(&store),
            spec.common.max_in_flight_batches,
            Arc::clone(&health),
        );
        trackers.push(tracker);
        let output = SourceOutput::new(
            &id,
            acker,
            outputs.remove(&id).unwrap_or_default(),
            stop_sources.clone(),
        );
        let ctx = SourceContext {
            id: name,
            checkpoint,
            limits: spec.common.clone(),
            output,
            shutdown: stop_sources.clone(),
        };
        tasks.spawn(async move {
            let result = source.run(ctx).await;
            (format!("sources.{id}"), result)
        });
    }
    Ok(Pipeline {
        stop_sources,
        tasks,
        trackers,
    })
}

async fn run_transform(
    id: &str,
    mut transform: Box<dyn Transform>,
    mut input: BatchReceiver,
    output: Fanout,
) -> Result<()> {
    let dropped =
        metrics::counter!("ferry_transform_dropped_events_total", "transform" => id.to_string());
    while let Some(mut batch) = input.recv().await {
        let before = batch.events.len();
        transform.apply(&mut batch.events);
        dropped.increment(before.saturating_sub(batch.events.len()) as u64);
        if batch.events.is_empty() {
            batch.delivery.settle(BatchStatus::Delivered);
            continue;
        }
        output
            .send(batch)
            .await
            .map_err(|Closed| anyhow::anyhow!("downstream components stopped"))?;
    }
    Ok(())
}

impl Pipeline {
    /// Runs until all components finish, a component fails, or `stop` resolves (its
    /// value is returned with the outcome). After a stop, sources stop reading and the
    /// rest drains for at most `shutdown_timeout`.
    pub async fn run<T>(
        mut self,
        stop: impl Future<Output = T>,
        shutdown_timeout: Duration,
    ) -> (Outcome, Option<T>) {
        let mut failed = false;
        let mut request = None;
        let mut deadline: Option<tokio::time::Instant> = None;
        tokio::pin!(stop);
        let mut stop_armed = true;
        loop {
            let timeout = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                value = &mut stop, if stop_armed => {
                    stop_armed = false;
                    request = Some(value);
                    tracing::info!("stopping: sources stop reading; draining in-flight batches");
                    self.begin_stop(&mut deadline, shutdown_timeout);
                }
                joined = self.tasks.join_next() => match joined {
                    None => break,
                    Some(Ok((name, Ok(())))) => tracing::debug!(component = %name, "finished"),
                    Some(Ok((name, Err(error)))) => {
                        tracing::error!(component = %name, "failed: {error:#}");
                        failed = true;
                        self.begin_stop(&mut deadline, shutdown_timeout);
                    }
                    Some(Err(join_error)) => {
                        tracing::error!("a component task crashed: {join_error}");
                        failed = true;
                        self.begin_stop(&mut deadline, shutdown_timeout);
                    }
                },
                () = timeout => {
                    tracing::warn!(
                        running = self.tasks.len(),
                        "shutdown_timeout reached with components still running; undelivered batches will be read again on the next start"
                    );
                    return (Outcome::TimedOut, request);
                }
            }
        }
        for tracker in self.trackers.drain(..) {
            let wait = deadline.map_or(shutdown_timeout, |at| {
                at.saturating_duration_since(tokio::time::Instant::now())
            });
            if tokio::time::timeout(wait, tracker).await.is_err() {
                return (Outcome::TimedOut, request);
            }
        }
        let outcome = if failed {
            Outcome::Failed
        } else {
            Outcome::Completed
        };
        (outcome, request)
    }

    fn begin_stop(&self, deadline: &mut Option<tokio::time::Instant>, shutdown_timeout: Duration) {
        self.stop_sources.cancel();
        deadline.get_or_insert_with(|| tokio::time::Instant::now() + shutdown_timeout);
    }
}

//! Builds the running pipeline from the config (channels, fan-in, fan-out, one task
//! per component or chain of fused transforms, one ack tracker per source) and runs it to the end: until every
//! source has finished, or a stop is requested and in-flight batches are drained
//! and their checkpoints committed, or a component fails.

mod chain;
mod channel;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use chain::Chain;
pub use channel::{BatchReceiver, BatchSender, Closed, Fanout, batch_channel};

use crate::buffer::{self, BufferKind, DiskBuffer};
use crate::checkpoint::{BatchStatus, CheckpointStore, TrackerHandle, spawn_tracker};
use crate::config::Config;
use crate::event::Batch;
use crate::sinks::{Sink, SinkContext};
use crate::sources::{Source, SourceContext, SourceOutput};
use crate::telemetry::Health;
use crate::transforms::{Stage, StatefulTransform, Transform};

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
    let mut transforms: Vec<(String, Stage)> = Vec::new();
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

    // Fuse: each chain of pure transforms runs in the task of the component before it.
    let mut inputs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut consumers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let specs = config
        .transforms
        .iter()
        .map(|(id, spec)| (id, &spec.inputs, spec.common.buffer_max_bytes))
        .chain(
            config
                .sinks
                .iter()
                .map(|(id, spec)| (id, &spec.inputs, spec.common.buffer_max_bytes)),
        );
    let mut buffers = BTreeMap::new();
    for (id, from, buffer) in specs {
        inputs.insert(id.clone(), from.clone());
        buffers.insert(id.clone(), buffer);
        for input in from {
            consumers.entry(input.clone()).or_default().push(id.clone());
        }
    }
    // A stateful transform is a boundary: it runs in a task of its own (pure transforms
    // after it may join that task), and nothing is fused into a task before it.
    let mut pure: BTreeMap<String, Box<dyn Transform>> = BTreeMap::new();
    let mut stateful: BTreeMap<String, Box<dyn StatefulTransform>> = BTreeMap::new();
    for (id, stage) in transforms {
        match stage {
            Stage::Pure(transform) => pure.insert(id, transform).map(drop),
            Stage::Stateful(transform) => stateful.insert(id, transform).map(drop),
        };
    }
    let mut fused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let heads = config
        .sources
        .keys()
        .chain(config.transforms.keys())
        .cloned()
        .collect::<Vec<_>>();
    for head in heads {
        let after = chain::fused_after(&head, &consumers, &inputs, |id| pure.contains_key(id));
        fused.insert(head, after);
    }
    let fused_ids: Vec<String> = fused.values().flatten().cloned().collect();
    for id in &fused_ids {
        fused.remove(id);
    }
    // Wire the graph: each component with inputs that is not fused owns one channel;
    // each of its inputs fans out into it.
    let mut receivers: BTreeMap<String, BatchReceiver> = BTreeMap::new();
    let mut outputs: BTreeMap<String, Fanout> = BTreeMap::new();
    for (id, from) in &inputs {
        if fused_ids.contains(id) {
            continue;
        }
        let (sender, receiver) = batch_channel(buffers[id]);
        for input in from {
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
    let heads: Vec<String> = config
        .transforms
        .keys()
        .filter(|id| !fused_ids.contains(id))
        .cloned()
        .collect();
    for id in heads {
        let stage = stateful.remove(&id);
        let (chain, last) = chain_of(&id, stage.is_none(), &mut pure, &fused)?;
        let input = receivers
            .remove(&id)
            .context("internal: transform without a channel")?;
        let output = outputs.remove(&last).unwrap_or_default();
        tasks.spawn(async move {
            let result = match stage {
                None => run_transform(chain, input, output).await,
                Some(transform) => run_stateful(transform, chain, input, output).await,
            };
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
        let (chain, last) = chain_of(&id, false, &mut pure, &fused)?;
        let output = SourceOutput::new(
            &id,
            acker.with_byte_budget(spec.common.max_in_flight_bytes),
            chain,
            outputs.remove(&last).unwrap_or_default(),
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

/// The chain run in the task of `head` (itself first when `own`, for a transform),
/// and the last component in it, whose consumers the task feeds.
fn chain_of(
    head: &str,
    own: bool,
    transforms: &mut BTreeMap<String, Box<dyn Transform>>,
    fused: &BTreeMap<String, Vec<String>>,
) -> Result<(Chain, String)> {
    let mut chain = Chain::default();
    let mut last = head.to_string();
    let members = own
        .then_some(head)
        .into_iter()
        .chain(fused.get(head).into_iter().flatten().map(String::as_str));
    for id in members {
        let transform = transforms
            .remove(id)
            .context("internal: a transform was not built")?;
        chain.push(id, transform);
        last = id.to_string();
    }
    Ok((chain, last))
}

/// Runs a transform task: the transform and the ones fused after it, on each batch.
async fn run_transform(mut chain: Chain, mut input: BatchReceiver, output: Fanout) -> Result<()> {
    while let Some(batch) = input.recv().await {
        forward(&mut chain, batch, &output).await?;
    }
    Ok(())
}

/// Runs a stateful transform (and the pure transforms fused after it): each batch as
/// it comes, held events when they are due and no batch is waiting (so a backlog in
/// front of it never splits what it would have joined), and everything held once the
/// input has ended.
///
/// The bytes of held events stay charged to the batches they came from: the
/// transform keeps those batches' deliveries (riders of the batch that finally
/// carries the merged event), so their charges are given back only when that batch
/// is finalized. A merged event holds no more than its lines did, so the batch that
/// carries it is not charged again.
pub(crate) async fn run_stateful(
    mut transform: Box<dyn StatefulTransform>,
    mut chain: Chain,
    mut input: BatchReceiver,
    output: Fanout,
) -> Result<()> {
    loop {
        let deadline = transform.deadline();
        let due = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let ready = tokio::select! {
            biased;
            batch = input.recv() => match batch {
                Some(batch) => transform.process(batch, tokio::time::Instant::now()),
                None => break,
            },
            () = due => transform.expire(tokio::time::Instant::now()),
        };
        if let Some(batch) = ready {
            forward(&mut chain, batch, &output).await?;
        }
    }
    if let Some(batch) = transform.flush() {
        forward(&mut chain, batch, &output).await?;
    }
    Ok(())
}

/// Runs `chain` on `batch` and sends it on; finalizes it if no event is left. What
/// the chain adds to the batch (or takes from it) is charged to (or given back to)
/// its source's in-flight budget.
async fn forward(chain: &mut Chain, mut batch: Batch, output: &Fanout) -> Result<()> {
    let before = batch.allocated_bytes();
    chain.apply(&mut batch.events);
    if batch.events.is_empty() {
        batch.delivery.settle(BatchStatus::Delivered);
        return Ok(());
    }
    let after = batch.allocated_bytes();
    if after > before {
        batch.delivery.charge(after - before);
    } else {
        batch.delivery.refund(before - after);
    }
    output
        .send_sized(batch, after)
        .await
        .map_err(|Closed| anyhow::anyhow!("downstream components stopped"))
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

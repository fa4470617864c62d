//! Builds the running pipeline from the config (channels, fan-in, fan-out, one task
//! per component or chain of fused transforms, one ack tracker per source), applies
//! a changed config to it (reload: only what changed is restarted), and runs it to
//! the end: until every source has finished, or a stop is requested and in-flight
//! batches are drained and their checkpoints committed, or a component fails.

mod chain;
mod channel;
pub mod config;
mod route;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use chain::{Chain, Flow};
pub use channel::{BatchReceiver, BatchSender, Closed, Fanout, WeakBatchSender, batch_channel};
pub use route::Route;

use crate::buffer::{self, BufferKind, DiskBuffer, Handoff};
use crate::checkpoint::{BatchStatus, CheckpointStore, TrackerHandle, spawn_tracker};
use crate::event::Batch;
use crate::sinks::{Sink, SinkContext};
use crate::sources::{Source, SourceContext, SourceOutput};
use crate::telemetry::{Health, Taps, catalog};
use crate::transforms::{Stage, StatefulTransform, Transform};
use config::Config;

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

/// The running pipeline: its component tasks (including those a reload left to
/// drain), and what a reload needs to tell what changed.
pub struct Pipeline {
    store: Arc<CheckpointStore>,
    health: Arc<Health>,
    stop_sources: CancellationToken,
    tasks: JoinSet<(String, Result<()>)>,
    sources: BTreeMap<String, RunningSource>,
    sinks: BTreeMap<String, RunningSink>,
    /// Trackers of sources a reload stopped, still committing.
    retired: Vec<TrackerHandle>,
    /// Release trackers of the sinks' disk buffers.
    buffer_trackers: Vec<TrackerHandle>,
    failed: bool,
}

struct RunningSource {
    settings: toml::Table,
    stop: CancellationToken,
    /// Gone once the source has finished.
    route: Weak<Route>,
    tracker: TrackerHandle,
}

struct RunningSink {
    settings: toml::Table,
    input: WeakBatchSender,
    /// Its disk buffer's output, for a reload to hand the buffer to a new instance.
    handoff: Option<Weak<Handoff>>,
}

/// What a reload did, by component.
#[derive(Debug, Default)]
pub struct Changes {
    pub kept: Vec<String>,
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub removed: Vec<String>,
}

/// Builds every component, then starts them all. Nothing is started if any build fails.
pub fn start(
    config: &Config,
    store: Arc<CheckpointStore>,
    health: Arc<Health>,
) -> Result<Pipeline> {
    let mut pipeline = Pipeline {
        store,
        health,
        stop_sources: CancellationToken::new(),
        tasks: JoinSet::new(),
        sources: BTreeMap::new(),
        sinks: BTreeMap::new(),
        retired: Vec::new(),
        buffer_trackers: Vec::new(),
        failed: false,
    };
    let plan = pipeline.plan(config)?;
    warn_left_behind(config);
    let (_, replacing) = pipeline.launch(config, plan)?;
    for replacement in replacing {
        pipeline.spawn_source(config, replacement)?;
    }
    Ok(pipeline)
}

/// Everything a config needs that is not running yet, built.
struct Plan {
    sources: Vec<(String, Box<dyn Source>)>,
    transforms: Vec<(String, Stage)>,
    sinks: Vec<(String, Box<dyn Sink>, Option<DiskBuffer>)>,
    /// The inputs of the sinks that keep running.
    kept_sinks: BTreeMap<String, BatchSender>,
    /// Changed sinks whose running disk buffer (input included) is kept and handed
    /// to the new instance.
    handovers: Vec<(String, Box<dyn Sink>, Arc<Handoff>)>,
}

/// A source to start once the one it replaces has committed.
struct Replacement {
    id: String,
    source: Box<dyn Source>,
    route: Route,
    previous: Option<TrackerHandle>,
}

impl Pipeline {
    /// Builds what `config` adds or changes; sources and sinks whose options are
    /// unchanged are kept. Nothing runs yet, so a failure leaves the pipeline as it is.
    fn plan(&self, config: &Config) -> Result<Plan> {
        let mut plan = Plan {
            sources: Vec::new(),
            transforms: Vec::new(),
            sinks: Vec::new(),
            kept_sinks: BTreeMap::new(),
            handovers: Vec::new(),
        };
        for (id, spec) in &config.sources {
            if self
                .sources
                .get(id)
                .is_some_and(|running| running.settings == spec.settings)
            {
                continue;
            }
            let source = spec
                .config
                .build()
                .with_context(|| format!("cannot start sources.{id}"))?;
            plan.sources.push((id.clone(), source));
        }
        for (id, spec) in &config.transforms {
            let transform = spec
                .config
                .build(id)
                .with_context(|| format!("cannot start transforms.{id}"))?;
            plan.transforms.push((id.clone(), transform));
        }
        for (id, spec) in &config.sinks {
            let kept = self
                .sinks
                .get(id)
                .filter(|running| running.settings == spec.settings)
                .and_then(|running| running.input.upgrade());
            if let Some(input) = kept {
                plan.kept_sinks.insert(id.clone(), input);
                continue;
            }
            // A sink whose disk buffer is unchanged gets the running buffer.
            let handover = self
                .sinks
                .get(id)
                .filter(|running| running.settings.get("buffer") == spec.settings.get("buffer"))
                .and_then(|running| {
                    let input = running.input.upgrade()?;
                    let handoff = running.handoff.as_ref()?.upgrade()?;
                    Some((input, handoff))
                });
            if let Some((input, handoff)) = handover {
                let sink = spec
                    .config
                    .build()
                    .with_context(|| format!("cannot start sinks.{id}"))?;
                plan.kept_sinks.insert(id.clone(), input);
                plan.handovers.push((id.clone(), sink, handoff));
                continue;
            }
            // Two buffers on one directory would interleave their segments.
            let buffered_before = self.sinks.get(id).is_some_and(|running| {
                running
                    .settings
                    .get("buffer")
                    .and_then(|buffer| buffer.get("type"))
                    .and_then(|kind| kind.as_str())
                    == Some("disk")
            });
            if buffered_before
                || (self.sinks.contains_key(id) && spec.buffer.kind == BufferKind::Disk)
            {
                anyhow::bail!(
                    "sinks.{id} has a disk buffer: a reload can change the sink's other options but not its `buffer` (restart ferry to apply the change)"
                );
            }
            let sink = spec
                .config
                .build()
                .with_context(|| format!("cannot start sinks.{id}"))?;
            let buffer = spec
                .buffer
                .open(&config.data_dir, id)
                .with_context(|| format!("cannot open the disk buffer of sinks.{id}"))?;
            plan.sinks.push((id.clone(), sink, buffer));
        }
        Ok(plan)
    }

    /// Wires and starts what `plan` built: new sinks and every transform task; the
    /// sources that keep running take their new routes; sources that are gone or
    /// changed are stopped. Returns what changed and the sources still to start
    /// (after the ones they replace have committed).
    fn launch(&mut self, config: &Config, plan: Plan) -> Result<(Changes, Vec<Replacement>)> {
        let Plan {
            sources,
            transforms,
            sinks,
            mut kept_sinks,
            handovers,
        } = plan;
        let mut changes = Changes::default();
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
        // Wire the graph: each component with inputs that is not fused owns one channel
        // (a sink that keeps running, the one it has); each of its inputs fans out into it.
        let mut receivers: BTreeMap<String, (BatchReceiver, WeakBatchSender)> = BTreeMap::new();
        let mut outputs: BTreeMap<String, Fanout> = BTreeMap::new();
        for (id, from) in &inputs {
            if fused_ids.contains(id) {
                continue;
            }
            let sender = match kept_sinks.remove(id) {
                Some(sender) => sender,
                None => {
                    let (sender, receiver) = batch_channel(buffers[id]);
                    receivers.insert(id.clone(), (receiver, sender.downgrade()));
                    sender
                }
            };
            for input in from {
                outputs
                    .entry(input.clone())
                    .or_default()
                    .push(sender.clone());
            }
        }

        let health = Arc::clone(&self.health);
        let taps = &health.taps;
        taps.retain(|name| {
            name.split_once('.').is_some_and(|(kind, id)| match kind {
                "sources" => config.sources.contains_key(id),
                "transforms" => config.transforms.contains_key(id),
                "sinks" => config.sinks.contains_key(id),
                _ => false,
            })
        });
        let removed_sinks: Vec<String> = self
            .sinks
            .keys()
            .filter(|id| !config.sinks.contains_key(*id))
            .cloned()
            .collect();
        for id in removed_sinks {
            self.sinks.remove(&id);
            changes.removed.push(format!("sinks.{id}"));
        }
        for id in config.sinks.keys() {
            if !receivers.contains_key(id) && !handovers.iter().any(|(h, _, _)| h == id) {
                changes.kept.push(format!("sinks.{id}"));
            }
        }
        for (id, sink, handoff) in handovers {
            let name = format!("sinks.{id}");
            if let Some(running) = self.sinks.get_mut(&id) {
                running.settings = config.sinks[&id].settings.clone();
            }
            let ctx = SinkContext {
                id: Arc::from(id.as_str()),
                health: Arc::clone(&self.health),
                stopping: self.stop_sources.clone(),
                disk_buffered: true,
            };
            self.spawn(name.clone(), sink.run(handoff.reattach(), ctx));
            changes.restarted.push(name);
        }
        for (id, sink, buffer) in sinks {
            let (receiver, weak) = receivers
                .remove(&id)
                .context("internal: sink without a channel")?;
            let name = format!("sinks.{id}");
            let mut input =
                receiver
                    .with_tap(taps.point(&name))
                    .counted(catalog::component_counter(
                        catalog::RECEIVED_EVENTS,
                        "sink",
                        &id,
                    ));
            let disk_buffered = buffer.is_some();
            let mut handoff = None;
            if let Some(buffer) = buffer {
                let attached =
                    buffer.start(input, Arc::clone(&self.health), self.stop_sources.clone());
                for (task_name, task) in attached.tasks {
                    self.spawn(task_name, task);
                }
                self.buffer_trackers.push(attached.tracker);
                input = attached.input;
                handoff = Some(attached.handoff);
            }
            let restarted = self.sinks.contains_key(&id);
            self.sinks.insert(
                id.clone(),
                RunningSink {
                    settings: config.sinks[&id].settings.clone(),
                    input: weak,
                    handoff,
                },
            );
            let ctx = SinkContext {
                id: Arc::from(id.as_str()),
                health: Arc::clone(&self.health),
                stopping: self.stop_sources.clone(),
                disk_buffered,
            };
            self.spawn(name, sink.run(input, ctx));
            match restarted {
                true => changes.restarted.push(format!("sinks.{id}")),
                false => changes.started.push(format!("sinks.{id}")),
            }
        }
        let heads: Vec<String> = config
            .transforms
            .keys()
            .filter(|id| !fused_ids.contains(id))
            .cloned()
            .collect();
        for id in heads {
            let name = format!("transforms.{id}");
            let stage = stateful.remove(&id);
            let head = match stage {
                Some(_) => Chain::tapped(taps.point(&name)),
                None => Chain::default(),
            };
            let (chain, last) = chain_of(head, &id, stage.is_none(), &mut pure, &fused, taps)?;
            let (input, _) = receivers
                .remove(&id)
                .context("internal: transform without a channel")?;
            let output = outputs.remove(&last).unwrap_or_default();
            self.spawn(name, async move {
                match stage {
                    None => run_transform(chain, input, output).await,
                    Some(transform) => {
                        run_stateful(transform, Flow::transform(&id), chain, input, output).await
                    }
                }
            });
        }

        let removed_sources: Vec<String> = self
            .sources
            .keys()
            .filter(|id| !config.sources.contains_key(*id))
            .cloned()
            .collect();
        for id in removed_sources {
            if let Some(running) = self.sources.remove(&id) {
                running.stop.cancel();
                self.retired.push(running.tracker);
                changes.removed.push(format!("sources.{id}"));
            }
        }
        let mut built: BTreeMap<String, Box<dyn Source>> = sources.into_iter().collect();
        let mut replacing = Vec::new();
        for id in config.sources.keys() {
            let name = format!("sources.{id}");
            let (chain, last) = chain_of(
                Chain::tapped(taps.point(&name)),
                id,
                false,
                &mut pure,
                &fused,
                taps,
            )?;
            let fanout = outputs.remove(&last).unwrap_or_default();
            match built.remove(id) {
                None => {
                    if let Some(route) = self.sources.get(id).and_then(|s| s.route.upgrade()) {
                        route.replace(chain, fanout);
                    }
                    changes.kept.push(name);
                }
                Some(source) => {
                    let previous = self.sources.remove(id).map(|running| {
                        running.stop.cancel();
                        running.tracker
                    });
                    match previous {
                        Some(_) => changes.restarted.push(name),
                        None => changes.started.push(name),
                    }
                    replacing.push(Replacement {
                        id: id.clone(),
                        source,
                        route: Route::new(chain, fanout),
                        previous,
                    });
                }
            }
        }
        Ok((changes, replacing))
    }

    /// Starts a source with its checkpoint as committed now.
    fn spawn_source(&mut self, config: &Config, replacement: Replacement) -> Result<()> {
        let Replacement {
            id, source, route, ..
        } = replacement;
        let spec = &config.sources[&id];
        let name: Arc<str> = Arc::from(id.as_str());
        let checkpoint = self
            .store
            .load(&id)
            .with_context(|| format!("cannot read the checkpoint of sources.{id}"))?;
        let (acker, tracker) = spawn_tracker(
            Arc::clone(&name),
            Arc::clone(&self.store),
            spec.common.max_in_flight_batches,
            Arc::clone(&self.health),
        );
        let stop = self.stop_sources.child_token();
        let route = Arc::new(route);
        let output = SourceOutput::new(
            &id,
            acker.with_byte_budget(spec.common.max_in_flight_bytes),
            Arc::clone(&route),
            stop.clone(),
            &self.health,
        );
        let ctx = SourceContext {
            id: name,
            checkpoint,
            limits: spec.common.clone(),
            output,
            shutdown: stop.clone(),
        };
        self.sources.insert(
            id.clone(),
            RunningSource {
                settings: spec.settings.clone(),
                stop,
                route: Arc::downgrade(&route),
                tracker,
            },
        );
        let name = format!("sources.{id}");
        self.spawn(name, source.run(ctx));
        Ok(())
    }

    /// Runs a component task, answering the watchdog's liveness probes.
    fn spawn(&mut self, name: String, task: impl Future<Output = Result<()>> + Send + 'static) {
        let task = self.health.liveness.supervise(&name, task);
        self.tasks.spawn(async move { (name, task.await) });
    }

    /// Applies `config` to the running pipeline: sources and sinks whose options did
    /// not change keep running (with their connections, cursors and the batches they
    /// hold); every transform is started anew and the graph rewired; removed sources
    /// stop, and removed sinks end once what was sent to them is delivered. A changed
    /// source starts once the previous one has committed what it delivered (waiting
    /// at most `shutdown_timeout`). If anything fails to build, nothing changes.
    pub async fn reload(&mut self, config: &Config) -> Result<Changes> {
        let plan = self.plan(config)?;
        warn_left_behind(config);
        let (changes, replacing) = self.launch(config, plan)?;
        for mut replacement in replacing {
            if let Some(previous) = replacement.previous.take()
                && tokio::time::timeout(config.shutdown_timeout, previous)
                    .await
                    .is_err()
            {
                tracing::warn!(
                    source = %replacement.id,
                    "the previous instance did not finish within shutdown_timeout; starting the new one from the last committed checkpoint"
                );
            }
            self.spawn_source(config, replacement)?;
        }
        Ok(changes)
    }
}

/// The chain run in the task of `head` (itself first when `own`, for a transform),
/// and the last component in it, whose consumers the task feeds.
fn chain_of(
    mut chain: Chain,
    head: &str,
    own: bool,
    transforms: &mut BTreeMap<String, Box<dyn Transform>>,
    fused: &BTreeMap<String, Vec<String>>,
    taps: &Taps,
) -> Result<(Chain, String)> {
    let mut last = head.to_string();
    let members = own
        .then_some(head)
        .into_iter()
        .chain(fused.get(head).into_iter().flatten().map(String::as_str));
    for id in members {
        let transform = transforms
            .remove(id)
            .context("internal: a transform was not built")?;
        chain.push(id, transform, Some(taps.point(&format!("transforms.{id}"))));
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
    flow: Flow,
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
                Some(batch) => {
                    flow.count(batch.events.len(), 0);
                    transform.process(batch, tokio::time::Instant::now())
                }
                None => break,
            },
            () = due => transform.expire(tokio::time::Instant::now()),
        };
        if let Some(batch) = ready {
            flow.count(0, batch.events.len());
            forward(&mut chain, batch, &output).await?;
        }
    }
    if let Some(batch) = transform.flush() {
        flow.count(0, batch.events.len());
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
        let request = self.run_until(stop).await;
        (self.shutdown(shutdown_timeout).await, request)
    }

    /// Runs until `request` resolves (its value is returned), or until the pipeline
    /// must end by itself (`None`): every component finished, or one failed. Then
    /// call [`Pipeline::shutdown`].
    pub async fn run_until<T>(&mut self, request: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(request);
        loop {
            tokio::select! {
                value = &mut request => return Some(value),
                joined = self.tasks.join_next() => match joined {
                    None => return None,
                    Some(joined) => if !self.finished(joined) {
                        return None;
                    },
                },
            }
        }
    }

    /// Sources stop reading; the rest drains and commits for at most `timeout`.
    pub async fn shutdown(mut self, timeout: Duration) -> Outcome {
        if !self.tasks.is_empty() {
            tracing::info!("stopping: sources stop reading; draining in-flight batches");
        }
        let deadline = tokio::time::Instant::now() + timeout;
        self.stop_sources.cancel();
        loop {
            tokio::select! {
                joined = self.tasks.join_next() => match joined {
                    None => break,
                    Some(joined) => {
                        self.finished(joined);
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        running = self.tasks.len(),
                        "shutdown_timeout reached with components still running; undelivered batches will be read again on the next start"
                    );
                    return Outcome::TimedOut;
                }
            }
        }
        let trackers = self
            .sources
            .into_values()
            .map(|source| source.tracker)
            .chain(self.retired)
            .chain(self.buffer_trackers);
        for tracker in trackers {
            if tokio::time::timeout_at(deadline, tracker).await.is_err() {
                return Outcome::TimedOut;
            }
        }
        match self.failed {
            true => Outcome::Failed,
            false => Outcome::Completed,
        }
    }

    /// Logs how a component task ended; false if it failed.
    fn finished(&mut self, joined: Result<(String, Result<()>), tokio::task::JoinError>) -> bool {
        match joined {
            Ok((name, Ok(()))) => {
                tracing::debug!(component = %name, "finished");
                true
            }
            Ok((name, Err(error))) => {
                tracing::error!(component = %name, "failed: {error:#}");
                self.failed = true;
                false
            }
            Err(join_error) => {
                tracing::error!("a component task crashed: {join_error}");
                self.failed = true;
                false
            }
        }
    }
}

/// Warns about disk buffers on disk whose sink is no longer in `config` (they are
/// never deleted silently).
fn warn_left_behind(config: &Config) {
    buffer::warn_left_behind(
        &config.data_dir,
        config
            .sinks
            .iter()
            .filter(|(_, spec)| spec.buffer.kind == BufferKind::Disk)
            .map(|(id, _)| id.as_str()),
    );
}

//! The dead-letter sink a delivering sink (loki, kafka) hands the events its
//! destination refuses for good: the `dead_letter = { type = …, … }` option, the
//! running sink behind it, and the rule that makes a refused batch final (the
//! dead-letter sink gets a clone of the batch's delivery; the original is settled as
//! rejected, so the checkpoint moves on only once the dead-letter copy is written).

use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Deserializer};
use tokio::task::JoinHandle;

use crate::checkpoint::{BatchStatus, Delivery};
use crate::config::{did_you_mean, quoted_list};
use crate::event::{Batch, Event};
use crate::sinks::{Sink, SinkConfig, SinkContext};
use crate::topology::{BatchSender, batch_channel};

/// Byte budget of the channel into the dead-letter sink.
const DEAD_LETTER_BUFFER: usize = 8 << 20;

/// The sink that receives permanently refused events: `{ type = "file", path = … }`.
#[derive(Debug, Clone)]
pub struct DeadLetter(pub Arc<SinkConfig>);

impl<'de> Deserialize<'de> for DeadLetter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(deserializer)?;
        let type_name = match table.remove("type") {
            Some(toml::Value::String(name)) => name,
            Some(_) => return Err(D::Error::custom("dead_letter: `type` must be a string")),
            None => {
                return Err(D::Error::custom(
                    "dead_letter: missing `type`, e.g. { type = \"file\", path = \"/var/lib/ferry/rejected.log\" }",
                ));
            }
        };
        let config =
            crate::config::read_table(&table, |options| {
                match SinkConfig::deserialize_type(&type_name, options) {
                    None => Err(format!(
                        "type: unknown type `{type_name}`{}: {}",
                        did_you_mean(&type_name, SinkConfig::TYPES, '`'),
                        quoted_list(SinkConfig::TYPES, '`')
                    )),
                    Some(result) => result.map_err(|error| format!("{error}")),
                }
            });
        config
            .map(|config| DeadLetter(Arc::new(config)))
            .map_err(D::Error::custom)
    }
}

impl DeadLetter {
    pub fn validate(&self) -> Result<(), String> {
        self.0.validate().map_err(|e| format!("dead_letter: {e}"))
    }

    /// Builds the sink (reading its files and secrets) before anything starts.
    pub fn build(&self) -> anyhow::Result<DeadLetterSink> {
        let sink = self
            .0
            .build()
            .context("cannot start the dead-letter sink")?;
        Ok(DeadLetterSink(sink))
    }
}

/// A built dead-letter sink, not yet running.
pub struct DeadLetterSink(Box<dyn Sink>);

impl DeadLetterSink {
    /// Runs it as `OWNER.dead_letter` (its metrics and health use that id).
    pub fn start(self, owner: &SinkContext) -> RunningDeadLetter {
        let (sender, receiver) = batch_channel(DEAD_LETTER_BUFFER);
        let ctx = SinkContext {
            id: Arc::from(format!("{}.dead_letter", owner.id)),
            health: Arc::clone(&owner.health),
            stopping: owner.stopping.clone(),
            disk_buffered: false,
        };
        RunningDeadLetter {
            queue: DeadLetterQueue(sender),
            task: tokio::spawn(self.0.run(receiver, ctx)),
        }
    }
}

/// The running dead-letter sink; [`finish`](Self::finish) it after its last use.
pub struct RunningDeadLetter {
    queue: DeadLetterQueue,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningDeadLetter {
    pub fn queue(&self) -> DeadLetterQueue {
        self.queue.clone()
    }

    /// Waits for the dead-letter sink to write what it was given; call it once every
    /// [`DeadLetterQueue`] handed out is dropped.
    pub async fn finish(self) -> anyhow::Result<()> {
        drop(self.queue);
        self.task.await.context("the dead-letter sink crashed")?
    }
}

/// Where refused events go.
#[derive(Clone)]
pub struct DeadLetterQueue(BatchSender);

impl DeadLetterQueue {
    /// Hands `events` to the dead-letter sink with a clone of `delivery`, then settles
    /// `delivery` as rejected. Fails only if the dead-letter sink has stopped.
    pub async fn reject(&self, events: Vec<Event>, delivery: Delivery) -> anyhow::Result<()> {
        self.0
            .send(Batch {
                events,
                delivery: delivery.clone(),
            })
            .await
            .map_err(|_| {
                anyhow::anyhow!("the dead-letter sink has stopped; refused events cannot be kept")
            })?;
        delivery.settle(BatchStatus::Rejected);
        Ok(())
    }
}

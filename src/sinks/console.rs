//! The `console` sink: events to standard output, as JSON lines or plain messages.

use anyhow::Context;
use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::encoding::Encoding;
use super::{Sink, SinkContext};
use crate::checkpoint::BatchStatus;
use crate::topology::BatchReceiver;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {
    #[serde(default)]
    pub encoding: Encoding,
}

pub struct ConsoleSink {
    config: ConsoleSinkConfig,
}

impl ConsoleSink {
    pub fn new(config: ConsoleSinkConfig) -> Self {
        ConsoleSink { config }
    }
}

#[async_trait]
impl Sink for ConsoleSink {
    async fn run(
        self: Box<Self>,
        mut input: BatchReceiver,
        ctx: SinkContext,
    ) -> anyhow::Result<()> {
        let events_out = ctx.events_out();
        let mut stdout = tokio::io::stdout();
        let mut buffer = Vec::with_capacity(64 * 1024);
        while let Some(batch) = input.recv().await {
            buffer.clear();
            for event in &batch.events {
                self.config.encoding.encode(event, &mut buffer);
            }
            stdout
                .write_all(&buffer)
                .await
                .context("cannot write to standard output")?;
            stdout
                .flush()
                .await
                .context("cannot flush standard output")?;
            events_out.increment(batch.events.len() as u64);
            batch.delivery.settle(BatchStatus::Delivered);
        }
        Ok(())
    }
}

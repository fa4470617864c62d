//! The `stdin` source: lines from standard input until it closes. It keeps no cursor
//! (a pipe cannot be rewound); once input ends and everything is delivered, ferry exits.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{SendError, Source, SourceContext};
use crate::checkpoint::CursorUpdate;
use crate::event::{Event, now_nanos};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Longer lines are cut to this many bytes.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    1 << 20
}

/// The stdin source needs nothing but its options.
pub type StdinSource = StdinConfig;

impl super::SourceOptions for StdinConfig {}

/// A partial batch is sent after this long without a new line.
const LINGER: Duration = Duration::from_millis(100);

#[async_trait]
impl Source for StdinSource {
    async fn run(self: Box<Self>, mut ctx: SourceContext) -> anyhow::Result<()> {
        let provider: Arc<str> = Arc::from("stdin");
        let mut input = BufReader::with_capacity(256 * 1024, tokio::io::stdin());
        let mut raw = Vec::new();
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        loop {
            // `read_until` keeps what it read before a timeout in `raw`, so `raw` is
            // cleared only once a whole line is taken.
            let read = tokio::select! {
                () = ctx.shutdown.cancelled() => break,
                read = tokio::time::timeout(LINGER, input.read_until(b'\n', &mut raw)) => read,
            };
            let idle = read.is_err();
            let ended = match read {
                Err(_elapsed) => false,
                Ok(Ok(0)) => true,
                Ok(Ok(_)) => {
                    let line = raw.strip_suffix(b"\n").unwrap_or(&raw);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    let line = &line[..line.len().min(self.max_line_bytes)];
                    let text = crate::event::lossy_text(line);
                    batch_bytes += text.len();
                    batch.push(Event::new(
                        Arc::clone(&ctx.id),
                        Arc::clone(&provider),
                        text,
                        now_nanos(),
                    ));
                    raw.clear();
                    false
                }
                Ok(Err(error)) => {
                    return Err(anyhow::Error::from(error).context("cannot read standard input"));
                }
            };
            let full = batch.len() >= ctx.limits.batch_max_events
                || batch_bytes >= ctx.limits.batch_max_bytes;
            if !batch.is_empty() && (full || idle || ended) {
                batch_bytes = 0;
                match ctx
                    .output
                    .send(std::mem::take(&mut batch), CursorUpdate::default())
                    .await
                {
                    Ok(()) => {}
                    Err(SendError::ShuttingDown) => return Ok(()),
                    Err(SendError::Closed) => anyhow::bail!("downstream components stopped"),
                }
            }
            if ended {
                break;
            }
        }
        Ok(())
    }
}

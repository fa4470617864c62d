//! Fan-in for provider sources, which follow several sub-streams at once (one task
//! per container stream, task file, journald unit, job). Each task fills an
//! [`Emitter`] and sends [`Piece`]s: events in stream order plus the cursor its
//! sub-stream reached after them (or, for a poll whose answer spans many
//! sub-streams, the cursors of those it holds). The source's own task gathers
//! pieces into batches within the configured limits and sends each batch tagged
//! with the latest cursor of every sub-stream it holds, so a cursor is committed
//! only once everything before it is delivered. The channel is bounded, so a slow pipeline stops the
//! followers reading, and memory stays flat.

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Stopped;
use crate::checkpoint::CursorUpdate;
use crate::event::Event;
use crate::sources::{SendError, SourceContext};

/// Pieces waiting for the source task, per source.
const PIECES_IN_FLIGHT: usize = 16;

/// Events of one sub-stream and the cursor (key, value) reached after them; or
/// events of several sub-streams and the cursor of each.
#[derive(Debug)]
pub(super) struct Piece {
    pub events: Vec<Event>,
    pub cursors: Vec<(String, Value)>,
}

pub(super) type PieceSender = mpsc::Sender<Piece>;
pub(super) type PieceReceiver = mpsc::Receiver<Piece>;

pub(super) fn channel() -> (PieceSender, PieceReceiver) {
    mpsc::channel(PIECES_IN_FLIGHT)
}

/// Collects one sub-stream's events and sends them as pieces of at most
/// `batch_max_events` events / `batch_max_bytes` message bytes.
pub struct Emitter {
    events: Vec<Event>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
    pieces: PieceSender,
    stop: CancellationToken,
}

impl Emitter {
    pub(super) fn new(
        max_events: usize,
        max_bytes: usize,
        pieces: PieceSender,
        stop: CancellationToken,
    ) -> Self {
        Emitter {
            events: Vec::new(),
            bytes: 0,
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
            pieces,
            stop,
        }
    }

    /// Adds an event to the piece being built.
    pub fn push(&mut self, event: Event) {
        self.bytes += event.message.len();
        self.events.push(event);
    }

    /// The piece is full and should be sent now.
    pub fn is_full(&self) -> bool {
        self.events.len() >= self.max_events || self.bytes >= self.max_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Sends the events pushed so far with `cursor` (key, value), the position the
    /// sub-stream reached after them — or with several (key, value), one per
    /// sub-stream whose events the piece holds. Waits while the pipeline is full;
    /// `Err` once the source is stopping.
    pub async fn send(
        &mut self,
        cursor: impl IntoIterator<Item = (String, Value)>,
    ) -> Result<(), Stopped> {
        self.bytes = 0;
        let piece = Piece {
            events: std::mem::take(&mut self.events),
            cursors: cursor.into_iter().collect(),
        };
        tokio::select! {
            () = self.stop.cancelled() => Err(Stopped),
            sent = self.pieces.send(piece) => sent.map_err(|_| Stopped),
        }
    }
}

/// Forwards pieces as batches until shutdown, until every sender is gone (`Ok`), or
/// until the pipeline stops taking batches.
pub(super) async fn forward(
    pieces: &mut PieceReceiver,
    ctx: &mut SourceContext,
) -> anyhow::Result<()> {
    let max_events = ctx.limits.batch_max_events.max(1);
    let max_bytes = ctx.limits.batch_max_bytes.max(1);
    loop {
        let first = tokio::select! {
            () = ctx.shutdown.cancelled() => return Ok(()),
            piece = pieces.recv() => match piece {
                Some(piece) => piece,
                None => return Ok(()),
            },
        };
        let mut events = Vec::new();
        let mut bytes = 0;
        let mut cursor = CursorUpdate::default();
        let mut add = |piece: Piece, events: &mut Vec<Event>, cursor: &mut CursorUpdate| {
            bytes += piece.events.iter().map(|e| e.message.len()).sum::<usize>();
            events.extend(piece.events);
            for (key, value) in piece.cursors {
                *cursor = std::mem::take(cursor).with(key, Some(value));
            }
            bytes
        };
        let mut total = add(first, &mut events, &mut cursor);
        while events.len() < max_events && total < max_bytes {
            match pieces.try_recv() {
                Ok(piece) => total = add(piece, &mut events, &mut cursor),
                Err(_) => break,
            }
        }
        match ctx.output.send(events, cursor).await {
            Ok(()) => {}
            Err(SendError::ShuttingDown) => return Ok(()),
            Err(SendError::Closed) => anyhow::bail!("downstream components stopped"),
        }
    }
}

//! Durable delivery bookkeeping: the crash-safe cursor store, the per-source
//! ordered acknowledgement tracker that decides when a cursor may be committed, and
//! the byte budget that bounds what a source has in flight.

mod ack;
mod budget;
mod store;

pub use ack::{
    Acker, BatchStatus, CursorLog, CursorUpdate, Delivery, TrackerHandle, TrackerOwner,
    spawn_tracker, spawn_tracker_into,
};
pub use store::{CheckpointStore, CommittedCursor, Cursors};

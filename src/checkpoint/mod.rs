//! Durable delivery bookkeeping: the crash-safe cursor store and the per-source
//! ordered acknowledgement tracker that decides when a cursor may be committed.

mod ack;
mod store;

pub use ack::{
    Acker, BatchStatus, CursorLog, CursorUpdate, Delivery, TrackerHandle, TrackerOwner, spawn_tracker,
    spawn_tracker_into,
};
pub use store::{CheckpointStore, Cursors};

//! Durable delivery bookkeeping: the crash-safe cursor store and the per-source
//! ordered acknowledgement tracker that decides when a cursor may be committed.

mod ack;
mod store;

pub use ack::{Acker, BatchStatus, CursorUpdate, Delivery, TrackerHandle, spawn_tracker};
pub use store::{CheckpointStore, Cursors};

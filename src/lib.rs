//! ferry: a log shipping agent. Sources read logs (provider APIs, files, stdin,
//! a demo generator), transforms rewrite them, sinks deliver them, and checkpoints
//! advance only after delivery, so restarts and crashes neither lose nor flood logs.
//!
//! `ferry::app::run` is what the `ferry run` command does; the modules below are the
//! pieces, each owning one concern.

pub mod allocator;
pub mod app;
pub mod buffer;
pub mod checkpoint;
pub mod config;
pub mod control;
pub mod event;
pub mod http;
pub mod inspect;
pub mod kafka;
pub mod notify;
pub mod resident;
pub mod secret;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod template;
pub mod topology;
pub mod transforms;

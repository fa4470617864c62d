//! The `loki` sink: Grafana Loki's push API (`/loki/api/v1/push`), as snappy-compressed
//! protobuf or JSON. Events are routed to a tenant and a stream (label set), batched
//! per tenant, sorted per stream, and pushed with a bounded number of requests in
//! flight. An input batch is acknowledged only after every request that carried a
//! part of it got a 2xx, or was permanently refused (4xx) and its entries were handed
//! to the dead-letter sink. Retries never give up; see `service` for the policy. When
//! Loki refuses some entries of a push, exactly those are found and dead-lettered.
//!
//! - `config`: options and validation
//! - `route`: tenant, labels, structured metadata per event
//! - `labels`: label sets and the active-stream cap
//! - `batch`: per-tenant batches and their acknowledgements
//! - `request`: protobuf and JSON bodies
//! - `service`: HTTP, retries, the shared backoff
//! - `refusal`: reading Loki's 400 answers (which entries, why)
//! - `isolate`: finding the refused entries of a push, as a pure state machine
//! - `sink`: the run loop, dead letters

mod batch;
mod config;
mod isolate;
mod labels;
pub mod proto;
mod refusal;
mod request;
mod route;
mod service;
mod sink;

pub use config::{
    Auth, Compression, LabelName, LokiEncoding, LokiSinkConfig, PUSH_PATH, TlsOptions,
};
pub use labels::is_valid_label_name;
pub use sink::LokiSink;

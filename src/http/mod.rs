//! Shared HTTP client pieces for provider sources and HTTP sinks.

pub mod retry;
pub mod sse;

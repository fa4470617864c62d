//! Shared HTTP client pieces for provider sources and HTTP sinks: the client and its
//! auth header, error-body summaries, retry timing, the SSE decoder, and the
//! follow-a-stream connection and reconnect policy.

pub mod client;
pub mod retry;
pub mod sse;
pub mod stream;

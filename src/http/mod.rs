//! Shared HTTP client pieces for provider sources and HTTP sinks: the client and its
//! auth header, error-body summaries, retry timing, credentials and token renewal,
//! the rate budget, one source's API ([`api::Api`]), the SSE decoder, websocket
//! upgrades, the connection that frames either, and the reconnect policy.

pub mod api;
pub mod auth;
pub mod client;
pub mod connection;
pub mod rate;
pub mod retry;
pub mod sse;
pub mod stream;
pub mod ws;

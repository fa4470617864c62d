//! The options every source shares, whatever its type: how much it may have sent and
//! not yet had delivered, and how it cuts batches.

use serde::Deserialize;

/// The shared source options (`max_in_flight_*`, `batch_max_*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceCommon {
    /// Batches sent but not yet committed. Bounds what a crash replays.
    pub max_in_flight_batches: usize,
    /// Bytes the batches sent and not yet delivered may hold (what the events really
    /// hold in memory, after the transforms fused into the source). Bounds memory.
    pub max_in_flight_bytes: usize,
    /// Most events in one batch.
    pub batch_max_events: usize,
    /// Most message bytes in one batch.
    pub batch_max_bytes: usize,
}

impl Default for SourceCommon {
    fn default() -> Self {
        SourceCommon {
            max_in_flight_batches: 32,
            max_in_flight_bytes: 8 << 20,
            batch_max_events: 1000,
            batch_max_bytes: 1 << 20,
        }
    }
}

impl SourceCommon {
    /// The options this struct reads, taken out of a source's table before its type's own.
    pub const KEYS: &[&str] = &[
        "max_in_flight_batches",
        "max_in_flight_bytes",
        "batch_max_events",
        "batch_max_bytes",
    ];
}

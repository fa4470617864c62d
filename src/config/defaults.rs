//! Default values that many components' options share, for serde's
//! `#[serde(default = "…")]`: with `use crate::config::defaults::{secs, yes};`,
//! `default = "yes"` (true) and `default = "secs::<30>"` (30 seconds).

use std::time::Duration;

pub fn yes() -> bool {
    true
}

pub fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

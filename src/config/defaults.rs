//! Default values that many components' options share, for serde's
//! `#[serde(default = "…")]`: with `use crate::config::defaults::{millis, secs, yes};`,
//! `default = "yes"` (true), `default = "secs::<30>"` (30 seconds) and
//! `default = "millis::<250>"` (250 milliseconds).

use std::time::Duration;

pub fn yes() -> bool {
    true
}

pub fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

pub fn millis<const N: u64>() -> Duration {
    Duration::from_millis(N)
}

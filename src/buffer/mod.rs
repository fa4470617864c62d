//! Sink buffers: what sits between a sink's input channel and the sink.
//!
//! The default (`memory`) is the channel alone: a slow or failing sink holds its
//! sources back, and their checkpoints wait. A `disk` buffer instead appends every
//! batch to segment files under `data_dir/buffers/<sink>/` and settles the batch's
//! delivery once it is durable there, so the sources' checkpoints advance and a
//! source that cannot replay (stdin, a rotated file, a provider with a short
//! history) loses nothing while the sink is down. The sink is fed from the files; a
//! record is released (and its segment deleted once all of it is) only after the
//! sink settled the replayed batch. See `docs/buffers.md`.
//!
//! - [`record`]: the framing of one batch on disk (length, CRC32C, sequence number);
//! - [`payload`]: the binary form of a batch's events inside a record;
//! - [`segment`]: segment files and the scanner that finds records again after damage;
//! - [`ledger`]: the last record the sink has, made durable;
//! - [`disk`]: opening and recovering a buffer, and the state its tasks share;
//! - [`writer`] and [`reader`]: the two tasks of a running buffer;
//! - [`inspect`]: `ferry buffer stats` and `verify`.

mod disk;
pub mod inspect;
mod ledger;
mod payload;
mod reader;
pub mod record;
pub mod segment;
mod writer;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use disk::{Attached, DiskBuffer};
pub use reader::Handoff;

use crate::sinks::file::FsyncPolicy;

/// A sink's `buffer` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    #[serde(rename = "type", default)]
    pub kind: BufferKind,
    /// Most bytes the buffer's segment files may take on disk (`disk` only).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    #[serde(default)]
    pub when_full: WhenFull,
    /// When appended batches are fsynced (`disk` only).
    #[serde(default)]
    pub fsync: Option<FsyncPolicy>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BufferKind {
    /// The sink's input channel alone: backpressure on the sources.
    #[default]
    Memory,
    /// Segment files under `data_dir/buffers/<sink>/`.
    Disk,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Hold the sources back until the sink has made room.
    #[default]
    Block,
    /// Drop (and count) batches that do not fit; the sources go on.
    DropNewest,
}

/// The default `max_bytes` of a disk buffer: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// The smallest `max_bytes` accepted.
pub const MIN_MAX_BYTES: u64 = 1 << 20;

impl BufferConfig {
    /// Checks that need more than one option at a time.
    pub fn validate(&self) -> Result<(), String> {
        match self.kind {
            BufferKind::Memory => {
                if self.max_bytes.is_some() || self.fsync.is_some() {
                    return Err("`buffer.max_bytes` and `buffer.fsync` apply to `type = \"disk\"` only; the memory buffer's budget is `buffer_max_bytes`".into());
                }
                if self.when_full != WhenFull::Block {
                    return Err("`buffer.when_full = \"drop_newest\"` needs `type = \"disk\"`; a memory buffer always holds the sources back".into());
                }
                Ok(())
            }
            BufferKind::Disk => match self.max_bytes {
                Some(max) if max < MIN_MAX_BYTES => Err(format!(
                    "`buffer.max_bytes` is {max}; a disk buffer needs at least {MIN_MAX_BYTES} bytes"
                )),
                _ => Ok(()),
            },
        }
    }

    /// Opens the sink's disk buffer (recovering what a crash left), or `None` for a
    /// memory buffer.
    pub fn open(&self, data_dir: &Path, sink: &str) -> anyhow::Result<Option<DiskBuffer>> {
        match self.kind {
            BufferKind::Memory => Ok(None),
            BufferKind::Disk => DiskBuffer::open(&directory(data_dir, sink), sink, self).map(Some),
        }
    }
}

/// Where the disk buffer of `sink` keeps its files.
pub fn directory(data_dir: &Path, sink: &str) -> PathBuf {
    data_dir.join("buffers").join(sink)
}

/// The sinks that have a buffer directory under `data_dir` (whatever the config says).
pub fn on_disk(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("buffers")) else {
        return Vec::new();
    };
    let mut sinks: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    sinks.sort();
    sinks
}

/// Warns about each buffer on disk whose sink no longer has a disk buffer in the
/// config: its batches stay there, undelivered, until the sink comes back or an
/// operator deletes the directory. Nothing is ever deleted here.
pub fn warn_left_behind<'a>(data_dir: &Path, disk_buffered: impl Iterator<Item = &'a str>) {
    let kept: Vec<&str> = disk_buffered.collect();
    for sink in on_disk(data_dir) {
        if kept.contains(&sink.as_str()) {
            continue;
        }
        let dir = directory(data_dir, &sink);
        match inspect::stats(&dir) {
            Ok(stats) if stats.records == 0 => {}
            Ok(stats) => tracing::warn!(
                sink = %sink,
                path = %dir.display(),
                records = stats.records,
                events = stats.events,
                "a disk buffer holds undelivered events of a sink that is not (or no longer) disk-buffered in the config; they stay on disk until the sink is back with `buffer.type = \"disk\"`, or until you delete the directory"
            ),
            Err(error) => tracing::warn!(
                sink = %sink,
                path = %dir.display(),
                "a disk buffer of a sink that is not in the config is left on disk (cannot read it: {error:#})"
            ),
        }
    }
}

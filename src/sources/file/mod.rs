//! The `file` source: follows the files matched by glob patterns, through rotation by
//! rename and by copytruncate, and resumes each from its committed offset after
//! checking that the offset still belongs to the same content.
//!
//! Identity: a followed file is its (device, inode). A file that appears with the same
//! first 256 bytes as a file already known (a copytruncate copy) continues from that
//! file's offset instead of starting over. A saved offset is used only if the file's
//! first bytes and the bytes just before the offset still hash the same, so inode
//! reuse or truncation while ferry was stopped means reading from the start, never
//! skipping data.

mod reader;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Deserializer};

use self::reader::{FileCursor, FileReader, HEAD_LEN, Line, cursor_key, hash_at};
use super::{SendError, Source, SourceContext};
use crate::checkpoint::CursorUpdate;
use crate::config::defaults::{millis, secs};
use crate::event::{Event, now_nanos};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Files with no checkpoint are read from their first byte.
    #[default]
    Beginning,
    /// Files present at start with no checkpoint are read from their end; files that
    /// appear later are always read from the beginning.
    End,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Glob patterns of files to follow (`/var/log/app/*.log`).
    #[serde(deserialize_with = "patterns")]
    pub include: Vec<glob::Pattern>,
    /// Glob patterns of files to leave alone, even when included.
    #[serde(default, deserialize_with = "patterns")]
    pub exclude: Vec<glob::Pattern>,
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Longer lines are cut to this many bytes (and counted); the rest is skipped.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// How often to look for new data in files that are at their end.
    #[serde(default = "millis::<250>", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How often to look for new files matching `include`.
    #[serde(default = "secs::<1>", with = "humantime_serde")]
    pub glob_interval: Duration,
    /// How long to keep reading a file after it stopped matching (renamed away or
    /// deleted), so a writer's last lines before reopening are not lost.
    #[serde(default = "secs::<5>", with = "humantime_serde")]
    pub rotate_wait: Duration,
}

/// How many pre-truncation positions are remembered for copytruncate copies.
const RECENT_TRUNCATIONS: usize = 16;

fn default_max_line_bytes() -> usize {
    1 << 20
}

fn patterns<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<glob::Pattern>, D::Error> {
    let raw = Vec::<String>::deserialize(deserializer)?;
    raw.iter()
        .map(|p| {
            glob::Pattern::new(p)
                .map_err(|e| serde::de::Error::custom(format!("invalid glob pattern `{p}`: {e}")))
        })
        .collect()
}

/// How many bytes of its file a committed cursor is behind the file's end, when the
/// file at the cursor's path is still the one it was read from (for `checkpoints list`).
pub fn lag_bytes(cursor: &serde_json::Value) -> Option<u64> {
    let cursor = FileCursor::deserialize(cursor).ok()?;
    let metadata = std::fs::metadata(&cursor.path).ok()?;
    (metadata.dev() == cursor.dev && metadata.ino() == cursor.ino)
        .then(|| metadata.len().saturating_sub(cursor.offset))
}

impl super::SourceOptions for FileSourceConfig {
    fn validate(&self) -> Result<(), String> {
        if self.include.is_empty() {
            return Err("`include` is empty; give at least one glob pattern".into());
        }
        if self.max_line_bytes == 0 {
            return Err("`max_line_bytes` must be at least 1".into());
        }
        Ok(())
    }
}

pub struct FileSource {
    config: FileSourceConfig,
}

impl From<FileSourceConfig> for FileSource {
    fn from(config: FileSourceConfig) -> Self {
        FileSource { config }
    }
}

#[async_trait]
impl Source for FileSource {
    async fn run(self: Box<Self>, mut ctx: SourceContext) -> anyhow::Result<()> {
        let saved: BTreeMap<String, FileCursor> = ctx
            .checkpoint
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), serde_json::from_value(v.clone()).ok()?)))
            .collect();
        let label = ("source", ctx.id.to_string());
        let mut state = Follower {
            config: self.config,
            source: Arc::clone(&ctx.id),
            provider: Arc::from("file"),
            host: hostname(),
            readers: BTreeMap::new(),
            saved,
            first_scan: true,
            truncated: VecDeque::new(),
            removals: Vec::new(),
            truncated_lines: metrics::counter!(
                "ferry_file_lines_truncated_total",
                std::slice::from_ref(&label)
            ),
            invalid_utf8: metrics::counter!(
                "ferry_file_invalid_utf8_total",
                std::slice::from_ref(&label)
            ),
            rotations: metrics::counter!(
                "ferry_file_truncations_total",
                std::slice::from_ref(&label)
            ),
            open_files: metrics::gauge!("ferry_file_open_files", &[label]),
        };
        let mut next_scan = Instant::now();
        loop {
            if ctx.shutdown.is_cancelled() {
                return Ok(());
            }
            if Instant::now() >= next_scan {
                state.scan();
                next_scan = Instant::now() + state.config.glob_interval;
                let removals = std::mem::take(&mut state.removals);
                if !removals.is_empty() {
                    let update = removals
                        .into_iter()
                        .fold(CursorUpdate::default(), |u, key| u.with(key, None));
                    if stopped(ctx.output.send(Vec::new(), update).await)? {
                        return Ok(());
                    }
                }
            }
            let mut progressed = false;
            let keys: Vec<String> = state.readers.keys().cloned().collect();
            for key in keys {
                // A few batches per file per round, so one busy file cannot starve others.
                for _ in 0..4 {
                    let Some((events, cursor)) = state.read_batch(&key, &ctx) else {
                        break;
                    };
                    progressed = true;
                    if stopped(ctx.output.send(events, cursor).await)? {
                        return Ok(());
                    }
                }
            }
            if !progressed {
                tokio::select! {
                    () = ctx.shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(state.config.poll_interval) => {}
                }
            }
        }
    }
}

/// Whether a send failure means "stop now" (shutdown), or a real error.
fn stopped(result: Result<(), SendError>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(false),
        Err(SendError::ShuttingDown) => Ok(true),
        Err(SendError::Closed) => Err(anyhow::anyhow!("downstream components stopped")),
    }
}

struct Follower {
    config: FileSourceConfig,
    source: Arc<str>,
    /// `file`, shared by every event rather than allocated for each.
    provider: Arc<str>,
    host: Option<String>,
    readers: BTreeMap<String, FileReader>,
    /// Cursors from the store not yet claimed by a file.
    saved: BTreeMap<String, FileCursor>,
    first_scan: bool,
    /// Where recently truncated files were before their truncation: a copytruncate
    /// copy found after the truncation continues from there.
    truncated: VecDeque<FileCursor>,
    /// Cursor keys of files no longer followed, to forget in the store.
    removals: Vec<String>,
    truncated_lines: metrics::Counter,
    invalid_utf8: metrics::Counter,
    rotations: metrics::Counter,
    open_files: metrics::Gauge,
}

impl Follower {
    /// Finds included files, starts following new ones, and marks vanished ones.
    fn scan(&mut self) {
        let mut found: BTreeMap<String, (PathBuf, u64)> = BTreeMap::new();
        for pattern in &self.config.include {
            let Ok(paths) = glob::glob(pattern.as_str()) else {
                continue;
            };
            for path in paths.flatten() {
                if self.config.exclude.iter().any(|p| p.matches_path(&path)) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                found
                    .entry(cursor_key(meta.dev(), meta.ino()))
                    .or_insert((path, meta.len()));
            }
        }
        let now = Instant::now();
        for (key, reader) in self.readers.iter_mut() {
            match found.get(key) {
                Some((path, _)) => {
                    reader.path.clone_from(path);
                    reader.gone_since = None;
                }
                None => {
                    reader.gone_since.get_or_insert(now);
                }
            }
        }
        for (key, (path, size)) in found {
            if self.readers.contains_key(&key) {
                continue;
            }
            match self.start(&key, &path, size) {
                Ok(reader) => {
                    tracing::info!(source = %self.source, path = %path.display(), offset = reader.offset(), "following file");
                    self.readers.insert(key, reader);
                }
                Err(error) => {
                    tracing::warn!(source = %self.source, path = %path.display(), %error, "cannot open file; will retry");
                }
            }
        }
        if self.first_scan {
            // Cursors of files that no longer exist would only grow the store.
            self.removals
                .extend(std::mem::take(&mut self.saved).into_keys());
            self.first_scan = false;
        }
        self.open_files.set(self.readers.len() as f64);
    }

    /// Opens a newly found file at the right offset.
    fn start(
        &mut self,
        key: &str,
        path: &std::path::Path,
        size: u64,
    ) -> std::io::Result<FileReader> {
        let max = self.config.max_line_bytes;
        let file = File::open(path)?;
        if let Some(saved) = self.saved.remove(key) {
            if saved.matches(&file, size) {
                return FileReader::open(path, saved.offset, saved.skipping, max);
            }
            tracing::info!(source = %self.source, path = %path.display(), "saved offset does not match the file's content (rotated, truncated or a reused inode); reading from the start");
        }
        if let Some(offset) = self.continuation_offset(&file, size) {
            tracing::info!(source = %self.source, path = %path.display(), offset, "file is a copy of a followed file; continuing from its offset");
            return FileReader::open(path, offset, false, max);
        }
        let offset = match (self.first_scan, self.config.read_from) {
            (true, ReadFrom::End) => size,
            _ => 0,
        };
        FileReader::open(path, offset, false, max)
    }

    /// If `file` begins with the same bytes as a followed file (or a saved cursor)
    /// and holds the same bytes before that file's offset, it is a copy made by
    /// copytruncate: continue from that offset.
    fn continuation_offset(&self, file: &File, size: u64) -> Option<u64> {
        let head = hash_at(file, 0, HEAD_LEN)?;
        let candidates = self
            .readers
            .values()
            .map(FileReader::cursor)
            .chain(self.saved.values().cloned())
            .chain(self.truncated.iter().cloned());
        for cursor in candidates {
            if cursor.head_len == HEAD_LEN && cursor.head_hash == head && cursor.matches(file, size)
            {
                return Some(cursor.offset);
            }
        }
        None
    }

    /// The next batch of `key`'s file, if it has complete lines; closes the file when
    /// it is gone and drained.
    fn read_batch(&mut self, key: &str, ctx: &SourceContext) -> Option<(Vec<Event>, CursorUpdate)> {
        let reader = self.readers.get_mut(key)?;
        let closing = reader
            .gone_since
            .is_some_and(|since| since.elapsed() >= self.config.rotate_wait);
        match reader.check_truncation() {
            Ok(Some(before)) => {
                self.rotations.increment(1);
                tracing::info!(source = %self.source, path = %reader.path.display(), "file was truncated or rewritten; reading it from the start");
                if self.truncated.len() == RECENT_TRUNCATIONS {
                    self.truncated.pop_front();
                }
                self.truncated.push_back(before);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(path = %reader.path.display(), %error, "cannot check file size")
            }
        }
        let mut lines = Vec::new();
        if let Err(error) = reader.read_lines(
            &mut lines,
            ctx.limits.batch_max_events,
            ctx.limits.batch_max_bytes,
            closing,
        ) {
            tracing::warn!(source = %self.source, path = %reader.path.display(), %error, "read failed; will retry");
            return None;
        }
        if lines.is_empty() {
            if closing {
                let reader = self.readers.remove(key)?;
                tracing::info!(source = %self.source, path = %reader.path.display(), "file gone and read to its end; no longer following it");
                self.open_files.set(self.readers.len() as f64);
                return Some((Vec::new(), CursorUpdate::remove(key)));
            }
            return None;
        }
        let path: Arc<str> = Arc::from(reader.path.to_string_lossy());
        let now = now_nanos();
        let events = lines
            .into_iter()
            .map(|line| self.event(line, &path, now))
            .collect();
        let reader = self.readers.get(key)?;
        let cursor = serde_json::to_value(reader.cursor()).ok()?;
        Some((events, CursorUpdate::set(key, cursor)))
    }

    fn event(&self, line: Line, path: &Arc<str>, now: i64) -> Event {
        if line.truncated {
            self.truncated_lines.increment(1);
        }
        if line.invalid_utf8 {
            self.invalid_utf8.increment(1);
        }
        let mut event = Event::new(
            Arc::clone(&self.source),
            Arc::clone(&self.provider),
            line.text,
            now,
        );
        event.origin.host.clone_from(&self.host);
        event.origin.file = Some(Arc::clone(path));
        if line.truncated {
            event
                .fields
                .insert("truncated".into(), serde_json::Value::Bool(true));
        }
        event
    }
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

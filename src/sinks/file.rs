//! The `file` sink: events as lines in files named by a template, size-based
//! rotation, and an fsync policy. A batch is acknowledged only after its bytes are
//! written (and fsynced under `fsync = "batch"`). A failed write is undone (the file
//! is cut back to its size before the write), the file reopened, and the write retried
//! with backoff until it succeeds, so a full disk holds the sources back and loses
//! nothing. When ferry stops while writes fail, the batches are given back at once
//! (see [`SinkContext::stopping`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use serde::Deserialize;

use super::encoding::Encoding;
use super::{Sink, SinkContext};
use crate::checkpoint::BatchStatus;
use crate::http::retry::backoff;
use crate::template::Template;
use crate::topology::BatchReceiver;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync each write before acknowledging: survives power loss.
    #[default]
    Batch,
    /// Hand data to the OS only: survives a crash of ferry, not of the machine.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Output path template: `{{ field }}` and strftime parts of the event time.
    pub path: Template,
    #[serde(default)]
    pub encoding: Encoding,
    /// Rotate a file to `PATH.N` before it would grow past this many bytes.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Close a file after this long without writes.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest wait between retries of a failed write.
    #[serde(default = "default_retry_max_backoff", with = "humantime_serde")]
    pub retry_max_backoff: Duration,
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_retry_max_backoff() -> Duration {
    Duration::from_secs(10)
}

/// Most batches written together (one fsync per path for all of them).
const MAX_BATCHES_PER_WRITE: usize = 64;

pub struct FileSink {
    config: FileSinkConfig,
}

impl FileSink {
    pub fn new(config: FileSinkConfig) -> Self {
        FileSink { config }
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn run(
        self: Box<Self>,
        mut input: BatchReceiver,
        ctx: SinkContext,
    ) -> anyhow::Result<()> {
        let label = ("sink", ctx.id.to_string());
        let events_out = ctx.events_out();
        let bytes_out = metrics::counter!("ferry_sink_bytes_total", std::slice::from_ref(&label));
        let errors = ctx.errors();
        let (duration, batch_events) = (ctx.request_duration(), ctx.batch_events());
        let mut writer = Some(Writer {
            files: HashMap::new(),
            config: self.config.clone(),
        });
        let health_key = format!("sink:{}", ctx.id);
        let mut given_back = 0;
        let mut bytes_per_event = 256;
        'batches: while let Some(first) = input.recv().await {
            let mut batches = vec![first];
            while batches.len() < MAX_BATCHES_PER_WRITE {
                match input.try_recv() {
                    Some(batch) => batches.push(batch),
                    None => break,
                }
            }
            let mut outputs: Vec<(PathBuf, Vec<u8>)> = Vec::new();
            let mut event_count = 0u64;
            let mut path = String::new();
            let event_total: usize = batches.iter().map(|b| b.events.len()).sum();
            for batch in &batches {
                for event in &batch.events {
                    path.clear();
                    self.config.path.render_into(event, &mut path);
                    let buffer = match outputs
                        .iter_mut()
                        .find(|(p, _)| p.as_os_str() == std::ffi::OsStr::new(&path))
                    {
                        Some((_, buffer)) => buffer,
                        None => {
                            // Most sinks write one path: sized for the whole write at
                            // the last write's bytes per event, it never regrows.
                            let capacity = match outputs.is_empty() {
                                true => event_total * bytes_per_event,
                                false => 64 * 1024,
                            };
                            outputs.push((PathBuf::from(&path), Vec::with_capacity(capacity)));
                            &mut outputs.last_mut().expect("just pushed").1
                        }
                    };
                    self.config.encoding.encode(event, buffer);
                    event_count += 1;
                }
            }
            batch_events.record(event_count as f64);
            let written: usize = outputs.iter().map(|(_, bytes)| bytes.len()).sum();
            bytes_per_event = (written / event_total.max(1) + 16).max(16);
            let mut backoff = backoff(Duration::from_millis(50), self.config.retry_max_backoff);
            let mut attempts = 0u32;
            loop {
                let Some(mut w) = writer.take() else {
                    anyhow::bail!("file sink writer lost");
                };
                let job = std::mem::take(&mut outputs);
                let started = std::time::Instant::now();
                let (w_back, job_back, result) = tokio::task::spawn_blocking(move || {
                    let result = w.write_all(&job);
                    (w, job, result)
                })
                .await
                .context("file sink write task failed")?;
                duration.record(started.elapsed().as_secs_f64());
                writer = Some(w_back);
                outputs = job_back;
                match result {
                    Ok(()) => {
                        if attempts > 0 {
                            tracing::info!(sink = %ctx.id, attempts, "file sink recovered; writes succeed again");
                            ctx.health.clear(&health_key);
                        }
                        break;
                    }
                    Err(_) if ctx.stopping.is_cancelled() => {
                        errors.increment(1);
                        given_back += event_count as usize;
                        for batch in batches {
                            batch.delivery.settle(BatchStatus::GivenBack);
                        }
                        continue 'batches;
                    }
                    Err(error) => {
                        errors.increment(1);
                        if attempts == 0 {
                            tracing::warn!(sink = %ctx.id, "file sink write failed, retrying with backoff until it succeeds: {error:#}");
                        }
                        ctx.health
                            .set(&health_key, format!("file sink write failing: {error:#}"));
                        attempts += 1;
                        let delay = backoff.next().unwrap_or(self.config.retry_max_backoff);
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = ctx.stopping.cancelled() => {}
                        }
                    }
                }
            }
            events_out.increment(event_count);
            bytes_out.increment(outputs.iter().map(|(_, b)| b.len() as u64).sum());
            for batch in batches {
                batch.delivery.settle(BatchStatus::Delivered);
            }
            if let Some(w) = writer.as_mut() {
                w.close_idle();
            }
        }
        ctx.report_given_back(given_back);
        Ok(())
    }
}

struct OpenFile {
    file: File,
    size: u64,
    last_used: Instant,
}

struct Writer {
    files: HashMap<PathBuf, OpenFile>,
    config: FileSinkConfig,
}

impl Writer {
    fn write_all(&mut self, outputs: &[(PathBuf, Vec<u8>)]) -> anyhow::Result<()> {
        for (path, bytes) in outputs {
            self.write_one(path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    fn write_one(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        if let (Some(max), Some(open)) = (self.config.max_bytes, self.files.get(path))
            && open.size > 0
            && open.size + bytes.len() as u64 > max
        {
            self.files.remove(path);
            rotate(path)?;
        }
        if !self.files.contains_key(path) {
            let opened = open_for_append(path)?;
            self.files.insert(path.to_path_buf(), opened);
        }
        let Some(open) = self.files.get_mut(path) else {
            return Err(io::Error::other("file vanished from the open set"));
        };
        let before = open.size;
        let result = open
            .file
            .write_all(bytes)
            .and_then(|()| match self.config.fsync {
                FsyncPolicy::Batch => open.file.sync_data(),
                FsyncPolicy::None => Ok(()),
            });
        match result {
            Ok(()) => {
                open.size += bytes.len() as u64;
                open.last_used = Instant::now();
                Ok(())
            }
            Err(error) => {
                // Undo a partial write so the retry cannot leave a torn line; if even
                // that fails, reopening repairs the tail.
                let _ = open.file.set_len(before);
                self.files.remove(path);
                Err(error)
            }
        }
    }

    fn close_idle(&mut self) {
        let timeout = self.config.idle_timeout;
        self.files.retain(|_, f| f.last_used.elapsed() < timeout);
    }
}

/// Opens `path` for appending (creating it and its directories). A last line without
/// its newline is the tail of a write torn by a crash (SIGKILL can stop a write
/// midway, a power loss can lose its end): that write was never acknowledged and will
/// be repeated, so the torn part is cut off rather than left as a corrupt line.
fn open_for_append(path: &Path) -> io::Result<OpenFile> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o640)
        .open(path)?;
    let mut size = file.metadata()?.len();
    if size > 0 && file.metadata()?.is_file() {
        let complete = end_of_last_line(&file, size)?;
        if complete < size {
            tracing::warn!(
                path = %path.display(),
                bytes = size - complete,
                "cutting a torn last line left by a crash; its batch was not acknowledged and is written again"
            );
            file.set_len(complete)?;
            size = complete;
        }
    }
    Ok(OpenFile {
        file,
        size,
        last_used: Instant::now(),
    })
}

/// The length of `file` up to and including its last newline (0 if it has none).
fn end_of_last_line(file: &File, size: u64) -> io::Result<u64> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let window = &mut chunk[..(end - start) as usize];
        file.read_exact_at(window, start)?;
        if let Some(i) = window.iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Renames `path` to the first free `path.N`.
fn rotate(path: &Path) -> io::Result<()> {
    let mut n = 1u64;
    loop {
        let mut target = path.as_os_str().to_owned();
        target.push(format!(".{n}"));
        let target = PathBuf::from(target);
        if !target.exists() {
            return std::fs::rename(path, &target);
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path, max_bytes: Option<u64>) -> Writer {
        Writer {
            files: HashMap::new(),
            config: FileSinkConfig {
                path: Template::parse(dir.join("out.log").to_str().unwrap()).unwrap(),
                encoding: Encoding::Text,
                max_bytes,
                fsync: FsyncPolicy::Batch,
                idle_timeout: default_idle_timeout(),
                retry_max_backoff: default_retry_max_backoff(),
            },
        }
    }

    #[test]
    fn rotates_before_exceeding_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut w = writer(dir.path(), Some(10));
        w.write_one(&path, b"aaaa\n").unwrap();
        w.write_one(&path, b"bbbb\n").unwrap();
        w.write_one(&path, b"cccc\n").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("out.log.1")).unwrap(),
            b"aaaa\nbbbb\n"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"cccc\n");
    }

    #[test]
    fn repairs_a_torn_tail_and_reports_a_full_device() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut content = b"kept\n".to_vec();
        content.extend(std::iter::repeat_n(b'x', 100_000));
        std::fs::write(&path, &content).unwrap();
        let mut w = writer(dir.path(), None);
        w.write_one(&path, b"next\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"kept\nnext\n");
        let only_torn = dir.path().join("torn.log");
        std::fs::write(&only_torn, b"no newline at all").unwrap();
        w.write_one(&only_torn, b"x\n").unwrap();
        assert_eq!(std::fs::read(&only_torn).unwrap(), b"x\n");

        let full = dir.path().join("full.log");
        std::os::unix::fs::symlink("/dev/full", &full).unwrap();
        let error = w.write_one(&full, b"x\n").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC));
    }
}

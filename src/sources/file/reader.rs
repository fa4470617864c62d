//! One followed file: reading lines from an offset, truncating overlong lines,
//! detecting truncation, and the fingerprint (device, inode, a hash of the first
//! bytes, a hash of the bytes just before the offset) that lets a restart prove the
//! saved offset still belongs to the same content.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// Bytes at the start of a file that identify its content.
pub const HEAD_LEN: usize = 256;
/// Bytes before the offset that must match for a saved offset to be trusted.
const TAIL_LEN: usize = 64;
const READ_CHUNK: usize = 64 * 1024;

/// What is saved per file in the checkpoint store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCursor {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    pub head_len: usize,
    pub head_hash: u64,
    pub tail_len: usize,
    pub tail_hash: u64,
    /// The offset is inside an overlong line whose rest is being skipped.
    #[serde(default)]
    pub skipping: bool,
}

impl FileCursor {
    /// True when `file` (already opened, `size` bytes long) still holds the content this
    /// cursor was saved for: same first bytes and same bytes just before the offset.
    pub fn matches(&self, file: &File, size: u64) -> bool {
        if self.offset > size {
            return false;
        }
        hash_at(file, 0, self.head_len) == Some(self.head_hash)
            && self.offset >= self.tail_len as u64
            && hash_at(file, self.offset - self.tail_len as u64, self.tail_len)
                == Some(self.tail_hash)
    }
}

/// The hash of `len` bytes of `file` at `at`, or `None` if they are not all there.
pub fn hash_at(file: &File, at: u64, len: usize) -> Option<u64> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, at).ok()?;
    Some(xxh3_64(&buf))
}

/// The key a file's cursor is stored under.
pub fn cursor_key(dev: u64, ino: u64) -> String {
    format!("{dev}:{ino}")
}

/// A line read from the file.
pub struct Line {
    pub text: String,
    pub truncated: bool,
    pub invalid_utf8: bool,
}

pub struct FileReader {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    file: File,
    /// Position just after the last line handed out.
    offset: u64,
    /// Position up to which bytes are in `pending`.
    read_pos: u64,
    /// Bytes from `offset` to `read_pos`: the start of a line not yet complete.
    pending: Vec<u8>,
    /// The file's first bytes as last seen (up to `HEAD_LEN`).
    head: Vec<u8>,
    /// The bytes just before `offset` (up to `TAIL_LEN`).
    tail: Vec<u8>,
    skipping: bool,
    max_line_bytes: usize,
    /// When the last scan did not find this file under any included path.
    pub gone_since: Option<Instant>,
}

impl FileReader {
    /// Opens `path` to be read from `offset` (a line boundary, or inside an overlong
    /// line when `skipping`).
    pub fn open(
        path: &Path,
        offset: u64,
        skipping: bool,
        max_line_bytes: usize,
    ) -> io::Result<FileReader> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let mut reader = FileReader {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            file,
            offset,
            read_pos: offset,
            pending: Vec::new(),
            head: Vec::new(),
            tail: Vec::new(),
            skipping,
            max_line_bytes: max_line_bytes.max(1),
            gone_since: None,
        };
        reader.head = reader.read_head()?;
        let tail_len = (offset as usize).min(TAIL_LEN);
        let mut tail = vec![0u8; tail_len];
        reader
            .file
            .read_exact_at(&mut tail, offset - tail_len as u64)?;
        reader.tail = tail;
        Ok(reader)
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn cursor(&self) -> FileCursor {
        FileCursor {
            path: self.path.clone(),
            dev: self.dev,
            ino: self.ino,
            offset: self.offset,
            head_len: self.head.len(),
            head_hash: xxh3_64(&self.head),
            tail_len: self.tail.len(),
            tail_hash: xxh3_64(&self.tail),
            skipping: self.skipping,
        }
    }

    fn read_head(&self) -> io::Result<Vec<u8>> {
        let mut head = vec![0u8; HEAD_LEN];
        let mut filled = 0;
        while filled < HEAD_LEN {
            let n = self.file.read_at(&mut head[filled..], filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        head.truncate(filled);
        Ok(head)
    }

    /// Detects a file that was truncated (copytruncate, `> file`) or rewritten since
    /// the last read, and starts it over from the beginning. Returns the cursor of the
    /// content before the truncation if so (a copy of it may turn up).
    pub fn check_truncation(&mut self) -> io::Result<Option<FileCursor>> {
        let size = self.size()?;
        let head_now = self.read_head()?;
        let shrunk = size < self.read_pos;
        let mut rewritten = !head_now.starts_with(&self.head) && !self.head.starts_with(&head_now);
        if !shrunk && !rewritten && !self.tail.is_empty() {
            let mut tail_now = vec![0u8; self.tail.len()];
            self.file
                .read_exact_at(&mut tail_now, self.offset - self.tail.len() as u64)?;
            rewritten = tail_now != self.tail;
        }
        if shrunk || rewritten {
            let before = self.cursor();
            self.offset = 0;
            self.read_pos = 0;
            self.pending.clear();
            self.tail.clear();
            self.skipping = false;
            self.head = head_now;
            return Ok(Some(before));
        }
        if head_now.len() > self.head.len() {
            self.head = head_now;
        }
        Ok(None)
    }

    /// Reads complete lines into `lines` until `max_lines` lines or `max_bytes` bytes
    /// are there or the file has no more complete lines. `flush_partial` also hands
    /// out a final line with no newline (the file is being closed).
    pub fn read_lines(
        &mut self,
        lines: &mut Vec<Line>,
        max_lines: usize,
        max_bytes: usize,
        flush_partial: bool,
    ) -> io::Result<()> {
        let mut bytes = 0usize;
        let mut scanned = 0usize;
        loop {
            // Lines are cut out of `pending` from `start` on; the consumed prefix is
            // dropped once per pass, not once per line.
            let mut start = 0usize;
            while lines.len() < max_lines && bytes < max_bytes {
                let Some(nl) = memchr(&self.pending[start + scanned..]).map(|i| scanned + i) else {
                    scanned = self.pending.len() - start;
                    break;
                };
                if self.skipping {
                    self.skipping = false;
                } else {
                    let truncated = nl > self.max_line_bytes;
                    let raw = &self.pending[start..start + nl.min(self.max_line_bytes)];
                    let line = Self::make_line(raw, truncated);
                    bytes += line.text.len();
                    lines.push(line);
                }
                start += nl + 1;
                scanned = 0;
            }
            self.consume(start);
            if lines.len() >= max_lines || bytes >= max_bytes {
                return Ok(());
            }
            if self.pending.len() > self.max_line_bytes {
                // An overlong line: hand out its start, skip the rest up to its newline.
                if !self.skipping {
                    let line = Self::make_line(&self.pending[..self.max_line_bytes], true);
                    bytes += line.text.len();
                    lines.push(line);
                    self.skipping = true;
                }
                let all = self.pending.len();
                self.consume(all);
                scanned = 0;
                continue;
            }
            let filled = self.pending.len();
            self.pending.resize(filled + READ_CHUNK, 0);
            let read = self
                .file
                .read_at(&mut self.pending[filled..], self.read_pos);
            let n = *read.as_ref().unwrap_or(&0);
            self.pending.truncate(filled + n);
            read?;
            if n == 0 {
                if flush_partial && !self.pending.is_empty() {
                    if !self.skipping {
                        lines.push(Self::make_line(&self.pending, false));
                    }
                    self.skipping = false;
                    let all = self.pending.len();
                    self.consume(all);
                }
                return Ok(());
            }
            self.read_pos += n as u64;
        }
    }

    fn make_line(raw: &[u8], truncated: bool) -> Line {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(text) => Line {
                text: text.to_string(),
                truncated,
                invalid_utf8: false,
            },
            Err(_) => Line {
                text: String::from_utf8_lossy(raw).into_owned(),
                truncated,
                // A truncation cut inside a character is not the file's fault.
                invalid_utf8: !truncated
                    || std::str::from_utf8(&raw[..raw.len().saturating_sub(3)]).is_err(),
            },
        }
    }

    /// Moves the offset past the first `n` pending bytes.
    fn consume(&mut self, n: usize) {
        let consumed = &self.pending[..n];
        if consumed.len() >= TAIL_LEN {
            self.tail.clear();
            self.tail
                .extend_from_slice(&consumed[consumed.len() - TAIL_LEN..]);
        } else {
            self.tail.extend_from_slice(consumed);
            let excess = self.tail.len().saturating_sub(TAIL_LEN);
            self.tail.drain(..excess);
        }
        self.pending.drain(..n);
        self.offset += n as u64;
    }
}

fn memchr(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn texts(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    /// A file holding `content` in a fresh directory (gone with it), and a reader
    /// of it from its start that cuts lines at `max_line` bytes.
    fn written(
        content: &[u8],
        max_line: usize,
    ) -> (tempfile::TempDir, std::path::PathBuf, FileReader) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, content).unwrap();
        let reader = FileReader::open(&path, 0, false, max_line).unwrap();
        (dir, path, reader)
    }

    /// The next lines, at most `max`.
    fn read(reader: &mut FileReader, max: usize) -> Vec<Line> {
        let mut lines = Vec::new();
        reader.read_lines(&mut lines, max, 1 << 20, false).unwrap();
        lines
    }

    #[test]
    fn reads_complete_lines_and_waits_for_the_rest() {
        let (_dir, path, mut reader) = written(b"one\ntwo\r\nthr", 1024);
        assert_eq!(texts(&read(&mut reader, 100)), ["one", "two"]);
        assert_eq!(reader.offset(), 9);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"ee\n")
            .unwrap();
        assert_eq!(texts(&read(&mut reader, 100)), ["three"]);
    }

    #[test]
    fn truncates_overlong_lines_and_keeps_invalid_utf8() {
        let mut content = vec![b'x'; 100];
        content.extend_from_slice(b"\nok\nbad\xff\n");
        let (_dir, _, mut reader) = written(&content, 10);
        let lines = read(&mut reader, 100);
        assert_eq!(texts(&lines), ["xxxxxxxxxx", "ok", "bad\u{fffd}"]);
        assert!(lines[0].truncated && !lines[0].invalid_utf8);
        assert!(lines[2].invalid_utf8);
        assert_eq!(reader.offset(), content.len() as u64);
    }

    #[test]
    fn a_saved_cursor_validates_only_against_the_same_content() {
        let (_dir, path, mut reader) = written(b"alpha\nbeta\n", 1024);
        read(&mut reader, 1);
        let cursor = reader.cursor();
        assert_eq!(cursor.offset, 6);
        let file = File::open(&path).unwrap();
        assert!(cursor.matches(&file, 11));
        std::fs::write(&path, "gamma\nbeta\n").unwrap();
        let file = File::open(&path).unwrap();
        assert!(
            !cursor.matches(&file, 11),
            "rewritten content must not match"
        );
        std::fs::write(&path, "alp").unwrap();
        let file = File::open(&path).unwrap();
        assert!(
            !cursor.matches(&file, 3),
            "offset past the end must not match"
        );
    }

    #[test]
    fn notices_truncation_even_when_the_file_regrew() {
        let (_dir, path, mut reader) = written(b"first generation\n", 1024);
        read(&mut reader, 100);
        std::fs::write(&path, "second generation, longer than the first\n").unwrap();
        let before = reader
            .check_truncation()
            .unwrap()
            .expect("truncation noticed");
        assert_eq!(before.offset, 17);
        assert_eq!(
            texts(&read(&mut reader, 100)),
            ["second generation, longer than the first"]
        );
    }
}

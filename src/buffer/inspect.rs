//! `ferry buffer stats` and `ferry buffer verify`: a read-only scan of a buffer's
//! files (safe while ferry runs: nothing is written, and the last segment's
//! unfinished tail is reported as such rather than as damage).

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::ledger;
use super::segment::{self, Item, Scanner};
use crate::event::{format_rfc3339_nanos, now_nanos};

/// What one segment file holds.
#[derive(Debug)]
pub struct SegmentReport {
    pub path: PathBuf,
    pub bytes: u64,
    /// Intact records (delivered or not).
    pub records: u64,
    /// Damaged stretches: (offset, bytes, record starts seen in them).
    pub damaged: Vec<(u64, u64, u64)>,
    /// Bytes at the end of the last segment that are not (yet) a whole record: one
    /// being written, or a torn write the next start cuts off.
    pub unfinished_tail: u64,
}

/// A buffer as found on disk.
#[derive(Debug)]
pub struct Report {
    pub dir: PathBuf,
    /// The last record its sink delivered.
    pub released: u64,
    /// Records, events and record bytes not yet delivered.
    pub records: u64,
    pub events: u64,
    pub bytes: u64,
    /// When the oldest undelivered record was appended (Unix ns).
    pub oldest: Option<i64>,
    pub segments: Vec<SegmentReport>,
}

impl Report {
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn damaged_stretches(&self) -> usize {
        self.segments.iter().map(|s| s.damaged.len()).sum()
    }
}

/// Scans the buffer in `dir`, checking every record's CRC.
pub fn stats(dir: &Path) -> Result<Report> {
    let released = ledger::read(dir)
        .with_context(|| format!("cannot read the ledger in {}", dir.display()))?;
    let ids = segment::list(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut report = Report {
        dir: dir.to_path_buf(),
        released,
        records: 0,
        events: 0,
        bytes: 0,
        oldest: None,
        segments: Vec::new(),
    };
    for (index, id) in ids.iter().enumerate() {
        let path = segment::path(dir, *id);
        let file = match File::open(&path) {
            Ok(file) => file,
            // Delivered and deleted by a running ferry meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        let bytes = file.metadata()?.len();
        let last = index + 1 == ids.len();
        let mut scanner = Scanner::new(0, bytes, !last);
        let mut segment = SegmentReport {
            path: path.clone(),
            bytes,
            records: 0,
            damaged: Vec::new(),
            unfinished_tail: 0,
        };
        while let Some(item) = scanner
            .next(&file)
            .with_context(|| format!("cannot read {}", path.display()))?
        {
            match item {
                Item::Record { header, .. } => {
                    segment.records += 1;
                    if header.seq > released {
                        report.records += 1;
                        report.events += u64::from(header.events);
                        report.bytes += header.record_len();
                        report.oldest.get_or_insert(header.appended_at);
                    }
                }
                Item::Damaged {
                    offset,
                    len,
                    starts,
                } => segment.damaged.push((offset, len, starts)),
            }
        }
        segment.unfinished_tail = bytes - scanner.position();
        report.segments.push(segment);
    }
    Ok(report)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

impl fmt::Display for Report {
    /// The summary `ferry buffer stats` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let oldest = match self.oldest {
            Some(at) => format!(
                "oldest appended {} ({:.0} s ago)",
                format_rfc3339_nanos(at),
                (now_nanos() - at).max(0) as f64 / 1e9
            ),
            None => "nothing waiting".into(),
        };
        write!(
            f,
            "{} undelivered records, {} events, {} ({oldest}); {} segments, {} on disk",
            self.records,
            self.events,
            mib(self.bytes),
            self.segments.len(),
            mib(self.disk_bytes()),
        )
    }
}

impl fmt::Display for SegmentReport {
    /// One line of `ferry buffer verify`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} bytes, {} intact records",
            self.path.display(),
            self.bytes,
            self.records
        )?;
        for (offset, len, starts) in &self.damaged {
            write!(
                f,
                "; DAMAGED {len} bytes at offset {offset} (about {starts} records)"
            )?;
        }
        if self.unfinished_tail > 0 {
            write!(
                f,
                "; {} bytes at the end are not a whole record (being written, or torn by a crash: cut off at the next start)",
                self.unfinished_tail
            )?;
        }
        Ok(())
    }
}

//! Segment files (`<id>.seg`, ids increasing) and the scanner that walks the records
//! of one, reading it in chunks: it yields each intact record and, for damaged
//! bytes, the stretch up to the next intact record, found again by its magic.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{self, HEADER_LEN, Header, MAGIC, Parsed};

const EXTENSION: &str = "seg";

/// Bytes read from a segment at a time.
const CHUNK: usize = 1 << 20;

pub fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.{EXTENSION}"))
}

/// The segment ids in `dir`, in order (other files are left alone).
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name
            .strip_suffix(EXTENSION)
            .and_then(|n| n.strip_suffix('.'))
            .and_then(|n| n.parse().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// What the scanner found next.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// An intact record at `offset`; its payload is [`Scanner::payload`] until the
    /// next call.
    Record { offset: u64, header: Header },
    /// Damaged bytes at `offset`: up to the next intact record, or to the end.
    /// `starts` counts the record starts (magics) seen in them, at least one.
    Damaged { offset: u64, len: u64, starts: u64 },
}

/// Walks the records of one segment file from an offset up to an end that may grow
/// (a segment still being written); `sealed` says the end is final, so a record cut
/// by it is damage rather than one still being written.
pub struct Scanner {
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    pos: u64,
    end: u64,
    sealed: bool,
    payload: std::ops::Range<usize>,
}

impl Scanner {
    pub fn new(start: u64, end: u64, sealed: bool) -> Scanner {
        Scanner {
            buf: Vec::new(),
            buf_start: start,
            pos: start,
            end,
            sealed,
            payload: 0..0,
        }
    }

    /// Where the next record would start.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Lets the scanner go on to `end` (more of the segment is durable).
    pub fn extend(&mut self, end: u64, sealed: bool) {
        self.end = self.end.max(end);
        self.sealed = sealed;
    }

    /// The payload of the record last returned.
    pub fn payload(&self) -> &[u8] {
        &self.buf[self.payload.clone()]
    }

    /// The next record or damaged stretch; `None` at the end (or, unsealed, where
    /// the bytes so far end inside a record).
    pub fn next(&mut self, file: &File) -> io::Result<Option<Item>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        match self.judge(file, self.pos)? {
            Judged::Record(header) => {
                let offset = self.pos;
                let at = (offset - self.buf_start) as usize + HEADER_LEN;
                self.payload = at..at + header.len as usize;
                self.pos += header.record_len();
                Ok(Some(Item::Record { offset, header }))
            }
            Judged::Unfinished => Ok(None),
            Judged::Damaged => self.skip_damage(file),
        }
    }

    /// From a damaged start, finds the next intact record (or the end).
    fn skip_damage(&mut self, file: &File) -> io::Result<Option<Item>> {
        let offset = self.pos;
        let mut starts = 1;
        let mut from = offset + 1;
        loop {
            let Some(candidate) = self.find_magic(file, from)? else {
                if !self.sealed {
                    // Bytes may still be coming; look again once there are more.
                    return Ok(None);
                }
                self.pos = self.end;
                return Ok(Some(Item::Damaged {
                    offset,
                    len: self.end - offset,
                    starts,
                }));
            };
            match self.judge(file, candidate)? {
                Judged::Record(_) => {
                    self.pos = candidate;
                    return Ok(Some(Item::Damaged {
                        offset,
                        len: candidate - offset,
                        starts,
                    }));
                }
                Judged::Unfinished => return Ok(None),
                Judged::Damaged => {
                    starts += 1;
                    from = candidate + 1;
                }
            }
        }
    }

    /// The first magic at or after `from` (before the end).
    fn find_magic(&mut self, file: &File, mut from: u64) -> io::Result<Option<u64>> {
        while from + MAGIC.len() as u64 <= self.end {
            let available = self.load(file, from, MAGIC.len())?;
            if let Some(i) = record::find_magic(available) {
                return Ok(Some(from + i as u64));
            }
            // A magic may straddle the chunk's end: go on from its last three bytes.
            from += (available.len() - (MAGIC.len() - 1)) as u64;
        }
        Ok(None)
    }

    fn judge(&mut self, file: &File, at: u64) -> io::Result<Judged> {
        loop {
            let bytes = self.load(file, at, HEADER_LEN.min((self.end - at) as usize))?;
            let have = bytes.len();
            match record::parse(bytes) {
                Parsed::Record(header) => return Ok(Judged::Record(header)),
                Parsed::Corrupt => return Ok(Judged::Damaged),
                Parsed::Incomplete(need) if at + need as u64 <= self.end && need > have => {
                    self.load(file, at, need)?;
                }
                Parsed::Incomplete(_) if self.sealed => return Ok(Judged::Damaged),
                Parsed::Incomplete(_) => return Ok(Judged::Unfinished),
            }
        }
    }

    /// The bytes from `at` to the end (or as many as a chunk holds), at least
    /// `min` of them when the end allows, reading from the file as needed.
    fn load(&mut self, file: &File, at: u64, min: usize) -> io::Result<&[u8]> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        let wanted_end = (at + min as u64).min(self.end);
        if at < self.buf_start || wanted_end > buf_end || (at == buf_end && at < self.end) {
            let len = min.max(CHUNK).min((self.end - at) as usize);
            if self.buf.capacity() > 4 * CHUNK && len <= CHUNK {
                self.buf = Vec::new();
            }
            self.buf.resize(len, 0);
            read_exact_at(file, &mut self.buf, at)?;
            self.buf_start = at;
        }
        let from = (at - self.buf_start) as usize;
        let to = ((self.end - self.buf_start) as usize).min(self.buf.len());
        Ok(&self.buf[from..to])
    }
}

enum Judged {
    Record(Header),
    Damaged,
    /// Cut by the end of an unsealed segment: maybe still being written.
    Unfinished,
}

/// Like `read_exact_at`, but a file shorter than expected (cut by someone else) reads
/// as zeros past its end, which the scanner then sees as damage.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn write_records(path: &Path, seqs: std::ops::Range<u64>) -> Vec<u64> {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for seq in seqs {
            offsets.push(out.len() as u64);
            let event = Event::new("s".into(), "p".into(), "x".repeat(seq as usize * 7), 0);
            record::encode(&mut out, seq, 0, &[event]);
        }
        std::fs::write(path, &out).unwrap();
        offsets
    }

    fn scan_all(path: &Path, sealed: bool) -> Vec<Item> {
        let file = File::open(path).unwrap();
        let end = file.metadata().unwrap().len();
        let mut scanner = Scanner::new(0, end, sealed);
        std::iter::from_fn(|| scanner.next(&file).unwrap()).collect()
    }

    #[test]
    fn scans_records_and_finds_the_next_one_after_damage() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), 1);
        let offsets = write_records(&file, 1..6);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[offsets[1] as usize + 40] ^= 0x10;
        std::fs::write(&file, &bytes).unwrap();
        let items = scan_all(&file, true);
        let seqs: Vec<u64> = items
            .iter()
            .filter_map(|i| match i {
                Item::Record { header, .. } => Some(header.seq),
                Item::Damaged { .. } => None,
            })
            .collect();
        assert_eq!(seqs, vec![1, 3, 4, 5]);
        assert!(items.contains(&Item::Damaged {
            offset: offsets[1],
            len: offsets[2] - offsets[1],
            starts: 1
        }));
        assert_eq!(list(dir.path()).unwrap(), vec![1]);
    }

    #[test]
    fn a_cut_tail_is_damage_once_sealed_and_pending_before() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), 2);
        let offsets = write_records(&file, 1..4);
        let len = std::fs::metadata(&file).unwrap().len();
        let handle = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        handle.set_len(len - 3).unwrap();
        let pending = scan_all(&file, false);
        assert_eq!(pending.len(), 2, "the cut record may still be written");
        let sealed = scan_all(&file, true);
        assert_eq!(
            sealed.last(),
            Some(&Item::Damaged {
                offset: offsets[2],
                len: len - 3 - offsets[2],
                starts: 1
            })
        );
    }
}

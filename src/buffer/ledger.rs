//! The buffer's ledger file: the number of the last record its sink has delivered
//! (every earlier one delivered too). Two 32-byte slots are written in turn, each
//! with a generation and a CRC32C, so a write torn by a crash leaves the other slot,
//! and the previous value, intact.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

const MAGIC: [u8; 4] = *b"FBL1";
const SLOT: usize = 32;

pub struct Ledger {
    file: File,
    generation: u64,
    released: u64,
}

impl Ledger {
    /// Opens (or creates) the ledger in `dir`.
    pub fn open(dir: &Path) -> io::Result<Ledger> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("ledger"))?;
        let (generation, released) = read_slots(&file)?;
        Ok(Ledger {
            file,
            generation,
            released,
        })
    }

    /// The ledger in `dir` opened for reading only: every release fails (a ledger
    /// on a disk that went bad).
    #[cfg(test)]
    pub fn read_only(dir: &Path) -> io::Result<Ledger> {
        let file = File::open(dir.join("ledger"))?;
        let (generation, released) = read_slots(&file)?;
        Ok(Ledger {
            file,
            generation,
            released,
        })
    }

    /// No intact slot was found: the ledger is new (or was lost).
    pub fn is_fresh(&self) -> bool {
        self.generation == 0
    }

    /// The last record delivered (0: none).
    pub fn released(&self) -> u64 {
        self.released
    }

    /// Records that every record up to `seq` is delivered; `sync` makes it durable.
    pub fn release(&mut self, seq: u64, sync: bool) -> io::Result<()> {
        let generation = self.generation + 1;
        let mut slot = [0u8; SLOT];
        slot[0..4].copy_from_slice(&MAGIC);
        slot[8..16].copy_from_slice(&generation.to_le_bytes());
        slot[16..24].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32c::crc32c(&slot[8..]);
        slot[4..8].copy_from_slice(&crc.to_le_bytes());
        let at = (generation % 2) * SLOT as u64;
        self.file.write_all_at(&slot, at)?;
        if sync {
            self.file.sync_data()?;
        }
        self.generation = generation;
        self.released = seq;
        Ok(())
    }
}

/// Reads the released record number from the ledger in `dir` without changing it (0
/// when there is none).
pub fn read(dir: &Path) -> io::Result<u64> {
    match File::open(dir.join("ledger")) {
        Ok(file) => read_slots(&file).map(|(_, released)| released),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// (generation, released) of the newest intact slot; (0, 0) if none is.
fn read_slots(file: &File) -> io::Result<(u64, u64)> {
    let mut bytes = [0u8; 2 * SLOT];
    let mut read = 0;
    while read < bytes.len() {
        match file.read_at(&mut bytes[read..], read as u64)? {
            0 => break,
            n => read += n,
        }
    }
    let newest = bytes[..read]
        .chunks_exact(SLOT)
        .filter(|slot| {
            slot[0..4] == MAGIC
                && crc32c::crc32c(&slot[8..])
                    == u32::from_le_bytes([slot[4], slot[5], slot[6], slot[7]])
        })
        .map(|slot| {
            let word = |at: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&slot[at..at + 8]);
                u64::from_le_bytes(w)
            };
            (word(8), word(16))
        })
        .max();
    Ok(newest.unwrap_or((0, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_intact_slot_wins_and_a_torn_one_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), 0);
        let mut ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.released(), 0);
        ledger.release(5, true).unwrap();
        ledger.release(9, false).unwrap();
        assert_eq!(Ledger::open(dir.path()).unwrap().released(), 9);
        let path = dir.path().join("ledger");
        let mut bytes = std::fs::read(&path).unwrap();
        // Generation 2 (released 9) sits in slot 0.
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(dir.path()).unwrap(), 5, "the torn slot is ignored");
        let mut ledger = Ledger::open(dir.path()).unwrap();
        ledger.release(11, true).unwrap();
        assert_eq!(read(dir.path()).unwrap(), 11);
    }
}

//! One buffered batch on disk: a 32-byte header and the batch's events in the
//! `native` encoding, checked by a CRC32C.
//!
//! ```text
//! offset  size  field
//!      0     4  magic  F5 B0 FE 01   (0xF5 never occurs in UTF-8, so never in a payload)
//!      4     4  CRC32C of bytes 8 .. 32 + len (little endian, as every field)
//!      8     4  len     payload bytes
//!     12     4  events  events in the payload
//!     16     8  seq     record number, increasing by one across segments
//!     24     8  appended_at  Unix nanoseconds when it was appended
//!     32   len  payload: per event, its length (u32) and its native encoding
//! ```
//!
//! The magic lets a reader find the next record after a damaged one by scanning; the
//! CRC covers everything after itself, the length included, so a damaged length is
//! caught too; the sequence number tells how many records a damaged stretch held.

use std::sync::Arc;

use crate::event::{Event, native};

pub const MAGIC: [u8; 4] = [0xF5, 0xB0, 0xFE, 0x01];
pub const HEADER_LEN: usize = 32;
/// A length above this is damage, not a record (a batch is far smaller).
pub const MAX_PAYLOAD: usize = 256 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub events: u32,
    pub seq: u64,
    pub appended_at: i64,
}

impl Header {
    /// Bytes the whole record takes.
    pub fn record_len(&self) -> u64 {
        (HEADER_LEN + self.len as usize) as u64
    }
}

/// What the bytes at the start of a slice are.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole record whose CRC matches.
    Record(Header),
    /// Looks like the start of a record but needs this many bytes in all.
    Incomplete(usize),
    /// Not a record.
    Corrupt,
}

/// Appends one record holding `events` to `out`; returns its header.
pub fn encode(out: &mut Vec<u8>, seq: u64, appended_at: i64, events: &[Event]) -> Header {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    for event in events {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        native::encode(event, out);
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    let header = Header {
        len: (out.len() - start - HEADER_LEN) as u32,
        events: events.len() as u32,
        seq,
        appended_at,
    };
    let record = &mut out[start..];
    record[0..4].copy_from_slice(&MAGIC);
    record[8..12].copy_from_slice(&header.len.to_le_bytes());
    record[12..16].copy_from_slice(&header.events.to_le_bytes());
    record[16..24].copy_from_slice(&header.seq.to_le_bytes());
    record[24..32].copy_from_slice(&header.appended_at.to_le_bytes());
    let crc = crc32c::crc32c(&record[8..]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
    header
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Judges the bytes at the start of `bytes` (which may go on past the record).
pub fn parse(bytes: &[u8]) -> Parsed {
    let seen = bytes.len().min(MAGIC.len());
    if bytes[..seen] != MAGIC[..seen] {
        return Parsed::Corrupt;
    }
    if bytes.len() < HEADER_LEN {
        return Parsed::Incomplete(HEADER_LEN);
    }
    let len = u32_at(bytes, 8) as usize;
    if len > MAX_PAYLOAD {
        return Parsed::Corrupt;
    }
    let total = HEADER_LEN + len;
    if bytes.len() < total {
        return Parsed::Incomplete(total);
    }
    if crc32c::crc32c(&bytes[8..total]) != u32_at(bytes, 4) {
        return Parsed::Corrupt;
    }
    Parsed::Record(Header {
        len: len as u32,
        events: u32_at(bytes, 12),
        seq: u64_at(bytes, 16),
        appended_at: u64_at(bytes, 24) as i64,
    })
}

/// Where the next possible record start (its magic) is in `bytes`.
pub fn find_magic(bytes: &[u8]) -> Option<usize> {
    memchr::memmem::find(bytes, &MAGIC)
}

/// The events of a record's payload (the bytes after its header). Events of one
/// record share their source, provider and file names, as the batch they came from
/// did.
pub fn decode(payload: &[u8]) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    let mut shared = SharedNames::default();
    let mut rest = payload;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err("an event's length is cut short".into());
        }
        let len = u32_at(rest, 0) as usize;
        let Some(bytes) = rest.get(4..4 + len) else {
            return Err("an event runs past the record".into());
        };
        let mut event = native::decode(bytes)?;
        shared.share(&mut event);
        events.push(event);
        rest = &rest[4 + len..];
    }
    Ok(events)
}

/// Reuses one allocation for names repeated from event to event.
#[derive(Default)]
struct SharedNames {
    source: Option<Arc<str>>,
    provider: Option<Arc<str>>,
    file: Option<Arc<str>>,
}

impl SharedNames {
    fn share(&mut self, event: &mut Event) {
        fn one(slot: &mut Option<Arc<str>>, name: &mut Arc<str>) {
            match slot {
                Some(kept) if **kept == **name => *name = Arc::clone(kept),
                _ => *slot = Some(Arc::clone(name)),
            }
        }
        one(&mut self.source, &mut event.source);
        one(&mut self.provider, &mut event.provider);
        if let Some(file) = event.origin.file.as_mut() {
            one(&mut self.file, file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| {
                let mut e = Event::new("s".into(), "file".into(), format!("line {i}"), i as i64);
                e.origin.file = Some("/var/log/a.log".into());
                e
            })
            .collect()
    }

    #[test]
    fn a_record_round_trips_and_every_damage_is_caught() {
        let mut out = Vec::new();
        let header = encode(&mut out, 7, 42, &events(3));
        assert_eq!(header.seq, 7);
        assert_eq!(header.events, 3);
        assert_eq!(out.len() as u64, header.record_len());
        assert_eq!(parse(&out), Parsed::Record(header));
        let decoded = decode(&out[HEADER_LEN..]).unwrap();
        assert_eq!(decoded, events(3));
        assert!(Arc::ptr_eq(
            decoded[0].origin.file.as_ref().unwrap(),
            decoded[2].origin.file.as_ref().unwrap()
        ));

        for cut in 0..out.len() {
            assert!(
                matches!(parse(&out[..cut]), Parsed::Incomplete(_)),
                "cut at {cut}"
            );
        }
        for byte in 0..out.len() {
            for bit in 0..8 {
                let mut damaged = out.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    !matches!(parse(&damaged), Parsed::Record(_)),
                    "flip at {byte}.{bit} went unnoticed"
                );
            }
        }
        assert_eq!(find_magic(&out[1..]), None);
        assert!(decode(&[1, 0, 0]).is_err());
        assert!(decode(&[9, 0, 0, 0, b'{']).is_err());
    }
}

//! One buffered batch on disk: a 32-byte header and the batch's events, checked by a
//! CRC32C.
//!
//! ```text
//! offset  size  field
//!      0     4  magic  F5 B0 FE, then the payload's format: 02 (01 before)
//!      4     4  CRC32C of bytes 8 .. 32 + len (little endian, as every field)
//!      8     4  len     payload bytes
//!     12     4  events  events in the payload
//!     16     8  seq     record number, increasing by one across segments
//!     24     8  appended_at  Unix nanoseconds when it was appended
//!     32   len  payload, in its format:
//!               02  the binary form of [`payload`]
//!               01  per event, its length (u32) and its `native` JSON encoding
//!                   (written by earlier versions; still read, never written)
//! ```
//!
//! The magic lets a reader find the next record after a damaged one by scanning (a
//! false match inside a payload fails its CRC); the CRC covers everything after
//! itself, the length included, so a damaged length is caught too; no single flipped
//! bit turns one format byte into the other. The sequence number tells how many
//! records a damaged stretch held.

use std::sync::Arc;

use super::payload;
use crate::event::{Event, native};

/// The magic's bytes before the format byte.
const MAGIC_PREFIX: [u8; 3] = [0xF5, 0xB0, 0xFE];
/// The magic of the records this version writes.
pub const MAGIC: [u8; 4] = [0xF5, 0xB0, 0xFE, Format::Binary as u8];
pub const HEADER_LEN: usize = 32;
/// A length above this is damage, not a record (a batch is far smaller).
pub const MAX_PAYLOAD: usize = 256 << 20;

/// How a record's payload is written: the magic's last byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Earlier versions': each event's `native` JSON encoding.
    Native = 1,
    /// [`payload`]'s binary form.
    Binary = 2,
}

impl Format {
    fn from_byte(byte: u8) -> Option<Format> {
        match byte {
            1 => Some(Format::Native),
            2 => Some(Format::Binary),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: Format,
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
    payload::encode(events, out);
    seal(
        &mut out[start..],
        Format::Binary,
        events.len(),
        seq,
        appended_at,
    )
}

/// Fills in the header of `record` (32 zero bytes, then the payload).
fn seal(record: &mut [u8], format: Format, events: usize, seq: u64, appended_at: i64) -> Header {
    let header = Header {
        format,
        len: (record.len() - HEADER_LEN) as u32,
        events: events as u32,
        seq,
        appended_at,
    };
    record[0..3].copy_from_slice(&MAGIC_PREFIX);
    record[3] = format as u8;
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
    let seen = bytes.len().min(MAGIC_PREFIX.len());
    if bytes[..seen] != MAGIC_PREFIX[..seen] {
        return Parsed::Corrupt;
    }
    let format = match bytes.get(MAGIC_PREFIX.len()) {
        None => return Parsed::Incomplete(HEADER_LEN),
        Some(&byte) => match Format::from_byte(byte) {
            Some(format) => format,
            None => return Parsed::Corrupt,
        },
    };
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
        format,
        len: len as u32,
        events: u32_at(bytes, 12),
        seq: u64_at(bytes, 16),
        appended_at: u64_at(bytes, 24) as i64,
    })
}

/// Where the next possible record start (a magic of a known format) is in `bytes`.
pub fn find_magic(bytes: &[u8]) -> Option<usize> {
    memchr::memmem::find_iter(bytes, &MAGIC_PREFIX).find(|&at| {
        bytes
            .get(at + MAGIC_PREFIX.len())
            .is_some_and(|&byte| Format::from_byte(byte).is_some())
    })
}

/// The events of the record `header` heads, from its payload (the bytes after the
/// header).
pub fn decode(header: &Header, payload: &[u8]) -> Result<Vec<Event>, String> {
    match header.format {
        Format::Binary => payload::decode(payload, header.events as usize),
        Format::Native => decode_native(payload),
    }
}

/// The events of a [`Format::Native`] payload. Events of one record share their
/// source, provider and file names, as the batch they came from did.
fn decode_native(payload: &[u8]) -> Result<Vec<Event>, String> {
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
        assert_eq!(header.format, Format::Binary);
        let decoded = decode(&header, &out[HEADER_LEN..]).unwrap();
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
    }

    /// A record as versions before the binary payload wrote it.
    fn native_record(seq: u64, events: &[Event]) -> Vec<u8> {
        let mut out = vec![0; HEADER_LEN];
        for event in events {
            let mut bytes = Vec::new();
            native::encode(event, &mut bytes);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        seal(&mut out, Format::Native, events.len(), seq, 42);
        out
    }

    #[test]
    fn a_record_an_earlier_version_wrote_is_still_read() {
        let mut old = native_record(3, &events(2));
        assert_eq!(old[..4], [0xF5, 0xB0, 0xFE, 0x01]);
        let mut new = Vec::new();
        encode(&mut new, 4, 43, &events(3));
        old.extend_from_slice(&new);

        let Parsed::Record(header) = parse(&old) else {
            panic!("the old record is not recognized");
        };
        assert_eq!(
            (header.format, header.seq, header.events),
            (Format::Native, 3, 2)
        );
        let at = header.record_len() as usize;
        let decoded = decode(&header, &old[HEADER_LEN..at]).unwrap();
        assert_eq!(decoded, events(2));
        assert!(Arc::ptr_eq(
            decoded[0].origin.file.as_ref().unwrap(),
            decoded[1].origin.file.as_ref().unwrap()
        ));
        assert_eq!(find_magic(&old[1..]), Some(at - 1));
        let Parsed::Record(next) = parse(&old[at..]) else {
            panic!("the new record after the old one is not recognized");
        };
        assert_eq!((next.format, next.seq), (Format::Binary, 4));

        assert!(decode_native(&[1, 0, 0]).is_err());
        assert!(decode_native(&[9, 0, 0, 0, b'{']).is_err());
    }

    #[test]
    fn a_magic_of_an_unknown_format_is_no_record_start() {
        let mut out = Vec::new();
        encode(&mut out, 1, 2, &events(1));
        out[3] = 0x03;
        assert_eq!(parse(&out), Parsed::Corrupt);
        assert_eq!(find_magic(&out), None);
    }
}

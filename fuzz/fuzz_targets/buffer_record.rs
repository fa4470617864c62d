//! Any bytes as the payload of a disk buffer record, in each format the reader knows
//! (the first byte picks one): decoding gives events or an error, never a panic, and
//! events it gives survive a record written and read again unchanged.
#![no_main]

use ferry::buffer::record::{self, Format, HEADER_LEN, Header, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let format = if selector & 1 == 0 {
        Format::Binary
    } else {
        Format::Native
    };
    let header = Header {
        format,
        len: payload.len() as u32,
        events: u32::from(selector >> 1),
        seq: 0,
        appended_at: 0,
    };
    let Ok(events) = record::decode(&header, payload) else {
        return;
    };
    let mut bytes = Vec::new();
    record::encode(&mut bytes, 1, 0, &events);
    let Parsed::Record(header) = record::parse(&bytes) else {
        panic!("a record just written does not parse");
    };
    let again =
        record::decode(&header, &bytes[HEADER_LEN..]).expect("a record just written decodes");
    assert_eq!(again, events);
});

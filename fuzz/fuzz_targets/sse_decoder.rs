//! Fuzzes the SSE decoder: any bytes, fed whole or in chunks of a size taken from
//! the first input byte, must decode to the same events without panicking, and the
//! decoder's memory must stay within its bound.

#![no_main]

use ferry::http::sse::{Decoder, SseEvent};
use libfuzzer_sys::fuzz_target;

const MAX_EVENT_BYTES: usize = 256;

fn decode(body: &[u8], chunk: usize) -> Vec<SseEvent> {
    let mut decoder = Decoder::new(MAX_EVENT_BYTES);
    let mut events = Vec::new();
    for piece in body.chunks(chunk) {
        decoder.feed(piece);
        while let Some(event) = decoder.next_event() {
            assert!(event.data.len() <= MAX_EVENT_BYTES * 3, "data bound");
            events.push(event);
        }
        assert!(
            decoder.buffered() <= MAX_EVENT_BYTES * 3,
            "memory bound: {}",
            decoder.buffered()
        );
    }
    decoder.reset();
    events
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let whole = decode(body, body.len().max(1));
    let chunked = decode(body, usize::from(split % 32) + 1);
    assert_eq!(whole, chunked);
});

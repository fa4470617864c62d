//! Fuzzes what the `scalingo` source decodes: any bytes as a stream message (JSON
//! keyed `event` or `name`, or bare text) split into lines, and as a history dump
//! read line by line in chunks of a size taken from the first input byte. Every
//! line goes through the line parser: no panic, and whatever it reads is part of
//! the line.

#![no_main]

use ferry::http::sse::Decoder;
use ferry::sources::scalingo::{frames, line};
use libfuzzer_sys::fuzz_target;

const MAX_LINE_BYTES: usize = 256;

fn check(raw: &str) {
    if let Ok(parsed) = line::parse(raw) {
        assert!(raw.ends_with(parsed.message), "message is the line's end");
        assert!(!parsed.container.is_empty() && raw.contains(parsed.container));
        assert!(parsed.container.contains(parsed.component()));
        assert!(line::looks_like(raw));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let message = String::from_utf8_lossy(body);
    let sse_event = (split & 0x80 != 0).then_some("ping");
    if let frames::StreamEvent::Log { text, .. } = frames::decode(&message, sse_event) {
        for raw in frames::lines(&text) {
            assert!(!raw.contains('\n'));
            check(raw);
        }
    }
    let mut dump = Decoder::plain(MAX_LINE_BYTES);
    for piece in body.chunks(usize::from(split % 32) + 1) {
        dump.feed(piece);
        while let Some(frame) = dump.next_event() {
            assert!(frame.data.len() <= MAX_LINE_BYTES * 3, "line bound");
            check(&frame.data);
        }
    }
    if let Some(frame) = dump.finish() {
        check(&frame.data);
    }
});

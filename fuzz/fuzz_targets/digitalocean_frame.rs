//! Fuzzes the decoding of App Platform's live log messages and archive lines: any
//! bytes, taken as a websocket message, decode to `data` lines (or plain text
//! lines) and parse as `<component> <RFC3339Nano> <message>` without panicking;
//! and the same bytes sent as a well-formed `{"data": …}` message come back as
//! exactly their non-empty lines.

#![no_main]

use ferry::sources::digitalocean::frame::{Decoded, decode, lines};
use ferry::sources::digitalocean::line;
use libfuzzer_sys::fuzz_target;

fn check_lines(text: &str) {
    for l in lines(text) {
        assert!(!l.is_empty() && !l.contains('\n'));
        if let Ok(parsed) = line::parse(l) {
            assert!(!parsed.component.is_empty());
            assert!(l.starts_with(parsed.component) && l.ends_with(parsed.message));
        }
        let _ = line::looks_like(l);
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match decode(&text) {
        Decoded::Data(data) => check_lines(&data),
        Decoded::Empty => {}
        Decoded::Text(raw) => {
            assert_eq!(raw, &*text);
            check_lines(raw);
        }
    }
    let message = serde_json::json!({ "data": &*text }).to_string();
    let Decoded::Data(back) = decode(&message) else {
        panic!("a data message did not decode: {message}");
    };
    assert_eq!(
        lines(&back).collect::<Vec<_>>(),
        lines(&text).collect::<Vec<_>>()
    );
});

//! Fuzzes the decoder of ByteNite's `POST /v1/customer/logs` answer: any bytes,
//! under a budget and line limit taken from the first byte, must decode or fail
//! without panicking; what it keeps must respect the marks, the line limit and
//! the budget; and reading the body a byte at a time must give the same answer.

#![no_main]

use std::io::Read;

use ferry::sources::bytenite::answer::{Answer, LINE_OVERHEAD, Selection, decode};
use libfuzzer_sys::fuzz_target;

/// A reader that hands out one byte per read, as a slow network might.
struct OneByte<'a>(&'a [u8]);

impl Read for OneByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some((first, rest)) = self.0.split_first() else {
            return Ok(0);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        buf[0] = *first;
        self.0 = rest;
        Ok(1)
    }
}

fn summary(answer: &Answer) -> Vec<(String, i64, String, bool)> {
    let mut lines = answer.lines.clone();
    lines.sort();
    lines
        .into_iter()
        .map(|l| {
            (
                answer.streams[l.stream as usize].key.clone(),
                l.time,
                l.log,
                l.truncated,
            )
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, body)) = data.split_first() else {
        return;
    };
    let mut selection = Selection {
        budget: usize::from(knobs & 0x0f) * 64,
        max_line_bytes: usize::from(knobs >> 4) * 16 + 1,
        ..Selection::default()
    };
    selection
        .marks
        .insert("partitioner//".into(), 1_750_000_000_000_000_000);
    selection.marks.insert("taskrunner/t/app".into(), 1);
    let Ok(answer) = decode(body, &selection) else {
        assert!(decode(OneByte(body), &selection).is_err());
        return;
    };
    let mut past = 0;
    for line in &answer.lines {
        let stream = &answer.streams[line.stream as usize];
        assert!(line.time >= stream.mark, "a line before its mark was kept");
        assert!(line.log.len() <= selection.max_line_bytes);
        if line.time > stream.mark {
            past += line.log.len() + LINE_OVERHEAD;
        }
    }
    assert!(
        past <= selection
            .budget
            .max(selection.max_line_bytes + LINE_OVERHEAD)
    );
    let again = decode(OneByte(body), &selection).expect("the same bytes decode again");
    assert_eq!(summary(&answer), summary(&again));
    assert_eq!(answer.more, again.more);
});

use proptest::prelude::*;

use super::*;

fn decode_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut decoder = Decoder::new(1 << 20);
    let mut events = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk);
        while let Some(event) = decoder.next_event() {
            events.push(event);
        }
    }
    events
}

fn decode(input: &[u8]) -> Vec<SseEvent> {
    decode_chunks(&[input])
}

fn data(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

#[test]
fn every_line_ending_gives_the_same_events() {
    let lf = decode(b"id: 1\ndata: a\n\ndata: b\n\n");
    let crlf = decode(b"id: 1\r\ndata: a\r\n\r\ndata: b\r\n\r\n");
    let cr = decode(b"id: 1\rdata: a\r\rdata: b\r\r");
    assert_eq!(data(&lf), ["a", "b"]);
    assert_eq!(lf, crlf);
    assert_eq!(lf, cr);
    assert_eq!(lf[0].id.as_deref(), Some("1"));
    assert_eq!(lf[1].id, None);
}

#[test]
fn a_crlf_split_between_chunks_is_one_line_end() {
    let events = decode_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
    assert_eq!(data(&events), ["a\nb"]);
}

#[test]
fn data_lines_join_with_newlines() {
    let events = decode(b"data: first\ndata:second\ndata\ndata:  two spaces\n\n");
    assert_eq!(data(&events), ["first\nsecond\n\n two spaces"]);
}

#[test]
fn comments_are_keepalives_only() {
    let mut decoder = Decoder::new(1024);
    decoder.feed(b": keepalive\n\n:ping\ndata: x\n\n: ping\n\n");
    assert_eq!(decoder.next_event().unwrap().data, "x");
    assert_eq!(decoder.next_event(), None);
    assert_eq!(decoder.comments(), 3);
}

#[test]
fn ids_persist_and_nul_ids_are_ignored() {
    let mut decoder = Decoder::new(1024);
    decoder.feed(b"id: 7\ndata: a\n\ndata: b\n\nid: bad\0id\ndata: c\n\nid\ndata: d\n\n");
    let a = decoder.next_event().unwrap();
    assert_eq!(a.id.as_deref(), Some("7"));
    let b = decoder.next_event().unwrap();
    assert_eq!(b.id, None);
    assert_eq!(decoder.last_event_id(), "7");
    let c = decoder.next_event().unwrap();
    assert_eq!(c.id, None, "an id with NUL is ignored");
    assert_eq!(decoder.last_event_id(), "7");
    let d = decoder.next_event().unwrap();
    assert_eq!(d.id.as_deref(), Some(""), "an empty id resets the last id");
    assert_eq!(decoder.last_event_id(), "");
}

#[test]
fn an_event_without_data_is_not_dispatched_but_empty_data_is() {
    let events = decode(b"id: 3\nevent: x\n\ndata:\n\n");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, "");
    assert_eq!(
        events[0].event, None,
        "event type is reset with the dropped event"
    );
    assert_eq!(events[0].id, None);
}

#[test]
fn event_types_are_kept() {
    let events = decode(b"event: ping\ndata: {}\n\n");
    assert_eq!(events[0].event.as_deref(), Some("ping"));
}

#[test]
fn retry_takes_digits_only() {
    let mut decoder = Decoder::new(1024);
    decoder.feed(b"retry: 2500\n\nretry: 1s\n\nretry:\n\n");
    assert_eq!(decoder.next_event(), None);
    assert_eq!(decoder.retry(), Some(Duration::from_millis(2500)));
    decoder.feed(b"retry: 99999999999999999999999\n\n");
    assert_eq!(decoder.next_event(), None);
    assert_eq!(decoder.retry(), Some(Duration::from_millis(u64::MAX)));
}

#[test]
fn a_half_received_event_is_discarded_at_reset() {
    let mut decoder = Decoder::new(1024);
    decoder.feed(b"id: 1\ndata: whole\n\nid: 2\ndata: half");
    assert_eq!(decoder.next_event().unwrap().data, "whole");
    assert_eq!(decoder.next_event(), None);
    decoder.feed(b"\ndata: more\n");
    assert_eq!(decoder.next_event(), None, "no blank line yet");
    decoder.reset();
    decoder.feed(b"data: next connection\n\n");
    let next = decoder.next_event().unwrap();
    assert_eq!(next.data, "next connection");
    assert_eq!(next.id, None);
    assert_eq!(
        decoder.last_event_id(),
        "2",
        "ids of fields already read persist"
    );
}

#[test]
fn a_bare_line_without_its_end_is_discarded_at_reset() {
    let mut decoder = Decoder::new(1024);
    decoder.feed(b"INFO: first\nINFO: sec");
    assert_eq!(decoder.next_event().unwrap().data, "INFO: first");
    assert_eq!(decoder.next_event(), None);
    decoder.reset();
    decoder.feed(b"INFO: third\n");
    assert_eq!(decoder.next_event().unwrap().data, "INFO: third");
}

#[test]
fn bare_lines_are_events_of_their_own() {
    let events =
        decode(b"INFO:     Started server process [1]\nplain text\n\nINFO:     Uvicorn running\n");
    assert_eq!(
        data(&events),
        [
            "INFO:     Started server process [1]",
            "plain text",
            "INFO:     Uvicorn running"
        ]
    );
    assert_eq!(events[1].data_len, "plain text".len());
}

#[test]
fn a_bare_line_inside_an_event_is_more_data() {
    let events = decode(b"data: a\nstack frame\n\n");
    assert_eq!(data(&events), ["a\nstack frame"]);
}

#[test]
fn a_leading_bom_is_dropped_even_split() {
    let events = decode_chunks(&[b"\xEF\xBB", b"\xBFdata: x\n\n"]);
    assert_eq!(data(&events), ["x"]);
    let not_bom = decode(b"\xEFdata: y\n\n");
    assert_eq!(not_bom.len(), 1, "a lone 0xEF is a bare line");
}

#[test]
fn invalid_utf8_is_replaced_and_counted_as_received() {
    let events = decode(b"data: a\xFFb\n\n");
    assert_eq!(events[0].data, "a\u{FFFD}b");
    assert_eq!(events[0].data_len, 3);
}

#[test]
fn long_lines_are_cut_and_memory_stays_bounded() {
    let mut decoder = Decoder::new(16);
    decoder.feed(b"data: ");
    for _ in 0..100 {
        decoder.feed(&[b'x'; 100]);
        assert_eq!(decoder.next_event(), None);
        assert!(decoder.buffered() <= 16 + 100, "{}", decoder.buffered());
    }
    decoder.feed(b"\n\ndata: ok\n\n");
    let cut = decoder.next_event().unwrap();
    assert!(cut.truncated);
    assert_eq!(cut.data, "xxxxxxxxxx");
    let ok = decoder.next_event().unwrap();
    assert_eq!(ok.data, "ok");
    assert!(!ok.truncated);
}

#[test]
fn many_data_lines_are_cut_at_the_bound() {
    let events = {
        let mut decoder = Decoder::new(10);
        decoder.feed(b"data:1234\ndata:5678\ndata:abc\n\n");
        decoder.next_event()
    };
    let event = events.unwrap();
    assert_eq!(event.data, "1234\n5678\n");
    assert!(event.truncated);
}

#[test]
fn garbage_never_panics() {
    let mut decoder = Decoder::new(4);
    decoder.feed(b"\r\r\n\n:\x00\xFF\rdata\r:retry\rid:\x00\n\xEF\xBB\xBF\n");
    while decoder.next_event().is_some() {}
}

/// One event of a generated stream and how it is written out.
#[derive(Debug, Clone)]
struct Generated {
    id: Option<String>,
    lines: Vec<String>,
    comment: bool,
}

fn text() -> impl Strategy<Value = String> {
    "[^\r\n]{0,40}".prop_map(|s| s.trim_start_matches(' ').to_string())
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        proptest::option::of("[0-9a-z=;]{1,12}"),
        proptest::collection::vec(text(), 1..4),
        any::<bool>(),
    )
        .prop_map(|(id, lines, comment)| Generated { id, lines, comment })
}

fn encode(events: &[Generated], eol: &str) -> Vec<u8> {
    let mut out = String::new();
    for event in events {
        if event.comment {
            out.push_str(&format!(": keepalive{eol}"));
        }
        if let Some(id) = &event.id {
            out.push_str(&format!("id: {id}{eol}"));
        }
        for line in &event.lines {
            out.push_str(&format!("data: {line}{eol}"));
        }
        out.push_str(eol);
    }
    out.into_bytes()
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(
        events in proptest::collection::vec(generated(), 0..20),
        eol in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let bytes = encode(&events, eol);
        let whole = decode(&bytes);
        let expected: Vec<String> = events.iter().map(|e| e.lines.join("\n")).collect();
        prop_assert_eq!(data(&whole), expected.iter().map(String::as_str).collect::<Vec<_>>());
        for (event, generated) in whole.iter().zip(&events) {
            prop_assert_eq!(&event.id, &generated.id);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for point in points {
            chunks.push(&bytes[start..point]);
            start = point;
        }
        chunks.push(&bytes[start..]);
        prop_assert_eq!(decode_chunks(&chunks), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        chunk in 1usize..64,
    ) {
        let mut decoder = Decoder::new(64);
        for piece in bytes.chunks(chunk) {
            decoder.feed(piece);
            while let Some(event) = decoder.next_event() {
                prop_assert!(event.data.len() <= 64 * 3);
            }
            prop_assert!(decoder.buffered() <= 64 * 2 + chunk);
        }
    }
}

#[test]
fn plain_mode_gives_every_non_empty_line_verbatim() {
    let mut decoder = Decoder::plain(1024);
    decoder.feed(b"data: not a field\r\n\r\n: not a comment\nid: 7\rlast");
    let mut lines = Vec::new();
    while let Some(event) = decoder.next_event() {
        lines.push(event.data);
    }
    assert_eq!(lines, ["data: not a field", ": not a comment", "id: 7"]);
    assert_eq!(decoder.finish().unwrap().data, "last");
    assert_eq!(decoder.finish(), None);
}

#[test]
fn plain_mode_cuts_long_lines_also_at_the_end_of_the_body() {
    let mut decoder = Decoder::plain(4);
    decoder.feed(b"abcdefgh\nij");
    let first = decoder.next_event().unwrap();
    assert_eq!((first.data.as_str(), first.truncated), ("abcd", true));
    assert_eq!(decoder.next_event(), None);
    decoder.feed(b"klmnop");
    assert_eq!(decoder.next_event(), None);
    let last = decoder.finish().unwrap();
    assert_eq!((last.data.as_str(), last.truncated), ("ijkl", true));
    assert!(decoder.buffered() <= 16);
}

#[test]
fn sse_mode_never_finishes_a_half_event() {
    let mut decoder = Decoder::new(1024);
    decoder.feed(b"data: half");
    assert_eq!(decoder.next_event(), None);
    assert_eq!(decoder.finish(), None);
}

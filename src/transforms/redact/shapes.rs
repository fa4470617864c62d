//! Byte scanners for the detectors of fixed shape that every line is searched for
//! (e-mail addresses, IPv4 addresses). Each finds exactly what its detector's regex
//! finds with `find_iter` — the leftmost match, then the next from its end, with the
//! regex's greedy choices — which the tests check against the regex on generated
//! text; they cost a small part of a regex search.

/// A scanner: the first match at or after a position, as `start..end`.
pub type Find = fn(&[u8], usize) -> Option<(usize, usize)>;

/// `\w` without Unicode: what `\b` tells apart.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The first match of `\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b` at or after `from`
/// (the byte before `from` counts for the first `\b`, as it does for the regex).
/// Every match has a dot after its first group, and dots are much rarer than digits:
/// each dot is tried as the end of a first group, in order, which tries the starts in
/// order.
pub fn ipv4(hay: &[u8], from: usize) -> Option<(usize, usize)> {
    memchr::memchr_iter(b'.', &hay[from..]).find_map(|at| {
        let dot = from + at;
        let digits = hay[from..dot]
            .iter()
            .rev()
            .take(4)
            .take_while(|b| b.is_ascii_digit())
            .count();
        let start = dot - digits;
        // Only the first digit of a run follows a word boundary.
        let bounded = start == 0 || !is_word(hay[start - 1]);
        if !(1..=3).contains(&digits) || !bounded {
            return None;
        }
        dotted_quad(hay, start).map(|end| (start, end))
    })
}

/// The end of four groups of one to three digits joined by dots from `start`, not
/// followed by a word byte. The regex's groups cannot stop inside a run of digits:
/// what follows a group must be a dot, or for the last one a boundary.
fn dotted_quad(hay: &[u8], start: usize) -> Option<usize> {
    let mut pos = start;
    for group in 0..4 {
        let digits = hay[pos..]
            .iter()
            .take(4)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if !(1..=3).contains(&digits) {
            return None;
        }
        pos += digits;
        if group < 3 {
            if hay.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
    }
    (!hay.get(pos).copied().is_some_and(is_word)).then_some(pos)
}

/// `[a-z0-9._%+-]`, any case.
fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// `[a-z0-9-]`, any case.
fn is_label(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// The first match of `(?i)[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}` at
/// or after `from`.
pub fn email(hay: &[u8], from: usize) -> Option<(usize, usize)> {
    memchr::memchr_iter(b'@', &hay[from..]).find_map(|at| {
        let sign = from + at;
        // The local part is every local byte before the `@` (none is an `@`), so the
        // leftmost start for this `@` is the start of that run.
        let mut start = sign;
        while start > from && is_local(hay[start - 1]) {
            start -= 1;
        }
        if start == sign {
            return None;
        }
        domain_end(hay, sign + 1).map(|end| (start, end))
    })
}

/// Where the domain from `from` ends, if there is one. The domain is labels (runs of
/// label bytes) joined by single dots; the regex takes the first label whole, then as
/// many whole labels as it can while a later one still starts with two letters, and
/// ends after that one's leading letters: the last label after the first that starts
/// with two letters ends the match there.
fn domain_end(hay: &[u8], from: usize) -> Option<usize> {
    let label_end =
        |start: usize| start + hay[start..].iter().take_while(|b| is_label(**b)).count();
    let mut end = label_end(from);
    if end == from {
        return None;
    }
    let mut last = None;
    while hay.get(end) == Some(&b'.') {
        let start = end + 1;
        end = label_end(start);
        if end == start {
            break;
        }
        let letters = hay[start..end]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        if letters >= 2 {
            last = Some(start + letters);
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use regex::bytes::Regex;

    use super::super::detectors::Detector;
    use super::*;

    fn all(finder: Find, hay: &[u8]) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        let mut at = 0;
        while let Some((start, end)) = finder(hay, at) {
            spans.push((start, end));
            at = end;
        }
        spans
    }

    fn by_regex(detector: Detector, hay: &[u8]) -> Vec<(usize, usize)> {
        Regex::new(detector.pattern())
            .unwrap()
            .find_iter(hay)
            .map(|m| (m.start(), m.end()))
            .collect()
    }

    const SHAPES: [(Detector, Find); 2] = [(Detector::Email, email), (Detector::Ipv4, ipv4)];

    #[test]
    fn finds_what_the_regex_finds_on_tricky_text() {
        for text in [
            "",
            "user alice@example.com logged in from 10.1.2.3",
            "a@b.cc1@d.ee x@y.ab-c@d.ef a@b@c.com",
            "bob.smith+tag@mail.example.co.uk. @x.io a@.io a@b..io a@b.c a@b.c1d.ef",
            "1.2.3.4.5 1234.1.1.1 01.2.3.4 9.9.9.9x 9.9.9.9_ x1.2.3.4 1.2.3.4é é1.2.3.4",
            "2026-11-20T10:00:00.123Z 255.255.255.255. 1.2.3 1..2.3.4 1.2.3.4.",
            "A@B.COM Mixed.Case@Host-1.Example.Org",
        ] {
            for (detector, finder) in SHAPES {
                let hay = text.as_bytes();
                assert_eq!(
                    all(finder, hay),
                    by_regex(detector, hay),
                    "{detector:?} on {text:?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn finds_what_the_regex_finds(
            parts in prop::collection::vec(prop::sample::select(vec![
                "a", "Z", "bc", "x9", "0", "1", "25", "255", "1234", ".", "..", "@", "-", "_",
                "%", "+", " ", "\n", ":", "é", "io", "com", "\u{1F600}", "\"",
            ]), 0..48),
            from in 0usize..8,
        ) {
            let text = parts.concat();
            let hay = text.as_bytes();
            for (detector, finder) in SHAPES {
                prop_assert_eq!(all(finder, hay), by_regex(detector, hay), "{:?}", detector);
                let from = from.min(hay.len());
                let regex = Regex::new(detector.pattern()).unwrap();
                let expected = regex.find_at(hay, from).map(|m| (m.start(), m.end()));
                prop_assert_eq!(finder(hay, from), expected, "{:?} from {}", detector, from);
            }
        }
    }
}

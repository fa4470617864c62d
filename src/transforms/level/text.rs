//! Finding a level in free text: the header of a line as common loggers write it
//! (`ERROR`, `[warn]`, `E1120 …`, `level=info`, `WARNING:`, Python, Java, Go, Rust,
//! Rails, nginx), then error markers anywhere (`Traceback`, `panicked at`,
//! `Exception`, a Go runtime crash, the stack frames of a merged trace). Lower-case
//! words count only where a logger puts a level (in brackets, between tabs, after
//! `level=`, or leading with a colon), so prose such as "more info" is not mistaken
//! for one. In a multi-line event (see the `multiline` transform) only the first line
//! is its header: the words of a stack trace's code lines are not levels.

use aho_corasick::AhoCorasick;

use crate::event::Level;

/// How many leading bytes of a line count as its header.
pub const DEFAULT_HEADER_BYTES: usize = 200;

/// Markers searched in the whole message, and the level each means.
const ERROR_MARKERS: [(&str, Level); 9] = [
    ("Traceback (most recent call last)", Level::Error),
    ("panicked at", Level::Error),
    ("Exception", Level::Error),
    // The Go runtime's own crash, and a goroutine dump (a recovered panic).
    ("fatal error: ", Level::Fatal),
    ("\ngoroutine ", Level::Error),
    // Stack frames of a merged trace: Java, Node, .NET, Ruby.
    ("\n\tat ", Level::Error),
    ("\n    at ", Level::Error),
    ("\n   at ", Level::Error),
    ("\n\tfrom ", Level::Error),
];

/// The compiled text rules.
#[derive(Debug, Clone)]
pub struct TextRules {
    header_bytes: usize,
    error_markers: AhoCorasick,
}

impl TextRules {
    pub fn new(header_bytes: usize) -> Self {
        let error_markers = AhoCorasick::new(ERROR_MARKERS.map(|(marker, _)| marker))
            .expect("fixed patterns compile");
        TextRules {
            header_bytes,
            error_markers,
        }
    }

    pub fn level_of(&self, text: &str) -> Option<Level> {
        let bytes = text.as_bytes();
        if let Some(level) = prefix_letter(bytes) {
            return Some(level);
        }
        let first_line = memchr::memchr(b'\n', bytes).map_or(bytes, |end| &bytes[..end]);
        let header = &first_line[..first_line.len().min(self.header_bytes)];
        if let Some(level) = header_word(header) {
            return Some(level);
        }
        self.error_markers
            .find_iter(text)
            .map(|m| ERROR_MARKERS[m.pattern().as_usize()].1)
            .max()
    }
}

/// Rails (`E, [2026-11-20T10:00:00.000 #1] ERROR -- : …`) and glog/klog
/// (`E1120 10:00:00.123456 1 main.go:12] …`) open a line with one letter.
fn prefix_letter(bytes: &[u8]) -> Option<Level> {
    let letter = match bytes.first()? {
        b'D' => Level::Debug,
        b'I' => Level::Info,
        b'W' => Level::Warn,
        b'E' => Level::Error,
        b'F' => Level::Fatal,
        _ => return None,
    };
    let rails = bytes.get(1..4) == Some(b", [");
    let glog = bytes.len() > 6
        && bytes[1..5].iter().all(u8::is_ascii_digit)
        && bytes[5] == b' '
        && bytes[6].is_ascii_digit()
        && letter != Level::Debug;
    (rails || glog).then_some(letter)
}

/// The first word of the header that names a level in a place loggers put one.
fn header_word(header: &[u8]) -> Option<Level> {
    let mut i = 0;
    let mut after_level_key = false;
    while i < header.len() {
        if !header[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let start = i;
        while i < header.len() && (header[i].is_ascii_alphanumeric() || header[i] == b'_') {
            i += 1;
        }
        let word = &header[start..i];
        let before = start.checked_sub(1).map(|p| header[p]);
        let after = header.get(i).copied();
        if after_level_key && let Some(level) = name(word) {
            return Some(level);
        }
        after_level_key = is_level_key(word) && separates_value(&header[i..]);
        if (3..=11).contains(&word.len()) && placed_like_a_level(word, before, after, start) {
            if let Some(level) = name(word) {
                return Some(level);
            }
        }
    }
    None
}

fn name(word: &[u8]) -> Option<Level> {
    std::str::from_utf8(word).ok().and_then(Level::from_name)
}

fn placed_like_a_level(word: &[u8], before: Option<u8>, after: Option<u8>, start: usize) -> bool {
    let upper = word.iter().all(u8::is_ascii_uppercase);
    let enclosed = matches!(
        (before, after),
        (Some(b'['), Some(b']'))
            | (Some(b'<'), Some(b'>'))
            | (Some(b'('), Some(b')'))
            | (Some(b'\t'), Some(b'\t'))
    );
    let leading_colon = start == 0 && after == Some(b':');
    let after_ok = !matches!(after, Some(b'.' | b'/' | b'-' | b'_'));
    (upper && after_ok && before != Some(b'/')) || enclosed || leading_colon
}

fn is_level_key(word: &[u8]) -> bool {
    ["level", "lvl", "severity", "loglevel", "log_level"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k.as_bytes()))
}

/// `=value`, `: value`, `":"value`: a key followed by its value.
fn separates_value(rest: &[u8]) -> bool {
    let rest = rest.iter().skip_while(|b| matches!(b, b'"' | b'\'' | b' '));
    matches!(rest.clone().next(), Some(b'=' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_common_logger_formats() {
        let rules = TextRules::new(DEFAULT_HEADER_BYTES);
        let cases: &[(&str, Option<Level>)] = &[
            ("ERROR something broke", Some(Level::Error)),
            (
                "2026-11-20 10:00:00.123 WARN [http] slow",
                Some(Level::Warn),
            ),
            ("[warn] disk almost full", Some(Level::Warn)),
            (
                "2026/11/20 10:00:00 [error] 123#0: *1 connect() failed",
                Some(Level::Error),
            ),
            (
                "E1120 10:00:00.123456    1 main.go:12] boom",
                Some(Level::Error),
            ),
            (
                "I1120 10:00:00.123456    1 main.go:12] ok",
                Some(Level::Info),
            ),
            (
                "W, [2026-11-20T10:00:00.000 #1]  WARN -- : hmm",
                Some(Level::Warn),
            ),
            (
                "F, [2026-11-20T10:00:00.000 #1] FATAL -- : dead",
                Some(Level::Fatal),
            ),
            ("ts=2026 level=info msg=\"ok\"", Some(Level::Info)),
            ("time=\"x\" lvl=dbg", Some(Level::Debug)),
            (
                "{\"severity\": \"critical\", \"msg\": 1}",
                Some(Level::Fatal),
            ),
            ("WARNING: low memory", Some(Level::Warn)),
            ("warning: unused variable", Some(Level::Warn)),
            ("WARNING:root:careful", Some(Level::Warn)),
            (
                "2026-11-20 10:00:00,123 - app - CRITICAL - down",
                Some(Level::Fatal),
            ),
            (
                "2026-11-20 10:00:00.123 ERROR 1234 --- [main] c.e.App : x",
                Some(Level::Error),
            ),
            ("SEVERE: connection lost", Some(Level::Error)),
            (
                "[2026-11-20T10:00:00Z ERROR my_crate] failed",
                Some(Level::Error),
            ),
            (
                "2026-11-20T10:00:00.000000Z  INFO my_crate::server: listening",
                Some(Level::Info),
            ),
            (
                "2026-11-20T10:00:00.000Z\tinfo\tserver/main.go:10\tstarted",
                Some(Level::Info),
            ),
            ("10:00:00 WRN retrying", Some(Level::Warn)),
            ("<notice> config reloaded", Some(Level::Notice)),
            ("Traceback (most recent call last):", Some(Level::Error)),
            (
                "thread 'main' panicked at src/main.rs:2:5:",
                Some(Level::Error),
            ),
            ("java.lang.NullPointerException: null", Some(Level::Error)),
            ("INFO handled an Exception gracefully", Some(Level::Info)),
            ("user wants more info about errors", None),
            ("GET /api/ERROR.html 200", None),
            ("the panic button", None),
            ("Started GET / for 10.0.0.1", None),
            ("DEBUGGING is fun", None),
            ("Dear user", None),
            ("", None),
            ("é ERROR ü", Some(Level::Error)),
        ];
        for (line, expected) in cases {
            assert_eq!(rules.level_of(line), *expected, "{line}");
        }
    }

    #[test]
    fn a_merged_trace_is_an_error_whatever_its_first_line() {
        let rules = TextRules::new(DEFAULT_HEADER_BYTES);
        let cases: &[(&str, Option<Level>)] = &[
            (
                "Traceback (most recent call last):\n  File \"/app/x.py\", line 3, in <module>\n    DEBUG = load()\nValueError: bad",
                Some(Level::Error),
            ),
            (
                "Exception in thread \"main\" java.lang.IllegalStateException: boom\n\tat com.example.App.main(App.java:5)",
                Some(Level::Error),
            ),
            (
                "java.lang.StackOverflowError\n\tat com.example.App.loop(App.java:9)",
                Some(Level::Error),
            ),
            (
                "panic: runtime error: index out of range [5] with length 3\n\ngoroutine 1 [running]:\nmain.main()",
                Some(Level::Fatal),
            ),
            (
                "fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 [chan receive]:",
                Some(Level::Fatal),
            ),
            (
                "2026/11/20 10:00:00 http: panic serving 10.0.0.1:5050: boom\ngoroutine 7 [running]:",
                Some(Level::Error),
            ),
            (
                "TypeError: Cannot read properties of undefined (reading 'id')\n    at handler (/app/server.js:12:9)",
                Some(Level::Error),
            ),
            (
                "/app/app.rb:3:in 'divide': divided by 0 (ZeroDivisionError)\n\tfrom /app/app.rb:7:in '<main>'",
                Some(Level::Error),
            ),
            (
                "WARN retrying\njava.io.IOException: reset\n\tat x.Y.z(Y.java:1)",
                Some(Level::Warn),
            ),
            ("request done\n  INFO words on a later line", None),
        ];
        for (text, expected) in cases {
            assert_eq!(rules.level_of(text), *expected, "{text}");
        }
    }

    #[test]
    fn only_the_header_is_read_for_words() {
        let rules = TextRules::new(10);
        assert_eq!(rules.level_of("0123456789 ERROR late"), None);
        assert_eq!(rules.level_of("ERROR"), Some(Level::Error));
        let late_marker = format!("{} Exception", "x".repeat(500));
        assert_eq!(rules.level_of(&late_marker), Some(Level::Error));
    }
}

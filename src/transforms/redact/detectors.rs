//! The built-in secret detectors and the scanner that runs them (with the custom
//! patterns) over a text in one multi-pattern pass: a `RegexSet` and the byte
//! scanners of the fixed-shape detectors ([`super::shapes`]) tell which detectors
//! occur at all (most lines: none, and the work ends there), then only
//! those detectors locate their matches, which are validated (Luhn for cards,
//! address syntax for IPs, base64 `user:pass` for Basic credentials) and kept when
//! they overlap no match of a more specific detector.

use std::net::Ipv6Addr;

use base64::Engine;
use regex::bytes::{Regex, RegexSet, RegexSetBuilder};
use serde::Deserialize;

use super::shapes;
use super::texts::Joined;
use crate::transforms::pattern::Pattern;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    Jwt,
    AwsAccessKeyId,
    AwsSecretAccessKey,
    UrlCredentials,
    BearerToken,
    BasicAuth,
    Authorization,
    CreditCard,
    Email,
    Ipv6,
    Ipv4,
    GenericSecret,
}

impl Detector {
    /// Every detector, most specific first: that order settles overlaps. A value
    /// named by its key (`password=…`) is taken whole before the detectors that
    /// could match only part of it (a card number, an address).
    pub const ALL: [Detector; 12] = [
        Detector::Jwt,
        Detector::AwsAccessKeyId,
        Detector::AwsSecretAccessKey,
        Detector::UrlCredentials,
        Detector::BearerToken,
        Detector::BasicAuth,
        Detector::Authorization,
        Detector::GenericSecret,
        Detector::CreditCard,
        Detector::Email,
        Detector::Ipv6,
        Detector::Ipv4,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Detector::Jwt => "jwt",
            Detector::AwsAccessKeyId => "aws_access_key_id",
            Detector::AwsSecretAccessKey => "aws_secret_access_key",
            Detector::UrlCredentials => "url_credentials",
            Detector::BearerToken => "bearer_token",
            Detector::BasicAuth => "basic_auth",
            Detector::Authorization => "authorization",
            Detector::CreditCard => "credit_card",
            Detector::Email => "email",
            Detector::Ipv6 => "ipv6",
            Detector::Ipv4 => "ipv4",
            Detector::GenericSecret => "generic_secret",
        }
    }

    /// The candidate pattern. ASCII-only (`-u`) so the set runs as a lazy DFA on any
    /// input; a capture group, when there is one, is the part that gets redacted.
    pub(super) fn pattern(self) -> &'static str {
        match self {
            Detector::Jwt => r"(?-u)eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            Detector::AwsAccessKeyId => {
                r"(?-u)\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b"
            }
            Detector::AwsSecretAccessKey => {
                r#"(?i-u)aws[_-]?secret[_-]?(?:access[_-]?)?key["']?\s*[:=]\s*["']?([a-z0-9/+=]{40})"#
            }
            Detector::UrlCredentials => r"(?i-u)\b[a-z][a-z0-9+.-]*://([^\s/:@]+:[^\s/@]+)@",
            Detector::BearerToken => r"(?i-u)\bbearer\s+([a-z0-9._~+/=-]{8,})",
            Detector::BasicAuth => r"(?i-u)\bbasic\s+([a-z0-9+/]{4,}={0,2})",
            Detector::Authorization => {
                r#"(?i-u)\bauthorization["']?\s*[:=]\s*["']?(?:(?:bearer|basic|token|digest|negotiate|apikey)\s+)?([^\s"',;]+)"#
            }
            Detector::CreditCard => r"(?-u)\b[2-6][0-9](?:[ -]?[0-9]){11,21}\b",
            Detector::Email => r"(?i-u)[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}",
            Detector::Ipv6 => {
                r"(?i-u)(?:[0-9a-f]{0,4}:){2,6}(?:[0-9]{1,3}\.){3}[0-9]{1,3}|(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?"
            }
            Detector::Ipv4 => r"(?-u)\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b",
            Detector::GenericSecret => {
                r#"(?i-u)(?:\b|[_.-])(?:password|passwd|pass|secret|token|api[_-]?key|apikey|private[_-]?key)["']?\s*[:=]\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([^\s"'&,;]+))"#
            }
        }
    }

    /// Checks a candidate at `start..end` of `text`; returns the span to redact.
    fn check(self, text: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
        let found = &text[start..end];
        let ok = match self {
            Detector::Ipv4 => ipv4_ok(text, start, end),
            Detector::Ipv6 => return ipv6_span(text, start, end),
            Detector::CreditCard => return card_span(text, start, end),
            Detector::BasicAuth => base64::engine::general_purpose::STANDARD
                .decode(found)
                .is_ok_and(|decoded| decoded.contains(&b':')),
            Detector::AwsSecretAccessKey => !text
                .get(end)
                .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'+' | b'=')),
            _ => true,
        };
        ok.then_some((start, end))
    }
}

fn ipv4_ok(text: &[u8], start: usize, end: usize) -> bool {
    // Octets are digits (the finder's shape): each must be at most 255.
    let octets_ok = text[start..end].split(|b| *b == b'.').all(|octet| {
        !octet.is_empty()
            && octet
                .iter()
                .try_fold(0u32, |n, b| {
                    let n = n * 10 + u32::from(b.wrapping_sub(b'0'));
                    (b.is_ascii_digit() && n <= 255).then_some(n)
                })
                .is_some()
    });
    // `1.2.3.4.5` is a version, not an address.
    let dotted_before = start >= 2 && text[start - 1] == b'.' && text[start - 2].is_ascii_digit();
    let dotted_after =
        text.get(end) == Some(&b'.') && text.get(end + 1).is_some_and(u8::is_ascii_digit);
    octets_ok && !dotted_before && !dotted_after
}

fn ipv6_span(text: &[u8], start: usize, mut end: usize) -> Option<(usize, usize)> {
    let joined = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_');
    if start > 0 && joined(&text[start - 1]) {
        return None;
    }
    // A sentence may end an address with a colon: `from fe80::1: refused`.
    if end - start > 2 && text[end - 1] == b':' && text[end - 2] != b':' {
        end -= 1;
    }
    if text
        .get(end)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
    {
        return None;
    }
    let candidate = std::str::from_utf8(&text[start..end]).ok()?;
    candidate.parse::<Ipv6Addr>().ok().map(|_| (start, end))
}

/// The longest run of whole digit groups from the candidate's start that is a card
/// number: 13 to 19 digits passing the Luhn check. Trailing groups that break it
/// (an amount, a count) are left out.
fn card_span(text: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let mut group_ends = Vec::new();
    for (i, b) in text[start..end].iter().enumerate() {
        if !b.is_ascii_digit() {
            group_ends.push(start + i);
        }
    }
    group_ends.push(end);
    group_ends.dedup();
    group_ends.into_iter().rev().find_map(|group_end| {
        let digits: Vec<u8> = text[start..group_end]
            .iter()
            .filter(|b| b.is_ascii_digit())
            .map(|b| b - b'0')
            .collect();
        ((13..=19).contains(&digits.len()) && luhn(&digits)).then_some((start, group_end))
    })
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// The value of a `KEY: value` / `KEY=value` pair in text whose key ends with one of
/// the sensitive keys (`_`, `-`, `.` optional inside it, any case): a quoted value
/// whole (JSON escapes included), else up to a separator. Keys that are not ASCII
/// are left to the field-key check.
fn sensitive_key_pattern(keys: &[String]) -> Option<String> {
    let alternatives: Vec<String> = keys
        .iter()
        .filter(|k| !k.is_empty() && k.is_ascii())
        .map(|key| {
            key.split(['_', '-', '.'])
                .filter(|part| !part.is_empty())
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join("[_.-]?")
        })
        .filter(|k| !k.is_empty())
        .collect();
    if alternatives.is_empty() {
        return None;
    }
    Some(format!(
        r#"(?i-u)(?:{})["']?\s*[:=]\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|(?:(?:bearer|basic|token|digest|negotiate|apikey)\s+)?([^\s"'&,;}}\]]+))"#,
        alternatives.join("|")
    ))
}

/// What found a match: a built-in detector, a sensitive key, or a custom pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Builtin(Detector),
    SensitiveKey,
    Custom,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Builtin(d) => d.name(),
            Rule::SensitiveKey => super::SENSITIVE_KEY,
            Rule::Custom => "custom",
        }
    }
}

/// How a rule finds its candidates.
#[derive(Clone)]
enum Finder {
    /// A regex; with `groups`, the first capture group that took part in a match is
    /// redacted rather than the whole match.
    Regex { regex: Regex, groups: bool },
    /// A byte scanner that finds what the detector's regex finds ([`shapes`]).
    Shape(shapes::Find),
}

impl Finder {
    fn shape(detector: Detector) -> Option<Finder> {
        match detector {
            Detector::Email => Some(Finder::Shape(shapes::email)),
            Detector::Ipv4 => Some(Finder::Shape(shapes::ipv4)),
            _ => None,
        }
    }
}

#[derive(Clone)]
struct Compiled {
    rule: Rule,
    finder: Finder,
}

/// One match to redact: `start..end` of the text, found by rule number `rule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub rule: usize,
}

#[derive(Clone)]
pub struct Scanner {
    /// The regexes of the rules found by regex, for one pass that tells which occur.
    set: RegexSet,
    /// The rule of each pattern of `set`.
    set_rules: Vec<usize>,
    /// The rules found by a byte scanner, which is their own check.
    shaped: Vec<usize>,
    rules: Vec<Compiled>,
}

impl Scanner {
    /// Compiles `detectors` (in their priority order, whatever order they are
    /// given in), the pairs of `sensitive_keys` (after `generic_secret`, before the
    /// detectors that could take only part of a value), and
    /// then the custom patterns. A custom pattern with a capture group redacts only
    /// its first group.
    pub fn new(
        detectors: &[Detector],
        sensitive_keys: &[String],
        custom: &[Pattern],
    ) -> Result<Scanner, regex::Error> {
        Scanner::build(detectors, sensitive_keys, custom, Finder::shape)
    }

    /// [`Scanner::new`] with a regex for every detector, as the byte scanners are
    /// checked against.
    #[cfg(test)]
    pub fn regexes_only(
        detectors: &[Detector],
        sensitive_keys: &[String],
        custom: &[Pattern],
    ) -> Scanner {
        Scanner::build(detectors, sensitive_keys, custom, |_| None).unwrap()
    }

    /// [`Scanner::new`] with `shape` choosing the detectors found by a byte scanner.
    fn build(
        detectors: &[Detector],
        sensitive_keys: &[String],
        custom: &[Pattern],
        shape: fn(Detector) -> Option<Finder>,
    ) -> Result<Scanner, regex::Error> {
        let sensitive = sensitive_key_pattern(sensitive_keys);
        let mut sources: Vec<(Rule, &str)> = Vec::new();
        for detector in Detector::ALL.iter().filter(|d| detectors.contains(d)) {
            if *detector == Detector::CreditCard
                && let Some(pattern) = sensitive.as_deref()
            {
                sources.push((Rule::SensitiveKey, pattern));
            }
            sources.push((Rule::Builtin(*detector), detector.pattern()));
        }
        if let Some(pattern) = sensitive.as_deref()
            && !sources.iter().any(|(r, _)| *r == Rule::SensitiveKey)
        {
            sources.push((Rule::SensitiveKey, pattern));
        }
        sources.extend(custom.iter().map(|p| (Rule::Custom, p.as_str())));
        let mut rules = Vec::with_capacity(sources.len());
        let (mut set_patterns, mut set_rules, mut shaped) = (Vec::new(), Vec::new(), Vec::new());
        for (index, (rule, pattern)) in sources.iter().enumerate() {
            let finder = match rule {
                Rule::Builtin(detector) => shape(*detector),
                Rule::SensitiveKey | Rule::Custom => None,
            };
            let finder = match finder {
                Some(finder) => {
                    shaped.push(index);
                    finder
                }
                None => {
                    set_patterns.push(*pattern);
                    set_rules.push(index);
                    let regex = Regex::new(pattern)?;
                    Finder::Regex {
                        groups: regex.captures_len() > 1,
                        regex,
                    }
                }
            };
            rules.push(Compiled {
                rule: *rule,
                finder,
            });
        }
        let set = RegexSetBuilder::new(set_patterns)
            .size_limit(64 << 20)
            .build()?;
        Ok(Scanner {
            set,
            set_rules,
            shaped,
            rules,
        })
    }

    /// Whether texts may be scanned joined by `\n` for a first yes/no answer: true
    /// unless custom patterns are set (one could anchor to a text's start or end).
    /// The built-in patterns have no anchors, and their word boundaries and
    /// separators hold at a newline as at the edge of a text, so any of them found in
    /// one text is found in the joined texts.
    pub fn joinable(&self) -> bool {
        !self.rules.iter().any(|c| c.rule == Rule::Custom)
    }

    /// The rules that may match somewhere in `text` (no validation, no spans), in
    /// priority order, as indexes for [`Scanner::scan_rules`]: those the regex set
    /// finds, and every rule found by a byte scanner, which is a whole search in
    /// itself and runs once, in locating.
    pub fn candidates(&self, text: &str, rules: &mut Vec<usize>) {
        rules.clear();
        rules.extend_from_slice(&self.shaped);
        let hay = text.as_bytes();
        // Finding whether anything matches is much cheaper than finding everything
        // that does, and most texts hold nothing.
        if self.set.is_match(hay) {
            rules.extend(self.set.matches(hay).iter().map(|i| self.set_rules[i]));
            rules.sort_unstable();
        }
    }

    pub fn rules(&self) -> impl Iterator<Item = Rule> + '_ {
        self.rules.iter().map(|c| c.rule)
    }

    /// Fills `found` with the non-overlapping matches of `rules` (from
    /// [`Scanner::candidates`] on this text, or on texts that include it) in `text`,
    /// in text order.
    pub fn scan_rules(&self, text: &str, rules: &[usize], found: &mut Vec<Found>) {
        found.clear();
        self.locate(text, rules.iter().copied(), found, |_, _| true);
    }

    /// The matches of `rules` in every text of `joined` at once, in joined positions:
    /// what scanning each text by itself finds, with one search per rule. The
    /// patterns see a newline as they see the edge of a text, so a match inside one
    /// text is found the same either way; `false` (and `found` unusable) when a match
    /// runs across texts, which a text-by-text scan would not see whole.
    pub fn scan_joined(&self, joined: &Joined, rules: &[usize], found: &mut Vec<Found>) -> bool {
        found.clear();
        self.locate(&joined.text, rules.iter().copied(), found, |start, end| {
            joined.within_one(start, end)
        })
    }

    /// Fills `found` from the matches of `rules` in `text`; stops with `false` as
    /// soon as a whole match fails `keep_whole`.
    fn locate(
        &self,
        text: &str,
        rules: impl Iterator<Item = usize>,
        found: &mut Vec<Found>,
        keep_whole: impl Fn(usize, usize) -> bool,
    ) -> bool {
        let hay = text.as_bytes();
        for index in rules {
            let compiled = &self.rules[index];
            let mut consider = |start: usize, end: usize| {
                let span = match compiled.rule {
                    Rule::Builtin(d) => d.check(hay, start, end),
                    Rule::SensitiveKey | Rule::Custom => Some((start, end)),
                };
                if let Some((start, end)) = span
                    && start < end
                    && text.is_char_boundary(start)
                    && text.is_char_boundary(end)
                    && !found.iter().any(|f| f.start < end && start < f.end)
                {
                    found.push(Found {
                        start,
                        end,
                        rule: index,
                    });
                }
            };
            match &compiled.finder {
                Finder::Regex {
                    regex,
                    groups: true,
                } => {
                    for caps in regex.captures_iter(hay) {
                        if caps.get(0).is_some_and(|m| !keep_whole(m.start(), m.end())) {
                            return false;
                        }
                        if let Some(m) = caps.iter().skip(1).flatten().next() {
                            consider(m.start(), m.end());
                        }
                    }
                }
                Finder::Regex {
                    regex,
                    groups: false,
                } => {
                    for m in regex.find_iter(hay) {
                        if !keep_whole(m.start(), m.end()) {
                            return false;
                        }
                        consider(m.start(), m.end());
                    }
                }
                Finder::Shape(find) => {
                    let mut at = 0;
                    while let Some((start, end)) = find(hay, at) {
                        if !keep_whole(start, end) {
                            return false;
                        }
                        consider(start, end);
                        at = end;
                    }
                }
            }
        }
        found.sort_unstable_by_key(|f| f.start);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(scanner: &Scanner, text: &str) -> Vec<Found> {
        let (mut rules, mut found) = (Vec::new(), Vec::new());
        scanner.candidates(text, &mut rules);
        scanner.scan_rules(text, &rules, &mut found);
        found
    }

    fn spans(detector: Detector, text: &str) -> Vec<String> {
        let scanner = Scanner::new(&[detector], &[], &[]).unwrap();
        let found = scan(&scanner, text);
        found
            .iter()
            .map(|f| text[f.start..f.end].to_string())
            .collect()
    }

    #[test]
    fn each_detector_finds_its_secrets_and_not_lookalikes() {
        use Detector::*;
        let jwt =
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let cases: &[(Detector, &str, &[&str])] = &[
            (
                Email,
                "mail bob.smith+tag@mail.example.co.uk now",
                &["bob.smith+tag@mail.example.co.uk"],
            ),
            (Email, "user@localhost and a@b.c", &[]),
            (
                Ipv4,
                "from 10.1.2.3, to 255.255.255.255.",
                &["10.1.2.3", "255.255.255.255"],
            ),
            (Ipv4, "v1.2.3.4.5 and 256.1.1.1 and 1.2.3", &[]),
            (
                Ipv6,
                "peer 2001:db8::ff00:42:8329 ok",
                &["2001:db8::ff00:42:8329"],
            ),
            (Ipv6, "bind [::1]:8080 and ::", &["::1", "::"]),
            (
                Ipv6,
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                &["2001:0db8:85a3:0000:0000:8a2e:0370:7334"],
            ),
            (
                Ipv6,
                "mapped ::ffff:192.0.2.128 here",
                &["::ffff:192.0.2.128"],
            ),
            (Ipv6, "from fe80::1: refused", &["fe80::1"]),
            (
                Ipv6,
                "at 10:00:00 use std::io::Error; mac aa:bb:cc:dd:ee:ff",
                &[],
            ),
            (
                CreditCard,
                "card 4111 1111 1111 1111 declined",
                &["4111 1111 1111 1111"],
            ),
            (
                CreditCard,
                "card 4111-1111-1111-1111",
                &["4111-1111-1111-1111"],
            ),
            (CreditCard, "amex 378282246310005 x", &["378282246310005"]),
            (
                CreditCard,
                "card 4111 1111 1111 1111 2 items",
                &["4111 1111 1111 1111"],
            ),
            (CreditCard, "card 4111 1111 1111 1112 fails luhn", &[]),
            (
                CreditCard,
                "ts 1732060800123456789 and 12345678901234567890123456",
                &[],
            ),
            (Jwt, &format!("GET /cb?id_token={jwt}&state=1"), &[jwt]),
            (
                BearerToken,
                "Authorization: Bearer abc.DEF-123_456",
                &["abc.DEF-123_456"],
            ),
            (BearerToken, "bearer of bad news", &[]),
            (
                Authorization,
                "authorization=token=s3cr3tvalue;",
                &["token=s3cr3tvalue"],
            ),
            (
                Authorization,
                r#"{"Authorization":"Digest abcdef"}"#,
                &["abcdef"],
            ),
            (
                BasicAuth,
                "Authorization: Basic dXNlcjpwYXNz",
                &["dXNlcjpwYXNz"],
            ),
            (BasicAuth, "basic information", &[]),
            (
                UrlCredentials,
                "postgres://admin:hunter2@db:5432/x",
                &["admin:hunter2"],
            ),
            (UrlCredentials, "https://example.com/a@b", &[]),
            (
                AwsAccessKeyId,
                "key AKIAIOSFODNN7EXAMPLE used",
                &["AKIAIOSFODNN7EXAMPLE"],
            ),
            (AwsAccessKeyId, "AKIAIOSFODNN7EXAMPLEX", &[]),
            (
                AwsSecretAccessKey,
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                &["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
            ),
            (
                GenericSecret,
                r#"{"password":"hunter2","db_token": "t0k"}"#,
                &["hunter2", "t0k"],
            ),
            (
                GenericSecret,
                "api-key: k1 apikey=k2 client_secret=k3 pass=k4",
                &["k1", "k2", "k3", "k4"],
            ),
            (
                GenericSecret,
                "bypass=true tokenizer=bert secretary: Ann passes: 3",
                &[],
            ),
        ];
        for (detector, text, expected) in cases {
            assert_eq!(spans(*detector, text), *expected, "{detector:?}: {text}");
        }
    }

    #[test]
    fn luhn_checks() {
        for (number, valid) in [
            ("4111111111111111", true),
            ("4111111111111112", false),
            ("79927398713", true),
        ] {
            let digits: Vec<u8> = number.bytes().map(|b| b - b'0').collect();
            assert_eq!(luhn(&digits), valid, "{number}");
        }
    }

    #[test]
    fn specific_detectors_win_overlaps() {
        let scanner = Scanner::new(&Detector::ALL, &[], &[]).unwrap();
        let text = "https://bob:pw@example.com token=eyJhbGciOi.eyJzdWIi.sig";
        let found = scan(&scanner, text);
        let names: Vec<(&str, &str)> = found
            .iter()
            .map(|f| (scanner.rules[f.rule].rule.name(), &text[f.start..f.end]))
            .collect();
        assert_eq!(
            names,
            [
                ("url_credentials", "bob:pw"),
                ("jwt", "eyJhbGciOi.eyJzdWIi.sig")
            ]
        );
    }
}

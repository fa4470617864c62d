//! logfmt (`key=value key2="quoted \"value\"" flag`): the reader and the check that
//! a line looks like logfmt, used by `format = "auto"`.

use serde_json::{Map, Value};

/// Parses a logfmt line into string fields; a bare key becomes `true`. Fails on an
/// unterminated quote or when the line holds no `key=value` pair at all.
pub fn parse(line: &str) -> Result<Map<String, Value>, String> {
    let bytes = line.as_bytes();
    let mut fields = Map::new();
    let mut pairs = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let key_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'=' {
            i += 1;
        }
        let key = &line[key_start..i];
        if key.contains('"') {
            return Err(format!("unexpected quote at byte {key_start}"));
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            fields.insert(key.to_string(), Value::Bool(true));
            continue;
        }
        if key.is_empty() {
            return Err(format!("value without a key at byte {key_start}"));
        }
        i += 1;
        let value = if bytes.get(i) == Some(&b'"') {
            let (value, end) = quoted(line, i)?;
            i = end;
            value
        } else {
            let start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            line[start..i].to_string()
        };
        fields.insert(key.to_string(), Value::String(value));
        pairs += 1;
    }
    if pairs == 0 {
        return Err("no key=value pair".into());
    }
    Ok(fields)
}

/// Reads the quoted string opening at byte `open`; returns it unescaped and the byte
/// after its closing quote.
fn quoted(line: &str, open: usize) -> Result<(String, usize), String> {
    let bytes = line.as_bytes();
    let mut out = String::new();
    let mut run = open + 1;
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                out.push_str(&line[run..i]);
                return Ok((out, i + 1));
            }
            b'\\' if i + 1 < bytes.len() => {
                out.push_str(&line[run..i]);
                match bytes[i + 1] {
                    b'n' => out.push('\n'),
                    b't' => out.push('\t'),
                    b'r' => out.push('\r'),
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    _ => {
                        // Unknown escapes stay as written; the next byte may start a
                        // multi-byte character, so copy from the string, not the bytes.
                        run = i;
                        i += 1;
                        continue;
                    }
                }
                i += 2;
                run = i;
            }
            _ => i += 1,
        }
    }
    Err(format!("unterminated quote at byte {open}"))
}

/// True when the line starts with `identifier=`.
pub fn looks_like(line: &str) -> bool {
    let key_len = line
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@'))
        .count();
    key_len > 0 && line.as_bytes().get(key_len) == Some(&b'=')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_pairs_quotes_escapes_and_flags() {
        let cases: &[(&str, Value)] = &[
            ("a=1 b=two", json!({"a": "1", "b": "two"})),
            (
                r#"msg="say \"hi\" now" level=info"#,
                json!({"msg": "say \"hi\" now", "level": "info"}),
            ),
            (
                r#"path="C:\\dir" nl="a\nb""#,
                json!({"path": "C:\\dir", "nl": "a\nb"}),
            ),
            ("debug a=", json!({"debug": true, "a": ""})),
            ("  k=v   ", json!({"k": "v"})),
            (r#"u="caf\é""#, json!({"u": "caf\\é"})),
            ("x=ünï y=✓", json!({"x": "ünï", "y": "✓"})),
            (r#"e="""#, json!({"e": ""})),
        ];
        for (line, expected) in cases {
            assert_eq!(Value::Object(parse(line).unwrap()), *expected, "{line}");
        }
    }

    #[test]
    fn refuses_what_is_not_logfmt() {
        for line in [
            "",
            "just words here",
            r#"a="open"#,
            "=v",
            r#""q"=1"#,
            r#"a="x\"#,
        ] {
            assert!(parse(line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn detection_needs_a_leading_key() {
        assert!(looks_like("level=info msg=x"));
        assert!(looks_like("log.level=warn"));
        assert!(!looks_like("= x"));
        assert!(!looks_like("GET /a=b"));
        assert!(!looks_like("2026-11-20 x=1"));
    }
}

//! What a `redact` looks at besides the message: which parsed fields are in scope
//! (all of them unless `fields` narrows it, minus `exclude_fields`), and which field
//! keys carry secrets whatever their value looks like (`sensitive_keys`).

use serde::Deserialize;

/// A field path written in the config: dot-separated keys, where `*` stands for any
/// one key (`http.*`). A path selects the value there and everything under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Any,
    Key(String),
}

impl Segment {
    fn matches(&self, key: &str) -> bool {
        match self {
            Segment::Any => true,
            Segment::Key(k) => k == key,
        }
    }
}

impl FieldPath {
    fn parse(text: &str) -> Result<FieldPath, String> {
        let text = text.strip_prefix("fields.").unwrap_or(text);
        if text.is_empty() || text.split('.').any(str::is_empty) {
            return Err(format!(
                "invalid field path `{text}`: expected keys separated by dots, such as `http.headers` or `http.*`"
            ));
        }
        Ok(FieldPath(
            text.split('.')
                .map(|s| match s {
                    "*" => Segment::Any,
                    key => Segment::Key(key.to_string()),
                })
                .collect(),
        ))
    }

    /// `path` is this one or lies under it.
    fn covers<S: AsRef<str>>(&self, path: &[S]) -> bool {
        self.0.len() <= path.len() && self.0.iter().zip(path).all(|(s, k)| s.matches(k.as_ref()))
    }

    /// `path` lies above this one: something under `path` may be covered.
    fn leads_through<S: AsRef<str>>(&self, path: &[S]) -> bool {
        path.len() < self.0.len() && self.0.iter().zip(path).all(|(s, k)| s.matches(k.as_ref()))
    }
}

impl<'de> Deserialize<'de> for FieldPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        FieldPath::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Where a field stands in the scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Scanned (with everything under it, unless something under it is excluded).
    In,
    /// Not scanned itself, but something under it is.
    Through,
    /// Left alone, with everything under it.
    Out,
}

/// The parsed fields a redact scans.
#[derive(Debug, Clone, Default)]
pub struct FieldScope {
    /// `None`: every field.
    include: Option<Vec<FieldPath>>,
    exclude: Vec<FieldPath>,
}

impl FieldScope {
    pub fn new(include: Option<Vec<FieldPath>>, exclude: Vec<FieldPath>) -> Self {
        FieldScope { include, exclude }
    }

    /// Every field is scanned, so paths need not be tracked.
    pub fn is_everything(&self) -> bool {
        self.include.is_none() && self.exclude.is_empty()
    }

    /// Where the field at `path` stands, given that its parent was `In` or `Through`.
    pub fn reach<S: AsRef<str>>(&self, path: &[S]) -> Reach {
        if self.exclude.iter().any(|p| p.covers(path)) {
            return Reach::Out;
        }
        match &self.include {
            None => Reach::In,
            Some(include) if include.iter().any(|p| p.covers(path)) => Reach::In,
            Some(include) if include.iter().any(|p| p.leads_through(path)) => Reach::Through,
            Some(_) => Reach::Out,
        }
    }
}

/// Keys whose values are redacted whole by default.
pub const DEFAULT_SENSITIVE_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "auth",
    "cookie",
    "set-cookie",
    "private_key",
    "access_key",
    "secret_key",
    "credentials",
    "session_id",
];

/// Field keys that carry secrets. A key is sensitive when, lowercased and with `_`,
/// `-` and `.` left out, it ends with one of the configured keys treated the same way:
/// `password` also catches `db_password`, `DB-Password` and `dbPassword`;
/// `token` catches `access_token` and `X-Auth-Token`.
#[derive(Debug, Clone, Default)]
pub struct SensitiveKeys {
    normalized: Vec<Vec<u8>>,
    /// The bytes some normalized key ends with, one bit each: most keys are told
    /// apart by their last byte alone.
    last_bytes: [u64; 4],
}

impl SensitiveKeys {
    pub fn new(keys: &[String]) -> Self {
        let mut normalized: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| normalize(k))
            .filter(|k| !k.is_empty())
            .collect();
        normalized.sort();
        normalized.dedup();
        let mut last_bytes = [0u64; 4];
        for key in &normalized {
            if let Some(&last) = key.last() {
                last_bytes[usize::from(last >> 6)] |= 1 << (last & 63);
            }
        }
        SensitiveKeys {
            normalized,
            last_bytes,
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        let last = key.bytes().rev().find(|b| !matches!(b, b'_' | b'-' | b'.'));
        let ends_a_key = |b: u8| {
            let b = b.to_ascii_lowercase();
            self.last_bytes[usize::from(b >> 6)] & (1 << (b & 63)) != 0
        };
        if !last.is_some_and(ends_a_key) {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut len = 0;
        // Only the tail of a long key can match; keep its last 64 significant bytes.
        for &b in key.as_bytes().iter().rev() {
            if matches!(b, b'_' | b'-' | b'.') {
                continue;
            }
            if len == buf.len() {
                break;
            }
            buf[len] = b.to_ascii_lowercase();
            len += 1;
        }
        let reversed = &mut buf[..len];
        reversed.reverse();
        let key: &[u8] = reversed;
        self.normalized.iter().any(|k| key.ends_with(k))
    }
}

fn normalize(key: &str) -> Vec<u8> {
    key.bytes()
        .filter(|b| !matches!(b, b'_' | b'-' | b'.'))
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<FieldPath> {
        list.iter().map(|p| FieldPath::parse(p).unwrap()).collect()
    }

    #[test]
    fn include_narrows_and_exclude_wins() {
        let scope = FieldScope::new(Some(paths(&["msg", "http.*"])), paths(&["http.body"]));
        assert_eq!(scope.reach(&["msg"]), Reach::In);
        assert_eq!(scope.reach(&["user"]), Reach::Out);
        assert_eq!(scope.reach(&["http"]), Reach::Through);
        assert_eq!(scope.reach(&["http", "headers"]), Reach::In);
        assert_eq!(scope.reach(&["http", "headers", "cookie"]), Reach::In);
        assert_eq!(scope.reach(&["http", "body"]), Reach::Out);
        let everything = FieldScope::new(None, paths(&["trace.*"]));
        assert_eq!(everything.reach(&["user"]), Reach::In);
        assert_eq!(everything.reach(&["trace"]), Reach::In);
        assert_eq!(everything.reach(&["trace", "id"]), Reach::Out);
        assert!(FieldScope::default().is_everything());
    }

    #[test]
    fn field_paths_are_checked() {
        for bad in ["", "a..b", ".a", "a."] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(FieldPath::parse("fields.user"), FieldPath::parse("user"));
    }

    #[test]
    fn sensitive_keys_match_case_and_separator_insensitive_suffixes() {
        let keys: Vec<String> = DEFAULT_SENSITIVE_KEYS
            .iter()
            .map(|k| k.to_string())
            .collect();
        let keys = SensitiveKeys::new(&keys);
        for key in [
            "password",
            "PASSWORD",
            "db_password",
            "dbPassword",
            "X-Auth-Token",
            "access_token",
            "Set-Cookie",
            "api-key",
            "x_api_key",
            "client_secret",
            "privateKey",
            "Authorization",
        ] {
            assert!(keys.contains(key), "{key}");
        }
        for key in ["user", "msg", "token_count", "passage", "level", ""] {
            assert!(!keys.contains(key), "{key}");
        }
        assert!(!SensitiveKeys::new(&[]).contains("password"));
    }
}

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
    /// The normalized keys, each written backwards (none is empty).
    reversed: Vec<Vec<u8>>,
    /// The last byte of each key, side by side: the keys a field key could end with
    /// are found without reading the keys themselves.
    last_bytes_of_keys: Vec<u8>,
    /// The bytes some normalized key ends with, one bit each: most keys are told
    /// apart by their last byte alone.
    last_bytes: [u64; 4],
}

impl SensitiveKeys {
    pub fn new(keys: &[String]) -> Self {
        let mut reversed: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| normalize(k).into_iter().rev().collect::<Vec<u8>>())
            .filter(|k| !k.is_empty())
            .collect();
        reversed.sort();
        reversed.dedup();
        let mut last_bytes = [0u64; 4];
        for key in &reversed {
            last_bytes[usize::from(key[0] >> 6)] |= 1 << (key[0] & 63);
        }
        SensitiveKeys {
            last_bytes_of_keys: reversed.iter().map(|k| k[0]).collect(),
            reversed,
            last_bytes,
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        let key = key.as_bytes();
        let Some(&last) = key.iter().rev().find(|b| !is_separator(**b)) else {
            return false;
        };
        let last = last.to_ascii_lowercase();
        if self.last_bytes[usize::from(last >> 6)] & (1 << (last & 63)) == 0 {
            return false;
        }
        self.last_bytes_of_keys
            .iter()
            .zip(&self.reversed)
            .any(|(&end, k)| end == last && ends_with_reversed(key, k))
    }
}

fn is_separator(b: u8) -> bool {
    matches!(b, b'_' | b'-' | b'.')
}

/// Whether `key`, normalized, ends with the normalized key written backwards as
/// `reversed`.
fn ends_with_reversed(key: &[u8], reversed: &[u8]) -> bool {
    let mut at = key.len();
    for &want in reversed {
        loop {
            if at == 0 {
                return false;
            }
            at -= 1;
            if !is_separator(key[at]) {
                break;
            }
        }
        if key[at].to_ascii_lowercase() != want {
            return false;
        }
    }
    true
}

fn normalize(key: &str) -> Vec<u8> {
    key.bytes()
        .filter(|b| !is_separator(*b))
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

    proptest::proptest! {
        #[test]
        fn sensitive_keys_are_the_normalized_suffixes(
            keys in proptest::collection::vec("[a-dA-D_.-]{0,5}", 0..5),
            key in "[a-dA-D_.é-]{0,12}",
        ) {
            let expected = keys
                .iter()
                .map(|k| normalize(k))
                .any(|k| !k.is_empty() && normalize(&key).ends_with(&k));
            proptest::prop_assert_eq!(SensitiveKeys::new(&keys).contains(&key), expected);
        }
    }
}

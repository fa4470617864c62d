//! Reads a parsed TOML value into an options struct so that every error names the
//! full option path (`sources.in.read_from`), what was found and what is accepted
//! (`expected one of "beginning", "end"`), at the offending key or value. Misspelled
//! keys and enum values get a "did you mean" suggestion among the accepted ones.
//!
//! It is a serde `Deserializer` over toml's spanned value tree: walking the tree
//! itself is what lets it know the path and span of the value being read, and taking
//! serde's structured errors (`invalid_type`, `unknown_field`…) is what lets it say
//! them in the user's words instead of Rust's (`usize`, `a sequence`).

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Expected, IntoDeserializer, Unexpected, Visitor};
use toml::Spanned;
use toml::de::{DeString, DeValue, ValueDeserializer};

/// One option's value, its path from the file's root and its place in the file.
pub struct OptionsDeserializer<'i> {
    value: DeValue<'i>,
    span: Range<usize>,
    path: String,
}

impl<'i> OptionsDeserializer<'i> {
    /// Reads `value`, found at option path `path` (empty for the file's root).
    pub fn new(value: Spanned<DeValue<'i>>, path: String) -> Self {
        let span = value.span();
        OptionsDeserializer {
            value: value.into_inner(),
            span,
            path,
        }
    }
}

/// Reads a table that a component took whole (a sink's `dead_letter`) by `read`, so
/// its errors still name the option path inside it (`pth: unknown option; did you
/// mean `path`?`); the position is the table's, given by the caller.
pub fn read_table<T>(
    table: &toml::Table,
    read: impl FnOnce(OptionsDeserializer<'_>) -> Result<T, String>,
) -> Result<T, String> {
    let text = toml::to_string(table).map_err(|e| e.to_string())?;
    let parsed = toml::de::DeTable::parse(&text).map_err(|e| e.message().to_string())?;
    let span = parsed.span();
    read(OptionsDeserializer::new(
        Spanned::new(span, DeValue::Table(parsed.into_inner())),
        String::new(),
    ))
}

/// A config error from one option: where it is and what is wrong with it.
#[derive(Debug)]
pub struct OptionError {
    /// The full path of the option at fault, set by the innermost value it passes.
    path: Option<String>,
    span: Option<Range<usize>>,
    problem: Problem,
}

#[derive(Debug)]
enum Problem {
    /// `accepted` is `None` when serde did not say (keys left over by a
    /// `#[serde(flatten)]` struct).
    UnknownKey {
        key: String,
        accepted: Option<&'static [&'static str]>,
    },
    MissingKey(&'static str),
    Other(String),
}

impl OptionError {
    fn new(problem: Problem) -> Self {
        OptionError {
            path: None,
            span: None,
            problem,
        }
    }

    /// Places an error that has no place yet at the option `path`, `span` (for a key
    /// that is missing or unknown, `path` is its table's).
    fn locate(mut self, path: &str, span: &Range<usize>) -> Self {
        if self.path.is_none() {
            self.path = Some(match &self.problem {
                Problem::MissingKey(key) => join(path, key),
                Problem::UnknownKey { key, .. } => join(path, key),
                Problem::Other(_) => path.to_string(),
            });
            self.span = Some(span.clone());
        }
        self
    }

    pub fn span(&self) -> Option<Range<usize>> {
        self.span.clone()
    }

    /// The message, `PATH: problem`. `more_keys` are the keys the table at `root` also
    /// accepts (taken out of it and read elsewhere), offered for an unknown key there.
    pub fn describe(&self, root: &str, more_keys: &[&str]) -> String {
        let path = self.path.as_deref().unwrap_or_default();
        let message = match &self.problem {
            Problem::UnknownKey {
                key,
                accepted: None,
            } => format!("unknown option `{key}`"),
            Problem::UnknownKey {
                key,
                accepted: Some(accepted),
            } => {
                let mut valid: Vec<&str> = accepted.to_vec();
                if *path == join(root, key) {
                    valid.extend(more_keys);
                }
                valid.sort_unstable();
                valid.dedup();
                format!(
                    "unknown option{}: {}",
                    did_you_mean(key, &valid, '`'),
                    quoted_list(&valid, '`')
                )
            }
            Problem::MissingKey(_) => "missing required option".to_string(),
            Problem::Other(message) => message.clone(),
        };
        if path.is_empty() {
            message
        } else {
            format!("{path}: {message}")
        }
    }

    fn mismatch(found: Unexpected, expected: &dyn Expected) -> Self {
        OptionError::new(Problem::Other(format!(
            "found {}, expected {}",
            found_text(&found),
            accepted_text(&expected.to_string())
        )))
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe("", &[]))
    }
}

impl std::error::Error for OptionError {}

impl de::Error for OptionError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        let message = message.to_string();
        let flattened_unknown = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.strip_suffix('`'));
        OptionError::new(match flattened_unknown {
            Some(key) => Problem::UnknownKey {
                key: key.to_string(),
                accepted: None,
            },
            None => Problem::Other(message),
        })
    }

    fn invalid_type(found: Unexpected, expected: &dyn Expected) -> Self {
        OptionError::mismatch(found, expected)
    }

    fn invalid_value(found: Unexpected, expected: &dyn Expected) -> Self {
        OptionError::mismatch(found, expected)
    }

    fn invalid_length(length: usize, expected: &dyn Expected) -> Self {
        OptionError::new(Problem::Other(format!(
            "found {length} items, expected {}",
            accepted_text(&expected.to_string())
        )))
    }

    fn unknown_variant(variant: &str, accepted: &'static [&'static str]) -> Self {
        let message = format!("found \"{variant}\", expected {}", one_of(accepted));
        OptionError::new(Problem::Other(match suggestion(variant, accepted) {
            Some(candidate) => format!("{message}; did you mean \"{candidate}\"?"),
            None => message,
        }))
    }

    fn unknown_field(key: &str, accepted: &'static [&'static str]) -> Self {
        OptionError::new(Problem::UnknownKey {
            key: key.to_string(),
            accepted: Some(accepted),
        })
    }

    fn missing_field(key: &'static str) -> Self {
        OptionError::new(Problem::MissingKey(key))
    }
}

/// `a.b` from path `a` and key `b`; keys that are not bare TOML keys are quoted.
fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// `"a"`, `one of "a", "b"`.
pub fn one_of(accepted: &[&str]) -> String {
    match accepted {
        [only] => format!("\"{only}\""),
        _ => format!("one of {}", quoted_list(accepted, '"')),
    }
}

pub fn quoted_list(words: &[&str], quote: char) -> String {
    words
        .iter()
        .map(|w| format!("{quote}{w}{quote}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `; did you mean "x"? Valid ones` when one of `accepted` is a likely spelling of
/// `word`, else `; valid ones`: what goes before the list of `accepted`.
pub fn did_you_mean(word: &str, accepted: &[&str], quote: char) -> String {
    match suggestion(word, accepted) {
        Some(candidate) => format!("; did you mean {quote}{candidate}{quote}? Valid ones"),
        None => "; valid ones".to_string(),
    }
}

/// The one of `accepted` closest to `word` by edit distance, if close enough to be a
/// likely misspelling (a third of its letters, 1 to 3 edits).
fn suggestion<'a>(word: &str, accepted: &[&'a str]) -> Option<&'a str> {
    let word = word.to_lowercase();
    let (distance, candidate) = accepted
        .iter()
        .map(|a| (strsim::damerau_levenshtein(&word, &a.to_lowercase()), *a))
        .min()?;
    (distance <= (word.chars().count() / 3).clamp(1, 3)).then_some(candidate)
}

/// What serde says a value was, in TOML's words.
fn found_text(found: &Unexpected) -> String {
    match found {
        Unexpected::Signed(i) => format!("integer {i}"),
        Unexpected::Unsigned(u) => format!("integer {u}"),
        Unexpected::Float(f) => format!("number {f}"),
        Unexpected::Bool(b) => format!("boolean {b}"),
        Unexpected::Str(s) => format!("string {s:?}"),
        Unexpected::Char(c) => format!("string {:?}", c.to_string()),
        Unexpected::Seq => "an array".to_string(),
        Unexpected::Map => "a table".to_string(),
        other => other.to_string(),
    }
}

/// What a Rust type's visitor accepts (`usize`, `a sequence`), in TOML's words.
fn accepted_text(expected: &str) -> String {
    let range = |max: u64| format!("an integer from 0 to {max}");
    match expected {
        "usize" | "u64" | "u128" => "a positive integer (or 0)".to_string(),
        "u32" => range(u32::MAX.into()),
        "u16" => range(u16::MAX.into()),
        "u8" => range(u8::MAX.into()),
        "isize" | "i64" | "i32" | "i16" | "i8" | "i128" => "an integer".to_string(),
        "f64" | "f32" => "a number".to_string(),
        "a sequence" => "an array".to_string(),
        "a map" => "a table".to_string(),
        "a borrowed string" | "a string" | "a character" => "a string".to_string(),
        other if other.starts_with("struct ") || other.starts_with("map") => "a table".to_string(),
        other => other.to_string(),
    }
}

/// What a TOML value is, for errors about its kind.
fn kind_text(value: &DeValue) -> String {
    match value {
        DeValue::String(s) => format!("string {s:?}"),
        DeValue::Integer(i) => format!("integer {i}"),
        DeValue::Float(f) => format!("number {f}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// An error from toml's own deserializer (used for datetimes and enum tables).
fn from_toml(error: toml::de::Error) -> OptionError {
    OptionError {
        path: None,
        span: error.span(),
        problem: Problem::Other(error.message().trim_end().to_string()),
    }
}

impl<'de> de::Deserializer<'de> for OptionsDeserializer<'de> {
    type Error = OptionError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        let OptionsDeserializer { value, span, path } = self;
        let result = match value {
            DeValue::String(DeString::Owned(s)) => visitor.visit_string(s),
            DeValue::String(DeString::Borrowed(s)) => visitor.visit_borrowed_str(s),
            DeValue::Integer(i) => {
                let (digits, radix) = (i.as_str(), i.radix());
                if let Ok(v) = i64::from_str_radix(digits, radix) {
                    visitor.visit_i64(v)
                } else if let Ok(v) = u64::from_str_radix(digits, radix) {
                    visitor.visit_u64(v)
                } else {
                    Err(de::Error::custom(format!(
                        "found integer {i}, which is out of range"
                    )))
                }
            }
            DeValue::Float(f) => match f.as_str().parse::<f64>() {
                Ok(v) => visitor.visit_f64(v),
                Err(_) => Err(de::Error::custom(format!("found an invalid number {f}"))),
            },
            DeValue::Boolean(b) => visitor.visit_bool(b),
            DeValue::Datetime(d) => {
                ValueDeserializer::from(Spanned::new(span.clone(), DeValue::Datetime(d)))
                    .deserialize_any(visitor)
                    .map_err(from_toml)
            }
            DeValue::Array(items) => visitor.visit_seq(Items {
                items: items.iter().cloned().collect::<Vec<_>>().into_iter(),
                path: path.clone(),
                index: 0,
            }),
            DeValue::Table(table) => visitor.visit_map(Entries {
                entries: table.into_iter().collect::<Vec<_>>().into_iter(),
                path: path.clone(),
                pending: None,
            }),
        };
        result.map_err(|e| e.locate(&path, &span))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        let (path, span) = (self.path.clone(), self.span.clone());
        visitor.visit_some(self).map_err(|e| e.locate(&path, &span))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, OptionError> {
        let (path, span) = (self.path.clone(), self.span.clone());
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.locate(&path, &span))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, OptionError> {
        let OptionsDeserializer { value, span, path } = self;
        let result = match value {
            DeValue::String(s) => visitor.visit_enum(s.into_owned().into_deserializer()),
            DeValue::Table(table) => {
                ValueDeserializer::from(Spanned::new(span.clone(), DeValue::Table(table)))
                    .deserialize_enum(name, variants, visitor)
                    .map_err(from_toml)
            }
            other => Err(de::Error::custom(format!(
                "found {}, expected {}",
                kind_text(&other),
                one_of(variants)
            ))),
        };
        result.map_err(|e| e.locate(&path, &span))
    }

    serde::forward_to_deserialize_any! {
        bool u8 u16 u32 u64 i8 i16 i32 i64 f32 f64 char str string seq
        bytes byte_buf map unit struct u128 i128
        ignored_any unit_struct tuple_struct tuple identifier
    }
}

/// The items of an array, each read at `path[index]`.
struct Items<'i> {
    items: std::vec::IntoIter<Spanned<DeValue<'i>>>,
    path: String,
    index: usize,
}

impl<'de> de::SeqAccess<'de> for Items<'de> {
    type Error = OptionError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, OptionError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let (path, span) = (format!("{}[{}]", self.path, self.index), item.span());
        self.index += 1;
        seed.deserialize(OptionsDeserializer::new(item, path.clone()))
            .map(Some)
            .map_err(|e| e.locate(&path, &span))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

type Entry<'i> = (Spanned<DeString<'i>>, Spanned<DeValue<'i>>);

/// The entries of a table, each value read at `path.key`; an unknown key is reported
/// at the key itself.
struct Entries<'i> {
    entries: std::vec::IntoIter<Entry<'i>>,
    path: String,
    pending: Option<(String, Spanned<DeValue<'i>>)>,
}

impl<'de> de::MapAccess<'de> for Entries<'de> {
    type Error = OptionError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, OptionError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key_span = key.span();
        let key = key.into_inner().into_owned();
        let key_path = join(&self.path, &key);
        let read = seed
            .deserialize(key.into_deserializer())
            .map_err(|e: OptionError| e.locate(&self.path, &key_span))?;
        self.pending = Some((key_path, value));
        Ok(Some(read))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, OptionError> {
        let (path, value) = self
            .pending
            .take()
            .ok_or_else(|| de::Error::custom("a table value was read before its key"))?;
        let span = value.span();
        seed.deserialize(OptionsDeserializer::new(value, path.clone()))
            .map_err(|e| e.locate(&path, &span))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_spellings_only() {
        let keys = ["read_from", "include", "exclude"];
        assert_eq!(suggestion("raed_from", &keys), Some("read_from"));
        assert_eq!(suggestion("Include", &keys), Some("include"));
        assert_eq!(suggestion("exclud", &keys), Some("exclude"));
        assert_eq!(suggestion("path", &keys), None);
        assert_eq!(
            suggestion("x", &["y"]),
            Some("y"),
            "one edit is always close"
        );
        assert_eq!(
            did_you_mean("zzz", &keys, '`'),
            "; valid ones",
            "no suggestion"
        );
    }

    #[test]
    fn rust_type_names_become_toml_words() {
        assert_eq!(accepted_text("usize"), "a positive integer (or 0)");
        assert_eq!(accepted_text("u16"), "an integer from 0 to 65535");
        assert_eq!(accepted_text("a sequence"), "an array");
        assert_eq!(accepted_text("struct Auth"), "a table");
        assert_eq!(accepted_text("a duration"), "a duration");
        assert_eq!(one_of(&["json"]), "\"json\"");
        assert_eq!(one_of(&["a", "b"]), "one of \"a\", \"b\"");
        assert_eq!(join("sinks.out", "my key"), "sinks.out.\"my key\"");
        assert_eq!(join("", "data_dir"), "data_dir");
    }
}

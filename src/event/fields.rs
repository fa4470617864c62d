//! An event's parsed fields: names and JSON values, each name at most once, in the
//! order they were added. One flat vector: events carry a handful of fields, for
//! which a scan beats a tree, one allocation holds them all, and the bytes they hold
//! are known exactly ([`Fields::allocated_bytes`]). Its methods are those of
//! `serde_json::Map` that components use, so code written against a map reads the same.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    entries: Vec<(String, Value)>,
}

/// Up to this many entries, duplicate names are found by scanning; past it, by hashing
/// (a JSON object with thousands of keys must not cost a scan per key).
const SCAN_LIMIT: usize = 16;

impl Fields {
    pub fn new() -> Self {
        Fields::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, value)| value)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == name)
            .map(|(_, value)| value)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The value at `path`: a name, or names joined by dots walking into nested
    /// objects (`http.status`); a name that holds a dot itself is found too.
    pub fn lookup(&self, path: &str) -> Option<&Value> {
        if let Some(v) = self.get(path) {
            return Some(v);
        }
        let (head, rest) = path.split_once('.')?;
        match self.get(head)? {
            Value::Object(inner) => lookup_nested(inner, rest),
            _ => None,
        }
    }

    /// [`Fields::lookup`], for rewriting the value in place.
    pub fn lookup_mut(&mut self, path: &str) -> Option<&mut Value> {
        if self.contains_key(path) {
            return self.get_mut(path);
        }
        let (head, rest) = path.split_once('.')?;
        match self.get_mut(head)? {
            Value::Object(inner) => lookup_nested_mut(inner, rest),
            _ => None,
        }
    }

    /// Sets `name` to `value`; a name already there keeps its place and returns its
    /// old value.
    pub fn insert(&mut self, name: String, value: Value) -> Option<Value> {
        match self.get_mut(&name) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                self.entries.push((name, value));
                None
            }
        }
    }

    /// Takes `name` out, keeping the order of the others.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let at = self.entries.iter().position(|(k, _)| k == name)?;
        Some(self.entries.remove(at).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Value)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&String, &mut Value) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// The heap bytes these fields hold: the entry vector and every name and value in
    /// it (nested objects by their entries, see [`value_allocated_bytes`]).
    pub fn allocated_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(String, Value)>()
            + self
                .entries
                .iter()
                .map(|(k, v)| k.capacity() + value_allocated_bytes(v))
                .sum::<usize>()
    }

    /// Builds from entries that may repeat a name: the last value wins, at the place
    /// of the first (as inserting them one by one would).
    fn from_entries(entries: Vec<(String, Value)>) -> Self {
        let unique = if entries.len() <= SCAN_LIMIT {
            (1..entries.len()).all(|i| entries[..i].iter().all(|(k, _)| *k != entries[i].0))
        } else {
            let mut seen = HashSet::with_capacity(entries.len());
            entries.iter().all(|(k, _)| seen.insert(k.as_str()))
        };
        if unique {
            return Fields { entries };
        }
        let mut fields = Fields {
            entries: Vec::with_capacity(entries.len()),
        };
        let mut places: HashMap<String, usize> = HashMap::with_capacity(entries.len());
        for (name, value) in entries {
            match places.get(&name) {
                Some(&at) => fields.entries[at].1 = value,
                None => {
                    places.insert(name.clone(), fields.entries.len());
                    fields.entries.push((name, value));
                }
            }
        }
        fields
    }
}

fn lookup_nested<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    match map.get(head)? {
        Value::Object(inner) => lookup_nested(inner, rest),
        _ => None,
    }
}

fn lookup_nested_mut<'a>(map: &'a mut Map<String, Value>, path: &str) -> Option<&'a mut Value> {
    if map.contains_key(path) {
        return map.get_mut(path);
    }
    let (head, rest) = path.split_once('.')?;
    match map.get_mut(head)? {
        Value::Object(inner) => lookup_nested_mut(inner, rest),
        _ => None,
    }
}

/// The heap bytes a JSON value holds. Strings and arrays by their capacity; a nested
/// object (a B-tree map) by its entries plus one tree node per 5 of them, the most a
/// B-tree of `serde_json::Map`'s kind can use.
pub fn value_allocated_bytes(value: &Value) -> usize {
    const ENTRY: usize = std::mem::size_of::<(String, Value)>();
    const NODE: usize = 11 * ENTRY + 16;
    match value {
        Value::String(s) => s.capacity(),
        Value::Array(items) => {
            items.capacity() * std::mem::size_of::<Value>()
                + items.iter().map(value_allocated_bytes).sum::<usize>()
        }
        Value::Object(map) => {
            map.len().div_ceil(5) * NODE
                + map
                    .iter()
                    .map(|(k, v)| k.capacity() + value_allocated_bytes(v))
                    .sum::<usize>()
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

impl std::ops::Index<&str> for Fields {
    type Output = Value;

    /// Panics when `name` is not there, as `serde_json::Map` does.
    fn index(&self, name: &str) -> &Value {
        self.get(name)
            .unwrap_or_else(|| panic!("no field named `{name}`"))
    }
}

impl Extend<(String, Value)> for Fields {
    fn extend<I: IntoIterator<Item = (String, Value)>>(&mut self, iter: I) {
        for (name, value) in iter {
            self.insert(name, value);
        }
    }
}

impl FromIterator<(String, Value)> for Fields {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Fields::from_entries(iter.into_iter().collect())
    }
}

impl IntoIterator for Fields {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl From<Map<String, Value>> for Fields {
    fn from(map: Map<String, Value>) -> Self {
        // A map's names are unique already.
        Fields {
            entries: map.into_iter().collect(),
        }
    }
}

impl From<Fields> for Map<String, Value> {
    fn from(fields: Fields) -> Self {
        fields.entries.into_iter().collect()
    }
}

impl From<Fields> for Value {
    fn from(fields: Fields) -> Self {
        Value::Object(fields.into())
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, value) in &self.entries {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Reads a JSON object straight into fields, in the object's order (no map is built
/// on the way); a repeated name keeps its last value.
impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;

        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Fields, A::Error> {
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = access.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Fields::from_entries(entries))
            }
        }

        deserializer.deserialize_map(FieldsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_unique_and_keep_their_first_place() {
        let mut fields = Fields::new();
        assert_eq!(fields.insert("b".into(), json!(1)), None);
        fields.insert("a".into(), json!(2));
        assert_eq!(fields.insert("b".into(), json!(3)), Some(json!(1)));
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(fields["b"], 3);
        assert_eq!(fields.remove("b"), Some(json!(3)));
        assert!(!fields.contains_key("b"));
        assert_eq!(fields.len(), 1);
    }

    #[test]
    fn json_objects_read_in_order_with_the_last_duplicate_winning() {
        let fields: Fields = serde_json::from_str(r#"{"z":1,"a":{"x":[1,"s"]},"z":2}"#).unwrap();
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["z", "a"]);
        assert_eq!(fields["z"], 2);
        assert_eq!(
            serde_json::to_string(&fields).unwrap(),
            r#"{"z":2,"a":{"x":[1,"s"]}}"#
        );
        assert!(serde_json::from_str::<Fields>("[1]").is_err());

        let many: String = (0..100)
            .map(|i| format!("\"k{}\":{i}", i % 60))
            .collect::<Vec<_>>()
            .join(",");
        let fields: Fields = serde_json::from_str(&format!("{{{many}}}")).unwrap();
        assert_eq!(fields.len(), 60);
        assert_eq!(fields["k0"], 60);
        assert_eq!(fields.keys().next().map(String::as_str), Some("k0"));
    }

    #[test]
    fn allocated_bytes_counts_the_vector_names_and_values() {
        let mut fields = Fields::new();
        assert_eq!(fields.allocated_bytes(), 0);
        fields.insert("name".into(), json!("value"));
        let entry = std::mem::size_of::<(String, Value)>();
        assert!(fields.allocated_bytes() >= entry + 4 + 5);
        let nested = json!({"a": "xyz"});
        assert!(value_allocated_bytes(&nested) > 3);
    }
}

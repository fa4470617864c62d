//! The texts of one event that a redact scans, joined by newlines so that one search
//! per rule covers them all, with where each text lies in the joined string; and the
//! two kinds of object whose keys and values are texts (the event's fields, and the
//! JSON objects nested in them).

use serde_json::{Map, Value};

use crate::event::Fields;

/// A scratch buffer grown past this by a huge event is given back afterwards.
pub const KEEP_BYTES: usize = 64 << 10;

#[derive(Clone, Default)]
pub struct Joined {
    pub text: String,
    /// `start..end` of each text in `text`, in the order they were pushed.
    pub spans: Vec<(usize, usize)>,
}

impl Joined {
    pub fn clear(&mut self) {
        if self.text.capacity() > KEEP_BYTES {
            self.text = String::new();
            self.spans = Vec::new();
        }
        self.text.clear();
        self.spans.clear();
    }

    pub fn push(&mut self, text: &str) {
        if !self.spans.is_empty() {
            self.text.push('\n');
        }
        let start = self.text.len();
        self.text.push_str(text);
        self.spans.push((start, self.text.len()));
    }

    /// Whether `start..end` of the joined string lies inside one text.
    pub fn within_one(&self, start: usize, end: usize) -> bool {
        let after = self.spans.partition_point(|&(s, _)| s <= start);
        after > 0 && end <= self.spans[after - 1].1
    }
}

/// An object whose keys and string values are scanned.
pub trait Object {
    fn entries(&self) -> impl Iterator<Item = (&String, &Value)>;
    fn entries_mut(&mut self) -> impl Iterator<Item = (&String, &mut Value)>;
    fn has(&self, key: &str) -> bool;
    fn take(&mut self, key: &str) -> Option<Value>;
    fn put(&mut self, key: String, value: Value);
}

/// Both kinds of object have these methods under the names a map gives them.
macro_rules! object_by_map_methods {
    ($($kind:ty),*) => {$(
        impl Object for $kind {
            fn entries(&self) -> impl Iterator<Item = (&String, &Value)> {
                self.iter()
            }
            fn entries_mut(&mut self) -> impl Iterator<Item = (&String, &mut Value)> {
                self.iter_mut()
            }
            fn has(&self, key: &str) -> bool {
                self.contains_key(key)
            }
            fn take(&mut self, key: &str) -> Option<Value> {
                self.remove(key)
            }
            fn put(&mut self, key: String, value: Value) {
                self.insert(key, value);
            }
        }
    )*};
}

object_by_map_methods!(Fields, Map<String, Value>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_locate_texts_and_matches_across_them() {
        let mut joined = Joined::default();
        for text in ["ab", "", "cde"] {
            joined.push(text);
        }
        assert_eq!(joined.text, "ab\n\ncde");
        assert_eq!(joined.spans, [(0, 2), (3, 3), (4, 7)]);
        assert!(joined.within_one(0, 2));
        assert!(joined.within_one(4, 7));
        assert!(!joined.within_one(1, 4), "runs across texts");
        assert!(!joined.within_one(2, 3), "starts at a separator");
    }
}

//! Any bytes through `redact` with every detector, in mask, hash and partial mode and
//! with a narrowed field scope (the first byte picks one), on the message, on a field
//! value, on a field key, and on every field of the bytes read as a JSON object: no
//! panic, no lost event.
#![no_main]

use std::cell::RefCell;

use ferry::event::Event;
use ferry::transforms::{Transform, TransformConfig};
use libfuzzer_sys::fuzz_target;

const MODES: [&str; 4] = [
    "patterns = ['(?i)ref-(\\w+)']",
    "mode = \"hash\"\nkey = \"fuzz\"",
    "mode = \"partial\"\nkeep_prefix = 2",
    "fields = [\"f\", \"*.x\"]\nexclude_fields = [\"f.y\"]\nsensitive_keys = [\"pass_word\", \"é\"]",
];

fn build(options: &str) -> Box<dyn Transform> {
    let value: toml::Value = toml::from_str(options).unwrap();
    let config = TransformConfig::deserialize_type("redact", value)
        .unwrap()
        .unwrap();
    config.validate().unwrap();
    config.build("fuzz").unwrap().into_pure().unwrap()
}

thread_local! {
    static REDACTORS: RefCell<Vec<Box<dyn Transform>>> =
        RefCell::new(MODES.iter().map(|m| build(m)).collect());
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    let mut event = Event::new("fuzz".into(), "fuzz".into(), text.clone(), 0);
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(&text) {
        event.fields = fields.into();
    }
    event
        .fields
        .insert("f".into(), serde_json::Value::String(text.clone()));
    event.fields.insert(text, serde_json::Value::Bool(true));
    let mut events = vec![event];
    REDACTORS.with_borrow_mut(|redactors| {
        let index = usize::from(selector) % redactors.len();
        redactors[index].apply(&mut events);
    });
    assert_eq!(events.len(), 1, "redact lost an event");
});

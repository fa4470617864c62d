//! Any bytes through every `parse` format (the first byte picks one), then `level`:
//! no panic, and the event is never lost.
#![no_main]

use std::cell::RefCell;

use ferry::event::Event;
use ferry::transforms::{Transform, TransformConfig};
use libfuzzer_sys::fuzz_target;

const FORMATS: [&str; 8] = [
    "format = \"json\"\ntimestamp_field = \"ts\"",
    "format = \"logfmt\"\ntimestamp_field = \"ts\"\ntimestamp_formats = [\"unix_ms\", \"%d/%b/%Y:%H:%M:%S %z\"]",
    "format = \"regex\"\npattern = '^(?P<ip>\\S+) (?P<rest>.*)$'",
    "format = \"syslog\"",
    "format = \"scalingo\"",
    "format = \"digitalocean\"",
    "format = \"dcos\"",
    "format = \"auto\"\ntarget = \"parsed\"",
];

fn build(type_name: &str, options: &str) -> Box<dyn Transform> {
    let value: toml::Value = toml::from_str(options).unwrap();
    let config = TransformConfig::deserialize_type(type_name, value)
        .unwrap()
        .unwrap();
    config.validate().unwrap();
    config.build("fuzz").unwrap().into_pure().unwrap()
}

thread_local! {
    static PARSERS: RefCell<Vec<Box<dyn Transform>>> =
        RefCell::new(FORMATS.iter().map(|f| build("parse", f)).collect());
    static LEVEL: RefCell<Box<dyn Transform>> = RefCell::new(build("level", "header_bytes = 64"));
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    let mut events = vec![Event::new("fuzz".into(), "fuzz".into(), text, 0)];
    PARSERS.with_borrow_mut(|parsers| {
        let index = usize::from(selector) % parsers.len();
        parsers[index].apply(&mut events);
    });
    assert_eq!(events.len(), 1, "parse lost an event");
    LEVEL.with_borrow_mut(|level| level.apply(&mut events));
    assert_eq!(events.len(), 1, "level lost an event");
});

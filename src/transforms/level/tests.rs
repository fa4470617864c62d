use proptest::prelude::*;
use serde_json::json;

use super::*;

fn tagger(options: &str) -> LevelTag {
    let config: LevelConfig = toml::from_str(options).expect("valid options");
    LevelTag::new("test", &config)
}

fn event(message: &str) -> Event {
    Event::new("src".into(), "demo".into(), message.to_string(), 0)
}

fn tag(options: &str, event: Event) -> Option<Level> {
    let mut events = vec![event];
    tagger(options).apply(&mut events);
    events[0].level
}

fn with_field(name: &str, value: Value) -> Event {
    let mut e = event("nothing to see");
    e.fields.insert(name.into(), value);
    e
}

#[test]
fn field_values_normalize() {
    let cases: &[(&str, Value, Option<Level>)] = &[
        ("level", json!("WARNING"), Some(Level::Warn)),
        ("level", json!("err"), Some(Level::Error)),
        ("lvl", json!("crit"), Some(Level::Fatal)),
        ("severity", json!("emerg"), Some(Level::Fatal)),
        ("severity", json!("alert"), Some(Level::Fatal)),
        ("severity", json!("panic"), Some(Level::Fatal)),
        ("severity", json!(" notice "), Some(Level::Notice)),
        ("severity", json!(3), Some(Level::Error)),
        ("PRIORITY", json!("6"), Some(Level::Info)),
        ("PRIORITY", json!("0"), Some(Level::Fatal)),
        ("level", json!(30), Some(Level::Info)),
        ("level", json!(50), Some(Level::Error)),
        ("level", json!(60), Some(Level::Fatal)),
        ("level", json!(10), Some(Level::Trace)),
        ("level", json!(35), None),
        ("level", json!(-1), None),
        ("level", json!(true), None),
        ("level", json!("loud"), None),
        ("levelname", json!("DEBUG"), Some(Level::Debug)),
    ];
    for (name, value, expected) in cases {
        assert_eq!(
            tag("", with_field(name, value.clone())),
            *expected,
            "{name}={value}"
        );
    }
    let mut nested = event("x");
    nested.fields.insert("log".into(), json!({"level": "warn"}));
    assert_eq!(tag("", nested), Some(Level::Warn));
}

#[test]
fn sources_apply_in_order() {
    let mut provider = with_field("level", json!("debug"));
    provider.level = Some(Level::Notice);
    assert_eq!(tag("", provider.clone()), Some(Level::Notice));
    assert_eq!(
        tag(r#"sources = ["fields", "provider"]"#, provider),
        Some(Level::Debug)
    );

    let mut both = event("ERROR in text");
    both.fields.insert("level".into(), json!("info"));
    assert_eq!(tag("", both.clone()), Some(Level::Info));
    assert_eq!(
        tag(r#"sources = ["message", "fields"]"#, both),
        Some(Level::Error)
    );

    let mut stderr = event("no level words");
    stderr.stream = Some("stderr".into());
    assert_eq!(tag("", stderr.clone()), Some(Level::Error));
    assert_eq!(
        tag(r#"stderr_level = "warning""#, stderr.clone()),
        Some(Level::Warn)
    );
    assert_eq!(
        tag(r#"sources = ["fields", "message"]"#, stderr.clone()),
        None
    );
    assert_eq!(
        tag("sources = [\"fields\"]\ndefault = \"info\"", stderr),
        Some(Level::Info)
    );
    assert_eq!(
        tag(r#"fields = ["sev"]"#, with_field("level", json!("warn"))),
        None
    );
    assert_eq!(
        tag(r#"fields = ["sev"]"#, with_field("sev", json!("warn"))),
        Some(Level::Warn)
    );
    assert_eq!(
        tag(r#"default = "notice""#, event("plain")),
        Some(Level::Notice)
    );
}

#[test]
fn min_level_drops_below_and_keeps_unknown() {
    let mut t = tagger(r#"min_level = "warn""#);
    let mut events = vec![
        event("DEBUG noisy"),
        event("WARN careful"),
        event("plain"),
        event("ERROR bad"),
        event("INFO fine"),
    ];
    t.apply(&mut events);
    let kept: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(kept, ["WARN careful", "plain", "ERROR bad"]);
}

#[test]
fn unknown_options_and_levels_are_refused() {
    for options in [
        r#"min_level = "loud""#,
        r#"sources = ["guess"]"#,
        "colour = 1",
    ] {
        assert!(toml::from_str::<LevelConfig>(options).is_err(), "{options}");
    }
}

proptest! {
    #[test]
    fn never_panics_and_drops_only_below_min(message in any::<String>(), field in any::<String>(), min in 0usize..7) {
        let min = Level::ALL[min];
        let mut t = tagger(&format!("min_level = \"{min}\"\nheader_bytes = 64"));
        let mut e = event(&message);
        e.fields.insert("level".into(), Value::String(field));
        let mut events = vec![e];
        t.apply(&mut events);
        prop_assert!(events.len() <= 1);
        if let Some(kept) = events.first() {
            prop_assert!(kept.level.is_none_or(|l| l >= min));
        }
    }
}

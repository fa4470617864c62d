use proptest::prelude::*;
use serde_json::json;

use super::*;

fn parser(options: &str) -> Parse {
    let config: ParseConfig = toml::from_str(options).expect("valid options");
    config.validate().expect("consistent options");
    Parse::new("test", &config)
}

fn event(message: &str) -> Event {
    Event::new("src".into(), "demo".into(), message.to_string(), 7)
}

fn run(parse: &mut Parse, message: &str) -> Vec<Event> {
    let mut events = vec![event(message)];
    parse.apply(&mut events);
    events
}

fn fields_of(options: &str, message: &str) -> Value {
    let mut parse = parser(options);
    let events = run(&mut parse, message);
    Value::from(events[0].fields.clone())
}

#[test]
fn every_format_reads_its_lines() {
    let cases: &[(&str, &str, Value)] = &[
        (
            r#"format = "json""#,
            r#"{"level":"info","http":{"status":503,"headers":{"x":[1,2]}},"msg":"a \"q\""}"#,
            json!({"level":"info","http":{"status":503,"headers":{"x":[1,2]}},"msg":"a \"q\""}),
        ),
        (
            r#"format = "logfmt""#,
            r#"level=warn msg="disk \"sda\" full" pct=97"#,
            json!({"level":"warn","msg":"disk \"sda\" full","pct":"97"}),
        ),
        (
            r#"format = "regex"
               pattern = '^(?P<ip>\S+) - - \[[^\]]+\] "(?P<method>\w+) (?P<path>\S+)[^"]*" (?P<status>\d{3})( (?P<bytes>\d+))?'"#,
            r#"10.0.0.1 - - [20/Nov/2026:10:00:00 +0000] "GET /x HTTP/1.1" 404"#,
            json!({"ip":"10.0.0.1","method":"GET","path":"/x","status":"404"}),
        ),
        (
            r#"format = "syslog""#,
            "<13>1 2026-11-20T10:00:00Z host app 1 - - hi",
            json!({"facility":"user","severity":"notice","appname":"app","procid":"1"}),
        ),
        (
            r#"format = "dcos""#,
            r#"{"fields":{"MESSAGE":"m","PRIORITY":"3"},"realtime_timestamp":1}"#,
            json!({"PRIORITY":"3"}),
        ),
        (
            r#"format = "auto""#,
            r#"{"a":{"b":{"c":[{"d":null}]}}}"#,
            json!({"a":{"b":{"c":[{"d":null}]}}}),
        ),
        (
            r#"format = "auto""#,
            "level=info a=b",
            json!({"level":"info","a":"b"}),
        ),
        (
            r#"format = "auto""#,
            r#"{"fields":{"MESSAGE":"m","UNIT":"u"}}"#,
            json!({"UNIT":"u"}),
        ),
        (
            r#"format = "auto""#,
            "plain words, nothing to parse",
            json!({}),
        ),
        (r#"format = "auto""#, "", json!({})),
    ];
    for (options, line, expected) in cases {
        assert_eq!(fields_of(options, line), *expected, "{options} / {line}");
    }
}

#[test]
fn envelopes_replace_the_message_and_set_time_and_origin() {
    // (format, line, message, time, [component, instance, host])
    type Case<'a> = (&'a str, &'a str, &'a str, i64, [Option<&'a str>; 3]);
    let cases: &[Case] = &[
        (
            "syslog",
            "<165>1 2003-10-11T22:14:15.003Z mymachine evntslog - ID47 - An event",
            "An event",
            1_065_910_455_003_000_000,
            [Some("evntslog"), None, Some("mymachine")],
        ),
        (
            "scalingo",
            "2015-02-16 02:02:43.930163178 +0000 UTC [web-1] [martini] Started",
            "[martini] Started",
            1_424_052_163_930_163_178,
            [Some("web"), Some("web-1"), None],
        ),
        (
            "digitalocean",
            "api 2024-05-01T12:00:00.5Z GET / 200",
            "GET / 200",
            1_714_564_800_500_000_000,
            [Some("api"), None, None],
        ),
        (
            "dcos",
            r#"{"fields":{"MESSAGE":"Started.","UNIT":"x.timer","_HOSTNAME":"h"},"realtime_timestamp":1476253700204926}"#,
            "Started.",
            1_476_253_700_204_926_000,
            [Some("x.timer"), None, Some("h")],
        ),
    ];
    for (format, line, message, time, [component, instance, host]) in cases {
        for configured in [*format, "auto"] {
            let mut parse = parser(&format!("format = \"{configured}\""));
            let events = run(&mut parse, line);
            let e = &events[0];
            assert_eq!(e.message, *message, "{configured}: {line}");
            assert_eq!(e.timestamp, *time, "{configured}: {line}");
            assert_eq!(e.origin.component.as_deref(), *component, "{configured}");
            assert_eq!(e.origin.instance.as_deref(), *instance, "{configured}");
            assert_eq!(e.origin.host.as_deref(), *host, "{configured}");
            assert!(
                !e.fields.contains_key("parse_error"),
                "{configured}: {line}"
            );
        }
    }
}

#[test]
fn origin_already_known_is_kept() {
    let mut parse = parser(r#"format = "scalingo""#);
    let mut events = vec![event("2015-02-16 02:02:43 +0000 UTC [web-1] hi")];
    events[0].origin.instance = Some("from-provider".into());
    parse.apply(&mut events);
    assert_eq!(events[0].origin.instance.as_deref(), Some("from-provider"));
    assert_eq!(events[0].origin.component.as_deref(), Some("web"));
}

#[test]
fn bad_lines_pass_tagged_or_are_dropped_when_asked() {
    let cases: &[(&str, &str, &str)] = &[
        ("json", "{\"a\":", "json: "),
        ("json", "[1,2]", "json: not a JSON object"),
        ("logfmt", "no pairs at all", "logfmt: no key=value pair"),
        ("logfmt", "a=\"open", "logfmt: unterminated quote"),
        ("syslog", "no header", "syslog: missing <PRI> header"),
        ("scalingo", "2015-02-16 bad", "scalingo: "),
        ("digitalocean", "web nope x", "digitalocean: bad time"),
        ("dcos", "{\"fields\":{}}", "dcos: no `fields.MESSAGE`"),
        ("auto", "{\"broken", "auto: "),
        ("auto", "<12>", "auto: "),
    ];
    for (format, line, reason) in cases {
        let mut keep = parser(&format!("format = \"{format}\""));
        let events = run(&mut keep, line);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].message, *line, "unchanged");
        let tag = events[0].fields["parse_error"].as_str().unwrap();
        assert!(tag.starts_with(reason), "{format} {line}: {tag}");

        let mut drop = parser(&format!("format = \"{format}\"\non_error = \"drop\""));
        assert!(run(&mut drop, line).is_empty(), "{format} {line}");
    }
    let mut regex = parser("format = \"regex\"\npattern = '^(?P<n>\\d+)$'\nerror_field = \"why\"");
    let events = run(&mut regex, "abc");
    assert_eq!(events[0].fields["why"], "regex: pattern did not match");
}

#[test]
fn field_target_and_timestamp_options() {
    let mut parse = parser(
        r#"format = "json"
           field = "raw"
           target = "parsed"
           timestamp_field = "meta.ts"
           timestamp_formats = ["unix_ms", "rfc3339"]"#,
    );
    let mut events = vec![event("keep me")];
    events[0].fields.insert(
        "raw".into(),
        json!(r#"{"meta":{"ts":"2026-11-20T10:00:00Z"},"x":1}"#),
    );
    parse.apply(&mut events);
    let e = &events[0];
    assert_eq!(e.message, "keep me");
    assert_eq!(
        e.fields["parsed"],
        json!({"meta":{"ts":"2026-11-20T10:00:00Z"},"x":1})
    );
    assert_eq!(e.timestamp, 1_795_168_800_000_000_000);

    let mut bad_time = parser("format = \"json\"\ntimestamp_field = \"ts\"");
    let events = run(&mut bad_time, r#"{"ts":"yesterday"}"#);
    assert_eq!(events[0].timestamp, 7);
    assert!(
        events[0].fields["parse_error"]
            .as_str()
            .unwrap()
            .starts_with("timestamp:")
    );

    let mut missing = parser("format = \"json\"\nfield = \"nope\"");
    let events = run(&mut missing, "{}");
    assert_eq!(
        events[0].fields["parse_error"],
        "json: no text field `nope`"
    );

    let mut syslog_field = parser("format = \"syslog\"\nfield = \"line\"");
    let mut events = vec![event("m")];
    events[0].fields.insert(
        "line".into(),
        json!("<13>1 2026-11-20T10:00:00Z h a - - - inner"),
    );
    syslog_field.apply(&mut events);
    assert_eq!(events[0].fields["line"], "inner");
    assert_eq!(events[0].message, "m");
}

#[test]
fn parsed_fields_merge_over_existing_ones() {
    let mut parse = parser(r#"format = "json""#);
    let mut events = vec![event(r#"{"a":2,"b":3}"#)];
    events[0].fields.insert("a".into(), json!(1));
    events[0].fields.insert("z".into(), json!(0));
    parse.apply(&mut events);
    assert_eq!(
        Value::from(events[0].fields.clone()),
        json!({"a":2,"b":3,"z":0})
    );
}

#[test]
fn inconsistent_options_are_refused() {
    for options in [
        r#"format = "regex""#,
        "format = \"regex\"\npattern = '\\d+'",
        "format = \"json\"\npattern = '(?P<a>x)'",
    ] {
        let config: ParseConfig = toml::from_str(options).unwrap();
        assert!(config.validate().is_err(), "{options}");
    }
    for options in [
        "format = \"csv\"",
        "format = \"regex\"\npattern = '(?P<a>'",
        "format = \"json\"\ntimestamp_formats = [\"yesterday\"]",
        "format = \"json\"\nsurprise = 1",
    ] {
        assert!(toml::from_str::<ParseConfig>(options).is_err(), "{options}");
    }
}

proptest! {
    #[test]
    fn never_panics_and_never_loses_an_event(line in any::<String>(), format_index in 0usize..8) {
        let formats = ["json", "logfmt", "syslog", "scalingo", "digitalocean", "dcos", "auto", "regex"];
        let format = formats[format_index];
        let options = if format == "regex" {
            "format = \"regex\"\npattern = '(?P<word>\\w+)'".to_string()
        } else {
            format!("format = \"{format}\"\ntimestamp_field = \"ts\"")
        };
        let mut parse = parser(&options);
        let events = run(&mut parse, &line);
        prop_assert_eq!(events.len(), 1);
    }

    #[test]
    fn structured_prefixes_never_panic(
        prefix in prop::sample::select(vec!["{\"", "<13>1 ", "<34>", "2015-02-16 02:02:43 +0000 UTC [", "web 2024-05-01T", "a=\"", "{\"fields\":{\"MESSAGE\":"]),
        rest in any::<String>(),
    ) {
        let mut parse = parser("format = \"auto\"");
        let events = run(&mut parse, &format!("{prefix}{rest}"));
        prop_assert_eq!(events.len(), 1);
    }
}

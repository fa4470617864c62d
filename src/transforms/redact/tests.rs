use proptest::prelude::*;
use serde_json::json;

use super::*;

fn redactor(options: &str) -> Redact {
    let config: RedactConfig = toml::from_str(options).expect("valid options");
    Redact::new("test", &config).expect("builds")
}

fn redact(options: &str, message: &str) -> String {
    let mut events = vec![Event::new(
        "s".into(),
        "demo".into(),
        message.to_string(),
        0,
    )];
    redactor(options).apply(&mut events);
    events.remove(0).message
}

const JWT: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

#[test]
fn masks_every_detector() {
    let cases: &[(&str, String)] = &[
        ("mail alice@example.com", "mail [REDACTED:email]".into()),
        ("from 10.0.0.1", "from [REDACTED:ipv4]".into()),
        (
            "peer fe80::1 and ::",
            "peer [REDACTED:ipv6] and [REDACTED:ipv6]".into(),
        ),
        (
            "card 4111 1111 1111 1111 ok",
            "card [REDACTED:credit_card] ok".into(),
        ),
        (
            "card 4111 1111 1111 1112 ok",
            "card 4111 1111 1111 1112 ok".into(),
        ),
        (
            &format!("GET https://x.io/cb?id_token={JWT}&s=1"),
            "GET https://x.io/cb?id_token=[REDACTED:jwt]&s=1".into(),
        ),
        (
            "Authorization: Bearer abcdefgh12",
            "Authorization: Bearer [REDACTED:bearer_token]".into(),
        ),
        (
            "Authorization: Basic dXNlcjpwYXNz",
            "Authorization: Basic [REDACTED:basic_auth]".into(),
        ),
        (
            "authorization: token=abc",
            "authorization: [REDACTED:authorization]".into(),
        ),
        (
            "redis://u:p4ss@cache:6379",
            "redis://[REDACTED:url_credentials]@cache:6379".into(),
        ),
        (
            "id AKIAIOSFODNN7EXAMPLE",
            "id [REDACTED:aws_access_key_id]".into(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "AWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_access_key]".into(),
        ),
        (
            "login password=hunter2 ok",
            "login password=[REDACTED:generic_secret] ok".into(),
        ),
        (
            "nothing secret here at all",
            "nothing secret here at all".into(),
        ),
        ("", "".into()),
    ];
    for (input, expected) in cases {
        assert_eq!(redact("", input), *expected, "{input}");
    }
}

#[test]
fn a_line_with_several_secrets() {
    let line = format!(
        "user=bob@corp.io ip=192.168.1.20 card=5555-5555-5555-4444 jwt={JWT} api_key=k-123 from 2001:db8::1 via https://u:pw@h.io"
    );
    assert_eq!(
        redact("", &line),
        "user=[REDACTED:email] ip=[REDACTED:ipv4] card=[REDACTED:credit_card] jwt=[REDACTED:jwt] \
         api_key=[REDACTED:generic_secret] from [REDACTED:ipv6] via https://[REDACTED:url_credentials]@h.io"
    );
}

#[test]
fn detector_choice_custom_patterns_and_replacement() {
    assert_eq!(
        redact(r#"detectors = ["email"]"#, "a@b.io at 10.0.0.1"),
        "[REDACTED:email] at 10.0.0.1"
    );
    assert_eq!(
        redact(
            "detectors = []\npatterns = ['session=(\\w+)', 'ORD-\\d{6}']\nreplacement = \"<{detector}>\"",
            "session=abc123 order ORD-123456 mail a@b.io"
        ),
        "session=<custom> order <custom> mail a@b.io"
    );
    assert_eq!(
        redact("patterns = ['(?i)café-\\w+']", "é café-Ü1 ü"),
        "é [REDACTED:custom] ü"
    );
}

#[test]
fn hash_mode_is_keyed_stable_and_truncated() {
    let options = "mode = \"hash\"\nkey = \"k1\"";
    let a = redact(
        options,
        "a alice@example.com b alice@example.com c bob@example.com",
    );
    let tokens: Vec<&str> = a.split(' ').filter(|w| w.starts_with('[')).collect();
    assert_eq!(tokens.len(), 3);
    assert_eq!(tokens[0], tokens[1]);
    assert_ne!(tokens[0], tokens[2]);
    assert!(tokens[0].starts_with("[email:") && tokens[0].len() == "[email:]".len() + 16);
    let other_key = redact("mode = \"hash\"\nkey = \"k2\"", "alice@example.com");
    assert_ne!(other_key, tokens[0]);
    // HMAC-SHA256("k1", "alice@example.com"), checked against an independent tool.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"k1").unwrap();
    mac.update(b"alice@example.com");
    let mut hex = String::new();
    push_hex(&mac.finalize().into_bytes(), 64, &mut hex);
    assert_eq!(tokens[0], format!("[email:{}]", &hex[..16]));
    let short = redact(
        "mode = \"hash\"\nkey = \"k1\"\nhash_length = 9\nreplacement = \"{hash}\"",
        "alice@example.com",
    );
    assert_eq!(short, &hex[..9]);

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "k1\n").unwrap();
    let from_file = redact(
        &format!(
            "mode = \"hash\"\nkey_file = {:?}",
            key_file.display().to_string()
        ),
        "alice@example.com",
    );
    assert_eq!(from_file, tokens[0]);
}

#[test]
fn partial_mode_keeps_the_ends() {
    assert_eq!(
        redact("mode = \"partial\"", "card 4111111111111111 ok"),
        "card ************1111 ok"
    );
    assert_eq!(
        redact(
            "mode = \"partial\"\nkeep_prefix = 2\nkeep_suffix = 3\nmask_char = \"#\"",
            "mail ab@cd.io"
        ),
        "mail ab###.io"
    );
    assert_eq!(
        redact("mode = \"partial\"\nkeep_suffix = 8", "pwd: password=abc"),
        "pwd: password=***"
    );
}

#[test]
fn fields_are_redacted_deeply_and_counted_values_untouched() {
    let mut r = redactor(r#"fields = ["user", "req", "missing"]"#);
    let mut e = Event::new("s".into(), "demo".into(), "hi 10.0.0.1".into(), 0);
    e.fields.insert("user".into(), json!("alice@example.com"));
    e.fields
        .insert("req".into(), json!({"ips": ["10.0.0.2", 3], "ok": true}));
    e.fields.insert("other".into(), json!("bob@example.com"));
    let mut events = vec![e];
    r.apply(&mut events);
    let e = &events[0];
    assert_eq!(e.message, "hi [REDACTED:ipv4]");
    assert_eq!(e.fields["user"], "[REDACTED:email]");
    assert_eq!(
        e.fields["req"],
        json!({"ips": ["[REDACTED:ipv4]", 3], "ok": true})
    );
    assert_eq!(e.fields["other"], "bob@example.com");
}

#[test]
fn every_parsed_field_is_scanned_by_default() {
    let mut e = Event::new(
        "s".into(),
        "demo".into(),
        r#"{"level":"error","msg":"db down","user":"bob@example.com"}"#.into(),
        0,
    );
    e.fields.insert("level".into(), json!("error"));
    e.fields.insert("msg".into(), json!("db down"));
    e.fields.insert("user".into(), json!("bob@example.com"));
    e.fields.insert(
        "http".into(),
        json!({"client": {"ip": "10.1.2.3"}, "hops": ["10.0.0.9", {"card": "4111 1111 1111 1111"}], "status": 503}),
    );
    e.fields
        .insert("DB-Password".into(), json!("correct horse battery"));
    e.fields.insert("api_key".into(), json!(12345678));
    e.fields.insert(
        "session".into(),
        json!({"cookie": ["a=1", "b=2"], "token": ""}),
    );
    e.fields
        .insert("clients".into(), json!({"10.9.8.7": 3, "10.9.8.6": 4}));
    let mut events = vec![e];
    redactor("").apply(&mut events);
    let e = &events[0];
    assert_eq!(
        e.message,
        r#"{"level":"error","msg":"db down","user":"[REDACTED:email]"}"#
    );
    assert_eq!(e.fields["user"], "[REDACTED:email]");
    assert_eq!(e.fields["msg"], "db down");
    assert_eq!(
        e.fields["http"],
        json!({"client": {"ip": "[REDACTED:ipv4]"}, "hops": ["[REDACTED:ipv4]", {"card": "[REDACTED:credit_card]"}], "status": 503})
    );
    assert_eq!(e.fields["DB-Password"], "[REDACTED:sensitive_key]");
    assert_eq!(e.fields["api_key"], "[REDACTED:sensitive_key]");
    assert_eq!(
        e.fields["session"],
        json!({"cookie": ["[REDACTED:sensitive_key]", "[REDACTED:sensitive_key]"], "token": ""})
    );
    assert_eq!(
        e.fields["clients"],
        json!({"[REDACTED:ipv4]": 4, "[REDACTED:ipv4]#2": 3})
    );
}

#[test]
fn fields_narrow_exclude_fields_skip_and_origin_is_opt_in() {
    let event = || {
        let mut e = Event::new("s".into(), "demo".into(), "m".into(), 0);
        e.fields.insert("msg".into(), json!("a@b.io"));
        e.fields.insert("user".into(), json!("c@d.io"));
        e.fields.insert(
            "http".into(),
            json!({"headers": {"x": "e@f.io", "cookie": "s=1"}, "body": "g@h.io"}),
        );
        e.fields.insert("password".into(), json!("p"));
        e.origin.host = Some("10.0.0.1".into());
        e.origin.file = Some("/logs/ops@corp.io".into());
        e
    };
    let run = |options: &str| {
        let mut events = vec![event()];
        redactor(options).apply(&mut events);
        events.remove(0)
    };
    let narrowed = run(r#"fields = ["msg", "http.*"]
exclude_fields = ["http.body"]"#);
    assert_eq!(narrowed.fields["msg"], "[REDACTED:email]");
    assert_eq!(narrowed.fields["user"], "c@d.io");
    assert_eq!(
        narrowed.fields["password"], "p",
        "outside the narrowed scope"
    );
    assert_eq!(
        narrowed.fields["http"],
        json!({"headers": {"x": "[REDACTED:email]", "cookie": "[REDACTED:sensitive_key]"}, "body": "g@h.io"})
    );
    assert_eq!(narrowed.origin.host.as_deref(), Some("10.0.0.1"));

    let excluded = run(r#"exclude_fields = ["user"]
sensitive_keys = []"#);
    assert_eq!(excluded.fields["user"], "c@d.io");
    assert_eq!(excluded.fields["msg"], "[REDACTED:email]");
    assert_eq!(excluded.fields["password"], "p");

    let origin = run("include_origin = true");
    assert_eq!(origin.origin.host.as_deref(), Some("[REDACTED:ipv4]"));
    assert_eq!(
        origin.origin.file.as_deref(),
        Some("/logs/[REDACTED:email]")
    );
}

#[test]
fn sensitive_values_follow_the_mode() {
    let mut e = Event::new("s".into(), "demo".into(), "m".into(), 0);
    e.fields.insert("token".into(), json!("abcdefgh"));
    let mut events = vec![e.clone()];
    redactor("mode = \"partial\"").apply(&mut events);
    assert_eq!(events[0].fields["token"], "****efgh");
    let mut events = vec![e];
    redactor("mode = \"hash\"\nkey = \"k\"").apply(&mut events);
    let hashed = events[0].fields["token"].as_str().unwrap();
    assert!(hashed.starts_with("[sensitive_key:") && !hashed.contains("abcdefgh"));
}

#[test]
fn inconsistent_options_are_refused() {
    for options in [
        "mode = \"hash\"",
        "mode = \"hash\"\nkey = \"a\"\nkey_file = \"/k\"",
        "key = \"a\"",
        "detectors = []\nsensitive_keys = []",
        "mode = \"partial\"\nreplacement = \"x\"",
        "mode = \"hash\"\nkey = \"a\"\nhash_length = 4",
        "replacement = \"{hash}\"",
    ] {
        let config: RedactConfig = toml::from_str(options).unwrap();
        assert!(config.validate().is_err(), "{options}");
    }
    for options in [
        "detectors = [\"phone\"]",
        "patterns = [\"(\"]",
        "mode = \"shred\"",
        "extra = 1",
        "fields = [\"a..b\"]",
    ] {
        assert!(
            toml::from_str::<RedactConfig>(options).is_err(),
            "{options}"
        );
    }
    let missing_file: RedactConfig =
        toml::from_str("mode = \"hash\"\nkey_file = \"/nonexistent/key\"").unwrap();
    assert!(Redact::new("t", &missing_file).is_err());
}

fn luhn_complete(mut digits: Vec<u8>) -> String {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    digits.push(((10 - sum % 10) % 10) as u8);
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            "[a-z][a-z0-9._]{0,10}[a-z0-9]",
            "[a-z]{1,10}",
            "(com|io|org|co\\.uk)"
        )
            .prop_map(|(user, host, tld)| format!("{user}@{host}.{tld}")),
        (any::<[u8; 4]>()).prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        (any::<[u16; 8]>(), 0usize..8).prop_map(|(g, zeros)| {
            let addr = std::net::Ipv6Addr::new(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
            if zeros == 0 {
                addr.to_string()
            } else {
                let mut g = g;
                g[1..=zeros.min(6)].iter_mut().for_each(|x| *x = 0);
                std::net::Ipv6Addr::from(g).to_string()
            }
        }),
        (2u8..7, prop::collection::vec(0u8..10, 14)).prop_map(|(first, rest)| {
            let mut digits = vec![first];
            digits.extend(rest);
            luhn_complete(digits)
        }),
        (
            "[A-Za-z0-9_-]{8,20}",
            "[A-Za-z0-9_-]{8,20}",
            "[A-Za-z0-9_-]{8,30}"
        )
            .prop_map(|(h, p, s)| format!("eyJ{h}.{p}.{s}")),
        "[A-Z0-9]{16}".prop_map(|k| format!("AKIA{k}")),
        "[A-Za-z0-9]{12,30}".prop_map(|t| format!("Bearer {t}")),
        "[A-Za-z0-9]{3,20}".prop_map(|v| format!("password={v}")),
    ]
}

fn secret_value(secret: &str) -> &str {
    secret
        .strip_prefix("Bearer ")
        .or_else(|| secret.strip_prefix("password="))
        .unwrap_or(secret)
}

proptest! {
    #[test]
    fn never_panics(message in any::<String>(), field in any::<String>()) {
        let mut r = redactor("fields = [\"f\"]\npatterns = ['\\bx\\w*']");
        let mut e = Event::new("s".into(), "demo".into(), message, 0);
        e.fields.insert("f".into(), json!(field));
        let mut events = vec![e];
        r.apply(&mut events);
        prop_assert_eq!(events.len(), 1);
    }

    #[test]
    fn never_panics_near_secret_shapes(
        parts in prop::collection::vec(prop::sample::select(vec![
            "@", ".", ":", "::", "eyJ", "4111", " ", "-", "=", "\"", "é", "bearer ", "Basic ",
            "://", "AKIA", "password", "1", "ff", "\u{1F600}", "a",
        ]), 0..40),
    ) {
        let message: String = parts.concat();
        let mut events = vec![Event::new("s".into(), "demo".into(), message, 0)];
        redactor("").apply(&mut events);
        prop_assert_eq!(events.len(), 1);
    }

    #[test]
    fn output_never_contains_a_generated_secret(
        secrets in prop::collection::vec(secret(), 1..4),
        words in prop::collection::vec("[a-z]{1,8}", 0..6),
        hash in any::<bool>(),
    ) {
        let mut line = String::new();
        for (i, s) in secrets.iter().enumerate() {
            line.push_str(words.get(i).map_or("at", String::as_str));
            line.push(' ');
            line.push_str(s);
            line.push(' ');
        }
        line.push_str("end");
        let options = if hash { "mode = \"hash\"\nkey = \"k\"" } else { "" };
        let out = redact(options, &line);
        for s in &secrets {
            let value = secret_value(s);
            prop_assert!(!out.contains(value), "{value:?} survived in {out:?}");
        }
    }

    /// The one-scan check of a whole event never skips one that per-text scans
    /// would change (a custom pattern turns the check off).
    #[test]
    fn the_joined_scan_changes_nothing(
        tree in json_tree_with_secrets(),
        message in prop::collection::vec(prop_oneof![secret(), "[a-z:=.@ ]{0,12}".boxed()], 0..4),
    ) {
        let Value::Object(fields) = tree.0 else { unreachable!() };
        let mut event = Event::new("s".into(), "demo".into(), message.join(" "), 0);
        event.fields = fields.into();
        let mut joined = vec![event.clone()];
        redactor("").apply(&mut joined);
        let mut per_text = vec![event];
        redactor("patterns = ['x^']").apply(&mut per_text);
        prop_assert_eq!(joined, per_text);
    }

    /// The byte scanners of the fixed-shape detectors change nothing against the
    /// detectors' regexes, in the joined scan as in the per-text one.
    #[test]
    fn byte_scanners_redact_what_the_regexes_redact(
        tree in json_tree_with_secrets(),
        parts in prop::collection::vec(prop_oneof![
            secret(),
            prop::sample::select(vec![
                "a", "bc", "x9", "0", "1", "25", "255", "1234", ".", "..", "@", "-", "_", "%",
                " ", "\n", ":", "é", "io", "com", "1.2.3.4", "b@c.io",
            ]).prop_map(String::from),
        ], 0..24),
        per_text in any::<bool>(),
    ) {
        let Value::Object(fields) = tree.0 else { unreachable!() };
        let mut event = Event::new("s".into(), "demo".into(), parts.concat(), 0);
        event.fields = fields.into();
        event.fields.insert(parts.join(" "), json!(parts.join("")));
        let options = if per_text { "patterns = ['x^']" } else { "" };
        let mut by_regex = redactor(options);
        let config: RedactConfig = toml::from_str(options).unwrap();
        by_regex.scanner =
            Scanner::regexes_only(&config.detectors, &config.sensitive_keys, &config.patterns);
        let mut expected = vec![event.clone()];
        by_regex.apply(&mut expected);
        let mut got = vec![event];
        redactor(options).apply(&mut got);
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn no_secret_at_any_depth_survives_in_the_json(
        tree in json_tree_with_secrets(),
        hash in any::<bool>(),
    ) {
        let (fields, secrets) = tree;
        let mut event = Event::new("s".into(), "demo".into(), "line".into(), 0);
        let Value::Object(map) = fields else { unreachable!() };
        event.fields = map.into();
        let options = if hash { "mode = \"hash\"\nkey = \"k\"" } else { "" };
        let mut events = vec![event];
        redactor(options).apply(&mut events);
        let out = events[0].to_json().to_string();
        for s in &secrets {
            prop_assert!(!out.contains(s.as_str()), "{s:?} survived in {out}");
        }
    }
}

/// A random JSON object with secrets placed at any depth: inside string values
/// (between words), as keys, and as innocent-looking values under sensitive keys.
/// Returns the tree and the secret values that must not survive. Plain words and
/// keys come from a small vocabulary so that no secret is found in them by chance.
fn json_tree_with_secrets() -> impl Strategy<Value = (Value, Vec<String>)> {
    #[derive(Debug, Clone)]
    enum Leaf {
        Plain(String),
        /// The text holding a secret, and the part that must go.
        Secret(String, String),
        /// A sensitive key and its innocent-looking value.
        Sensitive(String, String),
    }
    let word = || prop::sample::select(vec!["info", "db", "retry", "ok", "path", "shop"]);
    let leaf = prop_oneof![
        prop::collection::vec(word(), 1..4).prop_map(|w| Leaf::Plain(w.join(" "))),
        (secret(), word())
            .prop_map(|(s, w)| Leaf::Secret(format!("{w} {s} end"), secret_value(&s).to_string())),
        (
            prop::sample::select(vec![
                "password",
                "apiKey",
                "X-Auth-Token",
                "set-cookie",
                "client_secret"
            ]),
            "[a-z]{3,10}"
        )
            .prop_map(|(k, v)| Leaf::Sensitive(k.to_string(), format!("Zq{v}Q"))),
    ];
    // A key: a plain name, or a secret (then it must go too).
    let key = prop_oneof![
        4 => prop::sample::select(vec!["msg", "user", "ctx", "data", "req"])
            .prop_map(|k| (k.to_string(), None)),
        1 => secret().prop_map(|s| (s.clone(), Some(secret_value(&s).to_string()))),
    ];
    // Each leaf with its key and how it is wrapped on its way up (array, object).
    type Node = Vec<(Option<(String, Option<String>)>, Leaf, Vec<u8>)>;
    let tree =
        leaf.prop_map(|l| -> Node { vec![(None, l, Vec::new())] })
            .prop_recursive(4, 48, 6, move |inner| {
                prop::collection::vec((prop::option::of(key.clone()), inner, 0u8..3), 1..4)
                    .prop_map(|children| -> Node {
                        children
                            .into_iter()
                            .flat_map(|(k, leaves, nest)| {
                                leaves.into_iter().map(move |(own, l, mut wraps)| {
                                    wraps.push(nest);
                                    (own.or(k.clone()), l, wraps)
                                })
                            })
                            .collect()
                    })
            });
    tree.prop_map(|leaves| {
        let mut secrets = Vec::new();
        let mut root = serde_json::Map::new();
        for (i, (key, leaf, wraps)) in leaves.into_iter().enumerate() {
            let value = match leaf {
                Leaf::Plain(text) => json!(text),
                Leaf::Secret(text, secret) => {
                    secrets.push(secret);
                    json!(text)
                }
                Leaf::Sensitive(k, v) => {
                    secrets.push(v.clone());
                    let mut inner = serde_json::Map::new();
                    inner.insert(k, json!(v));
                    Value::Object(inner)
                }
            };
            let name = match key {
                Some((name, secret)) => {
                    secrets.extend(secret);
                    name
                }
                None => "k".to_string(),
            };
            let value = wraps.into_iter().fold(value, |value, wrap| match wrap {
                0 => json!([value, 1, null]),
                1 => json!({ "inner": { "deeper": value } }),
                _ => value,
            });
            root.insert(format!("{name} #{i}"), value);
        }
        (Value::Object(root), secrets)
    })
}

#[test]
fn matches_are_counted_per_detector_once_a_batch() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        let mut redactor = redactor("");
        let mut events: Vec<Event> = ["a@x.io from 10.0.0.1", "b@x.io and c@x.io", "nothing"]
            .into_iter()
            .map(|m| Event::new("s".into(), "demo".into(), m.to_string(), 0))
            .collect();
        events[2].fields.insert("password".into(), json!("hunter2"));
        redactor.apply(&mut events);
    });
    let metrics = handle.render();
    for (detector, count) in [("email", 3), ("ipv4", 1), ("sensitive_key", 1)] {
        let line = format!(
            "ferry_redact_matches_total{{transform=\"test\",detector=\"{detector}\"}} {count}"
        );
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

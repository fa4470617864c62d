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
fn inconsistent_options_are_refused() {
    for options in [
        "detectors = []",
        "mode = \"hash\"",
        "mode = \"hash\"\nkey = \"a\"\nkey_file = \"/k\"",
        "key = \"a\"",
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
}

//! Redaction covers every way a secret can leave: the real `ferry` binary reads lines
//! holding every built-in detector's sample secret — in the message, in a top-level
//! parsed field, in a nested object, in an array, as a key, in a logfmt pair — plus
//! innocent-looking values under sensitive keys, runs `parse (auto) → level →
//! redact (defaults)`, and writes to a JSON file sink and to the Loki test receiver
//! with parsed fields as structured metadata and a label. No secret may appear in any
//! output byte (file, Loki lines, labels, metadata, ferry's own log), and the text
//! around the secrets must be kept.

#[path = "support/ferry_process.rs"]
mod ferry_process;
#[path = "support/loki_receiver.rs"]
mod loki_receiver;

use std::time::Duration;

use ferry_process::{Ferry, wait_until};
use loki_receiver::LokiReceiver;

const JWT: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

/// (detector, text holding the secret, the secret part that must go).
fn samples() -> Vec<(&'static str, String, String)> {
    let aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    vec![
        ("jwt", format!("id_token={JWT}"), JWT.into()),
        (
            "aws_access_key_id",
            "key AKIAIOSFODNN7EXAMPLE used".into(),
            "AKIAIOSFODNN7EXAMPLE".into(),
        ),
        (
            "aws_secret_access_key",
            format!("aws_secret_access_key={aws_secret}"),
            aws_secret.into(),
        ),
        (
            "url_credentials",
            "dsn postgres://admin:hunter2pw@db.internal:5432/app".into(),
            "admin:hunter2pw".into(),
        ),
        (
            "bearer_token",
            "sent Bearer tok3nAbCdEf987 upstream".into(),
            "tok3nAbCdEf987".into(),
        ),
        (
            "basic_auth",
            "sent Basic YWxpY2U6czNjcjN0 upstream".into(),
            "YWxpY2U6czNjcjN0".into(),
        ),
        (
            "authorization",
            "authorization: zx9SchemeLessCred".into(),
            "zx9SchemeLessCred".into(),
        ),
        (
            "credit_card",
            "paid with 4111 1111 1111 1111 today".into(),
            "4111 1111 1111 1111".into(),
        ),
        (
            "email",
            "mail to carol.smith@example.org now".into(),
            "carol.smith@example.org".into(),
        ),
        (
            "ipv6",
            "peer 2001:db8:85a3::8a2e:370:7334 connected".into(),
            "2001:db8:85a3::8a2e:370:7334".into(),
        ),
        (
            "ipv4",
            "client 203.0.113.77 connected".into(),
            "203.0.113.77".into(),
        ),
        (
            "generic_secret",
            "retry with passwd=Sw0rdfish42 now".into(),
            "Sw0rdfish42".into(),
        ),
    ]
}

/// Innocent-looking values under sensitive keys: (key, value).
const SENSITIVE: &[(&str, &str)] = &[
    ("password", "correct horse battery staple"),
    ("X-Auth-Token", "plainvalue0001"),
    ("client_secret", "blueberry-pancakes"),
    ("Set-Cookie", "theme=dark"),
    ("dbPassword", "letmein-please"),
];

/// One JSON line per detector with its sample in the message text, a top-level
/// field, a nested object, an array and a key; one logfmt line per detector; and
/// one line of sensitive keys.
fn input_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for (name, text, _) in samples() {
        let line = serde_json::json!({
            "level": "error",
            "msg": format!("msg keeps {text} words"),
            "note": text,
            "ctx": { "inner": { "detail": format!("nested {text}") } },
            "list": ["first", format!("listed {text}"), 7],
            "by_key": { text.clone(): "counted" },
            "detector": name,
        });
        lines.push(line.to_string());
        let logfmt_value = text.replace('"', "");
        lines.push(format!(
            "level=warn detector={name}_logfmt note=\"{logfmt_value}\" msg=\"logfmt keeps words\""
        ));
    }
    let mut sensitive = serde_json::Map::new();
    for (key, value) in SENSITIVE {
        sensitive.insert((*key).into(), (*value).into());
    }
    sensitive.insert("detector".into(), "sensitive".into());
    sensitive.insert(
        "nested".into(),
        serde_json::json!({ "api_key": "harmless-looking-42" }),
    );
    lines.push(serde_json::Value::Object(sensitive).to_string());
    lines
}

fn secrets() -> Vec<String> {
    let mut all: Vec<String> = samples().into_iter().map(|(_, _, s)| s).collect();
    all.extend(SENSITIVE.iter().map(|(_, v)| v.to_string()));
    all.push("harmless-looking-42".into());
    all
}

fn assert_clean(what: &str, text: &str) {
    for secret in secrets() {
        assert!(!text.contains(&secret), "{what} leaks {secret:?}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaves_through_the_file_sink_or_loki() {
    let loki = LokiReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.log");
    let lines = input_lines();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("out.json");
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{data}"
[api]
enabled = false

[sources.app]
type = "file"
include = ["{input}"]

[transforms.parsed]
type = "parse"
inputs = ["app"]
format = "auto"

[transforms.tagged]
type = "level"
inputs = ["parsed"]

[transforms.clean]
type = "redact"
inputs = ["tagged"]

[sinks.file]
type = "file"
inputs = ["clean"]
path = "{out}"
encoding = "json"

[sinks.loki]
type = "loki"
inputs = ["clean"]
endpoint = "{endpoint}"
batch_timeout = "100ms"
labels = {{ app = "shop", note = "{{{{ note }}}}" }}
structured_metadata = {{ note = "{{{{ note }}}}", detail = "{{{{ ctx.inner.detail }}}}", password = "{{{{ password }}}}", msg = "{{{{ msg }}}}" }}
"#,
            data = dir.path().join("data").display(),
            input = input.display(),
            out = out.display(),
            endpoint = loki.endpoint(),
        ),
    )
    .unwrap();

    let ferry = Ferry::start(&config);
    let expected = lines.len();
    wait_until(Duration::from_secs(60), "the file sink output", || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() >= expected)
    });
    assert!(
        loki.wait_for_entries(expected, Duration::from_secs(60))
            .await,
        "every line reaches Loki"
    );
    let log = ferry.log.clone();
    assert!(ferry.terminate().success());

    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.lines().count(), expected);
    assert_clean("the file sink", &written);
    let entries = loki.entries();
    assert_eq!(entries.len(), expected);
    for entry in &entries {
        let mut all = entry.line.clone();
        for (k, v) in entry.labels.iter().chain(&entry.metadata) {
            all.push_str(&format!(" {k}={v}"));
        }
        assert_clean("a Loki entry", &all);
    }
    assert_clean("ferry's log", &std::fs::read_to_string(log).unwrap());

    // The text around the secrets is kept, and each secret's detector is named.
    for (name, _, _) in samples() {
        let event = written
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["fields"]["detector"] == name)
            .unwrap_or_else(|| panic!("the {name} line is there"));
        let fields = &event["fields"];
        let marker = format!("[REDACTED:{name}]");
        assert!(
            event["message"].as_str().unwrap().contains(&marker),
            "{event}"
        );
        assert!(
            fields["msg"].as_str().unwrap().starts_with("msg keeps "),
            "{event}"
        );
        assert!(
            fields["msg"].as_str().unwrap().ends_with(" words"),
            "{event}"
        );
        assert!(
            fields["note"].as_str().unwrap().contains(&marker),
            "{event}"
        );
        assert!(
            fields["ctx"]["inner"]["detail"]
                .as_str()
                .unwrap()
                .starts_with("nested ")
        );
        assert!(fields["list"][1].as_str().unwrap().starts_with("listed "));
        assert_eq!(fields["list"][0], "first");
        assert_eq!(fields["list"][2], 7);
        assert_eq!(event["level"], "error");
        let logfmt = written
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["fields"]["detector"] == format!("{name}_logfmt"))
            .unwrap_or_else(|| panic!("the {name} logfmt line is there"));
        assert_eq!(logfmt["fields"]["msg"], "logfmt keeps words");
        assert_eq!(logfmt["level"], "warn");
    }
    let sensitive = written
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["fields"]["detector"] == "sensitive")
        .expect("the sensitive-keys line is there");
    for (key, _) in SENSITIVE {
        assert_eq!(
            sensitive["fields"][key], "[REDACTED:sensitive_key]",
            "{sensitive}"
        );
    }
    assert_eq!(
        sensitive["fields"]["nested"]["api_key"],
        "[REDACTED:sensitive_key]"
    );
}

#[test]
fn validate_warns_about_a_parsed_path_without_redact() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        r#"
[sources.app]
type = "stdin"

[transforms.parsed]
type = "parse"
inputs = ["app"]
format = "json"

[transforms.clean]
type = "redact"
inputs = ["parsed"]

[sinks.safe]
type = "console"
inputs = ["clean"]

[sinks.debug]
type = "console"
inputs = ["parsed"]
"#,
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "a warning is not an error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "warning: sinks.debug receives events parsed by transforms.parsed that pass no redact"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("sinks.safe"), "{stderr}");
}

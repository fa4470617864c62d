//! Secrets given to ferry (API tokens and passwords from the environment, tokens from
//! `*_file`) appear in none of its outputs: not in its log at the most verbose level
//! while every credential is being refused, not in `/metrics`, not in `validate`'s
//! output, and not in the errors about a broken config, even one that puts a secret in
//! the wrong option.

#[path = "support/ferry_process.rs"]
mod ferry_process;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use ferry_process::{free_port, http_get, wait_until};

const LIMIT: Duration = Duration::from_secs(120);
const SCALINGO_TOKEN: &str = "tk-us-scalingo-SECRET-5f2a9c81d7e4";
const LOKI_PASSWORD: &str = "loki-PASSWORD-secret-8b1e77c0";
const FILE_TOKEN: &str = "bearer-FILE-token-secret-3d9f12aa";

/// Answers every request with 401 and records the `Authorization` headers it saw
/// (basic credentials decoded).
fn refusing_server() -> (u16, Arc<Mutex<BTreeSet<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let record = Arc::clone(&record);
            std::thread::spawn(move || refuse(stream, &record));
        }
    });
    (port, seen)
}

fn refuse(stream: TcpStream, seen: &Mutex<BTreeSet<String>>) {
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("authorization:") {
            let value = line[14..].trim();
            let decoded = value
                .strip_prefix("Basic ")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            seen.lock()
                .unwrap()
                .insert(decoded.unwrap_or_else(|| value.to_string()));
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let _ = reader.get_mut().write_all(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\ncontent-length: 12\r\nconnection: close\r\n\r\nunauthorized",
    );
}

fn config(dir: &Path, api: u16, server: u16, extra: &str) -> String {
    let token_file = dir.join("loki.token");
    std::fs::write(&token_file, format!("{FILE_TOKEN}\n")).unwrap();
    format!(
        r#"data_dir = "{data}"
[api]
address = "127.0.0.1:{api}"

[sources.web]
type = "scalingo"
app = "my-app"
api_token = "${{FERRY_TEST_SCALINGO_TOKEN}}"
endpoint = "http://127.0.0.1:{server}"
auth_endpoint = "http://127.0.0.1:{server}"
{extra}

[sources.demo]
type = "demo"
rate = 200.0

[sinks.basic]
type = "loki"
inputs = ["demo", "web"]
endpoint = "http://127.0.0.1:{server}"
retry_initial_backoff = "10ms"
[sinks.basic.auth]
strategy = "basic"
user = "stack-1"
password = "${{FERRY_TEST_LOKI_PASSWORD}}"

[sinks.bearer]
type = "loki"
inputs = ["demo"]
endpoint = "http://127.0.0.1:{server}"
retry_initial_backoff = "10ms"
[sinks.bearer.auth]
strategy = "bearer"
token_file = "{token_file}"
"#,
        data = dir.join("data").display(),
        token_file = token_file.display(),
    )
}

/// The secrets and the forms they travel in (basic auth is base64 of `user:password`;
/// Scalingo's token exchange sends the token as the password of an empty user).
fn secret_forms() -> Vec<String> {
    let base64 = |text: String| base64::engine::general_purpose::STANDARD.encode(text);
    vec![
        SCALINGO_TOKEN.to_string(),
        LOKI_PASSWORD.to_string(),
        FILE_TOKEN.to_string(),
        base64(format!("stack-1:{LOKI_PASSWORD}")),
        base64(format!(":{SCALINGO_TOKEN}")),
    ]
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in secret_forms() {
        assert!(!text.contains(&secret), "a secret in {what}:\n{text}");
    }
}

fn validate(config: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("validate")
        .arg("-c")
        .arg(config)
        .env_remove("FERRY_CONFIG")
        .env("FERRY_LOG", "trace")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn secrets_reach_no_log_metric_or_error_message() {
    // SAFETY: set before any thread of this test binary reads the environment; the
    // ferry processes inherit them.
    unsafe {
        std::env::set_var("FERRY_TEST_SCALINGO_TOKEN", SCALINGO_TOKEN);
        std::env::set_var("FERRY_TEST_LOKI_PASSWORD", LOKI_PASSWORD);
        std::env::set_var("FERRY_LOG", "trace");
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, seen) = refusing_server();
    let api = free_port();
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, config(dir.path(), api, server, "")).unwrap();

    let (code, text) = validate(&path);
    assert_eq!(code, Some(0), "{text}");
    assert_no_secret("`ferry validate`", &text);

    let log_path = dir.path().join("ferry.log");
    let mut ferry = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("run")
        .arg("-c")
        .arg(&path)
        .env_remove("FERRY_CONFIG")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    wait_until(LIMIT, "every credential sent and refused", || {
        let seen = seen.lock().unwrap();
        [SCALINGO_TOKEN, LOKI_PASSWORD, FILE_TOKEN]
            .iter()
            .all(|secret| seen.iter().any(|header| header.contains(secret)))
    });
    let (status, metrics) = http_get(api, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    assert_no_secret("/metrics", &metrics);
    let (_, health) = http_get(api, "/health").expect("/health answers");
    assert_no_secret("/health", &health);
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(ferry.id() as i32, libc::SIGTERM) };
    assert!(ferry.wait().unwrap().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    for refusal in ["credentials refused", "Loki refused"] {
        assert!(log.contains(refusal), "`{refusal}` not logged:\n{log}");
    }
    assert_no_secret("the log", &log);

    for (broken, why) in [
        ("history_lines = -1", "history_lines"),
        ("region = \"${FERRY_TEST_SCALINGO_TOKEN}\"", "region"),
        ("filter = 5", "filter"),
        ("api_tokn = \"${FERRY_TEST_LOKI_PASSWORD}\"", "api_tokn"),
    ] {
        std::fs::write(&path, config(dir.path(), api, server, broken)).unwrap();
        let (code, text) = validate(&path);
        assert_eq!(code, Some(78), "{broken}: {text}");
        assert!(text.contains(why), "{broken}: {text}");
        assert_no_secret(&format!("the error about `{broken}`"), &text);
    }
}

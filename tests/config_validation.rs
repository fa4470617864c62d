//! Broken configs are refused before anything starts, by `ferry validate` and by
//! `ferry run`, with `PATH:LINE:COL: message`. Each file in `tests/configs/invalid/`
//! states on its first line what the error must say: `# expect: LINE:COL: text`, the
//! text starting with the full option path when one option is at fault; each `# and:
//! text` line after it is more text the message must hold (the accepted values).

use std::path::{Path, PathBuf};
use std::process::Command;

fn ferry() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command.env_remove("FERRY_CONFIG").env("FERRY_LOG", "warn");
    command
}

fn invalid_configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// The position the error must have and the texts its message must hold.
fn expectation(path: &Path) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let first = text.lines().next().unwrap();
    let spec = first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{} lacks an `# expect:` line", path.display()));
    let (position, message) = spec
        .split_once(": ")
        .unwrap_or((spec.trim_end_matches(':'), ""));
    let mut messages = vec![message.to_string()];
    messages.extend(
        text.lines()
            .skip(1)
            .map_while(|line| line.strip_prefix("# and: "))
            .map(str::to_string),
    );
    (position.to_string(), messages)
}

#[test]
fn every_broken_config_is_refused_with_its_position_and_problem() {
    let files = invalid_configs();
    assert!(
        files.len() >= 15,
        "at least 15 broken configs, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let (position, messages) = expectation(path);
        let output = ferry()
            .arg("validate")
            .arg("--config")
            .arg(path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let prefix = format!("{}:{position}: ", path.display());
        let ok = output.status.code() == Some(78)
            && stderr.starts_with(&prefix)
            && messages.iter().all(|m| stderr.contains(m.as_str()));
        if !ok {
            failures.push(format!(
                "{}\n  expected exit 78 and `{prefix}…{}…`\n  got {:?}: {}",
                path.display(),
                messages.join("…"),
                output.status.code(),
                stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn run_refuses_a_broken_config_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data_dir:?}\n[sources.demo]\ntype = \"demo\"\n[sinks.out]\ntype = \"console\"\ninputs = [\"nope\"]\n"
        ),
    )
    .unwrap();
    let output = ferry().arg("run").arg("-c").arg(&config).output().unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!("{}:6:11: ", config.display())),
        "{stderr}"
    );
    assert!(
        !data_dir.exists(),
        "nothing may start, not even the checkpoint store"
    );
}

#[test]
fn the_example_configs_are_valid() {
    for name in [
        "config.example.toml",
        "examples/agent.toml",
        "examples/aggregator.toml",
    ] {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        let output = ferry()
            .arg("validate")
            .arg("-c")
            .arg(&example)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

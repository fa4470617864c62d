//! What an operator runs besides `ferry run`, with the real binary: `checkpoints list`
//! (table and JSON, commit time, a followed file's lag), the generated completions and
//! man page, the Debian package built by `scripts/deb`, and the unit's hardening score.

#[path = "support/ferry_process.rs"]
mod ferry_process;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use ferry_process::{Ferry, wait_until};

const LIMIT: Duration = Duration::from_secs(120);

fn ferry(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env_remove("FERRY_CONFIG")
        .env("FERRY_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ferry {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(ferry(args).stdout).unwrap()
}

#[test]
fn checkpoints_list_shows_each_cursor_its_commit_time_and_the_bytes_left_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let (log, out) = (dir.path().join("app.log"), dir.path().join("out.log"));
    let lines = 200;
    let mut file = std::fs::File::create(&log).unwrap();
    for i in 0..lines {
        writeln!(file, "line {i} of the application log").unwrap();
    }
    let read = file.metadata().unwrap().len();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[api]\nenabled = false\n[sources.logs]\ntype = \"file\"\ninclude = [{:?}]\npoll_interval = \"20ms\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"logs\"]\npath = {:?}\nencoding = \"text\"\n",
            dir.path().join("data"),
            log,
            out
        ),
    )
    .unwrap();
    let ferry_run = Ferry::start(&config);
    wait_until(LIMIT, "every line delivered", || {
        std::fs::read_to_string(&out).is_ok_and(|text| text.lines().count() == lines)
    });
    assert!(ferry_run.terminate().success());

    let unread = b"written while ferry was stopped\n";
    file.write_all(unread).unwrap();
    let config = config.to_str().unwrap();

    let rows: serde_json::Value =
        serde_json::from_str(&stdout(&["checkpoints", "list", "--json", "-c", config])).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["source"], "logs");
    assert_eq!(row["type"], "file");
    assert_eq!(row["cursor"]["path"], log.to_str().unwrap());
    assert_eq!(row["cursor"]["offset"], read);
    assert_eq!(row["lag_bytes"], unread.len() as u64);
    let committed = row["committed_at"].as_str().unwrap();
    let committed = chrono::DateTime::parse_from_rfc3339(committed).unwrap();
    assert!(committed <= chrono::Utc::now(), "{committed}");
    let stream = row["stream"].as_str().unwrap();

    let table = stdout(&["checkpoints", "list", "-c", config]);
    let mut table_lines = table.lines();
    let header = table_lines.next().unwrap();
    assert!(header.starts_with("SOURCE"), "{table}");
    for column in ["TYPE", "STREAM", "COMMITTED", "LAG", "CURSOR"] {
        assert!(header.contains(column), "{table}");
    }
    let line = table_lines.next().unwrap();
    for cell in [
        "logs",
        "file",
        stream,
        &format!("{} B", unread.len()),
        &format!("{} @ {read}", log.display()),
    ] {
        assert!(line.contains(cell), "`{cell}` missing in:\n{table}");
    }
}

#[test]
fn completions_and_the_man_page_are_generated_from_the_cli() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef ferry"),
        ("fish", "complete -c ferry"),
    ] {
        let script = stdout(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("checkpoints"),
            "{shell} lacks the subcommands"
        );
    }
    let man = stdout(&["man"]);
    assert!(man.starts_with(".ie") || man.contains(".TH ferry"), "{man}");
    for part in ["checkpoints", "validate", "completions", "Examples"] {
        assert!(man.contains(part), "the man page lacks {part}");
    }
    for command in [
        &["run"][..],
        &["validate"],
        &["checkpoints", "list"],
        &["checkpoints", "reset"],
        &["completions"],
        &["man"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let help = stdout(&args);
        assert!(
            help.contains("Example"),
            "`ferry {command:?} --help`: {help}"
        );
    }
}

#[test]
fn the_debian_package_holds_the_binary_unit_config_man_page_and_completions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    // Compressing the large test binary would only cost time.
    let built = Command::new(root.join("scripts/deb"))
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .arg(dir.path())
        .env("DPKG_DEB_COMPRESSOR_TYPE", "none")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "scripts/deb: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = String::from_utf8(built.stdout).unwrap().trim().to_string();

    let listing = Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    for (path, mode) in [
        ("./usr/bin/ferry", "-rwxr-xr-x root/root"),
        (
            "./usr/lib/systemd/system/ferry.service",
            "-rw-r--r-- root/root",
        ),
        ("./etc/ferry/ferry.toml", "-rw-r----- root/root"),
        ("./usr/share/man/man1/ferry.1.gz", "-rw-r--r-- root/root"),
        (
            "./usr/share/bash-completion/completions/ferry",
            "-rw-r--r--",
        ),
        ("./usr/share/zsh/vendor-completions/_ferry", "-rw-r--r--"),
        (
            "./usr/share/fish/vendor_completions.d/ferry.fish",
            "-rw-r--r--",
        ),
        ("./usr/share/doc/ferry/copyright", "-rw-r--r--"),
    ] {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} missing from the package:\n{listing}"));
        assert!(line.starts_with(mode), "{line}");
    }

    let info = Command::new("dpkg-deb")
        .args(["-I", &deb])
        .output()
        .unwrap();
    let info = String::from_utf8(info.stdout).unwrap();
    for part in ["Package: ferry", "conffiles", "postinst", "prerm", "postrm"] {
        assert!(info.contains(part), "{part} missing:\n{info}");
    }
    let conffiles = Command::new("dpkg-deb")
        .args(["-I", &deb, "conffiles"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&conffiles.stdout).trim(),
        "/etc/ferry/ferry.toml",
        "an edited config survives upgrades"
    );

    let unpacked = dir.path().join("root");
    let extracted = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(extracted.success());
    let config = unpacked.join("etc/ferry/ferry.toml");
    let checked = stdout(&["validate", "-c", config.to_str().unwrap()]);
    assert!(checked.contains("ok"), "{checked}");
    let unit =
        std::fs::read_to_string(unpacked.join("usr/lib/systemd/system/ferry.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/ferry run --config /etc/ferry/ferry.toml"));
}

/// `systemd-analyze security` rates the unit 2.5 or better (lower is safer), where
/// the tool is installed.
#[test]
fn the_unit_stays_hardened() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/ferry.service");
    let Ok(output) = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
    else {
        eprintln!("systemd-analyze is not installed: the hardening score is not checked");
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for ferry.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score in:\n{text}"));
    assert!(score <= 2.5, "exposure {score} > 2.5:\n{text}");
}

//! The `ferry` command line: `run`, `validate`, `checkpoints`, `buffer`, `tap` and
//! `reload` against a running agent, and the shell completions and man page
//! generated from this definition.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use ferry::config::ConfigError;
use ferry::topology::Outcome;
use ferry::topology::config::{self, DEFAULT_CONFIG_PATH};

/// mimalloc keeps the many small per-event allocations fast and, unlike glibc's
/// per-thread arenas, keeps peak memory close to what is really in flight. Built
/// without transparent huge pages (`no_thp`): with them, each arena touched took
/// 2 MiB at once, and an idle ferry held 24 MiB instead of 15. How soon it gives
/// freed memory back is set in [`ferry::allocator`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits' EX_CONFIG: systemd units can refuse to restart on it.
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "A log shipping agent with durable checkpoints",
    after_help = "Examples:\n  ferry validate -c /etc/ferry/ferry.toml\n  ferry run -c /etc/ferry/ferry.toml\n  ferry checkpoints list --json"
)]
struct Cli {
    /// The TOML config file.
    #[arg(short, long, global = true, env = "FERRY_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline until SIGTERM/SIGINT (or until every source has finished).
    #[command(after_help = "Example:\n  FERRY_LOG=info ferry run -c /etc/ferry/ferry.toml")]
    Run,
    /// Check the config and exit: 0 when valid, 78 with `PATH:LINE:COL: message` when not.
    #[command(after_help = "Example:\n  ferry validate -c ferry.toml && systemctl reload ferry")]
    Validate,
    /// Inspect or reset committed cursors (stop ferry first).
    #[command(after_help = "Examples:\n  ferry checkpoints list\n  ferry checkpoints reset web")]
    Checkpoints {
        #[command(subcommand)]
        action: CheckpointAction,
    },
    /// Print a live sample of the events leaving a source or transform, or entering
    /// a sink, of the running agent, as JSON lines. Events are shown as they are at
    /// that point: only a `redact` transform before it hides secrets.
    #[command(after_help = "Example:\n  ferry tap parsed --limit 20 --rate 5")]
    Tap {
        /// The component's id (`parsed`), or `sources.ID` / `transforms.ID` / `sinks.ID`.
        component: String,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
        /// At most this many events a second.
        #[arg(long, default_value_t = ferry::telemetry::DEFAULT_TAP_RATE)]
        rate: f64,
        /// The agent's API (default: `[api] address` of the config).
        #[arg(long)]
        address: Option<std::net::SocketAddr>,
    },
    /// Make the running agent apply its config file; exit 0 when applied, 78 when
    /// the config was refused (the agent keeps running the previous one).
    #[command(after_help = "Example:\n  ferry reload -c /etc/ferry/ferry.toml")]
    Reload {
        /// The agent's API (default: `[api] address` of the config).
        #[arg(long)]
        address: Option<std::net::SocketAddr>,
    },
    /// Inspect the sinks' disk buffers (read-only: safe while ferry runs).
    #[command(after_help = "Examples:\n  ferry buffer stats\n  ferry buffer verify loki")]
    Buffer {
        #[command(subcommand)]
        action: BufferAction,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  ferry completions bash > /etc/bash_completion.d/ferry\n  ferry completions zsh > \"${fpath[1]}/_ferry\"\n  ferry completions fish > ~/.config/fish/completions/ferry.fish"
    )]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    #[command(after_help = "Example:\n  ferry man | gzip > /usr/share/man/man1/ferry.1.gz")]
    Man,
}

#[derive(Subcommand)]
enum CheckpointAction {
    /// Show every source's committed cursors: sub-stream, cursor, commit time and the
    /// bytes a followed file has left to read.
    #[command(
        after_help = "Examples:\n  ferry checkpoints list -c /etc/ferry/ferry.toml\n  ferry checkpoints list --json | jq '.[] | select(.lag_bytes > 0)'"
    )]
    List {
        /// Print a JSON array (source, type, stream, cursor, committed_at, lag_bytes).
        #[arg(long)]
        json: bool,
    },
    /// Forget a source's cursors: it starts over (per its own `read_from` rules).
    #[command(
        after_help = "Example:\n  systemctl stop ferry && ferry checkpoints reset web && systemctl start ferry"
    )]
    Reset { source: String },
}

#[derive(Subcommand)]
enum BufferAction {
    /// Undelivered records, events and bytes, the oldest one's age, and disk use.
    #[command(after_help = "Example:\n  ferry buffer stats loki -c /etc/ferry/ferry.toml")]
    Stats {
        /// One sink's buffer (default: every buffer under data_dir).
        sink: Option<String>,
    },
    /// Checks the CRC of every record in every segment; exits 1 if any is damaged.
    #[command(after_help = "Example:\n  ferry buffer verify loki || echo damaged")]
    Verify {
        /// One sink's buffer (default: every buffer under data_dir).
        sink: Option<String>,
    },
}

fn main() -> ExitCode {
    ferry::allocator::return_freed_memory_promptly();
    let cli = Cli::parse();
    ferry::telemetry::init_tracing(cli.log_json);
    match cli.command {
        Command::Run => run(&cli.config),
        Command::Validate => match config::load(&cli.config) {
            Ok(config) => {
                for warning in config.warnings() {
                    eprintln!("{}: warning: {warning}", cli.config.display());
                }
                println!(
                    "{}: ok ({} sources, {} transforms, {} sinks)",
                    cli.config.display(),
                    config.sources.len(),
                    config.transforms.len(),
                    config.sinks.len()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Tap {
            component,
            limit,
            rate,
            address,
        } => control(async {
            let address = ferry::control::api_address(&cli.config, address)?;
            let mut stdout = std::io::stdout().lock();
            ferry::control::tap(address, &component, limit, rate, &mut stdout).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Reload { address } => control(async {
            let address = ferry::control::api_address(&cli.config, address)?;
            Ok(match ferry::control::reload(address).await? {
                ferry::control::ReloadOutcome::Applied => ExitCode::SUCCESS,
                ferry::control::ReloadOutcome::Rejected => ExitCode::from(EXIT_CONFIG),
            })
        }),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: cannot write the man page: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Checkpoints { action } => match checkpoints(&cli.config, action) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Buffer { action } => match buffers(&cli.config, action) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ferry::app::run(path)) {
        Ok(Outcome::Completed) => ExitCode::SUCCESS,
        Ok(Outcome::TimedOut | Outcome::Failed) => ExitCode::FAILURE,
        Err(error) => {
            match error.downcast_ref::<ConfigError>() {
                Some(config_error) => {
                    eprintln!("{config_error}");
                    return ExitCode::from(EXIT_CONFIG);
                }
                None => tracing::error!("{error:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs a command that talks to the running agent.
fn control(command: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(command));
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

fn checkpoints(path: &std::path::Path, action: CheckpointAction) -> anyhow::Result<()> {
    match action {
        CheckpointAction::List { json } => {
            let rows = ferry::inspect::checkpoint_rows(path)?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&rows)?),
                false => print!("{}", ferry::inspect::table(&rows)),
            }
        }
        CheckpointAction::Reset { source } => {
            let removed = ferry::app::open_store(path)?.reset(&source)?;
            println!("sources.{source}: {removed} cursors removed");
        }
    }
    Ok(())
}

/// Prints the buffers' stats, or verifies them; false when a verify found damage.
fn buffers(path: &std::path::Path, action: BufferAction) -> anyhow::Result<bool> {
    let config = config::load(path)?;
    let (sink, verify) = match action {
        BufferAction::Stats { sink } => (sink, false),
        BufferAction::Verify { sink } => (sink, true),
    };
    let sinks = match sink {
        Some(sink) => vec![sink],
        None => ferry::buffer::on_disk(&config.data_dir),
    };
    let mut intact = true;
    for sink in sinks {
        let dir = ferry::buffer::directory(&config.data_dir, &sink);
        anyhow::ensure!(
            dir.is_dir(),
            "sinks.{sink} has no disk buffer in {}",
            dir.display()
        );
        let report = ferry::buffer::inspect::stats(&dir)?;
        println!("sinks.{sink}: {report}");
        if verify {
            for segment in &report.segments {
                println!("  {segment}");
            }
            intact &= report.damaged_stretches() == 0;
        }
    }
    Ok(intact)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command, down to the leaves, shows an example under `--help`.
    #[test]
    fn every_command_has_an_example() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name());
            let help = command.get_after_help().map(|h| h.to_string());
            if !help.is_some_and(|h| h.starts_with("Example")) {
                missing.push(path.clone());
            }
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no example in --help: {missing:?}");
        Cli::command().debug_assert();
    }
}

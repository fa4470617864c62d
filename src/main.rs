//! The `ferry` command line: `run`, `validate`, `checkpoints`, and `tap` and
//! `reload` against a running agent.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry::config::{self, ConfigError, DEFAULT_CONFIG_PATH};
use ferry::topology::Outcome;

/// mimalloc keeps the many small per-event allocations fast and, unlike glibc's
/// per-thread arenas, keeps peak memory close to what is really in flight.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits' EX_CONFIG: systemd units can refuse to restart on it.
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "A log shipping agent with durable checkpoints"
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
    Run,
    /// Check the config and exit: 0 when valid, 78 with `PATH:LINE:COL: message` when not.
    Validate,
    /// Inspect or reset committed cursors (stop ferry first).
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
}

#[derive(Subcommand)]
enum CheckpointAction {
    /// Print every source's committed cursors as JSON.
    List,
    /// Forget a source's cursors: it starts over (per its own `read_from` rules).
    Reset { source: String },
}

fn main() -> ExitCode {
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
        Command::Checkpoints { action } => match checkpoints(&cli.config, action) {
            Ok(()) => ExitCode::SUCCESS,
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
    let store = ferry::app::open_store(path)?;
    match action {
        CheckpointAction::List => {
            let all = store.load_all()?;
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        CheckpointAction::Reset { source } => {
            let removed = store.reset(&source)?;
            println!("sources.{source}: {removed} cursors removed");
        }
    }
    Ok(())
}

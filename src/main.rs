//! The `ferry` command line: `run`, `validate`, `checkpoints` and `buffer`.

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
    /// Inspect the sinks' disk buffers (read-only: safe while ferry runs).
    Buffer {
        #[command(subcommand)]
        action: BufferAction,
    },
}

#[derive(Subcommand)]
enum CheckpointAction {
    /// Print every source's committed cursors as JSON.
    List,
    /// Forget a source's cursors: it starts over (per its own `read_from` rules).
    Reset { source: String },
}

#[derive(Subcommand)]
enum BufferAction {
    /// Undelivered records, events and bytes, the oldest one's age, and disk use.
    Stats {
        /// One sink's buffer (default: every buffer under data_dir).
        sink: Option<String>,
    },
    /// Checks the CRC of every record in every segment; exits 1 if any is damaged.
    Verify {
        /// One sink's buffer (default: every buffer under data_dir).
        sink: Option<String>,
    },
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

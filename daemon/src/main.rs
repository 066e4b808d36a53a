//! The `oqs-edge` command line: a thin layer over the library.

// A running daemon must not panic on bad input: errors are values here.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use oqs_edge::config::{self, FileChecks};
use oqs_edge::plan;

/// Exit codes an operator's scripts can rely on.
mod exit {
    pub const OK: u8 = 0;
    /// The daemon could not start or apply (the message says why).
    pub const FAILED: u8 = 1;
    /// The config is invalid (or could not be read).
    pub const INVALID: u8 = 2;
}

#[derive(Parser)]
#[command(
    name = "oqs-edge",
    version,
    about = "On-site router for オンライン資格確認 / オンライン請求: tunnel, fail-closed firewall, mTLS proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config: every error as FILE:LINE:COL with the line and a fix (exit 0 valid, 2 invalid).
    Check {
        /// The config file.
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Skip opening the files the config names (for linting away from the router).
        #[arg(long)]
        no_files: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print what would be applied: the nft ruleset, routes, tunnel and proxy routes.
    Plan {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// JSON: `.firewall` is nft's JSON (`nft -j -f` reads it).
        #[arg(long)]
        json: bool,
        /// Skip opening the files the config names.
        #[arg(long)]
        no_files: bool,
    },
    /// The daemon: check the config, apply the firewall, stay up (SIGHUP reloads, SIGTERM stops
    /// and leaves the firewall in place).
    Run {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Where the last applied ruleset is kept for the early-boot unit.
        #[arg(long, default_value = "/var/lib/oqs-edge")]
        state_dir: PathBuf,
    },
    /// Print the config file's JSON Schema (what config/oqs-edge.schema.json holds).
    #[command(hide = true)]
    Schema,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check {
            config,
            no_files,
            format,
        } => check(&config, files(no_files), format),
        Command::Plan {
            config,
            json,
            no_files,
        } => print_plan(&config, files(no_files), json),
        Command::Run { config, state_dir } => run(config, state_dir),
        Command::Schema => {
            print!("{}", config::json_schema());
            exit::OK
        }
    };
    ExitCode::from(code)
}

fn files(no_files: bool) -> FileChecks {
    if no_files {
        FileChecks::Off
    } else {
        FileChecks::On
    }
}

/// Read and check; on failure the report (or the read error) is already printed.
fn load(path: &Path, files: FileChecks, format: Format) -> Result<config::Checked, u8> {
    let (checked, source) = config::check_file(path, files).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound
            && path == Path::new(config::DEFAULT_PATH)
        {
            " (give another file with -c FILE)"
        } else {
            ""
        };
        eprintln!("{}: cannot read the config: {e}{hint}", path.display());
        exit::INVALID
    })?;
    match format {
        Format::Json => {
            let _ = writeln!(
                std::io::stdout(),
                "{}",
                serde_json::to_string_pretty(&checked.report).unwrap_or_default()
            );
        }
        Format::Text => {
            if !checked.report.valid || checked.report.warnings > 0 {
                eprint!("{}", checked.report.render(&source));
            }
        }
    }
    Ok(checked)
}

fn check(path: &Path, files: FileChecks, format: Format) -> u8 {
    match load(path, files, format) {
        Ok(checked) if checked.report.valid => {
            if matches!(format, Format::Text) && checked.report.warnings == 0 {
                println!("{}: OK", path.display());
            }
            exit::OK
        }
        Ok(_) => exit::INVALID,
        Err(code) => code,
    }
}

fn print_plan(path: &Path, files: FileChecks, json: bool) -> u8 {
    let Ok(checked) = load(path, files, Format::Text) else {
        return exit::INVALID;
    };
    let Some(config) = checked.config else {
        return exit::INVALID;
    };
    let plan = plan::plan(&config);
    let text = if json {
        serde_json::to_string_pretty(&plan.to_json()).unwrap_or_default() + "\n"
    } else {
        plan.to_text()
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    exit::OK
}

fn run(config_path: PathBuf, state_dir: PathBuf) -> u8 {
    StderrLog::install();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            log::error!("cannot start the runtime: {e}");
            return exit::FAILED;
        }
    };
    let options = oqs_edge::supervisor::RunOptions {
        config_path,
        state_dir,
        nft: oqs_edge::firewall::Nft::default(),
    };
    match runtime.block_on(oqs_edge::supervisor::run(options)) {
        Ok(()) => exit::OK,
        Err(e) => {
            log::error!("{e}");
            match e {
                oqs_edge::supervisor::RunError::Invalid(_) => exit::INVALID,
                _ => exit::FAILED,
            }
        }
    }
}

/// Log lines to stderr until the journal logger lands (packaging issue).
struct StderrLog;

impl StderrLog {
    fn install() {
        static LOGGER: StderrLog = StderrLog;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
    }
}

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "oqs-edge[{}]: {}: {}",
                std::process::id(),
                record.level().as_str().to_lowercase(),
                record.args()
            );
        }
    }
    fn flush(&self) {}
}

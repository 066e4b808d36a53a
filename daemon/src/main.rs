//! The `oqs-edge` command line: a thin layer over the library.

// A running daemon must not panic on bad input: errors are values here.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use oqs_edge::config::{self, FileChecks};
use oqs_edge::control;
use oqs_edge::plan;

/// Exit codes an operator's scripts can rely on.
mod exit {
    pub const OK: u8 = 0;
    /// The daemon could not start or apply (the message says why).
    pub const FAILED: u8 = 1;
    /// The config is invalid (or could not be read).
    pub const INVALID: u8 = 2;
    /// `status`: the daemon is up but something is wrong (the problems are listed).
    pub const DEGRADED: u8 = 1;
    /// `status`, `reload`: no daemon answers on the control socket.
    pub const NOT_RUNNING: u8 = 3;
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
    /// The running daemon's state in plain words (exit 0 healthy, 1 degraded, 3 not running).
    Status {
        /// The config, to find its control socket.
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Ask this socket instead of the config's `control.socket`.
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Check the config (files included), then ask the daemon to apply it (exit 0 applied or
    /// unchanged, 1 the daemon could not apply it, 2 invalid, 3 not running).
    Reload {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Ask this socket instead of the config's `control.socket`.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Early boot, before the network: load the last applied ruleset, or the built-in block
    /// (no forwarding at all; the router reachable from LAN addresses only) when there is none
    /// or nft refuses it.
    BootFirewall {
        #[arg(long, default_value = "/var/lib/oqs-edge")]
        state_dir: PathBuf,
    },
    /// WireGuard keys.
    Wireguard {
        #[command(subcommand)]
        command: WireguardCommand,
    },
    /// Print the config file's JSON Schema (what config/oqs-edge.schema.json holds).
    #[command(hide = true)]
    Schema,
}

#[derive(Subcommand)]
enum WireguardCommand {
    /// Write a new private key to FILE (mode 0600; an existing file is left alone) and print
    /// its public key, for the concentrator's operator.
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
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
        Command::Status {
            config,
            socket,
            json,
        } => status(&config, socket, json),
        Command::Reload { config, socket } => reload(&config, socket),
        Command::BootFirewall { state_dir } => boot_firewall(&state_dir),
        Command::Wireguard {
            command: WireguardCommand::Keygen { out },
        } => match oqs_edge::tunnel::wireguard::keygen(&out) {
            Ok(public) => {
                println!("{public}");
                eprintln!(
                    "wrote the private key to {} (mode 0600); give the public key above to the concentrator's operator",
                    out.display()
                );
                exit::OK
            }
            Err(e) => {
                eprintln!("oqs-edge wireguard keygen: {e}");
                exit::FAILED
            }
        },
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

/// The socket to ask: `--socket`, else the config's `control.socket` (read even when the rest
/// of the file has errors: a broken edit must not hide the running daemon), else the default.
fn control_socket(config_path: &Path, socket: Option<PathBuf>) -> PathBuf {
    socket
        .or_else(|| config::control_socket_of(config_path))
        .unwrap_or_else(|| PathBuf::from(config::model::DEFAULT_CONTROL_SOCKET))
}

fn ask<T: for<'de> serde::Deserialize<'de>>(
    socket: &Path,
    request: control::Request,
    timeout: std::time::Duration,
) -> Result<T, control::ControlError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| control::ControlError::BadAnswer {
            path: socket.to_owned(),
            message: format!("cannot start the runtime: {e}"),
        })?
        .block_on(control::ask(socket, request, timeout))
}

fn status(config_path: &Path, socket: Option<PathBuf>, json: bool) -> u8 {
    let socket = control_socket(config_path, socket);
    match ask::<control::Status>(&socket, control::Request::Status, Duration::from_secs(10)) {
        Ok(status) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            } else {
                print!("{}", status.to_text());
            }
            match status.health {
                control::Health::Healthy => exit::OK,
                control::Health::Degraded => exit::DEGRADED,
            }
        }
        Err(e @ control::ControlError::NotRunning { .. }) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "health": "not-running", "problems": [e.to_string()] })
                );
            } else {
                println!("oqs-edge: not running\n  {e}");
            }
            exit::NOT_RUNNING
        }
        Err(e) => {
            eprintln!("oqs-edge status: {e}");
            exit::DEGRADED
        }
    }
}

fn reload(config_path: &Path, socket: Option<PathBuf>) -> u8 {
    // The same checks `run` makes, here, so the operator sees the errors at once.
    match load(config_path, FileChecks::On, Format::Text) {
        Ok(checked) if checked.report.valid => {}
        Ok(_) | Err(_) => {
            eprintln!(
                "{}: not reloaded; the daemon keeps the config in force",
                config_path.display()
            );
            return exit::INVALID;
        }
    }
    let socket = control_socket(config_path, socket);
    match ask::<serde_json::Value>(&socket, control::Request::Reload, Duration::from_secs(60)) {
        Ok(answer) => {
            let message = answer["message"].as_str().unwrap_or_default();
            match answer["result"].as_str() {
                Some("applied" | "unchanged") => {
                    println!("{message}");
                    exit::OK
                }
                Some("refused") => {
                    eprintln!("{message}");
                    exit::INVALID
                }
                _ => {
                    eprintln!("{message}");
                    exit::FAILED
                }
            }
        }
        Err(e @ control::ControlError::NotRunning { .. }) => {
            eprintln!("oqs-edge reload: {e}");
            exit::NOT_RUNNING
        }
        Err(e) => {
            eprintln!("oqs-edge reload: {e}");
            exit::FAILED
        }
    }
}

fn boot_firewall(state_dir: &Path) -> u8 {
    use oqs_edge::firewall::{load_at_boot, BootLoad, Nft};
    match load_at_boot(&Nft::default(), state_dir) {
        Ok(BootLoad::Saved(path)) => {
            println!("loaded the last applied ruleset from {}", path.display());
            exit::OK
        }
        Ok(BootLoad::Block { why }) => {
            eprintln!("{why}");
            println!("built-in block loaded: nothing is forwarded; the router answers LAN addresses only");
            exit::OK
        }
        Err(e) => {
            eprintln!("cannot load the built-in block: {e}");
            exit::FAILED
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

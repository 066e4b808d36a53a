//! The `oqs-edge` command line: a thin layer over the library.

// A running daemon must not panic on bad input: errors are values here.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use oqs_edge::config::{self, FileChecks};
use oqs_edge::operator::control;
use oqs_edge::operator::i18n::Lang;
use oqs_edge::pki;
use oqs_edge::plan;
use oqs_edge::status;

mod cli_docs;

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
    version = env!("OQS_EDGE_VERSION"),
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
        /// The shortest `reload --confirm` accepted (30s; the netns tests use 10s).
        #[arg(long, hide = true, value_name = "DURATION", value_parser = humantime::parse_duration)]
        confirm_min: Option<Duration>,
        /// The journal's language for certificate warnings: ja or en; from LC_ALL /
        /// LC_MESSAGES / LANG when not given.
        #[arg(long, value_parser = parse_lang)]
        lang: Option<Lang>,
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
        /// ja or en; from LC_ALL / LC_MESSAGES / LANG when not given.
        #[arg(long, value_parser = parse_lang)]
        lang: Option<Lang>,
    },
    /// 疎通確認: every step from the WAN to each upstream's TLS handshake, ✓/✗ with what it
    /// means and what to do (exit 0 all passed, 1 a step failed, 3 the daemon is not running).
    Diag {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Ask this socket instead of the config's `control.socket`.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// One object per step: id, result, time_ms, message (and fix for a failure).
        #[arg(long)]
        json: bool,
        /// ja or en; from LC_ALL / LC_MESSAGES / LANG when not given.
        #[arg(long, value_parser = parse_lang)]
        lang: Option<Lang>,
        /// Only this proxy route (and its certificate).
        #[arg(long, value_name = "NAME")]
        route: Option<String>,
    },
    /// Check the config (files included), then ask the daemon to apply it (exit 0 applied or
    /// unchanged, 1 the daemon could not apply it or a --confirm change is pending, 2 invalid,
    /// 3 not running).
    Reload {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Ask this socket instead of the config's `control.socket`.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Roll back to the config in force now unless `oqs-edge confirm` comes within
        /// DURATION (30s to 1h, e.g. `5m`); the pending change survives a crash or reboot.
        #[arg(long, value_name = "DURATION", value_parser = parse_confirm_window)]
        confirm: Option<Duration>,
    },
    /// What applying FILE would change against what the daemon runs now, per part: firewall
    /// lines, routes, kernel settings, tunnel, proxy routes, certificates (exit 0 no change,
    /// 1 changes, 2 invalid, 3 not running).
    Diff {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Ask this socket instead of the config's `control.socket`.
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Keep the change applied with `reload --confirm` (exit 0 confirmed, 1 nothing pending,
    /// 3 not running).
    Confirm {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Ask this socket instead of the config's `control.socket`.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// The applied configs, newest first (the last 20): id, time, sha256, how, uid, running.
    History {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Ask this socket instead of the config's `control.socket`.
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Put an earlier config from the history back at the config path and apply it (default:
    /// the one before the running one; with a change pending, the one it replaced). The file
    /// replaced is kept as `<config>.rejected-<time>`.
    Rollback {
        /// The history entry (`oqs-edge history` lists them).
        id: Option<u64>,
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
    /// Client certificates (電子証明書): import a .p12, list the configured ones.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// The LAN-side local CA of `lan_tls: local-ca` routes.
    LocalCa {
        #[command(subcommand)]
        command: LocalCaCommand,
    },
    /// WireGuard keys.
    Wireguard {
        #[command(subcommand)]
        command: WireguardCommand,
    },
    /// Print the config file's JSON Schema (what config/oqs-edge.schema.json holds).
    #[command(hide = true)]
    Schema,
    /// Write the man page oqs-edge(8) and the bash, zsh and fish completions into DIR (the
    /// package build runs this, so they never drift from the command line).
    #[command(hide = true)]
    CliDocs { dir: PathBuf },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Open a .p12 with its password, copy it into the state directory (mode 0600) and print
    /// what to add to the config.
    Import {
        /// The PKCS#12 file as issued (.p12 or .pfx).
        file: PathBuf,
        /// The name routes use for it; from the file name when not given.
        #[arg(long)]
        name: Option<String>,
        /// A file holding the password; asked for (without echo) when not given.
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[arg(long, default_value = "/var/lib/oqs-edge")]
        state_dir: PathBuf,
        /// Replace a certificate of the same name (a renewal): the daemon picks it up by itself.
        #[arg(long)]
        replace: bool,
    },
    /// Every configured certificate: subject CN, issuer, validity, days left, SHA-256.
    List {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum LocalCaCommand {
    /// Print the local CA's certificate (PEM), to install on the clinic's PCs as trusted.
    Export {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
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
        Command::Run {
            config,
            state_dir,
            confirm_min,
            lang,
        } => run(
            config,
            state_dir,
            confirm_min,
            lang.unwrap_or_else(Lang::from_env),
        ),
        Command::Status {
            config,
            socket,
            json,
            lang,
        } => status(&config, socket, json, lang.unwrap_or_else(Lang::from_env)),
        Command::Diag {
            config,
            socket,
            json,
            lang,
            route,
        } => diag(
            &config,
            socket,
            json,
            lang.unwrap_or_else(Lang::from_env),
            route,
        ),
        Command::Reload {
            config,
            socket,
            confirm,
        } => reload(&config, socket, confirm),
        Command::Diff {
            config,
            socket,
            json,
        } => diff(&config, socket, json),
        Command::Confirm { config, socket } => confirm(&config, socket),
        Command::History {
            config,
            socket,
            json,
        } => history(&config, socket, json),
        Command::Rollback { id, config, socket } => rollback(&config, socket, id),
        Command::BootFirewall { state_dir } => boot_firewall(&state_dir),
        Command::Cert {
            command:
                CertCommand::Import {
                    file,
                    name,
                    password_file,
                    state_dir,
                    replace,
                },
        } => cert_import(&file, name, password_file.as_deref(), &state_dir, replace),
        Command::Cert {
            command: CertCommand::List { config, json },
        } => cert_list(&config, json),
        Command::LocalCa {
            command: LocalCaCommand::Export { config },
        } => local_ca_export(&config),
        Command::Wireguard {
            command: WireguardCommand::Keygen { out },
        } => match oqs_edge::apply::tunnel::wireguard::keygen(&out) {
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
        Command::CliDocs { dir } => {
            match cli_docs::write(<Cli as clap::CommandFactory>::command(), &dir) {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("oqs-edge cli-docs: {e}");
                    exit::FAILED
                }
            }
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

fn run(config_path: PathBuf, state_dir: PathBuf, confirm_min: Option<Duration>, lang: Lang) -> u8 {
    oqs_edge::logging::install();
    // The supervisor is one task on one thread; the proxy runs on its own threads.
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
        nft: oqs_edge::apply::firewall::Nft::default(),
        confirm_min: confirm_min.unwrap_or(oqs_edge::supervisor::history::CONFIRM_MIN),
        lang,
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

fn parse_lang(text: &str) -> Result<Lang, String> {
    Lang::parse(text).ok_or_else(|| format!("`{text}` is not a language here: use ja or en"))
}

fn diag(
    config_path: &Path,
    socket: Option<PathBuf>,
    json: bool,
    lang: Lang,
    route: Option<String>,
) -> u8 {
    use oqs_edge::operator::diag;
    // The files the config names are steps of their own here, not reasons to refuse.
    let Ok(checked) = load(config_path, FileChecks::Off, Format::Text) else {
        return exit::INVALID;
    };
    let Some(config) = checked.config else {
        return exit::INVALID;
    };
    if let Some(name) = &route {
        if !plan::plan(&config).proxy.iter().any(|r| r.name == *name) {
            eprintln!(
                "{}: no proxy route is named `{name}` (see proxy.routes)",
                config_path.display()
            );
            return exit::INVALID;
        }
    }
    let socket = socket.unwrap_or_else(|| config.control_socket());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("oqs-edge diag: cannot start the runtime: {e}");
            return exit::FAILED;
        }
    };
    let started = std::time::SystemTime::now();
    let report = runtime.block_on(async {
        let status = control::ask::<status::Status>(
            &socket,
            control::Request::Status,
            Duration::from_secs(10),
        )
        .await
        .ok();
        let options = diag::Options {
            route: route.clone(),
            socket: Some(socket.clone()),
        };
        diag::run(&config, status.as_ref(), &options).await
    });
    // A whole run against a live daemon is what the status page shows as the last 疎通確認.
    if report.daemon_running && route.is_none() {
        if let Err(e) = diag::keep(&socket, &report, started) {
            eprintln!("oqs-edge diag: the status page will not show this run: {e}");
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json(lang)).unwrap_or_default()
        );
    } else {
        print!("{}", report.to_text(lang));
    }
    report.exit_code()
}

fn status(config_path: &Path, socket: Option<PathBuf>, json: bool, lang: Lang) -> u8 {
    let socket = control_socket(config_path, socket);
    match ask::<status::Status>(&socket, control::Request::Status, Duration::from_secs(10)) {
        Ok(status) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            } else {
                print!("{}", oqs_edge::operator::i18n::status_text(&status, lang));
            }
            match status.health {
                status::Health::Healthy => exit::OK,
                status::Health::Degraded => exit::DEGRADED,
            }
        }
        Err(e @ control::ControlError::NotRunning { .. }) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "health": "not-running", "problems": [e.to_string()] })
                );
            } else {
                println!(
                    "oqs-edge: {}\n  {e}",
                    oqs_edge::operator::i18n::Msg::StatusNotRunning.text(lang)
                );
            }
            exit::NOT_RUNNING
        }
        Err(e) => {
            eprintln!("oqs-edge status: {e}");
            exit::DEGRADED
        }
    }
}

fn reload(config_path: &Path, socket: Option<PathBuf>, confirm: Option<Duration>) -> u8 {
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
    let request = match confirm {
        Some(window) => control::Request::ReloadConfirm(window.as_secs()),
        None => control::Request::Reload,
    };
    answer_of_change("reload", &socket, request)
}

/// Ask for a change (reload, rollback) and say how it ended: exit 0 applied or unchanged,
/// 1 not applied, 2 refused as invalid, 3 not running.
fn answer_of_change(command: &str, socket: &Path, request: control::Request) -> u8 {
    match ask::<serde_json::Value>(socket, request, Duration::from_secs(60)) {
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
            eprintln!("oqs-edge {command}: {e}");
            exit::NOT_RUNNING
        }
        Err(e) => {
            eprintln!("oqs-edge {command}: {e}");
            exit::FAILED
        }
    }
}

/// `--confirm`'s DURATION: humantime (`90s`, `5m`), within the daemon's window.
fn parse_confirm_window(text: &str) -> Result<Duration, String> {
    use oqs_edge::supervisor::history::{CONFIRM_MAX, CONFIRM_MIN};
    let window = humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 90s, 5m)"))?;
    // The daemon enforces its minimum (30s unless it runs with another).
    if window <= CONFIRM_MAX && window.as_secs() > 0 && window.subsec_nanos() == 0 {
        Ok(window)
    } else {
        Err(format!(
            "between {} and {}, in whole seconds",
            humantime::format_duration(CONFIRM_MIN),
            humantime::format_duration(CONFIRM_MAX)
        ))
    }
}

/// A request whose answer is only a result word and a message.
fn ask_simple(
    command: &str,
    socket: &Path,
    request: control::Request,
) -> Result<serde_json::Value, u8> {
    ask::<serde_json::Value>(socket, request, Duration::from_secs(30)).map_err(|e| {
        eprintln!("oqs-edge {command}: {e}");
        match e {
            control::ControlError::NotRunning { .. } => exit::NOT_RUNNING,
            _ => exit::FAILED,
        }
    })
}

fn diff(config_path: &Path, socket: Option<PathBuf>, json: bool) -> u8 {
    let (checked, source) = match config::check_file(config_path, FileChecks::On) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("{}: cannot read the config: {e}", config_path.display());
            return exit::INVALID;
        }
    };
    let Some(next) = checked.config else {
        if json {
            println!(
                "{}",
                serde_json::json!({ "result": "invalid", "check": checked.report })
            );
        } else {
            eprint!("{}", checked.report.render(&source));
            eprintln!(
                "{}: invalid; a reload would be refused",
                config_path.display()
            );
        }
        return exit::INVALID;
    };
    let socket = control_socket(config_path, socket);
    let running = match ask_simple("diff", &socket, control::Request::Running) {
        Ok(answer) if answer["result"] == "ok" => answer,
        Ok(answer) => {
            eprintln!(
                "oqs-edge diff: the daemon did not hand over its running config: {}",
                answer["message"].as_str().unwrap_or_default()
            );
            return exit::FAILED;
        }
        Err(code) => return code,
    };
    let running_path = PathBuf::from(running["path"].as_str().unwrap_or_default());
    let running_source = running["source"].as_str().unwrap_or_default();
    // The running config passed every check when it was applied; its files are not reread.
    let Some(current) = config::check_source(&running_path, running_source, FileChecks::Off).config
    else {
        eprintln!("oqs-edge diff: the running config the daemon handed over does not parse");
        return exit::FAILED;
    };
    let changes = plan::diff::diff(&plan::plan(&current), &plan::plan(&next));
    let short = |d: &str| d.get(..12).unwrap_or_default().to_owned();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "result": if changes.is_empty() { "no-changes" } else { "changes" },
                "running": { "path": running_path, "digest": current.digest() },
                "file": { "path": config_path, "digest": next.digest() },
                "changes": changes,
            }))
            .unwrap_or_default()
        );
    } else {
        println!(
            "running {} ({}) → {} ({})\n",
            running_path.display(),
            short(current.digest()),
            config_path.display(),
            short(next.digest())
        );
        print!("{}", changes.to_text());
    }
    if changes.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    }
}

fn confirm(config_path: &Path, socket: Option<PathBuf>) -> u8 {
    let socket = control_socket(config_path, socket);
    match ask_simple("confirm", &socket, control::Request::Confirm) {
        Ok(answer) => {
            let message = answer["message"].as_str().unwrap_or_default();
            if answer["result"] == "confirmed" {
                println!("{message}");
                exit::OK
            } else {
                eprintln!("{message}");
                exit::FAILED
            }
        }
        Err(code) => code,
    }
}

fn history(config_path: &Path, socket: Option<PathBuf>, json: bool) -> u8 {
    use oqs_edge::supervisor::history;
    let socket = control_socket(config_path, socket);
    let answer = match ask_simple("history", &socket, control::Request::History) {
        Ok(answer) if answer["result"] == "ok" => answer,
        Ok(answer) => {
            eprintln!(
                "oqs-edge history: {}",
                answer["message"].as_str().unwrap_or_default()
            );
            return exit::FAILED;
        }
        Err(code) => return code,
    };
    let entries: Vec<history::Entry> =
        serde_json::from_value(answer["entries"].clone()).unwrap_or_default();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).unwrap_or_default()
        );
    } else {
        print!("{}", history::to_text(&entries));
    }
    exit::OK
}

fn rollback(config_path: &Path, socket: Option<PathBuf>, id: Option<u64>) -> u8 {
    let socket = control_socket(config_path, socket);
    answer_of_change("rollback", &socket, control::Request::Rollback(id))
}

fn boot_firewall(state_dir: &Path) -> u8 {
    use oqs_edge::apply::firewall::{load_at_boot, BootLoad, Nft};
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

fn cert_import(
    file: &Path,
    name: Option<String>,
    password_file: Option<&Path>,
    state_dir: &Path,
    replace: bool,
) -> u8 {
    let password = match password_file {
        Some(path) => pki::read_password_file(path).map_err(|e| e.to_string()),
        None => rpassword::prompt_password(format!("password for {}: ", file.display()))
            .map_err(|e| format!("cannot read the password: {e}")),
    };
    let password = match password {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return exit::INVALID;
        }
    };
    let name = name.unwrap_or_else(|| pki::store::default_name(file));
    match pki::store::import_pkcs12(file, &name, &password, state_dir, replace) {
        Ok(imported) => {
            let c = &imported.cert;
            println!(
                "imported `{name}`: CN {}, issued by {}, valid until {} ({} days left)",
                c.subject_cn.as_deref().unwrap_or("(none)"),
                c.issuer,
                humantime::format_rfc3339_seconds(c.not_after),
                c.days_left(std::time::SystemTime::now())
            );
            println!("  sha256 {}", c.fingerprint_sha256);
            println!("  {} (0600)", imported.pkcs12.display());
            println!("  {} (0600)", imported.password_file.display());
            if replace {
                println!("\nthe running daemon presents it on new connections within seconds");
            } else {
                println!("\nadd to the config, then `oqs-edge reload`:\n");
                println!("client_certificates:");
                println!("  - name: {name}");
                println!("    pkcs12: {}", imported.pkcs12.display());
                println!("    password_file: {}", imported.password_file.display());
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("{e}");
            exit::INVALID
        }
    }
}

fn cert_list(path: &Path, json: bool) -> u8 {
    let Ok(checked) = load(path, FileChecks::Off, Format::Text) else {
        return exit::INVALID;
    };
    let Some(config) = checked.config else {
        return exit::INVALID;
    };
    let now = std::time::SystemTime::now();
    let mut failed = false;
    let rows: Vec<serde_json::Value> = plan::plan(&config)
        .certificates
        .iter()
        .map(
            |c| match oqs_edge::apply::proxy::load_certificate(&c.source) {
                Ok(cert) => serde_json::json!({
                    "name": c.name,
                    "subject_cn": cert.subject_cn,
                    "issuer": cert.issuer,
                    "not_before": humantime::format_rfc3339_seconds(cert.not_before).to_string(),
                    "not_after": humantime::format_rfc3339_seconds(cert.not_after).to_string(),
                    "days_left": cert.days_left(now),
                    "fingerprint_sha256": cert.fingerprint_sha256,
                    "file": cert.path,
                }),
                Err(e) => {
                    failed = true;
                    serde_json::json!({ "name": c.name, "problem": e })
                }
            },
        )
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else if rows.is_empty() {
        println!("no client_certificates in {}", path.display());
    } else {
        for r in &rows {
            match r.get("problem") {
                Some(problem) => println!("{}: UNUSABLE: {}", r["name"].as_str().unwrap_or(""), problem.as_str().unwrap_or("")),
                None => println!(
                    "{}: CN {} ({} days left)\n  issuer    {}\n  valid     {} .. {}\n  sha256    {}\n  file      {}",
                    r["name"].as_str().unwrap_or(""),
                    r["subject_cn"].as_str().unwrap_or("(none)"),
                    r["days_left"],
                    r["issuer"].as_str().unwrap_or(""),
                    r["not_before"].as_str().unwrap_or(""),
                    r["not_after"].as_str().unwrap_or(""),
                    r["fingerprint_sha256"].as_str().unwrap_or(""),
                    r["file"].as_str().unwrap_or(""),
                ),
            }
        }
    }
    if failed {
        exit::INVALID
    } else {
        exit::OK
    }
}

fn local_ca_export(path: &Path) -> u8 {
    let Ok(checked) = load(path, FileChecks::Off, Format::Text) else {
        return exit::INVALID;
    };
    let Some(dir) = checked.config.and_then(|c| plan::plan(&c).local_ca_dir) else {
        eprintln!("{}: no `proxy` section, so no local CA", path.display());
        return exit::INVALID;
    };
    match pki::local_ca::export(&dir) {
        Ok(pem) => {
            print!("{pem}");
            exit::OK
        }
        Err(e) => {
            eprintln!("{e}");
            exit::FAILED
        }
    }
}

//! `lab-peer`: the tiny peer the netns lab runs inside its namespaces (std only).
//!
//! ```text
//! lab-peer serve ADDR:PORT [ADDR:PORT...]      # TCP "hello from <addr>" + UDP echo; until killed
//! lab-peer probe ADDR:PORT [--timeout-ms N]    # one word on stdout, coded in the exit status
//! lab-peer hold ADDR:PORT N [TEXT]             # open N connections, send TEXT on each, then
//!                                              # hold them idle until killed ("held K" on stdout)
//! ```
//!
//! `probe` tells apart what a firewall can do to a TCP connection attempt:
//!
//! | word          | exit | what happened                                                     |
//! |---------------|------|-------------------------------------------------------------------|
//! | `connected`   | 0    | connected and read the server's hello line                        |
//! | `refused`     | 1    | an RST came back (ECONNREFUSED): nothing listens there            |
//! | `unreachable` | 2    | an ICMP error came back (a `reject`), or the local stack refused   |
//! | `timeout`     | 3    | no answer at all (a `drop`)                                        |
//! | `accepted`    | 5    | connected, but the server is not a lab-peer (it sent no hello line) |
//! | `error`       | 4    | anything else (bad arguments, connected but no hello line, …)     |
//!
//! nftables' `reject with icmpx admin-prohibited` sends ICMP type 3 code 13 for IPv4, which
//! Linux turns into EHOSTUNREACH on a connecting TCP socket, and ICMPv6 type 1 code 1 for
//! IPv6, which it turns into EACCES; both count as `unreachable`.

use std::io::{BufRead as _, BufReader, ErrorKind, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

// errno values of Linux (all architectures the lab runs on); std has no name for some of them.
const EPERM: i32 = 1;
const EACCES: i32 = 13;
const ENETUNREACH: i32 = 101;
const ECONNREFUSED: i32 = 111;
const EHOSTUNREACH: i32 = 113;

const USAGE: &str = "usage: lab-peer serve ADDR:PORT [ADDR:PORT...]\n       lab-peer probe ADDR:PORT [--timeout-ms N]\n       lab-peer hold ADDR:PORT N [TEXT]\n       lab-peer datagram ADDR:PORT TEXT";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") if args.len() > 1 => serve(&args[1..]),
        Some("probe") => match parse_probe(&args[1..]) {
            Ok((addr, timeout)) => {
                let (word, code) = probe(addr, timeout);
                println!("{word}");
                ExitCode::from(code)
            }
            Err(e) => usage_error(&e),
        },
        Some("hold") if args.len() >= 3 => match (parse_addr(&args[1]), args[2].parse::<usize>()) {
            (Ok(addr), Ok(n)) => hold(addr, n, args.get(3).map(String::as_str).unwrap_or("")),
            _ => usage_error("hold ADDR:PORT N [TEXT]"),
        },
        Some("datagram") if args.len() == 3 => match parse_addr(&args[1]) {
            Ok(addr) => datagram(addr, &args[2]),
            Err(e) => usage_error(&e),
        },
        _ => usage_error("missing or unknown command"),
    }
}

/// One UDP datagram (broadcast allowed): the marker a capture waits for before it stops.
fn datagram(addr: SocketAddr, text: &str) -> ExitCode {
    let sent = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.set_broadcast(true).map(|()| s))
        .and_then(|s| s.send_to(text.as_bytes(), addr));
    match sent {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab-peer: datagram to {addr}: {e}");
            ExitCode::from(1)
        }
    }
}

/// A client that opens connections and then says nothing more: what a stuck or hostile LAN
/// client does to a proxy. `TEXT` (with `\r\n` written as is) can be half a request.
fn hold(addr: SocketAddr, n: usize, text: &str) -> ExitCode {
    let text = text.replace("\\r", "\r").replace("\\n", "\n");
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(mut stream) => {
                let _ = stream.write_all(text.as_bytes());
                held.push(stream);
            }
            Err(e) => {
                eprintln!("lab-peer hold: connection {} failed: {e}", held.len() + 1);
                break;
            }
        }
    }
    println!("held {}", held.len());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("lab-peer: {message}\n{USAGE}");
    println!("error");
    ExitCode::from(4)
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|e| format!("`{text}` is not ADDR:PORT ([v6]:port for IPv6): {e}"))
}

fn parse_probe(args: &[String]) -> Result<(SocketAddr, Duration), String> {
    let mut addr = None;
    let mut timeout_ms = 1500;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--timeout-ms" {
            let value = rest.next().ok_or("--timeout-ms needs a value")?;
            timeout_ms = value
                .parse()
                .map_err(|_| format!("--timeout-ms `{value}` is not a number"))?;
        } else if addr.is_none() {
            addr = Some(parse_addr(arg)?);
        } else {
            return Err(format!("unexpected argument `{arg}`"));
        }
    }
    let addr = addr.ok_or("probe needs ADDR:PORT")?;
    Ok((addr, Duration::from_millis(timeout_ms)))
}

/// Bind everything first (so a bad address fails at once, before anyone probes), then serve.
fn serve(addrs: &[String]) -> ExitCode {
    let mut threads = Vec::new();
    for text in addrs {
        let addr = match parse_addr(text) {
            Ok(a) => a,
            Err(e) => return usage_error(&e),
        };
        let tcp = match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => return bind_error("TCP", addr, &e),
        };
        let udp = match UdpSocket::bind(addr) {
            Ok(s) => s,
            Err(e) => return bind_error("UDP", addr, &e),
        };
        threads.push(std::thread::spawn(move || serve_tcp(&tcp)));
        threads.push(std::thread::spawn(move || serve_udp(&udp)));
    }
    for t in threads {
        let _ = t.join();
    }
    ExitCode::SUCCESS
}

fn bind_error(what: &str, addr: SocketAddr, e: &std::io::Error) -> ExitCode {
    eprintln!("lab-peer: cannot bind {what} {addr}: {e}");
    ExitCode::from(4)
}

fn serve_tcp(listener: &TcpListener) {
    let local = listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    // A failed accept or a peer that resets before we write is its business, not a reason to
    // stop serving.
    for mut stream in listener.incoming().flatten() {
        let _ = stream.write_all(format!("hello from {local}\n").as_bytes());
    }
}

fn serve_udp(socket: &UdpSocket) {
    let mut buf = [0u8; 65536];
    loop {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    }
}

/// Connect and read the hello line; the outcome word and its exit code.
fn probe(addr: SocketAddr, timeout: Duration) -> (&'static str, u8) {
    let stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return connect_failure(&e),
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(_) if line.starts_with("hello from ") => {
            eprint!("{line}");
            ("connected", 0)
        }
        // Another service (the proxy waiting for a TLS ClientHello or a request) took the
        // connection: the firewall let it through.
        Ok(_) => {
            eprintln!("lab-peer: connected to {addr}, which sent {line:?}, not a hello line");
            ("accepted", 5)
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            eprintln!("lab-peer: connected to {addr}, which sent nothing within the timeout");
            ("accepted", 5)
        }
        Err(e) => {
            eprintln!("lab-peer: connected to {addr} but reading the hello line failed: {e}");
            ("error", 4)
        }
    }
}

fn connect_failure(e: &std::io::Error) -> (&'static str, u8) {
    if e.kind() == ErrorKind::TimedOut {
        return ("timeout", 3);
    }
    match e.raw_os_error() {
        Some(ECONNREFUSED) => ("refused", 1),
        // EHOSTUNREACH: ICMP (v4) host/admin-prohibited; EACCES: ICMPv6 admin-prohibited;
        // ENETUNREACH: no route; EPERM: our own namespace's netfilter dropped the SYN.
        Some(EHOSTUNREACH | ENETUNREACH | EACCES | EPERM) => {
            eprintln!("lab-peer: {e}");
            ("unreachable", 2)
        }
        _ => {
            eprintln!("lab-peer: connect failed: {e}");
            ("error", 4)
        }
    }
}

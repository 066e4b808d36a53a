//! The status page for the clinic's staff (`control.status_page`): one small, self-contained
//! HTML page and its JSON, in Japanese (English when the browser prefers it), that says at a
//! glance 正常 / 注意 / 異常, what is wrong in one sentence, what to tell the installer, each
//! 電子証明書's days left, the last 疎通確認 and the router's version.
//!
//! Read-only and never an open door: it answers only the addresses in `status_page_allow`
//! (the firewall opens the port for those alone; a connection from anyone else is closed
//! unanswered), shows no secret, no config and no client address, and its only action is
//! running `diag`, at most once a minute. It refreshes itself (a meta refresh: no script, no
//! external resource, so it works on a LAN without internet).
//!
//! It runs on its own thread and runtime, and reads the daemon's state over the control
//! socket as `oqs-edge status` does, so it never holds up the supervisor.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use ipnet::IpNet;
use log::{info, warn};
use serde::Serialize;

use super::control::{self, Request as ControlRequest};
use super::diag::{self, Outcome, Report};
use super::i18n::{Lang, Msg};
use crate::config::{self, FileChecks};
use crate::status::{Health, Status};

/// The page reloads itself this often.
pub const REFRESH_SECS: u64 = 10;
/// The daemon's state is asked for at most this often, however many PCs look.
const STATUS_CACHE: Duration = Duration::from_secs(2);
/// `diag` from the page's button runs at most this often.
const DIAG_EVERY: Duration = Duration::from_secs(60);
/// The page runs `diag` by itself once the daemon has had time to bring the line up, then
/// this often.
const DIAG_FIRST_AFTER: Duration = Duration::from_secs(20);
const DIAG_PERIOD: Duration = Duration::from_secs(30 * 60);
/// A certificate with fewer days left turns the page to 注意.
const WARN_DAYS: i64 = 30;

/// What the page serves from, and the state it keeps.
struct Shared {
    control_socket: PathBuf,
    config_path: PathBuf,
    allow: Vec<IpNet>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    status: Option<(Instant, Option<Status>)>,
    last_diag: Option<(SystemTime, Report)>,
    diag_started: Option<Instant>,
    diag_running: bool,
}

/// The running page server; dropping it stops it.
pub struct StatusPage {
    listen: SocketAddr,
    allow: Vec<IpNet>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for StatusPage {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl StatusPage {
    /// Serve on `listen` for `allow`. The socket is bound here, so an error is the caller's.
    pub fn start(
        listen: SocketAddr,
        allow: Vec<IpNet>,
        control_socket: PathBuf,
        config_path: PathBuf,
    ) -> Result<StatusPage, String> {
        let std_listener = std::net::TcpListener::bind(listen)
            .map_err(|e| format!("status page: cannot listen on {listen}: {e}"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| format!("status page: {listen}: {e}"))?;
        let shared = Arc::new(Shared {
            control_socket,
            config_path,
            allow: allow.clone(),
            state: Mutex::new(State::default()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("status-page".into())
            .spawn(move || serve(std_listener, shared, stopped))
            .map_err(|e| format!("status page: cannot start its thread: {e}"))?;
        info!("status page on http://{listen}/");
        Ok(StatusPage {
            listen,
            allow,
            stop: Some(stop),
        })
    }

    /// Start, restart or stop the page to match the config in force (`None`: no page).
    pub fn follow(
        current: Option<StatusPage>,
        wanted: Option<(SocketAddr, Vec<IpNet>)>,
        control_socket: PathBuf,
        config_path: PathBuf,
    ) -> Option<StatusPage> {
        match (current, wanted) {
            (Some(page), Some((listen, allow))) if page.listen == listen && page.allow == allow => {
                Some(page)
            }
            (current, Some((listen, allow))) => {
                drop(current);
                match StatusPage::start(listen, allow, control_socket, config_path) {
                    Ok(page) => Some(page),
                    Err(e) => {
                        warn!("{e}");
                        None
                    }
                }
            }
            (_, None) => None,
        }
    }
}

fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        warn!("status page: cannot start its runtime");
        return;
    };
    runtime.block_on(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            warn!("status page: cannot use its socket");
            return;
        };
        let periodic = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                tokio::time::sleep(DIAG_FIRST_AFTER).await;
                loop {
                    start_diag(&shared, true);
                    tokio::time::sleep(DIAG_PERIOD).await;
                }
            })
        };
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    let Ok((stream, peer)) = accepted else { continue };
                    // Anyone outside the allow list gets nothing (the firewall drops them
                    // first; this holds if someone loosens it).
                    if !shared.allow.iter().any(|net| net.contains(&peer.ip())) {
                        drop(stream);
                        continue;
                    }
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let shared = Arc::clone(&shared);
                            async move { Ok::<_, Infallible>(answer(&shared, request).await) }
                        });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let connection = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(5))
                            .serve_connection(io, service);
                        let _ = tokio::time::timeout(Duration::from_secs(30), connection).await;
                    });
                }
            }
        }
        periodic.abort();
    });
}

async fn answer(
    shared: &Arc<Shared>,
    request: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let lang = match request.uri().query().and_then(|q| q.strip_prefix("lang=")) {
        Some(code) => Lang::parse(code).unwrap_or(Lang::Ja),
        None => Lang::from_accept_language(
            request
                .headers()
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        ),
    };
    match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => {
            let page = view(shared, lang).await;
            respond(StatusCode::OK, "text/html; charset=utf-8", render(&page))
        }
        (&Method::GET | &Method::HEAD, "/status.json") => {
            let page = view(shared, lang).await;
            respond(
                StatusCode::OK,
                "application/json",
                serde_json::to_string_pretty(&page).unwrap_or_default(),
            )
        }
        (&Method::POST, "/diag") => {
            start_diag(shared, false);
            let mut response = respond(
                StatusCode::SEE_OTHER,
                "text/plain; charset=utf-8",
                String::new(),
            );
            response
                .headers_mut()
                .insert(header::LOCATION, header::HeaderValue::from_static("/"));
            response
        }
        (_, "/" | "/status.json" | "/diag") => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n".into(),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".into(),
        ),
    }
}

fn respond(code: StatusCode, kind: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Run `diag` on its own thread, unless one runs or (from the button) one ran within a minute.
fn start_diag(shared: &Arc<Shared>, scheduled: bool) {
    {
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        let recent = state.diag_started.is_some_and(|t| t.elapsed() < DIAG_EVERY);
        if state.diag_running || (recent && !scheduled) {
            return;
        }
        state.diag_running = true;
        state.diag_started = Some(Instant::now());
    }
    let spawned = std::thread::Builder::new()
        .name("status-page-diag".into())
        .spawn({
            let shared = Arc::clone(shared);
            move || {
                // A run is dated by its start: of two that overlap, the later started is last.
                let started = SystemTime::now();
                let report = run_diag(&shared);
                if let Ok(mut state) = shared.state.lock() {
                    state.diag_running = false;
                    if let Some(report) = report {
                        // Kept for the next start too; the page still shows it if this fails.
                        let _ = diag::keep(&shared.control_socket, &report, started);
                        state.last_diag = Some((started, report));
                    }
                }
            }
        });
    if spawned.is_err() {
        if let Ok(mut state) = shared.state.lock() {
            state.diag_running = false;
        }
    }
}

fn run_diag(shared: &Shared) -> Option<Report> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let (checked, _) = config::check_file(&shared.config_path, FileChecks::Off).ok()?;
    let config = checked.config?;
    runtime.block_on(async {
        let status = control::ask::<Status>(
            &shared.control_socket,
            ControlRequest::Status,
            Duration::from_secs(10),
        )
        .await
        .ok();
        let options = diag::Options {
            route: None,
            socket: Some(shared.control_socket.clone()),
        };
        Some(diag::run(&config, status.as_ref(), &options).await)
    })
}

/// The daemon's state, asked at most every [`STATUS_CACHE`]; `None` when it does not answer.
async fn daemon_status(shared: &Shared) -> Option<Status> {
    if let Ok(state) = shared.state.lock() {
        if let Some((at, status)) = &state.status {
            if at.elapsed() < STATUS_CACHE {
                return status.clone();
            }
        }
    }
    let status = control::ask::<Status>(
        &shared.control_socket,
        ControlRequest::Status,
        Duration::from_secs(5),
    )
    .await
    .ok();
    if let Ok(mut state) = shared.state.lock() {
        state.status = Some((Instant::now(), status.clone()));
    }
    status
}

/// What the page shows: the JSON, and the HTML made from it.
#[derive(Debug, Serialize)]
pub struct View {
    pub lang: Lang,
    /// `ok`, `warn` or `fail`.
    pub verdict: &'static str,
    /// 正常 / 注意 / 異常 (OK / Attention / Problem).
    pub verdict_text: String,
    /// What is wrong (or that all is well), in one sentence.
    pub summary: String,
    /// A short code for the installer: `ok`, `tunnel-down`, `certificate-expiring`, …
    pub code: &'static str,
    pub tell_installer: String,
    pub certificates: Vec<CertificateView>,
    pub last_diag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_diag_result: Option<Outcome>,
    pub diag_running: bool,
    pub version: String,
    pub updated: String,
    pub refresh_secs: u64,
}

#[derive(Debug, Serialize)]
pub struct CertificateView {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    pub text: String,
}

async fn view(shared: &Shared, lang: Lang) -> View {
    let status = daemon_status(shared).await;
    let (own, running) = match shared.state.lock() {
        Ok(state) => (state.last_diag.clone(), state.diag_running),
        Err(_) => (None, false),
    };
    // The newer of the page's own run and the last one kept (an installer's `oqs-edge diag`).
    let kept = diag::last_kept(&shared.control_socket);
    let last_diag = match (own, kept) {
        (Some(own), Some(kept)) => Some(if kept.0 > own.0 { kept } else { own }),
        (own, kept) => own.or(kept),
    };
    build_view(
        status.as_ref(),
        last_diag.as_ref(),
        running,
        lang,
        SystemTime::now(),
    )
}

/// The verdict and its sentence, most serious first.
fn judge(
    status: Option<&Status>,
    last_diag: Option<&Report>,
    lang: Lang,
) -> (&'static str, &'static str, String) {
    let Some(s) = status else {
        return (
            "fail",
            "not-running",
            Msg::PageNotRunning.text(lang).to_owned(),
        );
    };
    if s.health == Health::Degraded {
        // The WAN before the tunnel: a line with no address is why the tunnel is down.
        let wan_down = s
            .wan
            .as_ref()
            .is_some_and(|w| w.addresses.is_empty() && !(w.ipv4 == "os" && w.ipv6 == "os"));
        let (code, msg) = if !s.firewall.applied {
            ("firewall-missing", Msg::PageFirewallDown)
        } else if wan_down {
            ("wan-no-address", Msg::PageWanDown)
        } else if s.tunnel.state != "up" {
            ("tunnel-down", Msg::PageLineDown)
        } else if s.routes.iter().any(|r| !r.installed) {
            ("route-missing", Msg::PageRoutesDown)
        } else if s
            .certificates
            .iter()
            .any(|c| c.problem.is_some() || c.days_left.is_some_and(|d| d < 0))
        {
            ("certificate-unusable", Msg::PageCertificateBad)
        } else if s.proxy.routes.iter().any(|r| r.problem.is_some()) {
            ("proxy-down", Msg::PageProxyDown)
        } else {
            ("problem", Msg::PageOtherProblem)
        };
        return ("fail", code, msg.text(lang).to_owned());
    }
    if let Some(days) = s
        .certificates
        .iter()
        .filter_map(|c| c.days_left)
        .filter(|d| *d < WARN_DAYS)
        .min()
    {
        return (
            "warn",
            "certificate-expiring",
            Msg::PageCertificateSoon.fill(lang, &[&days.to_string()]),
        );
    }
    if let Some(failed) = last_diag.and_then(Report::first_failure) {
        return (
            "warn",
            "diag-failed",
            Msg::PageLastDiagFailed.fill(lang, &[failed.kind.title().text(lang)]),
        );
    }
    ("ok", "ok", Msg::PageAllGood.text(lang).to_owned())
}

fn ago(since: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(since).unwrap_or_default().as_secs();
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn build_view(
    status: Option<&Status>,
    last_diag: Option<&(SystemTime, Report)>,
    diag_running: bool,
    lang: Lang,
    now: SystemTime,
) -> View {
    let (verdict, code, summary) = judge(status, last_diag.map(|(_, r)| r), lang);
    let verdict_text = match verdict {
        "ok" => Msg::PageOk,
        "warn" => Msg::PageWarn,
        _ => Msg::PageFail,
    }
    .text(lang)
    .to_owned();
    let version = status
        .map(|s| s.daemon.version.clone())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
    let updated = humantime::format_rfc3339_seconds(now).to_string();
    let tell_installer = if verdict == "ok" {
        Msg::PageTellNothing.text(lang).to_owned()
    } else {
        Msg::PageTellThis.fill(lang, &[&version, &updated, &summary, code])
    };
    let certificates = status
        .map(|s| {
            s.certificates
                .iter()
                .map(|c| CertificateView {
                    name: c.name.clone(),
                    days_left: c.days_left,
                    text: match c.days_left {
                        Some(d) => Msg::CertDaysLeft.fill(lang, &[&d.to_string()]),
                        None => Msg::PageCertificateBad.text(lang).to_owned(),
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    let (last_diag_text, last_diag_result) = match last_diag {
        None => (Msg::PageDiagNever.text(lang).to_owned(), None),
        Some((at, report)) => match report.first_failure() {
            None => (
                Msg::PageDiagPassed.fill(lang, &[&ago(*at, now)]),
                Some(Outcome::Pass),
            ),
            Some(step) => (
                Msg::PageDiagFailedShort
                    .fill(lang, &[&ago(*at, now), step.kind.title().text(lang)]),
                Some(Outcome::Fail),
            ),
        },
    };
    View {
        lang,
        verdict,
        verdict_text,
        summary,
        code,
        tell_installer,
        certificates,
        last_diag: last_diag_text,
        last_diag_result,
        diag_running,
        version,
        updated,
        refresh_secs: REFRESH_SECS,
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page: one HTML document, inline style, no script, no external resource.
pub fn render(v: &View) -> String {
    let lang = v.lang;
    let color = match v.verdict {
        "ok" => "#1b7f3b",
        "warn" => "#b7791f",
        _ => "#c53030",
    };
    let certificates: String = v
        .certificates
        .iter()
        .map(|c| format!("<li>{}: {}</li>", escape(&c.name), escape(&c.text)))
        .collect();
    let diag_state = if v.diag_running {
        format!(" ({})", Msg::PageDiagRunning.text(lang))
    } else {
        String::new()
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="{code}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{refresh}">
<title>{title}</title>
<style>
body {{ font-family: "Noto Sans CJK JP", "Hiragino Sans", "Yu Gothic", sans-serif; margin: 2em auto; max-width: 40em; padding: 0 1em; color: #222; }}
#verdict {{ font-size: 3em; font-weight: bold; color: #fff; background: {color}; border-radius: .3em; padding: .3em .6em; display: inline-block; }}
#summary {{ font-size: 1.4em; margin: .8em 0; }}
h2 {{ font-size: 1.1em; margin-top: 1.5em; border-bottom: 1px solid #ccc; }}
.small {{ color: #555; font-size: .9em; }}
button {{ font-size: 1em; padding: .4em 1em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<div id="verdict" data-verdict="{verdict}">{verdict_text}</div>
<p id="summary">{summary}</p>
<h2>{tell_heading}</h2>
<p id="tell">{tell}</p>
<h2>{cert_heading}</h2>
<ul id="certificates">{certificates}</ul>
<h2>{diag_heading}</h2>
<p id="last-diag">{last_diag}{diag_state}</p>
<form method="post" action="/diag"><button type="submit">{run_diag}</button> <span class="small">{diag_wait}</span></form>
<h2>{version_heading}</h2>
<p id="version">oqs-edge {version}</p>
<p class="small" id="updated">{updated}</p>
</body>
</html>
"#,
        code = lang.code(),
        refresh = v.refresh_secs,
        title = escape(Msg::PageTitle.text(lang)),
        color = color,
        verdict = v.verdict,
        verdict_text = escape(&v.verdict_text),
        summary = escape(&v.summary),
        tell_heading = escape(Msg::PageTellInstaller.text(lang)),
        tell = escape(&v.tell_installer),
        cert_heading = escape(Msg::PageCertificates.text(lang)),
        certificates = certificates,
        diag_heading = escape(Msg::PageLastDiag.text(lang)),
        last_diag = escape(&v.last_diag),
        diag_state = escape(&diag_state),
        run_diag = escape(Msg::PageRunDiag.text(lang)),
        diag_wait = escape(Msg::PageDiagWait.text(lang)),
        version_heading = escape(Msg::PageVersion.text(lang)),
        version = escape(&v.version),
        updated = escape(&Msg::PageUpdated.fill(lang, &[&v.refresh_secs.to_string(), &v.updated])),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{CertificateInfo, TunnelInfo};

    fn healthy() -> Status {
        let mut s = Status {
            tunnel: TunnelInfo {
                kind: "ip-vpn".into(),
                state: "up".into(),
                ..TunnelInfo::default()
            },
            certificates: vec![CertificateInfo {
                name: "oqs".into(),
                days_left: Some(400),
                ..CertificateInfo::default()
            }],
            ..Status::default()
        };
        s.firewall.applied = true;
        s.daemon.version = "0.1.0".into();
        s
    }

    #[test]
    fn the_page_says_the_verdict_in_japanese_and_escapes_what_it_shows() {
        let now = SystemTime::now();
        let v = build_view(Some(&healthy()), None, false, Lang::Ja, now);
        assert_eq!(v.verdict_text, "正常");
        let html = render(&v);
        assert!(
            html.contains("残り 400 日") && html.contains("連絡の必要はありません"),
            "{html}"
        );
        assert!(!html.contains("<script"), "no script");

        let mut down = healthy();
        down.health = Health::Degraded;
        down.tunnel.state = "down".into();
        down.problems = vec!["tunnel (ip-vpn) is down: <b>".into()];
        let v = build_view(Some(&down), None, false, Lang::Ja, now);
        assert_eq!((v.verdict, v.code), ("fail", "tunnel-down"));
        assert!(v
            .tell_installer
            .contains("オンライン請求ネットワークへの回線がつながっていません"));
        let v = build_view(Some(&down), None, false, Lang::En, now);
        assert_eq!(v.verdict_text, "Problem");
        // With no WAN address the line is the cause the page names, not the tunnel.
        down.wan = Some(crate::status::WanInfo {
            interface: "wan0".into(),
            ipv4: "dhcp".into(),
            ipv6: "os".into(),
            ..Default::default()
        });
        let v = build_view(Some(&down), None, false, Lang::Ja, now);
        assert_eq!((v.verdict, v.code), ("fail", "wan-no-address"));
        assert!(v
            .summary
            .contains("プロバイダーとの回線 (WAN) でアドレスを取得できていません"));

        let mut soon = healthy();
        soon.certificates[0].days_left = Some(12);
        let v = build_view(Some(&soon), None, false, Lang::Ja, now);
        assert_eq!(v.verdict_text, "注意");
        assert!(v.summary.contains("残り 12 日"));

        let v = build_view(None, None, false, Lang::Ja, now);
        assert_eq!((v.verdict, v.code), ("fail", "not-running"));
        assert_eq!(
            escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}

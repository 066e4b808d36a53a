//! The operator's words in English and Japanese: one catalogue, [`Msg`], for `diag`, `status`
//! and the status page.
//!
//! The catalogue is a plain table (a `match`), so a message without its Japanese text does not
//! compile, and the test below fails when a Japanese text is empty or left in English. Terms
//! follow the documents the clinics already have: 資格確認端末, 電子証明書,
//! オンライン請求ネットワーク, 医療機関等コード.

use serde::{Deserialize, Serialize};

/// The language the operator reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Ja,
}

impl Lang {
    /// `ja` or `en` (as `--lang` takes it); anything starting with `ja` is Japanese.
    pub fn parse(text: &str) -> Option<Lang> {
        let t = text.trim().to_ascii_lowercase();
        if t.starts_with("ja") {
            Some(Lang::Ja)
        } else if t.starts_with("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// From the locale, as gettext looks: LC_ALL, then LC_MESSAGES, then LANG; Japanese when the
    /// first one set starts with `ja`.
    pub fn from_env() -> Lang {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Lang {
        for name in ["LC_ALL", "LC_MESSAGES", "LANG"] {
            if let Some(value) = get(name).filter(|v| !v.is_empty()) {
                return if value.starts_with("ja") {
                    Lang::Ja
                } else {
                    Lang::En
                };
            }
        }
        Lang::En
    }

    /// From a browser's Accept-Language: Japanese unless English comes before it (the page's
    /// readers are the clinic's staff).
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(header) = header else {
            return Lang::Ja;
        };
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or_default().trim();
            let q = pieces
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            if let Some(lang) = Lang::parse(tag) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, lang));
                }
            }
        }
        best.map_or(Lang::Ja, |(_, lang)| lang)
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }
}

/// Every message the operator may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Msg {
    // diag: what each step checks
    TitleDaemon,
    TitleWanLink,
    TitleWanAddress,
    TitleWanGateway,
    TitleLine,
    TitleRoutes,
    TitleFirewall,
    TitleResolve,
    TitleTcp,
    TitleTls,
    TitleHttp,
    TitleCertificate,
    // diag: what a failure means
    FailDaemon,
    FailWanLink,
    FailWanAddress,
    FailWanGateway,
    FailLineWireguard,
    FailLineIpsec,
    FailLineIpVpn,
    FailRoutes,
    FailFirewall,
    FailResolve,
    FailTcp,
    FailTls,
    FailHttp,
    FailCertificate,
    // diag: what to do
    FixDaemon,
    FixWanLink,
    FixWanAddress,
    FixWanGateway,
    FixLineWireguard,
    FixLineIpsec,
    FixLineIpVpn,
    FixRoutes,
    FixFirewall,
    FixResolve,
    FixTcp,
    FixTls,
    FixHttp,
    FixCertificate,
    // diag: why a step was skipped
    SkipNeedsDaemon,
    SkipEarlierFailed,
    SkipAddressPinned,
    SkipNoHealthPath,
    SkipNoDefaultRoute,
    SkipKernelIpsec,
    // diag: the frame
    DiagHeading,
    DiagAllPassed,
    DiagFailed,
    DiagNotRunning,
    WordMeaning,
    WordWhatToDo,
    WordSkipped,
    CertDaysLeft,
    CertRenewSoon,
    // status
    StatusHealthy,
    StatusDegraded,
    StatusNotRunning,
    StatusTunnel,
    StatusFirewall,
    StatusCertificates,
    StatusDetails,
    FirewallApplied,
    FirewallNotApplied,
    StatusWan,
    WanByOs,
    WanNoAddress,
    WanLeaseLost,
    WanAddressFrom,
    WanLeaseLeft,
    WanGateway,
    WanDhcpClientDown,
    PageWanDown,
    // the status page
    PageTitle,
    PageOk,
    PageWarn,
    PageFail,
    PageAllGood,
    PageNotRunning,
    PageLineDown,
    PageFirewallDown,
    PageRoutesDown,
    PageCertificateBad,
    PageProxyDown,
    PageOtherProblem,
    PageCertificateSoon,
    PageLastDiagFailed,
    PageTellInstaller,
    PageTellNothing,
    PageTellThis,
    PageCertificates,
    PageLastDiag,
    PageDiagNever,
    PageDiagPassed,
    PageDiagFailedShort,
    PageDiagRunning,
    PageRunDiag,
    PageDiagWait,
    PageVersion,
    PageUpdated,
}

impl Msg {
    /// Every message, for the completeness test and the page's script.
    pub const ALL: &'static [Msg] = &[
        Msg::TitleDaemon,
        Msg::TitleWanLink,
        Msg::TitleWanAddress,
        Msg::TitleWanGateway,
        Msg::TitleLine,
        Msg::TitleRoutes,
        Msg::TitleFirewall,
        Msg::TitleResolve,
        Msg::TitleTcp,
        Msg::TitleTls,
        Msg::TitleHttp,
        Msg::TitleCertificate,
        Msg::FailDaemon,
        Msg::FailWanLink,
        Msg::FailWanAddress,
        Msg::FailWanGateway,
        Msg::FailLineWireguard,
        Msg::FailLineIpsec,
        Msg::FailLineIpVpn,
        Msg::FailRoutes,
        Msg::FailFirewall,
        Msg::FailResolve,
        Msg::FailTcp,
        Msg::FailTls,
        Msg::FailHttp,
        Msg::FailCertificate,
        Msg::FixDaemon,
        Msg::FixWanLink,
        Msg::FixWanAddress,
        Msg::FixWanGateway,
        Msg::FixLineWireguard,
        Msg::FixLineIpsec,
        Msg::FixLineIpVpn,
        Msg::FixRoutes,
        Msg::FixFirewall,
        Msg::FixResolve,
        Msg::FixTcp,
        Msg::FixTls,
        Msg::FixHttp,
        Msg::FixCertificate,
        Msg::SkipNeedsDaemon,
        Msg::SkipEarlierFailed,
        Msg::SkipAddressPinned,
        Msg::SkipNoHealthPath,
        Msg::SkipNoDefaultRoute,
        Msg::SkipKernelIpsec,
        Msg::DiagHeading,
        Msg::DiagAllPassed,
        Msg::DiagFailed,
        Msg::DiagNotRunning,
        Msg::WordMeaning,
        Msg::WordWhatToDo,
        Msg::WordSkipped,
        Msg::CertDaysLeft,
        Msg::CertRenewSoon,
        Msg::StatusHealthy,
        Msg::StatusDegraded,
        Msg::StatusNotRunning,
        Msg::StatusTunnel,
        Msg::StatusFirewall,
        Msg::StatusCertificates,
        Msg::StatusDetails,
        Msg::FirewallApplied,
        Msg::FirewallNotApplied,
        Msg::StatusWan,
        Msg::WanByOs,
        Msg::WanNoAddress,
        Msg::WanLeaseLost,
        Msg::WanAddressFrom,
        Msg::WanLeaseLeft,
        Msg::WanGateway,
        Msg::WanDhcpClientDown,
        Msg::PageWanDown,
        Msg::PageTitle,
        Msg::PageOk,
        Msg::PageWarn,
        Msg::PageFail,
        Msg::PageAllGood,
        Msg::PageNotRunning,
        Msg::PageLineDown,
        Msg::PageFirewallDown,
        Msg::PageRoutesDown,
        Msg::PageCertificateBad,
        Msg::PageProxyDown,
        Msg::PageOtherProblem,
        Msg::PageCertificateSoon,
        Msg::PageLastDiagFailed,
        Msg::PageTellInstaller,
        Msg::PageTellNothing,
        Msg::PageTellThis,
        Msg::PageCertificates,
        Msg::PageLastDiag,
        Msg::PageDiagNever,
        Msg::PageDiagPassed,
        Msg::PageDiagFailedShort,
        Msg::PageDiagRunning,
        Msg::PageRunDiag,
        Msg::PageDiagWait,
        Msg::PageVersion,
        Msg::PageUpdated,
    ];

    /// The text in `lang`. `{}` in a text is filled by [`Msg::fill`].
    pub fn text(self, lang: Lang) -> &'static str {
        let (en, ja) = self.texts();
        match lang {
            Lang::En => en,
            Lang::Ja => ja,
        }
    }

    /// The text with each `{}` replaced by the next argument.
    pub fn fill(self, lang: Lang, args: &[&str]) -> String {
        let mut out = String::new();
        let mut args = args.iter();
        let mut rest = self.text(lang);
        while let Some(at) = rest.find("{}") {
            out.push_str(&rest[..at]);
            out.push_str(args.next().copied().unwrap_or_default());
            rest = &rest[at + 2..];
        }
        out.push_str(rest);
        out
    }

    /// (English, Japanese).
    fn texts(self) -> (&'static str, &'static str) {
        match self {
            Msg::TitleDaemon => ("oqs-edge daemon", "oqs-edge の常駐プログラム"),
            Msg::TitleWanLink => ("WAN link", "WAN の回線 (リンク)"),
            Msg::TitleWanAddress => ("WAN address", "WAN のアドレス"),
            Msg::TitleWanGateway => ("WAN gateway answers", "WAN のゲートウェイの応答"),
            Msg::TitleLine => ("the line to the closed network", "オンライン請求ネットワークへの回線"),
            Msg::TitleRoutes => ("routes to the closed network", "オンライン請求ネットワークへの経路"),
            Msg::TitleFirewall => ("firewall table", "ファイアウォール"),
            Msg::TitleResolve => ("name resolution", "名前解決"),
            Msg::TitleTcp => ("TCP connection to the endpoint", "接続先への TCP 接続"),
            Msg::TitleTls => ("TLS with the client certificate", "電子証明書による TLS 接続"),
            Msg::TitleHttp => ("the endpoint answers HTTP", "接続先の HTTP 応答"),
            Msg::TitleCertificate => ("client certificate (電子証明書)", "電子証明書"),

            Msg::FailDaemon => (
                "oqs-edge is not running: the firewall stays closed, but nothing reaches the closed network.",
                "oqs-edge が動いていません。ファイアウォールは閉じたままですが、オンライン請求ネットワークにはつながりません。",
            ),
            Msg::FailWanLink => (
                "The WAN interface is down or missing: the router has no line to the outside.",
                "WAN のインターフェースがつながっていません。ルーターは外部への回線を持っていません。",
            ),
            Msg::FailWanAddress => (
                "The WAN interface has no address: the line is not connected to the provider.",
                "WAN にアドレスがありません。プロバイダーとの接続ができていません。",
            ),
            Msg::FailWanGateway => (
                "The WAN gateway does not answer: the provider's equipment or the cable is not working.",
                "WAN のゲートウェイが応答しません。プロバイダーの機器かケーブルに問題があります。",
            ),
            Msg::FailLineWireguard => (
                "The WireGuard tunnel is not established: the concentrator does not answer.",
                "トンネル (WireGuard) が確立していません。接続先の VPN 装置が応答しません。",
            ),
            Msg::FailLineIpsec => (
                "The IPsec tunnel is not established.",
                "トンネル (IPsec) が確立していません。",
            ),
            Msg::FailLineIpVpn => (
                "The IP-VPN next hop does not answer: the closed line is not working.",
                "IP-VPN の接続先 (ネクストホップ) が応答しません。閉域網の回線に問題があります。",
            ),
            Msg::FailRoutes => (
                "A route to the closed network is missing: its traffic is dropped (the firewall never lets it out another way).",
                "オンライン請求ネットワークへの経路がありません。通信は遮断されます (ファイアウォールは他の経路に通しません)。",
            ),
            Msg::FailFirewall => (
                "The firewall table is not in the kernel.",
                "ファイアウォールの設定がカーネルに入っていません。",
            ),
            Msg::FailResolve => (
                "The endpoint's name does not resolve.",
                "接続先の名前を解決できません。",
            ),
            Msg::FailTcp => (
                "The endpoint does not accept a connection.",
                "接続先に接続できません。",
            ),
            Msg::FailTls => (
                "The TLS handshake with the endpoint failed.",
                "接続先との TLS 接続 (電子証明書による認証) に失敗しました。",
            ),
            Msg::FailHttp => (
                "The endpoint answered with an error.",
                "接続先がエラーを返しました。",
            ),
            Msg::FailCertificate => (
                "The client certificate (電子証明書) cannot be used.",
                "電子証明書が使えません。",
            ),

            Msg::FixDaemon => (
                "Start it: systemctl start oqs-edge; if it stops again, read journalctl -u oqs-edge.",
                "systemctl start oqs-edge で起動してください。止まる場合は journalctl -u oqs-edge を確認してください。",
            ),
            Msg::FixWanLink => (
                "Check the WAN cable and the ONU/modem's power; then run diag again.",
                "WAN のケーブルと ONU・モデムの電源を確認し、もう一度 diag を実行してください。",
            ),
            Msg::FixWanAddress => (
                "Check the provider connection (PPPoE/DHCP) on the WAN interface.",
                "WAN のプロバイダー接続 (PPPoE・DHCP) を確認してください。",
            ),
            Msg::FixWanGateway => (
                "Restart the ONU/modem; if it still fails, call the line provider.",
                "ONU・モデムを再起動してください。直らない場合は回線事業者に連絡してください。",
            ),
            Msg::FixLineWireguard => (
                "Check that the concentrator is up and has this router's public key (oqs-edge wireguard keygen printed it); tell the network provider.",
                "接続先の VPN 装置が動いていて、このルーターの公開鍵が登録されているか確認してください。事業者に連絡してください。",
            ),
            Msg::FixLineIpsec => (
                "Check the pre-shared key from the provider (tunnel.ipsec.auth.psk_file) or the certificates, and the IDs; tell the network provider.",
                "事業者から受け取った事前共有鍵 (tunnel.ipsec.auth.psk_file) または証明書と ID が正しいか確認してください。",
            ),
            Msg::FixLineIpVpn => (
                "Check tunnel.ip_vpn.gateway and the line contract; call the IP-VPN provider.",
                "tunnel.ip_vpn.gateway と回線の契約を確認し、IP-VPN の事業者に連絡してください。",
            ),
            Msg::FixRoutes => (
                "The daemon puts its routes back every few seconds: if this stays, read journalctl -u oqs-edge and run oqs-edge reload.",
                "数秒ごとに自動で戻ります。続く場合は journalctl -u oqs-edge を確認し、oqs-edge reload を実行してください。",
            ),
            Msg::FixFirewall => (
                "The daemon puts the table back; if it is not running, start it (systemctl start oqs-edge).",
                "常駐プログラムが自動で戻します。動いていない場合は systemctl start oqs-edge で起動してください。",
            ),
            Msg::FixResolve => (
                "Check the upstream's name and that the closed network's DNS (closed_network.dns) answers through the line; or set upstream_address on the route.",
                "接続先の名前と、閉域網の DNS (closed_network.dns) が回線経由で応答するかを確認してください。または経路に upstream_address を設定してください。",
            ),
            Msg::FixTcp => (
                "The endpoint may be down or under maintenance; check upstream and upstream_address, then ask the network provider.",
                "接続先が停止中・メンテナンス中の可能性があります。upstream と upstream_address を確認し、事業者に問い合わせてください。",
            ),
            Msg::FixTls => (
                "Check server_ca and upstream (the server certificate must come from that CA and name that host), and the 電子証明書 (oqs-edge cert list).",
                "server_ca と upstream (サーバー証明書の発行元と名前) を確認し、電子証明書を oqs-edge cert list で確認してください。",
            ),
            Msg::FixHttp => (
                "Check health_path; if it is right, the endpoint itself has a problem: ask the network provider.",
                "health_path を確認してください。正しければ接続先の問題です。事業者に問い合わせてください。",
            ),
            Msg::FixCertificate => (
                "Import a valid one: oqs-edge cert import FILE.p12 --replace (the daemon takes it at once).",
                "有効な電子証明書を oqs-edge cert import FILE.p12 --replace で取り込んでください (すぐに使われます)。",
            ),

            Msg::SkipNeedsDaemon => (
                "needs the running daemon",
                "常駐プログラムが動いていないため確認できません",
            ),
            Msg::SkipEarlierFailed => (
                "an earlier step failed: {}",
                "前の確認が失敗したため省略: {}",
            ),
            Msg::SkipAddressPinned => (
                "upstream_address {} is configured: no name to resolve (the proxy connects there)",
                "upstream_address {} が設定されているため名前解決は不要です",
            ),
            Msg::SkipNoHealthPath => (
                "no health_path configured for this route",
                "この経路には health_path が設定されていません",
            ),
            Msg::SkipNoDefaultRoute => (
                "no default route: on an IP-VPN line the next hop is checked with the line",
                "既定の経路がありません (IP-VPN では回線の確認でネクストホップを確認します)",
            ),
            Msg::SkipKernelIpsec => (
                "kernel IPsec carries the closed prefixes by policy, not by route",
                "カーネルの IPsec はポリシーで通信を運ぶため、経路はありません",
            ),

            Msg::DiagHeading => ("oqs-edge diag (疎通確認)", "疎通確認 (oqs-edge diag)"),
            Msg::DiagAllPassed => ("every step passed", "すべて正常です"),
            Msg::DiagFailed => ("{} step(s) failed", "{} 件の異常があります"),
            Msg::DiagNotRunning => (
                "the daemon is not running: only the steps that need no daemon ran",
                "常駐プログラムが動いていないため、一部の確認だけを行いました",
            ),
            Msg::WordMeaning => ("means", "意味"),
            Msg::WordWhatToDo => ("do", "対処"),
            Msg::WordSkipped => ("skipped", "省略"),
            Msg::CertDaysLeft => ("{} days left", "残り {} 日"),
            Msg::CertRenewSoon => (
                "renew it soon: oqs-edge cert import FILE.p12 --replace",
                "早めに更新してください: oqs-edge cert import FILE.p12 --replace",
            ),

            Msg::StatusHealthy => ("healthy", "正常"),
            Msg::StatusDegraded => ("DEGRADED", "異常"),
            Msg::StatusNotRunning => ("not running", "停止中"),
            Msg::StatusTunnel => ("tunnel", "回線"),
            Msg::StatusFirewall => ("firewall", "ファイアウォール"),
            Msg::StatusCertificates => ("certificates", "電子証明書"),
            Msg::StatusDetails => ("details", "詳細"),
            Msg::FirewallApplied => ("applied", "適用済み"),
            Msg::FirewallNotApplied => ("NOT APPLIED", "未適用"),
            Msg::StatusWan => ("WAN", "WAN (プロバイダー側)"),
            Msg::WanByOs => ("addressed by the OS", "OS が設定"),
            Msg::WanNoAddress => ("no address yet: the line has not answered", "アドレス未取得 (回線から応答がありません)"),
            Msg::WanLeaseLost => ("lease lost: the line took the address back or stopped answering", "アドレスを失いました (回線がアドレスを回収したか、応答しなくなりました)"),
            Msg::WanAddressFrom => ("{} from {}", "{} ({} で取得)"),
            Msg::WanLeaseLeft => ("{} left", "残り {}"),
            Msg::WanGateway => ("gateway {}", "ゲートウェイ {}"),
            Msg::WanDhcpClientDown => ("the DHCP client (dhcpcd) is NOT RUNNING", "DHCP クライアント (dhcpcd) が停止しています"),
            Msg::PageWanDown => ("The router has no address on its line to the provider (WAN).", "プロバイダーとの回線 (WAN) でアドレスを取得できていません。"),
            Msg::PageTitle => ("Router status (オンライン資格確認)", "ルーターの状態 (オンライン資格確認)"),
            Msg::PageOk => ("OK", "正常"),
            Msg::PageWarn => ("Attention", "注意"),
            Msg::PageFail => ("Problem", "異常"),
            Msg::PageAllGood => ("Online eligibility confirmation can reach the closed network.", "オンライン資格確認の通信は正常です。"),
            Msg::PageNotRunning => ("The router's control program does not answer: nothing reaches the closed network.", "ルーターの制御プログラムが応答していません。オンライン請求ネットワークにつながりません。"),
            Msg::PageLineDown => ("The line to the closed network (オンライン請求ネットワーク) is down.", "オンライン請求ネットワークへの回線がつながっていません。"),
            Msg::PageFirewallDown => ("The firewall is not in place: the router passes nothing.", "ファイアウォールが適用されていないため、ルーターは通信を止めています。"),
            Msg::PageRoutesDown => ("A route to the closed network is missing.", "オンライン請求ネットワークへの経路が設定されていません。"),
            Msg::PageCertificateBad => ("A client certificate (電子証明書) cannot be used.", "電子証明書が使えません。"),
            Msg::PageProxyDown => ("The relay for the eligibility and claims systems is not working.", "資格確認・請求システムへの中継が動いていません。"),
            Msg::PageOtherProblem => ("The router reports a problem.", "ルーターが問題を報告しています。"),
            Msg::PageCertificateSoon => ("The client certificate (電子証明書) expires soon: {} days left.", "電子証明書の有効期限が近づいています (残り {} 日)。"),
            Msg::PageLastDiagFailed => ("The last connection check found a problem: {}.", "前回の疎通確認で異常がありました: {}。"),
            Msg::PageTellInstaller => ("What to tell the installer", "設置業者に伝えること"),
            Msg::PageTellNothing => ("Nothing: there is no need to call.", "連絡の必要はありません。"),
            Msg::PageTellThis => ("\"oqs-edge {} at {} says: {} (code {})\"", "「oqs-edge {} ({}) の状態: {} (コード {})」"),
            Msg::PageCertificates => ("Client certificates (電子証明書)", "電子証明書"),
            Msg::PageLastDiag => ("Last connection check (疎通確認)", "前回の疎通確認"),
            Msg::PageDiagNever => ("not run yet", "まだ実行していません"),
            Msg::PageDiagPassed => ("{} ago: every step passed", "{} 前: すべて正常"),
            Msg::PageDiagFailedShort => ("{} ago: failed at {}", "{} 前: {} で異常"),
            Msg::PageDiagRunning => ("running…", "実行中…"),
            Msg::PageRunDiag => ("Run the connection check", "疎通確認を実行"),
            Msg::PageDiagWait => ("(at most once a minute)", "(1 分に 1 回まで)"),
            Msg::PageVersion => ("Router software", "ルーターのソフトウェア"),
            Msg::PageUpdated => ("Refreshes every {} seconds; updated {}", "{} 秒ごとに自動更新 (最終更新 {})"),
        }
    }
}

/// When a certificate's journal warning is due (see `operator::certificates`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateWarning {
    Expired,
    /// The 90, 60, 30 or 15-day warning.
    Threshold(i64),
    /// Once a day from 7 days left.
    Daily,
}

/// The journal's sentence for a certificate warning in `lang`: what, when, and what to do. The
/// English is the sentence `status` uses; the Japanese names the same file and date.
pub fn certificate_warning(
    cert: &crate::status::CertificateInfo,
    warning: CertificateWarning,
    lang: Lang,
) -> String {
    let when = cert.not_after.as_deref().unwrap_or("?");
    let days = cert.days_left.unwrap_or_default();
    if lang == Lang::En {
        let what = cert.describe();
        let advice = cert.advice.as_deref().unwrap_or("replace it");
        return match warning {
            CertificateWarning::Expired => format!("{what} expired on {when}: {advice}"),
            CertificateWarning::Threshold(t) => {
                format!("{what} expires in {days} days, on {when} ({t}-day warning): {advice}")
            }
            CertificateWarning::Daily => {
                format!("{what} expires in {days} days, on {when} (daily warning): {advice}")
            }
        };
    }
    let file = cert
        .file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_default();
    let kind = match cert.kind.as_str() {
        "client" | "" => "電子証明書",
        "ipsec" => "IPsec の証明書",
        "ipsec-ca" => "IPsec の CA 証明書",
        "server-ca" => "接続先の CA 証明書",
        "local-ca" => "ローカル CA の証明書",
        "lan-server" => "LAN 用のサーバー証明書",
        _ => "証明書",
    };
    let what = format!("{kind} `{}` ({file})", cert.name);
    let advice = match cert.kind.as_str() {
        "client" | "" => concat!(
            "医療機関等向け総合ポータルサイトで新しい電子証明書を申請し、",
            "`oqs-edge cert import --replace` で取り込んでください。"
        )
        .to_owned(),
        "ipsec" => format!("回線事業者に新しい証明書を依頼し、{file} を置き換えてください。"),
        "ipsec-ca" | "server-ca" => {
            format!("事業者から新しい CA 証明書を受け取り、{file} を置き換えてください。")
        }
        _ => format!(
            "oqs-edge が自動で発行し直します。発行されない場合は {file} を別の場所へ移して再起動してください。"
        ),
    };
    match warning {
        CertificateWarning::Expired => {
            format!("{what}の有効期限が {when} に切れています。{advice}")
        }
        CertificateWarning::Threshold(t) => {
            format!(
                "{what}の有効期限まで残り {days} 日です ({when} まで。{t} 日前の警告)。{advice}"
            )
        }
        CertificateWarning::Daily => {
            format!("{what}の有効期限まで残り {days} 日です ({when} まで。毎日の警告)。{advice}")
        }
    }
}

/// What `oqs-edge status` prints in `lang`. In Japanese: the verdict, the line, the firewall and
/// each 電子証明書's days left in Japanese first, then the full English detail (the problems
/// are the daemon's own sentences, with names and addresses to quote to the installer).
pub fn status_text(status: &crate::status::Status, lang: Lang) -> String {
    use std::fmt::Write as _;
    if lang == Lang::En {
        return status.to_text();
    }
    let mut out = String::new();
    let verdict = match status.health {
        crate::status::Health::Healthy => Msg::StatusHealthy,
        crate::status::Health::Degraded => Msg::StatusDegraded,
    };
    let _ = writeln!(out, "oqs-edge: {}", verdict.text(lang));
    for problem in &status.problems {
        let _ = writeln!(out, "  ✗ {problem}");
    }
    let t = &status.tunnel;
    let state = match t.state.as_str() {
        "up" => "接続中 (正常)",
        "connecting" => "接続を試みています",
        _ => "切断",
    };
    let _ = writeln!(out, "{}: {} {state}", Msg::StatusTunnel.text(lang), t.kind);
    let firewall = if status.firewall.applied {
        Msg::FirewallApplied
    } else {
        Msg::FirewallNotApplied
    };
    let _ = writeln!(
        out,
        "{}: {}",
        Msg::StatusFirewall.text(lang),
        firewall.text(lang)
    );
    if let Some(wan) = &status.wan {
        let _ = writeln!(
            out,
            "{}: {}",
            Msg::StatusWan.text(lang),
            wan_text(wan, lang)
        );
    }
    for c in &status.certificates {
        let days = c
            .days_left
            .map(|d| Msg::CertDaysLeft.fill(lang, &[&d.to_string()]))
            .unwrap_or_else(|| c.problem.clone().unwrap_or_default());
        let _ = writeln!(
            out,
            "{}: {} (医療機関等コード {}) {days}",
            Msg::StatusCertificates.text(lang),
            c.name,
            c.subject_cn.as_deref().unwrap_or("?")
        );
    }
    let _ = writeln!(out, "\n{} (English):\n", Msg::StatusDetails.text(lang));
    out.push_str(&status.to_text());
    out
}

/// The WAN in `lang`: its addresses and where each came from, or why it has none.
fn wan_text(wan: &crate::status::WanInfo, lang: Lang) -> String {
    let source = |s: &str| {
        match (s, lang) {
            ("static", Lang::Ja) => "固定設定",
            ("dhcp", Lang::Ja) => "DHCP",
            ("dhcpv6", Lang::Ja) => "DHCPv6",
            ("ra", Lang::Ja) => "ルーター広告 (RA)",
            (other, _) => other,
        }
        .to_owned()
    };
    let mut parts: Vec<String> = wan
        .addresses
        .iter()
        .map(|a| {
            let from = Msg::WanAddressFrom.fill(lang, &[&a.address, &source(&a.source)]);
            match a.lease_left_secs {
                Some(secs) => {
                    let left = humantime::format_duration(std::time::Duration::from_secs(secs));
                    format!(
                        "{from} {}",
                        Msg::WanLeaseLeft.fill(lang, &[&left.to_string()])
                    )
                }
                None => from,
            }
        })
        .collect();
    if wan.addresses.is_empty() {
        parts.push(if wan.ipv4 == "os" && wan.ipv6 == "os" {
            Msg::WanByOs.text(lang).to_owned()
        } else if wan.lease_lost {
            Msg::WanLeaseLost.text(lang).to_owned()
        } else {
            Msg::WanNoAddress.text(lang).to_owned()
        });
    } else if wan.lease_lost {
        parts.push(Msg::WanLeaseLost.text(lang).to_owned());
    }
    if !wan.gateways.is_empty() {
        parts.push(Msg::WanGateway.fill(lang, &[&wan.gateways.join(" ")]));
    }
    if wan.dhcp_client_running == Some(false) {
        parts.push(Msg::WanDhcpClientDown.text(lang).to_owned());
    }
    format!("{} {}", wan.interface, parts.join("、"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naming every variant here makes the compiler stop a new message that `ALL` (and so the
    /// test below) would miss.
    fn listed(m: Msg) -> bool {
        Msg::ALL.contains(&m)
    }

    fn is_japanese(c: char) -> bool {
        matches!(c, '\u{3040}'..='\u{30ff}' | '\u{4e00}'..='\u{9fff}')
    }

    #[test]
    fn every_message_has_japanese_text() {
        let mut missing = Vec::new();
        for &m in Msg::ALL {
            let (en, ja) = m.texts();
            if ja.trim().is_empty() || ja == en || !ja.chars().any(is_japanese) {
                missing.push(format!("{m:?}: {ja:?}"));
            }
            if en.trim().is_empty() {
                missing.push(format!("{m:?} has no English text"));
            }
            if en.matches("{}").count() != ja.matches("{}").count() {
                missing.push(format!("{m:?}: the two texts take different arguments"));
            }
        }
        assert!(
            missing.is_empty(),
            "messages without Japanese text:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn all_lists_every_message() {
        // Exhaustive: a new variant does not compile until it is listed here, and then `ALL`
        // must hold it for this test to pass.
        for m in Msg::ALL {
            let known = match m {
                Msg::TitleDaemon
                | Msg::TitleWanLink
                | Msg::TitleWanAddress
                | Msg::TitleWanGateway
                | Msg::TitleLine
                | Msg::TitleRoutes
                | Msg::TitleFirewall
                | Msg::TitleResolve
                | Msg::TitleTcp
                | Msg::TitleTls
                | Msg::TitleHttp
                | Msg::TitleCertificate
                | Msg::FailDaemon
                | Msg::FailWanLink
                | Msg::FailWanAddress
                | Msg::FailWanGateway
                | Msg::FailLineWireguard
                | Msg::FailLineIpsec
                | Msg::FailLineIpVpn
                | Msg::FailRoutes
                | Msg::FailFirewall
                | Msg::FailResolve
                | Msg::FailTcp
                | Msg::FailTls
                | Msg::FailHttp
                | Msg::FailCertificate
                | Msg::FixDaemon
                | Msg::FixWanLink
                | Msg::FixWanAddress
                | Msg::FixWanGateway
                | Msg::FixLineWireguard
                | Msg::FixLineIpsec
                | Msg::FixLineIpVpn
                | Msg::FixRoutes
                | Msg::FixFirewall
                | Msg::FixResolve
                | Msg::FixTcp
                | Msg::FixTls
                | Msg::FixHttp
                | Msg::FixCertificate
                | Msg::SkipNeedsDaemon
                | Msg::SkipEarlierFailed
                | Msg::SkipAddressPinned
                | Msg::SkipNoHealthPath
                | Msg::SkipNoDefaultRoute
                | Msg::SkipKernelIpsec
                | Msg::DiagHeading
                | Msg::DiagAllPassed
                | Msg::DiagFailed
                | Msg::DiagNotRunning
                | Msg::WordMeaning
                | Msg::WordWhatToDo
                | Msg::WordSkipped
                | Msg::CertDaysLeft
                | Msg::CertRenewSoon
                | Msg::StatusHealthy
                | Msg::StatusDegraded
                | Msg::StatusNotRunning
                | Msg::StatusTunnel
                | Msg::StatusFirewall
                | Msg::StatusCertificates
                | Msg::StatusDetails
                | Msg::FirewallApplied
                | Msg::FirewallNotApplied
                | Msg::StatusWan
                | Msg::WanByOs
                | Msg::WanNoAddress
                | Msg::WanLeaseLost
                | Msg::WanAddressFrom
                | Msg::WanLeaseLeft
                | Msg::WanGateway
                | Msg::WanDhcpClientDown
                | Msg::PageWanDown
                | Msg::PageTitle
                | Msg::PageOk
                | Msg::PageWarn
                | Msg::PageFail
                | Msg::PageAllGood
                | Msg::PageNotRunning
                | Msg::PageLineDown
                | Msg::PageFirewallDown
                | Msg::PageRoutesDown
                | Msg::PageCertificateBad
                | Msg::PageProxyDown
                | Msg::PageOtherProblem
                | Msg::PageCertificateSoon
                | Msg::PageLastDiagFailed
                | Msg::PageTellInstaller
                | Msg::PageTellNothing
                | Msg::PageTellThis
                | Msg::PageCertificates
                | Msg::PageLastDiag
                | Msg::PageDiagNever
                | Msg::PageDiagPassed
                | Msg::PageDiagFailedShort
                | Msg::PageDiagRunning
                | Msg::PageRunDiag
                | Msg::PageDiagWait
                | Msg::PageVersion
                | Msg::PageUpdated => listed(*m),
            };
            assert!(known);
        }
        assert_eq!(
            Msg::ALL.len(),
            100,
            "a message was added: list it in Msg::ALL"
        );
    }

    #[test]
    fn certificate_warnings_in_japanese_name_the_file_the_date_and_what_to_do() {
        let cert = crate::status::CertificateInfo {
            name: "oqs".into(),
            kind: "client".into(),
            file: Some("/var/lib/oqs-edge/certs/oqs.p12".into()),
            days_left: Some(20),
            not_after: Some("2027-01-01 00:00 UTC".into()),
            advice: Some("apply again".into()),
            ..Default::default()
        };
        let ja = certificate_warning(&cert, CertificateWarning::Threshold(30), Lang::Ja);
        assert_eq!(
            ja,
            "電子証明書 `oqs` (/var/lib/oqs-edge/certs/oqs.p12)の有効期限まで残り 20 日です \
             (2027-01-01 00:00 UTC まで。30 日前の警告)。医療機関等向け総合ポータルサイトで新しい\
             電子証明書を申請し、`oqs-edge cert import --replace` で取り込んでください。"
        );
        let en = certificate_warning(&cert, CertificateWarning::Daily, Lang::En);
        assert_eq!(
            en,
            "client certificate `oqs` (/var/lib/oqs-edge/certs/oqs.p12) expires in 20 days, \
             on 2027-01-01 00:00 UTC (daily warning): apply again"
        );
        for kind in ["ipsec", "ipsec-ca", "server-ca", "local-ca", "lan-server"] {
            let cert = crate::status::CertificateInfo {
                kind: kind.into(),
                ..cert.clone()
            };
            let ja = certificate_warning(&cert, CertificateWarning::Expired, Lang::Ja);
            assert!(
                ja.contains("に切れています。") && ja.contains("/var/lib/oqs-edge/certs/oqs.p12"),
                "{ja}"
            );
        }
    }

    #[test]
    fn the_wan_in_japanese_says_where_each_address_came_from_or_why_there_is_none() {
        let mut status = crate::status::Status::default();
        status.wan = Some(crate::status::WanInfo {
            interface: "wan0".into(),
            ipv4: "dhcp".into(),
            ipv6: "ra".into(),
            addresses: vec![
                crate::status::WanAddressInfo {
                    address: "198.51.100.50/24".into(),
                    source: "dhcp".into(),
                    lease_left_secs: Some(540),
                },
                crate::status::WanAddressInfo {
                    address: "2001:db8::2/64".into(),
                    source: "ra".into(),
                    lease_left_secs: None,
                },
            ],
            gateways: vec!["198.51.100.1".into()],
            ..Default::default()
        });
        let text = status_text(&status, Lang::Ja);
        assert!(
            text.contains("WAN (プロバイダー側): wan0 198.51.100.50/24 (DHCP で取得) 残り 9m、2001:db8::2/64 (ルーター広告 (RA) で取得)、ゲートウェイ 198.51.100.1"),
            "{text}"
        );
        if let Some(w) = status.wan.as_mut() {
            w.addresses.clear();
        }
        assert!(status_text(&status, Lang::Ja).contains("wan0 アドレス未取得"));
        if let Some(w) = status.wan.as_mut() {
            w.lease_lost = true;
            w.dhcp_client_running = Some(false);
        }
        let text = status_text(&status, Lang::Ja);
        assert!(
            text.contains("wan0 アドレスを失いました")
                && text.contains("DHCP クライアント (dhcpcd) が停止しています"),
            "{text}"
        );
    }

    #[test]
    fn status_in_japanese_leads_with_the_verdict_then_the_english_detail() {
        let mut status = crate::status::Status::default();
        status.health = crate::status::Health::Degraded;
        status.problems = vec!["tunnel (ipsec) is down: AUTH_FAILED".into()];
        status.tunnel.kind = "ipsec".into();
        status.tunnel.state = "down".into();
        status.certificates = vec![crate::status::CertificateInfo {
            name: "oqs".into(),
            days_left: Some(12),
            subject_cn: Some("1312345678".into()),
            ..Default::default()
        }];
        let text = status_text(&status, Lang::Ja);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "oqs-edge: 異常");
        assert_eq!(lines[1], "  ✗ tunnel (ipsec) is down: AUTH_FAILED");
        assert!(text.contains("回線: ipsec 切断"), "{text}");
        assert!(text.contains("ファイアウォール: 未適用"), "{text}");
        assert!(
            text.contains("電子証明書: oqs (医療機関等コード 1312345678) 残り 12 日"),
            "{text}"
        );
        assert!(
            text.contains("詳細 (English)") && text.contains("oqs-edge: DEGRADED"),
            "{text}"
        );
        assert_eq!(status_text(&status, Lang::En), status.to_text());
    }

    #[test]
    fn the_locale_and_the_browser_choose_the_language() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(Lang::from_vars(env(&[("LANG", "ja_JP.UTF-8")])), Lang::Ja);
        assert_eq!(
            Lang::from_vars(env(&[("LANG", "ja_JP.UTF-8"), ("LC_ALL", "C")])),
            Lang::En
        );
        assert_eq!(Lang::from_vars(env(&[("LC_MESSAGES", "ja")])), Lang::Ja);
        assert_eq!(Lang::from_vars(env(&[])), Lang::En);
        assert_eq!(Lang::from_accept_language(None), Lang::Ja);
        assert_eq!(Lang::from_accept_language(Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("ja,en;q=0.5")), Lang::Ja);
        assert_eq!(Lang::from_accept_language(Some("fr")), Lang::Ja);
        assert_eq!(Msg::CertDaysLeft.fill(Lang::Ja, &["12"]), "残り 12 日");
    }
}

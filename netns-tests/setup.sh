#!/usr/bin/env bash
# Installs everything oqs-edge's build and tests need on a fresh Debian 12 (bookworm) machine.
# Idempotent: safe to run again; mends a half-configured dpkg first (charon-systemd pulls a
# systemd upgrade, and an interrupted install leaves dpkg with "Unmet dependencies").
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs Debian packages)" >&2
    exit 1
fi

packages=(
    # build
    build-essential pkg-config ca-certificates git jq
    # the firewall and the lab
    nftables iproute2 iputils-ping tcpdump curl openssl procps psmisc
    # the status page test reads it in a real browser (headless) with Japanese fonts
    chromium fonts-noto-cjk
    # real peers the netns tests talk to
    nginx-light wireguard-go wireguard-tools
    # the LAN side: the DHCP server oqs-edge supervises, a PC's DHCP client (busybox udhcpc),
    # dig for name lookups
    dnsmasq-base busybox dnsutils dnsperf
    # the WAN side: the DHCP client oqs-edge supervises on the WAN (dnsmasq above is the ISP)
    dhcpcd-base
    # a DHCPv6 server that delegates prefixes, as the ISP for the prefix delegation test (run by
    # the test itself in its namespace; the package's own service does not matter)
    kea-dhcp6-server
    strongswan-swanctl strongswan-charon charon-systemd libcharon-extra-plugins
    libstrongswan-standard-plugins  # openssl (AES-GCM, ECP) for the lab charons
    # benchmark tools (same as a user has)
    iperf3 wrk hyperfine
    # promtool and a real Prometheus server for the metrics tests (netns-tests/tests/metrics.rs)
    prometheus
    # the Debian packages (packaging/build-deb.sh, packaging/test-deb.sh): the arm64 cross
    # build, a Debian 12 root to install into, qemu for the arm64 binary, systemd-analyze
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross debootstrap qemu-user-static systemd
    # a Debian 12 container booted with systemd as PID 1 (packaging/test-systemd.sh)
    systemd-container
    # the proxy benchmark's third contender (netns-tests/bench/proxy.sh)
    stunnel4
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

export DEBIAN_FRONTEND=noninteractive
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    apt-get -f install -y -q
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian starts these on install; the tests run their own instances inside namespaces.
for unit in nginx strongswan charon-systemd stunnel4 stunnel.target prometheus; do
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
done

if ! command -v cargo >/dev/null; then
    echo "setup.sh: cargo not found: install a Rust toolchain (rustup, Rust 1.85 or newer) first" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    rustup target add aarch64-unknown-linux-gnu
fi
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install --locked cargo-deb@3.8.0
fi
echo "setup.sh: ready ($(nft --version), $(cargo --version), $(cargo deb --version))"

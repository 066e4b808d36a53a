#!/usr/bin/env bash
# The test command (README, .ci/run): installs what it needs, then formatting, lints, unit,
# golden and network-namespace tests, and the Debian package tests (packaging/test-deb.sh). Run as root: the netns tests skip (and say so) otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
    netns-tests/setup.sh
else
    echo "test.sh: not root: skipping package installation; the netns tests will skip" >&2
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The chaos soak, 2 minutes with a fresh seed (it prints the seed; skips when not root):
# the WireGuard lab, then the IPsec lab (its WAN by DHCP).
netns-tests/soak.sh 2
netns-tests/soak.sh 2 "" ipsec
packaging/test-deb.sh
# The amd64 package test-deb.sh built, under a real systemd (systemd-nspawn -b).
OQS_EDGE_SKIP_BUILD=1 packaging/test-systemd.sh

#!/bin/sh
# Benchmark: the daemon's DNS relay (Hickory DNS) against dnsmasq as the same forwarder, in one
# lab and one run, as ratios: dnsperf from the eligibility PC against 192.168.50.1:53, closed-
# zone names (cached answers) and internet names (REFUSED); the daemon's RSS.
#
#   sudo netns-tests/bench/dns.sh [ROUNDS] [SECONDS]
#
# oqs-edge is the release build (OQS_EDGE_BIN, if set, instead). The result is the line
# starting RESULT:. Needs root, dnsperf and dnsmasq (netns-tests/setup.sh installs them).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${OQS_EDGE_BIN:-}" ]; then
    cargo build -q --release -p oqs-edge --manifest-path "$ROOT/Cargo.toml"
    OQS_EDGE_BIN="$ROOT/target/release/oqs-edge"
fi
BENCH_ROUNDS=${1:-3} BENCH_SECONDS=${2:-10} OQS_EDGE_BIN="$OQS_EDGE_BIN" \
    cargo test -q --release --manifest-path "$ROOT/Cargo.toml" -p netns-tests \
    --test dns_bench -- --ignored --nocapture 2>&1 | grep -E '^(round|RESULT|daemon log)|panicked|FAILED|test result'

#!/bin/sh
# Benchmark: single-stream iperf3, eligibility PC → closed server, through oqs-edge (boringtun
# in-process) against wireguard-go in the router's place, in one lab and one run, as a ratio;
# plain routing (no tunnel, no firewall) as the ceiling; the daemon's peak RSS under that load.
#
#   sudo netns-tests/bench/wireguard.sh [ROUNDS] [SECONDS]
#
# oqs-edge is the release build. The result is the line starting RESULT:. Needs root, iperf3,
# wireguard-go, wireguard-tools (netns-tests/setup.sh installs them).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cargo build -q --release -p oqs-edge --manifest-path "$ROOT/Cargo.toml"
BENCH_ROUNDS=${1:-3} BENCH_SECONDS=${2:-10} OQS_EDGE_BIN="$ROOT/target/release/oqs-edge" \
    cargo test -q --release --manifest-path "$ROOT/Cargo.toml" -p netns-tests \
    --test wireguard_bench -- --ignored --nocapture 2>&1 | grep -E '^(round|RESULT)|panicked|FAILED|test result'

#!/usr/bin/env bash
# The main job: bring up the network-namespace lab (pc, clinic ─ router ─ inet ─ vpngw ─ closed)
# with the real oqs-edge as its router on the lab config built into the lab binary
# (config/lab.yaml), show that the eligibility PC reaches the closed network and not the
# internet, show `oqs-edge status`, and tear everything down. `--keep` leaves the lab up until
# Enter is pressed. Needs root (network namespaces); touches only namespaces it creates.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "lab.sh needs root: it creates network namespaces (run it with sudo)" >&2
    exit 1
fi
netns-tests/setup.sh
cargo build --release --locked -p oqs-edge -p netns-tests --bins
export OQS_EDGE_BIN="$PWD/target/release/oqs-edge"
export LAB_PEER_BIN="$PWD/target/release/lab-peer"
exec target/release/oqs-edge-lab "$@"

#!/usr/bin/env bash
# The chaos soak (issue 22): netns-tests/soak.sh MINUTES [SEED]
# The WireGuard lab under traffic while a seeded schedule applies faults; see tests/soak.rs.
# Prints the seed (replay with the same MINUTES and SEED) and a table of faults and recoveries.
# OQS_SOAK_REPORT=FILE also writes the table there. Needs root (it skips otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:?usage: netns-tests/soak.sh MINUTES [SEED]}"
seed="${2:-$(( $(od -An -N4 -tu4 /dev/urandom) % 1000000 ))}"
echo "soak.sh: $minutes min, seed $seed" >&2
OQS_SOAK_MINUTES="$minutes" OQS_SOAK_SEED="$seed" \
    cargo test -p netns-tests --locked --test soak -- --nocapture --test-threads=1

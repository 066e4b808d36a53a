#!/bin/sh
# Benchmark: how long `oqs-edge run` takes to apply its ruleset, against `nft -f` of the same
# ruleset by hand, in the same throwaway namespace, as a ratio (target: within 1.5x).
#
#   sudo netns-tests/bench/apply.sh [RUNS]
#
# `run` logs "firewall applied in N ms": from the start of the run loop through reading and
# checking the config, planning, nft replacing the table, and saving the ruleset. Each `run`
# starts over an existing table, as `nft -f` replaces it. nft is timed with hyperfine inside the
# namespace (no `ip netns exec` in the timing). Needs root, nft, hyperfine, jq.
set -eu
RUNS=${1:-30}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cargo build -q --release -p oqs-edge --manifest-path "$ROOT/Cargo.toml"
BIN="$ROOT/target/release/oqs-edge"
NS="oqsedge-$$-bench"
DIR=$(mktemp -d)
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
ip netns add "$NS"

sed "s#/run/oqs-edge-lab#$DIR#g" "$ROOT/config/lab.yaml" |
    sed '/^client_certificates:/,$d' > "$DIR/config.yaml"
printf 'control:\n  socket: %s/control.sock\n' "$DIR" >> "$DIR/config.yaml"

: > "$DIR/run-ms"
i=0
while [ "$i" -lt "$RUNS" ]; do
    ip netns exec "$NS" "$BIN" run -c "$DIR/config.yaml" --state-dir "$DIR/state" 2> "$DIR/log" &
    pid=$!
    until grep -q "firewall applied in" "$DIR/log" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { cat "$DIR/log"; exit 1; }
        sleep 0.01
    done
    kill "$pid"; wait "$pid" || true
    sed -n 's/.*firewall applied in \([0-9.]*\) ms.*/\1/p' "$DIR/log" >> "$DIR/run-ms"
    i=$((i + 1))
done

ip netns exec "$NS" hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$DIR/nft.json" \
    "nft -f $DIR/state/ruleset.nft" > /dev/null

run_median=$(sort -n "$DIR/run-ms" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
nft_median=$(jq '.results[0].median * 1000' "$DIR/nft.json")
rules=$(grep -c -E '^\s+(ip|ip6|iif|oif|iifname|oifname|ct|meta|tcp|udp|icmp|counter|rt|fib|th)' "$DIR/state/ruleset.nft")
awk -v r="$run_median" -v n="$nft_median" -v k="$RUNS" -v rules="$rules" 'BEGIN {
    printf "ruleset: %d rules (config/lab.yaml), %d runs each\n", rules, k
    printf "oqs-edge run, config to applied: median %.2f ms\n", r
    printf "nft -f of the same ruleset:      median %.2f ms\n", n
    printf "ratio run / nft -f: %.2f (target <= 1.5)\n", r / n
}'

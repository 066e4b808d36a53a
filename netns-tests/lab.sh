#!/usr/bin/env bash
# The main job. For now (until `oqs-edge run` lands) it checks the netns lab's router config and
# prints the plan oqs-edge would apply: the nft ruleset, routes, tunnel and proxy routes; then it
# loads that ruleset into a throwaway network namespace to show it is what nft accepts.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
    netns-tests/setup.sh
fi
cargo build --release --locked -p oqs-edge
bin=target/release/oqs-edge

echo "== oqs-edge check -c config/lab.yaml --no-files"
"$bin" check -c config/lab.yaml --no-files
echo
echo "== oqs-edge plan -c config/lab.yaml --no-files"
"$bin" plan -c config/lab.yaml --no-files

if [ "$(id -u)" -eq 0 ]; then
    ns="oqsedge-$$-labjob"
    trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
    ip netns add "$ns"
    "$bin" plan -c config/lab.yaml --no-files --json | jq '.firewall' | ip netns exec "$ns" nft -j -f -
    echo
    echo "== loaded into namespace $ns: $(ip netns exec "$ns" nft list table inet oqs_edge | grep -c 'counter name') counted rules in table inet oqs_edge"
fi

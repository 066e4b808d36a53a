#!/usr/bin/env bash
# The chaos soak (issue 22): netns-tests/soak.sh MINUTES [SEED] [wireguard|ipsec]
# The WireGuard lab (the default) or the IPsec lab under traffic while a seeded schedule applies
# faults; see tests/soak.rs. Prints the seed (replay with the same MINUTES, SEED and tunnel) and a
# table of faults and recoveries. OQS_SOAK_WAN=os|dhcp picks the WAN (default: os for WireGuard,
# dhcp for IPsec). OQS_SOAK_REPORT=FILE also writes the table there. Needs root (it skips
# otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: netns-tests/soak.sh MINUTES [SEED] [wireguard|ipsec]"
minutes="${1:?$usage}"
seed="${2:-}"
if [ -z "$seed" ]; then
    seed="$(( $(od -An -N4 -tu4 /dev/urandom) % 1000000 ))"
fi
tunnel="${3:-wireguard}"
case "$tunnel" in
    wireguard|ipsec) ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
echo "soak.sh: $minutes min, seed $seed, $tunnel" >&2
OQS_SOAK_MINUTES="$minutes" OQS_SOAK_SEED="$seed" OQS_SOAK_TUNNEL="$tunnel" \
    cargo test -p netns-tests --locked --test soak -- --nocapture --test-threads=1

#!/usr/bin/env bash
# The package tests (run by netns-tests/test.sh; as root on Debian 12):
#   1. both packages build (packaging/build-deb.sh);
#   2. `systemd-analyze verify` accepts both units, `systemd-analyze security --offline=yes`
#      rates each 2.5 or lower;
#   3. the amd64 package in a fresh Debian 12 root (debootstrap): install, `--version` with the
#      commit, `man -w oqs-edge`, `check` refusing the shipped config with the fill-in message
#      and passing once filled in, `dpkg -r` and `dpkg -P` leaving no oqs-edge files (purge
#      also removes the firewall table). The root's commands run in a network namespace of
#      their own, so nothing touches the host's network;
#   4. the arm64 binary under qemu-user: `--version`, `check --no-files` on every example.
# Set OQS_EDGE_SKIP_BUILD=1 to test packages already built.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
passed=0
failed=0
ok() { echo "  ok: $*"; passed=$((passed + 1)); }
fail() { echo "  FAILED: $*" >&2; failed=$((failed + 1)); }
expect() { # expect DESCRIPTION COMMAND...: the command must succeed
    local what=$1; shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP packaging/test-deb.sh: needs root (debootstrap, chroot, network namespaces)" >&2
    exit 0
fi

echo "== build"
if [ -z "${OQS_EDGE_SKIP_BUILD:-}" ]; then
    packaging/build-deb.sh amd64 arm64
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
deb_amd64=$(ls target/debian/oqs-edge_"$version"*_amd64.deb)
deb_arm64=$(ls target/debian/oqs-edge_"$version"*_arm64.deb)
ok "built $deb_amd64 and $deb_arm64 ($((SECONDS - started)) s)"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || true)

work=$(mktemp -d /var/tmp/oqs-edge-pkgtest.XXXXXX)
netns="oqsedge-$$-pkg"
cleanup() {
    ip netns del "$netns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== the contents"
dpkg-deb -c "$deb_amd64" > "$work/contents"
for path in ./usr/bin/oqs-edge ./lib/systemd/system/oqs-edge.service \
    ./lib/systemd/system/oqs-edge-early.service ./usr/lib/tmpfiles.d/oqs-edge.conf \
    ./usr/lib/sysusers.d/oqs-edge.conf ./etc/oqs-edge/config.yaml \
    ./usr/share/man/man8/oqs-edge.8.gz ./usr/share/bash-completion/completions/oqs-edge \
    ./usr/share/zsh/vendor-completions/_oqs-edge ./usr/share/fish/vendor_completions.d/oqs-edge.fish; do
    expect "the package holds $path" grep -q " $path\$" "$work/contents"
done
dpkg-deb -f "$deb_amd64" Depends Recommends > "$work/control"
expect "Depends: nftables, netbase" bash -c "grep '^Depends:' '$work/control' | grep nftables | grep -q netbase"
expect "Recommends: charon-systemd, libcharon-extra-plugins" \
    grep -q '^Recommends: charon-systemd, libcharon-extra-plugins' "$work/control"
dpkg-deb -I "$deb_amd64" conffiles > "$work/conffiles"
expect "/etc/oqs-edge/config.yaml is a conffile" grep -qx /etc/oqs-edge/config.yaml "$work/conffiles"

echo "== the units"
# verify needs the binary the units name and the man pages they cite: look in the package.
mkdir -p "$work/pkg"
dpkg-deb -x "$deb_amd64" "$work/pkg"
# …and the targets the units name (sysinit.target, …): the host's systemd units.
cp -rn /lib/systemd/system/. "$work/pkg/lib/systemd/system/"
for unit in oqs-edge.service oqs-edge-early.service; do
    if out=$(systemd-analyze verify --root="$work/pkg" --man=no "/lib/systemd/system/$unit" 2>&1) \
        && [ -z "$out" ]; then
        ok "systemd-analyze verify $unit"
    else
        fail "systemd-analyze verify $unit: $out"
    fi
    score=$(systemd-analyze security --offline=yes "$work/pkg/lib/systemd/system/$unit" 2>&1 \
        | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
    if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.5) }'; then
        ok "systemd-analyze security $unit: $score (≤ 2.5)"
    else
        fail "systemd-analyze security $unit: '$score', wanted ≤ 2.5"
    fi
done

echo "== install into a fresh Debian 12 root"
root="$work/root"
include=man-db,nftables,netbase,dnsmasq-base,dhcpcd-base  # the package's dependencies (dpkg -i fetches nothing)
# Kept between runs (target/ is not committed); named by what it includes.
cache=target/debootstrap-bookworm-${include//,/-}.tar
if [ -f "$cache" ]; then
    mkdir "$root" && tar -xf "$cache" -C "$root"
else
    mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
    t=$SECONDS
    debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log" >&2; fail "debootstrap"; exit 1; }
    tar -cf "$cache" -C "$root" .
    ok "debootstrap --variant=minbase bookworm ($((SECONDS - t)) s)"
fi
ip netns add "$netns"
# In the root, in our own network namespace (dpkg's scripts run nft).
in_root() { ip netns exec "$netns" chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
cp "$deb_amd64" "$root/tmp/oqs-edge.deb"

in_root dpkg -i /tmp/oqs-edge.deb > "$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "dpkg -i"; }
expect "dpkg -i: says the daemon is not started and what to fill in (Japanese)" \
    grep -q "この医療機関等の値を記入してください" "$work/install.log"
expect "dpkg -i: says it in English too, with the next command" \
    grep -q "Then:     oqs-edge check" "$work/install.log"
expect "dpkg -i: shows check's errors" grep -q "fill in the site's value for \`site.institution_code\`" "$work/install.log"

got=$(in_root oqs-edge --version)
expect "oqs-edge --version: $got" test "$got" = "oqs-edge $version${commit:+ (commit $commit)}"
got=$(in_root man -w oqs-edge 2>&1 || true)
expect "man -w oqs-edge: $got" test "$got" = /usr/share/man/man8/oqs-edge.8.gz
expect "man -w oqs-edge-check" bash -c "ip netns exec $netns chroot $root man -w oqs-edge-check >/dev/null"
expect "bash completion offers check and not the hidden cli-docs" \
    bash -c "grep -q ' check ' '$root/usr/share/bash-completion/completions/oqs-edge' && ! grep -q cli-docs '$root/usr/share/bash-completion/completions/oqs-edge'"
expect "group oqs-edge exists" grep -q "^oqs-edge:" "$root/etc/group"
expect "/var/lib/oqs-edge is 0700" test "$(stat -c %a "$root/var/lib/oqs-edge")" = 700

set +e
in_root oqs-edge check > "$work/check.out" 2> "$work/check.err"
code=$?
set -e
expect "check on the shipped config exits 2 (got $code)" test "$code" = 2
expect "check names each value to fill in" grep -q "error: fill in the site's value for \`wan.interface\`" "$work/check.err"
sed -i -e 's/<医療機関等コード>/1312345678/' -e 's/<医療機関名>/樹中歯科医院/' \
    -e 's/<資格確認端末側のインタフェース名>/lan0/' -e 's/<院内LAN側のインタフェース名>/lan1/' \
    -e 's/<WAN側のインタフェース名>/wan0/' -e 's|<閉域網のプレフィックス>|10.200.0.0/24|' \
    -e 's/<閉域網ゲートウェイのアドレス>/198.51.100.1/' "$root/etc/oqs-edge/config.yaml"
got=$(in_root oqs-edge check 2>&1) && code=0 || code=$?
expect "check passes once filled in: $got" test "$code" = 0 -a "$got" = "/etc/oqs-edge/config.yaml: OK"
# The daemon applies its firewall in this root (only the package's Depends installed), saves
# it for the early unit, and the early unit's command loads it back.
in_root timeout -s TERM 5 oqs-edge run > "$work/run.log" 2>&1 || true
expect "oqs-edge run applies table inet oqs_edge in a fresh root" \
    bash -c "ip netns exec $netns nft list table inet oqs_edge | grep -q eligibility_to_internet" \
    || cat "$work/run.log" >&2
expect "oqs-edge run saved the ruleset for early boot" test -s "$root/var/lib/oqs-edge/ruleset.nft"
got=$(in_root oqs-edge boot-firewall --state-dir /var/lib/oqs-edge 2>&1 || true)
expect "boot-firewall: $got" test "$got" = "loaded the last applied ruleset from /var/lib/oqs-edge/ruleset.nft"

# What a removal and a purge leave: nothing named oqs-edge outside dpkg's own records, but a
# removal keeps the edited conffile and the state, as Debian does.
leftovers() {
    (cd "$root" && find . -xdev \( -path ./proc -o -path ./var/lib/dpkg -o -path ./tmp \) -prune \
        -o \( -name '*oqs-edge*' -o -name '*oqs_edge*' \) -print | sort)
}
in_root dpkg -r oqs-edge > "$work/remove.log" 2>&1 || { cat "$work/remove.log" >&2; fail "dpkg -r"; }
expect "dpkg -r: says the firewall table stays and how to remove it" \
    grep -q "nft delete table inet oqs_edge" "$work/remove.log"
left=$(leftovers | tr '\n' ' ')
expect "dpkg -r leaves only the conffiles and the state: $left" \
    test "$left" = "./etc/iproute2/rt_protos.d/oqs-edge.conf ./etc/oqs-edge ./var/lib/oqs-edge "
expect "dpkg -r keeps the edited config" grep -q 'institution_code: "1312345678"' "$root/etc/oqs-edge/config.yaml"
in_root dpkg -P oqs-edge > "$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; fail "dpkg -P"; }
left=$(leftovers | tr '\n' ' ')
expect "dpkg -P leaves no oqs-edge files: '$left'" test -z "$left"
expect "dpkg -P removed table inet oqs_edge" bash -c "! ip netns exec $netns nft list table inet oqs_edge >/dev/null 2>&1"
expect "dpkg -P says so" grep -q "table inet oqs_edge removed" "$work/purge.log"

echo "== the arm64 binary under qemu-user"
mkdir -p "$work/arm64"
dpkg-deb -x "$deb_arm64" "$work/arm64"
arm="$work/arm64/usr/bin/oqs-edge"
expect "the arm64 package holds an AArch64 binary" bash -c "readelf -h '$arm' | grep -q 'Machine:.*AArch64'"
qemu() { qemu-aarch64-static -L /usr/aarch64-linux-gnu "$arm" "$@"; }
got=$(qemu --version)
expect "arm64 --version: $got" test "$got" = "oqs-edge $version${commit:+ (commit $commit)}"
for example in config/*.yaml; do
    got=$(qemu check --no-files -c "$example" 2>&1) && code=0 || code=$?
    expect "arm64 check --no-files $example: $got" test "$code" = 0
done

echo "packaging/test-deb.sh: $((SECONDS - started)) s"
echo "packages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# The package under a real systemd (as root; not run by netns-tests/test.sh):
# a fresh Debian 12 root (debootstrap, with systemd and dbus) is booted with
# `systemd-nspawn -b`, so its PID 1 is systemd, in a network namespace of its own (wan0, lan0,
# lan1 are veth links made there before boot; nothing touches the host's network). Inside it:
#   - `apt-get install ./oqs-edge_*.deb` enables both units and, with the shipped config, says
#     what to fill in instead of starting the daemon;
#   - once the values are filled in, `systemctl restart oqs-edge` returns only after READY=1
#     (Type=notify) and the unit is active with the daemon's STATUS= line;
#   - `systemctl reload oqs-edge` succeeds (RELOADING=1 … READY=1);
#   - the journal holds the daemon's lines with OQS_EVENT fields
#     (`journalctl OQS_EVENT=firewall-applied`, `OQS_EVENT=reload`);
#   - `oqs-edge status` answers over the control socket;
#   - with `wan.ipv4: dhcp`, the dhcpcd the daemon runs leases a WAN address from a DHCP server
#     on the line (the unit's sandbox lets it work);
#   - a daemon stopped with SIGSTOP is restarted by the watchdog, the table staying throughout;
#   - `systemctl stop oqs-edge` leaves table inet oqs_edge in the container's namespace.
# Skips, saying why, when not root, when systemd-nspawn is missing or when it cannot boot here.
# Set OQS_EDGE_SKIP_BUILD=1 to test a package already built; OQS_EDGE_TRANSCRIPT=FILE writes
# the commands and their output (what README's "Install on a router" shows).
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
skip() { echo "SKIP packaging/test-systemd.sh: $*" >&2; exit 0; }

[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, network namespaces, systemd-nspawn)"
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn (apt-get install systemd-container)"
command -v debootstrap >/dev/null || skip "no debootstrap (apt-get install debootstrap)"

echo "== build"
if [ -z "${OQS_EDGE_SKIP_BUILD:-}" ]; then
    packaging/build-deb.sh amd64
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
deb=$(ls target/debian/oqs-edge_"$version"*_amd64.deb)
ok "package $deb"

work=$(mktemp -d /var/tmp/oqs-edge-systemd.XXXXXX)
root="$work/root"
netns="oqsedge-$$-nspawn"
isp_netns="oqsedge-$$-isp"
isp_pid=
machine="oqsedge-$$"
nspawn_pid=
transcript="$work/transcript"
: > "$transcript"

stop_container() {
    [ -n "$nspawn_pid" ] || return 0
    # SIGTERM makes systemd-nspawn ask the container's systemd to power off (SIGRTMIN+3).
    # 30 s: a power-off takes 1–2 s here, but far longer on a machine loaded by parallel builds.
    kill -TERM "$nspawn_pid" 2>/dev/null || true
    local t=$SECONDS
    for _ in $(seq 1 300); do
        kill -0 "$nspawn_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "  (the container took $((SECONDS - t)) s to power off)"
    if kill -0 "$nspawn_pid" 2>/dev/null; then
        echo "  (the container did not power off within 30 s; killing systemd-nspawn $nspawn_pid)" >&2
        tail -n 20 "$work/console.log" >&2 || true
        kill -KILL "$nspawn_pid" 2>/dev/null || true
    fi
    wait "$nspawn_pid" 2>/dev/null || true
    nspawn_pid=
}
cleanup() {
    stop_container
    [ -z "$isp_pid" ] || kill "$isp_pid" 2>/dev/null || true
    ip netns del "$isp_netns" 2>/dev/null || true
    ip netns del "$netns" 2>/dev/null || true
    rm -rf "/run/systemd/nspawn/propagate/$machine" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== a Debian 12 root with systemd"
include=systemd,systemd-sysv,dbus,nftables,netbase,iproute2,dnsmasq-base,dhcpcd-base
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
    ok "debootstrap --variant=minbase --include=$include bookworm ($((SECONDS - t)) s)"
fi
cp "$deb" "$root/root/"
echo router > "$root/etc/hostname"
debname=$(basename "$deb")

# The container's network: its own namespace, with the links the config names. veth pairs
# (this kernel has no dummy links): wan0, lan0, lan1, each with a peer in the same namespace.
ip netns add "$netns"
for link in wan0 lan0 lan1; do
    ip -n "$netns" link add "$link" type veth peer name "${link}p"
    ip -n "$netns" link set "$link" up
    ip -n "$netns" link set "${link}p" up
done
ip -n "$netns" link set lo up
# The closed network's gateway (198.51.100.1) is on the WAN's subnet.
ip -n "$netns" addr add 198.51.100.2/24 dev wan0

# boot CONSOLE_LOG: boots the root; sets nspawn_pid, init (the container's PID 1 seen from
# here) and state (is-system-running once it is running or degraded, or what it was at 60 s).
boot() {
    # --register=no/--keep-unit: no machined or system bus on a host whose PID 1 is not systemd.
    # --network-namespace-path= does not give the container CAP_NET_ADMIN (--private-network
    # would): without it every service in there gets EPERM from nft, so it is asked for, with
    # CAP_NET_RAW (the unit's bounding set); the container's root holds them for its own
    # namespace only.
    systemd-nspawn --quiet --boot --directory="$root" --machine="$machine" --hostname=router \
        --register=no --keep-unit --network-namespace-path="/run/netns/$netns" \
        --capability=CAP_NET_ADMIN,CAP_NET_RAW \
        --console=read-only > "$1" 2>&1 &
    nspawn_pid=$!
    local t=$SECONDS child
    init=
    state=
    while [ $((SECONDS - t)) -lt 60 ]; do
        kill -0 "$nspawn_pid" 2>/dev/null || break
        if [ -z "$init" ]; then
            for child in $(pgrep -P "$nspawn_pid" || true); do
                [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ] && init=$child
            done
        fi
        if [ -n "$init" ]; then
            state=$(nsenter -t "$init" -m -u -i -n -p -r -w -- /usr/bin/systemctl is-system-running 2>/dev/null || true)
            case "$state" in running | degraded) break ;; esac
        fi
        sleep 0.5
    done
    boot_seconds=$((SECONDS - t))
}

echo "== boot it with systemd-nspawn -b"
boot "$work/console.log"
case "$state" in
running | degraded) ok "the container booted: PID 1 is systemd, system $state ($boot_seconds s)" ;;
*)
    echo "systemd-nspawn's console:" >&2
    tail -n 30 "$work/console.log" >&2
    skip "systemd-nspawn could not boot the root here (system state '${state:-none}')"
    ;;
esac

# A command in the container: its namespaces (mount, UTS, IPC, network, PID) and root.
in_ct() {
    nsenter -t "$init" -m -u -i -n -p -r -w -- \
        /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb SYSTEMD_COLORS=0 "$@"
}
# The same, with the command and its output added to the transcript; returns its exit code.
show() {
    local code=0
    echo "# $*" >> "$transcript"
    in_ct "$@" > "$work/out" 2>&1 || code=$?
    # dpkg's progress ("(Reading database ... 5%…"): only its last state
    sed -E -e 's/\r//g' -e 's/\(Reading database \.\.\. [0-9]+%//g' \
        -e 's/(\(Reading database \.\.\. )+/\1/' "$work/out" >> "$transcript"
    [ "$code" = 0 ] || echo "(exit $code)" >> "$transcript"
    return "$code"
}
expect "PID 1 in the container is systemd" test "$(in_ct cat /proc/1/comm)" = systemd

echo "== install"
show apt-get install -y --no-install-recommends "/root/$debname" || fail "apt-get install"
expect "the install says the daemon is not started and what to fill in" grep -q "not started yet" "$work/out"
for unit in oqs-edge.service oqs-edge-early.service; do
    got=$(in_ct systemctl is-enabled "$unit" 2>&1 || true)
    expect "$unit is enabled ($got)" test "$got" = enabled
done
got=$(in_ct systemctl is-active oqs-edge 2>&1 || true)
expect "oqs-edge is not started with the shipped config ($got)" test "$got" = inactive

echo "== fill in the config, start"
sed -i -e 's/<医療機関等コード>/1312345678/' -e 's/<医療機関名>/樹中歯科医院/' \
    -e 's/<資格確認端末側のインタフェース名>/lan0/' -e 's/<院内LAN側のインタフェース名>/lan1/' \
    -e 's/<WAN側のインタフェース名>/wan0/' -e 's|<閉域網のプレフィックス>|10.200.0.0/24|' \
    -e 's/<閉域網ゲートウェイのアドレス>/198.51.100.1/' "$root/etc/oqs-edge/config.yaml"
echo "# (the values filled in: lan0, lan1, wan0, 10.200.0.0/24 via 198.51.100.1)" >> "$transcript"
show oqs-edge check || fail "oqs-edge check"
expect "check passes" grep -qx "/etc/oqs-edge/config.yaml: OK" "$work/out"
# Type=notify: systemctl returns once the daemon has sent READY=1 (after the firewall).
t=$SECONDS
if show systemctl restart oqs-edge; then
    ok "systemctl restart oqs-edge returned (READY=1) after $((SECONDS - t)) s"
else
    fail "systemctl restart oqs-edge"
    in_ct journalctl -u oqs-edge --no-pager >&2 || true
fi
got=$(in_ct systemctl show -p ActiveState -p SubState --value oqs-edge | tr '\n' ' ')
expect "oqs-edge is active running ($got)" test "$got" = "active running "
status_text=$(in_ct systemctl show -p StatusText --value oqs-edge)
expect "systemd has the daemon's STATUS= ($status_text)" test -n "$status_text"
show systemctl status --no-pager oqs-edge || true
expect "systemctl status shows the STATUS line" grep -qF "Status: \"$status_text\"" "$work/out"
expect "table inet oqs_edge is in the container's namespace" \
    bash -c "ip netns exec $netns nft list table inet oqs_edge | grep -q eligibility_to_internet"
if command -v nft >/dev/null; then
    expect "…and not in the host's" bash -c "! nft list table inet oqs_edge >/dev/null 2>&1"
fi

echo "== reload"
if show systemctl reload oqs-edge; then ok "systemctl reload oqs-edge"; else fail "systemctl reload oqs-edge"; fi
got=$(in_ct systemctl is-active oqs-edge 2>&1 || true)
expect "still active after the reload ($got)" test "$got" = active

echo "== the journal"
show journalctl -u oqs-edge --no-pager || true
expect "journalctl -u oqs-edge shows the daemon's lines" grep -q "oqs-edge\[[0-9]*\]" "$work/out"
show journalctl --no-pager OQS_EVENT=firewall-applied || true
expect "journalctl OQS_EVENT=firewall-applied finds it" grep -q "oqs-edge\[[0-9]*\]" "$work/out"
in_ct journalctl -u oqs-edge -o export --no-pager > "$work/export" 2>&1 || true
for event in firewall-applied reload; do
    expect "the journal has OQS_EVENT=$event" grep -qx "OQS_EVENT=$event" "$work/export"
done
expect "…with the priority its severity gives (some line notice or info)" grep -qE '^PRIORITY=(5|6)$' "$work/export"
show journalctl --no-pager OQS_EVENT=firewall-applied -o verbose -n 1 || true
expect "…its fields, as the journal stores them" grep -qx "    OQS_EVENT=firewall-applied" "$work/out"

echo "== oqs-edge status"
show oqs-edge status || fail "oqs-edge status"
expect "oqs-edge status answers" test -s "$work/out"

echo "== the WAN by DHCP: dhcpcd under the unit's sandbox"
# The line as an ISP would give it: wan0's peer in a namespace of its own with dnsmasq serving
# DHCPv4 (the host's dnsmasq, run here by PID). `wan.ipv4: dhcp` then has the daemon run dhcpcd
# inside the unit's restrictions (capabilities, system calls, read-only paths).
ip netns add "$isp_netns"
ip -n "$netns" link set wan0p netns "$isp_netns"
ip -n "$isp_netns" link set lo up
ip -n "$isp_netns" link set wan0p up
ip -n "$isp_netns" addr add 198.51.100.1/24 dev wan0p
ip netns exec "$isp_netns" dnsmasq --keep-in-foreground --port=0 --interface=wan0p \
    --bind-interfaces --dhcp-authoritative --dhcp-range=198.51.100.50,198.51.100.59,255.255.255.0,2m \
    --dhcp-option=option:router,198.51.100.1 --dhcp-option=option:dns-server,198.51.100.53 \
    --dhcp-leasefile="$work/isp.leases" --pid-file= --log-facility=- > "$work/isp.log" 2>&1 &
isp_pid=$!
sed -i 's/^\(  interface: wan0\)\(.*\)$/\1\2\n  ipv4: dhcp/' "$root/etc/oqs-edge/config.yaml"
echo "# (wan.ipv4: dhcp added to the config; an ISP's DHCP server on the line)" >> "$transcript"
show oqs-edge check || fail "oqs-edge check with wan.ipv4: dhcp"
if show systemctl reload oqs-edge; then ok "systemctl reload oqs-edge (wan.ipv4: dhcp)"; else fail "systemctl reload oqs-edge (wan.ipv4: dhcp)"; fi
t=$SECONDS
leased=
while [ $((SECONDS - t)) -lt 40 ]; do
    leased=$(in_ct oqs-edge status --json 2>/dev/null \
        | python3 -c 'import json,sys; w=json.load(sys.stdin).get("wan") or {}; print(" ".join(a["address"] for a in w.get("addresses",[]) if a["source"]=="dhcp"))' 2>/dev/null || true)
    case "$leased" in 198.51.100.5*) break ;; esac
    sleep 1
done
expect "dhcpcd, run by the daemon under the unit, leased a WAN address ($leased after $((SECONDS - t)) s)" \
    bash -c "case '$leased' in 198.51.100.5*) exit 0 ;; *) exit 1 ;; esac"
show oqs-edge status || true
expect "oqs-edge status says where the WAN address came from" grep -q "wan0 (ipv4 dhcp.*198.51.100.5[0-9]/24 from dhcp" "$work/out"
[ -n "$leased" ] || { in_ct journalctl -u oqs-edge --no-pager -n 30 >&2 || true; cat "$work/isp.log" >&2; }

echo "== watchdog: a daemon stopped with SIGSTOP"
# WatchdogSec=30s: a daemon that stops feeding the watchdog (here: frozen) is aborted by systemd
# (SIGABRT, then SIGCONT so it is delivered) and, Restart=on-failure, started again after
# RestartSec=5s. The table stays in the kernel all the while: checked every 0.5 s.
old_pid=$(in_ct systemctl show -p MainPID --value oqs-edge)
in_ct systemctl kill --kill-whom=main --signal=SIGSTOP oqs-edge
t=$SECONDS
new_pid=$old_pid
table_gone=0
while [ $((SECONDS - t)) -lt 90 ]; do
    ip netns exec "$netns" nft list table inet oqs_edge > /dev/null 2>&1 || table_gone=$((table_gone + 1))
    new_pid=$(in_ct systemctl show -p MainPID --value oqs-edge)
    got=$(in_ct systemctl show -p ActiveState -p SubState --value oqs-edge | tr '\n' ' ')
    if [ "$new_pid" != "$old_pid" ] && [ "$new_pid" != 0 ] && [ "$got" = "active running " ]; then break; fi
    sleep 0.5
done
expect "the watchdog restarted the stopped daemon (pid $old_pid -> $new_pid, active again after $((SECONDS - t)) s)" \
    test "$new_pid" != "$old_pid" -a "$got" = "active running "
expect "table inet oqs_edge stayed in place throughout (missing in $table_gone checks)" test "$table_gone" = 0
show journalctl -u oqs-edge --no-pager -n 60 || true
expect "the journal says the watchdog fired" grep -qi "watchdog timeout" "$work/out"
expect "oqs-edge status answers after the restart" in_ct oqs-edge status

echo "== stop"
if show systemctl stop oqs-edge; then ok "systemctl stop oqs-edge"; else fail "systemctl stop oqs-edge"; fi
got=$(in_ct systemctl is-active oqs-edge 2>&1 || true)
expect "oqs-edge is inactive ($got)" test "$got" = inactive
expect "the journal has OQS_EVENT=stopping" bash -c \
    "nsenter -t $init -m -u -i -n -p -r -w -- journalctl -u oqs-edge -o export --no-pager | grep -qx OQS_EVENT=stopping"
expect "systemctl stop leaves table inet oqs_edge in the container's namespace (fail-closed)" \
    bash -c "ip netns exec $netns nft list table inet oqs_edge >/dev/null"
show systemctl status --no-pager --lines=0 oqs-edge || true
show journalctl -u oqs-edge --no-pager -n 4 || true

stop_container
expect "the container powered off" grep -q "Halting system\|Powering off" "$work/console.log"

echo "== reboot: the early unit, then the daemon, at boot"
# The table stays in the namespace across the container's power-off; take it away, so that
# what the next boot finds is what the early unit loaded.
ip netns exec "$netns" nft delete table inet oqs_edge
boot "$work/console2.log"
case "$state" in
running | degraded) ok "the container booted again ($boot_seconds s)" ;;
*) tail -n 30 "$work/console2.log" >&2; fail "the second boot (system state '${state:-none}')"; exit 1 ;;
esac
echo "# (the container powered off and booted again)" >> "$transcript"
show systemctl status --no-pager --lines=0 oqs-edge-early || true
got=$(in_ct systemctl show -p ActiveState -p SubState -p Result --value oqs-edge-early | tr '\n' ' ')
expect "oqs-edge-early ran at boot ($got)" test "$got" = "success active exited "   # systemctl show orders them its own way
# Seen twice under loaded CI runs before the unit was ordered after systemd-tmpfiles-setup
# (which emptied /tmp under its namespace set-up): keep what it said.
[ "$got" = "success active exited " ] || in_ct journalctl -b --no-pager -u oqs-edge-early -o short-monotonic >&2 || true
show journalctl -b --no-pager -u oqs-edge-early -u oqs-edge -o short-monotonic || true
expect "the early unit loaded the last applied ruleset" \
    grep -q "loaded the last applied ruleset from /var/lib/oqs-edge/ruleset.nft" "$work/out"
got=$(in_ct systemctl show -p ActiveState -p SubState --value oqs-edge | tr '\n' ' ')
expect "oqs-edge started at boot, after it ($got)" test "$got" = "active running "
early_done=$(in_ct systemctl show -p ExecMainExitTimestampMonotonic --value oqs-edge-early)
daemon_start=$(in_ct systemctl show -p ExecMainStartTimestampMonotonic --value oqs-edge)
expect "…the early unit finished ($early_done µs) before the daemon started ($daemon_start µs)" \
    test "${early_done:-0}" -gt 0 -a "${early_done:-0}" -le "${daemon_start:-0}"
stop_container

if [ -n "${OQS_EDGE_TRANSCRIPT:-}" ]; then
    cp "$transcript" "$OQS_EDGE_TRANSCRIPT"
    echo "transcript: $OQS_EDGE_TRANSCRIPT"
fi
echo "packaging/test-systemd.sh: $((SECONDS - started)) s"
echo "systemd: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

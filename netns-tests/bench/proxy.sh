#!/bin/sh
# Benchmark: small keep-alive requests through the mTLS proxy (issue 6), `oqs-edge run` against
# nginx configured as the same mTLS-originating reverse proxy (upstream keepalive on) and
# stunnel4 in client mode; then the proxies' memory with idle LAN connections.
#
#   sudo netns-tests/bench/proxy.sh [ROUNDS]        # default 3 rounds
#
# Environment: DURATION (s, default 10), CONNS (wrk connections, 32), THREADS (wrk threads, 2),
# CONTENDERS (default "oqs-edge nginx stunnel"; ratios need oqs-edge and nginx),
# IDLE (idle LAN connections for the memory part, 1000; 0 skips it), OQS_EDGE_BIN (an oqs-edge binary to
# measure instead of building this checkout's release build), REQUESTS (0 skips the wrk part),
# UPLOAD_MB (issue 22: each round also POSTs a file of this many MB through oqs-edge and nginx,
# curl -T from `client`, after one uncounted upload; the upstream reads the whole body, into a
# file on tmpfs, before it answers; 0, the default, skips it). Uploads alone, as in BENCHMARKS.md:
#
#   sudo REQUESTS=0 IDLE=0 UPLOAD_MB=256 netns-tests/bench/proxy.sh 3
#
# Three throwaway namespaces, named with this script's pid:
#
#   client 192.168.60.10 ── lan1 192.168.60.1 [router] wan0 198.51.100.2 ── 198.51.100.1 [upstream]
#                                                                            10.200.0.10 (lo)
#
# `upstream`: nginx (1 worker) with `ssl_verify_client on` and a test CA, answering every request
# with a small fixed body (`return 200`). `router`: one contender at a time, each listening on
# 192.168.60.1:8445 (plain HTTP on the LAN), presenting the client certificate upstream and
# verifying the server against the server CA and the name hweb-api.oqs.example:
#   oqs-edge   `oqs-edge run` (release build), a `lan_tls: off`, `mode: http` route; the
#              proxy runs one single-threaded event loop per core (2 here)
#   nginx      reverse proxy, worker_processes 2, upstream keepalive 32, proxy_http_version 1.1,
#              proxy_ssl_verify on, proxy_ssl_name/server_name, client cert from PEM
#   stunnel    stunnel4 `client = yes`, verifyChain + checkHost, client cert from PEM; one
#              upstream TLS connection per LAN connection (that is what stunnel is)
# oqs-edge's nftables table (applied by its first start) stays in place for all three.
# Each contender logs every request (oqs-edge to stderr, nginx access_log to a file); stunnel
# logs connections. wrk runs in `client` with the same parameters against each, after a 2 s
# warm-up; the order rotates each round. Ratios are against nginx in the same round.
#
# Memory: each of the three is started afresh, serves one request, then IDLE connections are
# opened from `client` and held (a) with no bytes sent, (b) after one request each (kept
# alive); VmRSS (summed over nginx's master and workers) and PSS before and with them.
#
# Needs root, nginx, stunnel4, wrk, openssl, curl, python3 (netns-tests/setup.sh).
set -eu
ROUNDS=${1:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
IDLE=${IDLE:-1000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
for tool in nginx stunnel4 wrk openssl curl python3 ss; do
    command -v "$tool" > /dev/null || { echo "proxy.sh: $tool is missing (netns-tests/setup.sh)" >&2; exit 1; }
done
if [ -n "${OQS_EDGE_BIN:-}" ]; then
    BIN=$OQS_EDGE_BIN
else
    cargo build -q --release -p oqs-edge --manifest-path "$ROOT/Cargo.toml"
    BIN="$ROOT/target/release/oqs-edge"
fi
ulimit -n "$(ulimit -Hn)" # 1,000 held connections need more than 1024 descriptors

P="pxb$$"
CLIENT="$P-client"; ROUTER="$P-router"; UP="$P-upstream"
DIR=$(mktemp -d /tmp/oqs-edge-proxy-bench.XXXXXX)
# The upstream's request-body files, on tmpfs: written to /tmp (a disk here), they made the
# upstream's CPU time per 256 MB upload swing between ~0.3 and ~0.9 s from one upload to the
# next, whichever proxy sent it, and that swing, not the proxies, decided the ratios.
UPLOAD_TMP=$(mktemp -d /dev/shm/oqs-edge-proxy-bench.XXXXXX)
chmod 755 "$DIR"
PIDS=""
stop() { # PID: TERM, then wait (our own child); forget it
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ' || true)
}
cleanup() {
    for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
    for pid in $PIDS; do wait "$pid" 2>/dev/null || true; done
    for ns in "$CLIENT" "$ROUTER" "$UP"; do ip netns del "$ns" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$DIR"
    rm -rf "$UPLOAD_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# (not for commands put in the background: $! would be the subshell, not the process)
in_client() { ip netns exec "$CLIENT" "$@"; }
in_router() { ip netns exec "$ROUTER" "$@"; }

# --- namespaces -------------------------------------------------------------------------------
for ns in "$CLIENT" "$ROUTER" "$UP"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add eth0 netns "$CLIENT" type veth peer name lan1 netns "$ROUTER"
ip link add wan0 netns "$ROUTER" type veth peer name eth0 netns "$UP"
ip -n "$CLIENT" addr add 192.168.60.10/24 dev eth0
ip -n "$ROUTER" addr add 192.168.60.1/24 dev lan1
ip -n "$ROUTER" addr add 198.51.100.2/24 dev wan0
ip -n "$UP" addr add 198.51.100.1/24 dev eth0
ip -n "$UP" addr add 10.200.0.10/32 dev lo
for l in "$CLIENT eth0" "$ROUTER lan1" "$ROUTER wan0" "$UP eth0"; do
    set -- $l; ip -n "$1" link set "$2" up
done
ip -n "$CLIENT" route add default via 192.168.60.1

# --- certificates (as netns-tests/src/pki.rs: P-256 keys, a server CA and a client CA) --------
cat > "$DIR/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:hweb-api.oqs.example
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
(
    cd "$DIR"
    key="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc"
    ca() { openssl req -x509 -config openssl.cnf -extensions ca -days 30 $key -keyout "$1.key" -out "$1.pem" -subj "$2"; }
    issue() {
        openssl req -new -config openssl.cnf $key -keyout "$1.key" -out "$1.csr" -subj "$2"
        openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 30 \
            -extfile openssl.cnf -extensions "$4" -out "$1.pem"
    }
    ca server-ca "/CN=bench server CA"
    issue server "/CN=hweb-api.oqs.example" server-ca server
    ca client-ca "/CN=bench client CA"
    issue client "/O=oqs-edge bench/CN=1312345678" client-ca client
    openssl rand -hex 16 | tr -d '\n' > oqs.p12.pass
    chmod 600 oqs.p12.pass
    openssl pkcs12 -export -name oqs -inkey client.key -in client.pem -certfile client-ca.pem \
        -passout file:oqs.p12.pass -out oqs.p12
) > "$DIR/openssl.log" 2>&1 || { cat "$DIR/openssl.log"; exit 1; }
for t in body proxy fcgi uwsgi scgi; do mkdir -p "$DIR/tmp-$t"; done
OTHER_TEMPS="proxy_temp_path $DIR/tmp-proxy; fastcgi_temp_path $DIR/tmp-fcgi; uwsgi_temp_path $DIR/tmp-uwsgi; scgi_temp_path $DIR/tmp-scgi;"
TEMPS="client_body_temp_path $DIR/tmp-body; $OTHER_TEMPS"

# --- the upstream: nginx with ssl_verify_client on ---------------------------------------------
cat > "$DIR/upstream.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 16384;
user root;
pid $DIR/upstream.pid;
error_log $DIR/upstream-error.log warn;
events { worker_connections 8192; }
http {
  client_body_temp_path $UPLOAD_TMP; $OTHER_TEMPS
  log_format up '\$connection \$ssl_protocol \$ssl_cipher \$ssl_session_reused "\$ssl_client_s_dn" \$status';
  access_log $DIR/upstream-access.log up buffer=256k flush=1s;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {
    listen 10.200.0.10:443 ssl;
    server_name hweb-api.oqs.example;
    ssl_certificate        $DIR/server.pem;
    ssl_certificate_key    $DIR/server.key;
    ssl_client_certificate $DIR/client-ca.pem;
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:up:1m;
    location / {
      default_type text/plain;
      return 200 "upstream ok dn=\$ssl_client_s_dn\n";
    }
    # Uploads: the whole body is read (to client_body_temp_path, tmpfs) before the answer.
    location /upload {
      client_max_body_size 0;
      client_body_buffer_size 1m;
      proxy_pass http://127.0.0.1:8081;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Received \$content_length;
    }
  }
  server {
    listen 127.0.0.1:8081;
    access_log off;
    location / { return 200 "upload received \$http_x_received bytes\n"; }
  }
}
EOF
ip netns exec "$UP" nginx -c "$DIR/upstream.conf" 2> "$DIR/upstream.stderr" &
UP_PID=$!; PIDS="$PIDS $UP_PID"
i=0
until ip netns exec "$UP" ss -Htln 'sport = :443' | grep -q 10.200.0.10; do
    i=$((i + 1)); [ "$i" -lt 100 ] || { cat "$DIR/upstream-error.log" "$DIR/upstream.stderr"; exit 1; }
    sleep 0.1
done

# --- the contenders ----------------------------------------------------------------------------
cat > "$DIR/oqs-edge.yaml" <<EOF
version: 1
site:
  institution_code: "1312345678"
  name: "oqs-edge proxy bench"
segments:
  - name: clinic
    interface: lan1
    address: 192.168.60.1/24
    role: clinic
    internet: deny
wan:
  interface: wan0
closed_network:
  prefixes: [10.200.0.0/24]
  dns: [10.200.0.53]
tunnel:
  type: ip-vpn
  ip_vpn:
    gateway: 198.51.100.1
client_certificates:
  - name: oqs
    pkcs12: $DIR/oqs.p12
    password_file: $DIR/oqs.p12.pass
proxy:
  routes:
    - name: bench
      listen: 192.168.60.1:8445
      lan_tls: off
      mode: http
      upstream: hweb-api.oqs.example:443
      upstream_address: 10.200.0.10
      server_ca: $DIR/server-ca.pem
      client_certificate: oqs
      allow: [clinic]
control:
  socket: $DIR/control.sock
EOF
"$BIN" check -c "$DIR/oqs-edge.yaml" > "$DIR/check.log" 2>&1 || { cat "$DIR/check.log"; exit 1; }

cat > "$DIR/nginx-proxy.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 16384;
user root;
pid $DIR/nginx-proxy.pid;
error_log $DIR/nginx-proxy-error.log warn;
events { worker_connections 8192; }
http {
  $TEMPS
  access_log $DIR/nginx-proxy-access.log;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  upstream oqs {
    server 10.200.0.10:443;
    keepalive 32;
    keepalive_requests 10000000;
    keepalive_timeout 90s;
  }
  server {
    listen 192.168.60.1:8445;
    allow 192.168.60.0/24;
    deny all;
    # Bodies of any size, streamed to the upstream as they come (as oqs-edge does), not
    # spooled to disk first (nginx's default).
    client_max_body_size 0;
    proxy_request_buffering off;
    location / {
      proxy_pass https://oqs;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host hweb-api.oqs.example;
      proxy_ssl_certificate         $DIR/client.pem;
      proxy_ssl_certificate_key     $DIR/client.key;
      proxy_ssl_trusted_certificate $DIR/server-ca.pem;
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 2;
      proxy_ssl_name hweb-api.oqs.example;
      proxy_ssl_server_name on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_session_reuse on;
    }
  }
}
EOF

cat > "$DIR/stunnel.conf" <<EOF
foreground = yes
pid = $DIR/stunnel.pid
output = $DIR/stunnel.log
[bench]
client = yes
accept = 192.168.60.1:8445
connect = 10.200.0.10:443
sni = hweb-api.oqs.example
cert = $DIR/client.pem
key = $DIR/client.key
CAfile = $DIR/server-ca.pem
verifyChain = yes
checkHost = hweb-api.oqs.example
EOF

URL=http://192.168.60.1:8445/bench
CUR_PID=""
start() { # NAME: start it in the router namespace, wait until it answers through the upstream
    case $1 in
    oqs-edge) ip netns exec "$ROUTER" "$BIN" run -c "$DIR/oqs-edge.yaml" --state-dir "$DIR/state" 2> "$DIR/oqs-edge.log" & ;;
    nginx)
        ip -n "$ROUTER" route replace 10.200.0.0/24 via 198.51.100.1
        ip netns exec "$ROUTER" nginx -c "$DIR/nginx-proxy.conf" 2> "$DIR/nginx-proxy.stderr" & ;;
    stunnel)
        ip -n "$ROUTER" route replace 10.200.0.0/24 via 198.51.100.1
        ip netns exec "$ROUTER" stunnel4 "$DIR/stunnel.conf" 2> "$DIR/stunnel.stderr" & ;;
    esac
    CUR_PID=$!; PIDS="$PIDS $CUR_PID"
    i=0
    until in_client curl -s --max-time 2 "$URL" 2> /dev/null | grep -q 'dn=CN=1312345678'; do
        i=$((i + 1))
        if [ "$i" -ge 150 ] || ! kill -0 "$CUR_PID" 2>/dev/null; then
            echo "proxy.sh: $1 does not answer through the upstream" >&2
            tail -20 "$DIR"/oqs-edge.log "$DIR"/nginx-proxy-error.log "$DIR"/stunnel.log 2>/dev/null >&2
            exit 1
        fi
        sleep 0.1
    done
}
finish() { # stop the running contender, wait until the port is free
    stop "$CUR_PID"
    i=0
    while in_router ss -Htln 'sport = :8445' | grep -q 8445; do
        i=$((i + 1)); [ "$i" -lt 100 ] || { echo "proxy.sh: port 8445 still in use" >&2; exit 1; }
        sleep 0.1
    done
    CUR_PID=""
}
cpu_ticks() { # PID: user + system clock ticks of the process and its children (nginx's workers)
    t=0
    for p in $1 $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        t=$((t + $(awk '{ print $14 + $15 }' /proc/"$p"/stat 2>/dev/null || echo 0)))
    done
    echo "$t"
}
ms() { # a wrk time (850.00us, 1.20ms, 1.02s) in ms
    awk -v t="$1" 'BEGIN { v = t + 0; if (t ~ /us$/) v /= 1000; else if (t ~ /ms$/) v += 0; else if (t ~ /s$/) v *= 1000; printf "%.3f", v }'
}

mem() { # PID: "RSS_KiB PSS_KiB" summed over the process and its children (nginx's workers)
    pids="$1 $(cat /proc/"$1"/task/*/children 2>/dev/null)"
    rss=0; pss=0
    for p in $pids; do
        r=$(awk '/^VmRSS:/ { print $2 }' /proc/"$p"/status 2>/dev/null || echo 0)
        s=$(awk '/^Pss:/ { print $2 }' /proc/"$p"/smaps_rollup 2>/dev/null || echo 0)
        rss=$((rss + ${r:-0})); pss=$((pss + ${s:-0}))
    done
    echo "$rss $pss"
}

# --- throughput and latency --------------------------------------------------------------------
WRK="wrk -t$THREADS -c$CONNS -d${DURATION}s --latency $URL"
: > "$DIR/results"
round=1
[ "${REQUESTS:-1}" != 0 ] || round=$((ROUNDS + 1))
while [ "$round" -le "$ROUNDS" ]; do
    case $(( (round - 1) % 3 )) in
    0) order="oqs-edge nginx stunnel" ;;
    1) order="nginx stunnel oqs-edge" ;;
    *) order="stunnel oqs-edge nginx" ;;
    esac
    for c in $order; do
        case " ${CONTENDERS:-oqs-edge nginx stunnel} " in *" $c "*) ;; *) continue ;; esac
        start "$c"
        in_client wrk -t"$THREADS" -c"$CONNS" -d2s "$URL" > /dev/null
        sleep 1.2 # the upstream's access log flushes every second: start counting after that
        : > "$DIR/upstream-access.log"
        cpu0=$(cpu_ticks "$CUR_PID")
        in_client $WRK > "$DIR/wrk-$c-$round.txt"
        cpu1=$(cpu_ticks "$CUR_PID")
        rps=$(awk '/^Requests\/sec:/ { print $2 }' "$DIR/wrk-$c-$round.txt")
        total=$(awk '/requests in/ { print $1 }' "$DIR/wrk-$c-$round.txt")
        # CPU time the proxy spent per request (user + system, all threads and workers): a
        # figure less swayed than req/s by what else runs on the cores
        cpu_us=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$total" -v hz="$(getconf CLK_TCK)" \
            'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
        p99=$(ms "$(awk '$1 == "99%" { print $2 }' "$DIR/wrk-$c-$round.txt")")
        p50=$(ms "$(awk '$1 == "50%" { print $2 }' "$DIR/wrk-$c-$round.txt")")
        bad=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$DIR/wrk-$c-$round.txt")
        finish
        sleep 1.2 # the upstream's access log flushes every second
        up_conns=$(awk '{ print $1 }' "$DIR/upstream-access.log" | sort -u | wc -l)
        tls=$(awk 'NR == 1 { print $2 "/" $3 }' "$DIR/upstream-access.log")
        echo "$round $c $rps $p50 $p99 $bad $up_conns $tls $cpu_us" >> "$DIR/results"
        printf 'round %d %-8s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  CPU %5.1f us/req  errors %s  upstream conns %s  %s\n' \
            "$round" "$c" "$rps" "$p50" "$p99" "$cpu_us" "$bad" "$up_conns" "$tls"
    done
    round=$((round + 1))
done

if [ "${REQUESTS:-1}" != 0 ]; then
echo
echo "wrk: $WRK (from client; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
awk '
function ratio(x, y) { return y ? x / y : 0 } # 0 when a contender was left out
function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ rps[$1, $2] = $3; p99[$1, $2] = $5; cpu[$1, $2] = $9; if ($1 > rounds) rounds = $1 }
END {
    printf "| round | oqs-edge req/s | nginx req/s | stunnel req/s | oqs-edge p99 | nginx p99 | stunnel p99 | req/s oqs-edge/nginx | p99 oqs-edge/nginx | req/s stunnel/nginx | p99 stunnel/nginx | CPU/req oqs-edge | CPU/req nginx | CPU/req oqs-edge/nginx |\n"
    printf "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    for (r = 1; r <= rounds; r++) {
        a[r] = ratio(rps[r, "oqs-edge"], rps[r, "nginx"]); b[r] = ratio(p99[r, "oqs-edge"], p99[r, "nginx"])
        c[r] = ratio(rps[r, "stunnel"], rps[r, "nginx"]); d[r] = ratio(p99[r, "stunnel"], p99[r, "nginx"])
        e[r] = rps[r, "oqs-edge"]; f[r] = rps[r, "nginx"]; g[r] = rps[r, "stunnel"]
        h[r] = p99[r, "oqs-edge"]; k[r] = p99[r, "nginx"]; l[r] = p99[r, "stunnel"]
        m[r] = cpu[r, "oqs-edge"]; q[r] = cpu[r, "nginx"]; x[r] = ratio(m[r], q[r])
        printf "| %d | %.0f | %.0f | %.0f | %.2f ms | %.2f ms | %.2f ms | %.2f | %.2f | %.2f | %.2f | %.1f µs | %.1f µs | %.2f |\n", r,
            e[r], f[r], g[r], h[r], k[r], l[r], a[r], b[r], c[r], d[r], m[r], q[r], x[r]
    }
    printf "| median | %.0f | %.0f | %.0f | %.2f ms | %.2f ms | %.2f ms | **%.2f** | **%.2f** | %.2f | %.2f | %.1f µs | %.1f µs | %.2f |\n",
        median(e, rounds), median(f, rounds), median(g, rounds), median(h, rounds), median(k, rounds),
        median(l, rounds), median(a, rounds), median(b, rounds), median(c, rounds), median(d, rounds),
        median(m, rounds), median(q, rounds), median(x, rounds)
    printf "\ntargets: req/s oqs-edge/nginx >= 1: %s; p99 oqs-edge/nginx <= 1: %s\n",
        (median(a, rounds) >= 1) ? "met" : "NOT met", (median(b, rounds) <= 1) ? "met" : "NOT met"
}' "$DIR/results"
fi

# --- large uploads (issue 22) -----------------------------------------------------------------
UPLOAD_MB=${UPLOAD_MB:-0}
if [ "$UPLOAD_MB" -gt 0 ]; then
    truncate -s "${UPLOAD_MB}M" "$DIR/upload.bin"
    : > "$DIR/uploads"
    # One upload first, not counted: the run's first 256 MB body was the slowest whichever proxy
    # carried it (the upstream's side warming up), and round 1 always starts with oqs-edge.
    start oqs-edge
    in_client curl -sS --max-time 600 -X POST -T "$DIR/upload.bin" -o /dev/null http://192.168.60.1:8445/upload
    finish
    round=1
    while [ "$round" -le "$ROUNDS" ]; do
        order="oqs-edge nginx"
        [ $((round % 2)) -eq 1 ] || order="nginx oqs-edge"
        for c in $order; do
            start "$c"
            before=$(mem "$CUR_PID")
            cpu0=$(cpu_ticks "$CUR_PID")
            in_client curl -sS --max-time 600 -X POST -H 'Content-Type: application/octet-stream' \
                -T "$DIR/upload.bin" -w '\ncode=%{http_code} time=%{time_total}\n' \
                http://192.168.60.1:8445/upload > "$DIR/upload-$c-$round.txt" 2>&1 &
            curl_pid=$!; PIDS="$PIDS $curl_pid"
            peak=${before%% *}
            while kill -0 "$curl_pid" 2>/dev/null; do
                r=$(mem "$CUR_PID"); r=${r%% *}
                [ "$r" -le "$peak" ] || peak=$r
                sleep 0.05
            done
            stop "$curl_pid"
            # the proxy's CPU time (user + system, all threads and workers) for the upload: steadier
            # than MB/s, which follows whatever else the 2 cores are running
            cpu_ms=$(( ($(cpu_ticks "$CUR_PID") - cpu0) * 1000 / $(getconf CLK_TCK) ))
            finish
            grep -q "upload received $((UPLOAD_MB * 1048576)) bytes" "$DIR/upload-$c-$round.txt" &&
                grep -q 'code=200' "$DIR/upload-$c-$round.txt" ||
                { echo "proxy.sh: the upload through $c failed:" >&2; cat "$DIR/upload-$c-$round.txt" >&2; exit 1; }
            t=$(sed -n 's/.*time=//p' "$DIR/upload-$c-$round.txt")
            echo "$round $c $t ${before%% *} $peak $cpu_ms" >> "$DIR/uploads"
            printf 'round %d %-8s %d MB upload in %6.2f s  %7.1f MB/s  RSS %d -> peak %d KiB  CPU %d ms\n' \
                "$round" "$c" "$UPLOAD_MB" "$t" "$(awk -v m="$UPLOAD_MB" -v t="$t" 'BEGIN { print m / t }')" \
                "${before%% *}" "$peak" "$cpu_ms"
        done
        round=$((round + 1))
    done
    echo
    echo "uploads: curl -T of $UPLOAD_MB MB (POST) from client, plain HTTP on the LAN, mTLS upstream ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
    awk -v mb="$UPLOAD_MB" '
    function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { t[$1, $2] = $3; g[$1, $2] = ($5 - $4) / 1024; cpu[$1, $2] = $6; if ($1 > rounds) rounds = $1 }
    END {
        printf "| round | oqs-edge MB/s | nginx MB/s | oqs-edge/nginx | oqs-edge RSS growth | nginx RSS growth | oqs-edge CPU | nginx CPU | CPU oqs-edge/nginx |\n|---|---|---|---|---|---|---|---|---|\n"
        for (r = 1; r <= rounds; r++) {
            o[r] = mb / t[r, "oqs-edge"]; n[r] = mb / t[r, "nginx"]; q[r] = o[r] / n[r]
            go[r] = g[r, "oqs-edge"]; gn[r] = g[r, "nginx"]
            co[r] = cpu[r, "oqs-edge"]; cn[r] = cpu[r, "nginx"]; cq[r] = cn[r] ? co[r] / cn[r] : 0
            printf "| %d | %.1f | %.1f | %.2f | %.1f MiB | %.1f MiB | %d ms | %d ms | %.2f |\n", r, o[r], n[r], q[r], go[r], gn[r], co[r], cn[r], cq[r]
        }
        printf "| median | %.1f | %.1f | **%.2f** | %.1f MiB | %.1f MiB | %d ms | %d ms | **%.2f** |\n", median(o, rounds), median(n, rounds),
            median(q, rounds), median(go, rounds), median(gn, rounds), median(co, rounds), median(cn, rounds), median(cq, rounds)
    }' "$DIR/uploads"
fi

# --- memory with idle LAN connections ----------------------------------------------------------
[ "$IDLE" -gt 0 ] || exit 0
cat > "$DIR/hold.py" <<'EOF'
# hold.py HOST PORT N MODE: open N connections and hold them. MODE bare: send nothing;
# request: one GET on each (answer read whole), then keep the connection open and idle.
import socket, sys, time
host, port, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
held = []
for i in range(n):
    s = socket.create_connection((host, port), timeout=10)
    if mode == "request":
        s.sendall(b"GET /idle HTTP/1.1\r\nHost: 192.168.60.1\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                sys.exit(f"connection {i} closed before an answer")
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 200"):
            sys.exit(f"connection {i}: {head[:60]!r}")
        length = [l.split(b":", 1)[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
        if not length:
            sys.exit("no Content-Length in the answer")
        while len(body) < int(length[0]):
            body += s.recv(65536)
    held.append(s)
print("held", len(held), flush=True)
time.sleep(3600)
EOF
: > "$DIR/memory"
for mode in bare request; do
    for c in oqs-edge nginx stunnel; do
        start "$c"
        sleep 0.5
        before=$(mem "$CUR_PID")
        ip netns exec "$CLIENT" python3 "$DIR/hold.py" 192.168.60.1 8445 "$IDLE" "$mode" > "$DIR/hold.out" 2> "$DIR/hold.err" &
        hold=$!; PIDS="$PIDS $hold"
        i=0
        until grep -q held "$DIR/hold.out"; do
            i=$((i + 1))
            if [ "$i" -ge 600 ] || ! kill -0 "$hold" 2>/dev/null; then
                echo "proxy.sh: holding $IDLE connections to $c failed:" >&2; cat "$DIR/hold.err" >&2; exit 1
            fi
            sleep 0.1
        done
        sleep 1
        open=$(in_router ss -Htn state established '( sport = :8445 )' | wc -l)
        with=$(mem "$CUR_PID")
        stop "$hold"
        finish
        echo "$mode $c $before $with $open" >> "$DIR/memory"
    done
done
echo
echo "memory with $IDLE idle LAN connections (bare: no bytes sent; request: kept alive after one request)"
echo "| idle connections | proxy | open at the proxy | RSS before | RSS with them | KiB per connection | PSS before | PSS with them |"
echo "|---|---|---|---|---|---|---|---|"
awk -v n="$IDLE" '{
    printf "| %s | %s | %d | %.1f MiB | %.1f MiB | %.1f | %.1f MiB | %.1f MiB |\n", $1, $2, $7,
        $3 / 1024, $5 / 1024, ($5 - $3) / n, $4 / 1024, $6 / 1024
}' "$DIR/memory"

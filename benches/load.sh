#!/usr/bin/env bash
# Load benchmark: onehttps beside nginx and haproxy, same ECDSA P-256 certificate, same
# origin (nginx `return 200`, and a 64 KiB file), same clients, the same number of worker
# threads/processes for each server (WORKERS, default: the core count), on this machine. For
# each scenario and server it reports throughput, the server's own CPU microseconds per
# operation (utime+stime of all its processes from /proc: clients share the machine, so this
# is the figure to compare), latency p50/p99, and memory per idle TLS connection. Then (unless
# SITES is empty) `cargo bench --bench sites` loads 1k, 100k and 1M sites into one table.
# It rewrites only its own sections of BENCHMARKS.md (between the `load.sh` markers).
#
#   benches/load.sh                 # full run (about 8 minutes; the first run also generates
#                                   # a million certificates, ~2 minutes, 1.4 GB under target/)
#   DURATION=3 benches/load.sh      # shorter runs per scenario
#   SITES= FLEET=0 benches/load.sh  # the request scenarios only
#   SERVERS=onehttps ONLY=HTTP/2 benches/load.sh  # one server, scenarios matching a regex
#                                   # (prints the table, leaves BENCHMARKS.md alone)
#   ONEHTTPS=/tmp/onehttps-before SERVERS=onehttps benches/load.sh   # a lever's before/after
#   PROFILE=docs/profile SERVERS=onehttps ONLY='HTTP/1.1 \(|10 streams' benches/load.sh
#                                   # perf call graphs of onehttps per scenario (linux-perf)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
IDLE=${IDLE:-2000}
SITES=${SITES-1000 100000 1000000}
FLEET=${FLEET:-1}
WORKERS=${WORKERS:-$(nproc)}
SERVERS=${SERVERS:-onehttps nginx haproxy}
ONLY=${ONLY:-}
PROFILE=${PROFILE:-}   # a directory: perf call graphs of onehttps, one file per scenario

declare -A packages=([nginx]=nginx [haproxy]=haproxy [h2load]=nghttp2-client [wrk]=wrk [openssl]=openssl [python3]=python3 [etcd]=etcd-server [etcdctl]=etcd-client [pebble]=pebble [protoc]=protobuf-compiler)
missing=()
for cmd in "${!packages[@]}"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}"); done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --quiet --bin onehttps --example visitors
ONEHTTPS=${ONEHTTPS:-$PWD/target/release/onehttps}   # another build, for a before/after
VISITORS=$PWD/target/release/examples/visitors

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$work"; }
trap cleanup EXIT

# One certificate for every server.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/combined.pem"
mkdir -p "$work/www"
head -c 65536 /dev/zero | tr '\0' 'x' > "$work/www/64k"
chmod 755 "$work" "$work/www"   # nginx's workers (www-data) read the file

ORIGIN=18080 EDGE=18443 NGINX=18444 HAPROXY=18445
cat > "$work/origin.conf" <<EOF
worker_processes 1; daemon off; pid $work/origin.pid; error_log $work/origin.err;
events { worker_connections 8192; }
http { access_log off; server { listen 127.0.0.1:$ORIGIN; keepalive_requests 1000000;
  location / { return 200 "hello from the origin\n"; }
  location = /64k { root $work/www; } } }
EOF
cat > "$work/nginx.conf" <<EOF
worker_processes $WORKERS; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 16384; }
http { access_log off;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 256; }
  server { listen 127.0.0.1:$NGINX ssl http2; keepalive_requests 1000000;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:20m; ssl_session_tickets on;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
cat > "$work/haproxy.cfg" <<EOF
global
  nbthread $WORKERS
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend tls
  bind 127.0.0.1:$HAPROXY ssl crt $work/combined.pem alpn h2,http/1.1
  default_backend origin
backend origin
  http-reuse always
  server o1 127.0.0.1:$ORIGIN
EOF
cat > "$work/onehttps.toml" <<EOF
[server]
https = "127.0.0.1:$EDGE"
http = "127.0.0.1:18081"
admin = "127.0.0.1:18082"
data_dir = "$work/data"
max_connections = 20000
# Every load client is 127.0.0.1: lift the per-address limits for the benchmark.
max_connections_per_ip = 20000
handshakes_per_ip = 1000000
workers = $WORKERS
[log]
access = false
level = "warn"
[[site]]
host = "localhost"
origins = ["http://127.0.0.1:$ORIGIN"]
cert = "$work/cert.pem"
key = "$work/key.pem"
managed = false
EOF

nginx -c "$work/origin.conf" & pids+=($!)
nginx -c "$work/nginx.conf" & pids+=($!); NGINX_PID=$!
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 & pids+=($!); HAPROXY_PID=$!
"$ONEHTTPS" run --config "$work/onehttps.toml" 2>"$work/onehttps.log" & pids+=($!); EDGE_PID=$!
sleep 1.5

# Total CPU ticks and RSS (KiB) of a process and its children.
tree() { echo "$1"; pgrep -P "$1" || true; }
cpu() { local t=0; for p in $(tree "$1"); do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
rss() { local t=0; for p in $(tree "$1"); do t=$((t + $(awk '/VmRSS/{print $2}' /proc/$p/status))); done; echo $t; }
TCK=$(getconf CLK_TCK)

results="$work/results.tsv"
: > "$results"
# run NAME PID PORT SCENARIO COMMAND…: runs the client, records ops, CPU µs/op, latency.
run() {
  local name=$1 pid=$2 scenario=$3; shift 3
  [[ -z $ONLY || $scenario =~ $ONLY ]] || return 0
  rm -f "$work/h2load.log"
  local c0; c0=$(cpu "$pid")
  local perf_pid=""
  if [[ -n $PROFILE && $name == onehttps ]]; then
    perf record -q -F 499 --call-graph dwarf,16384 -p "$pid" -o "$work/perf.data" -- sleep "$DURATION" 2>/dev/null &
    perf_pid=$!
  fi
  local out; out=$("$@" 2>&1 || true)
  local c1; c1=$(cpu "$pid")
  if [[ -n $perf_pid ]]; then
    wait "$perf_pid" || true
    local file; file="$PROFILE/$(echo "$scenario" | tr -c 'A-Za-z0-9\n' '-' | sed 's/--*/-/g; s/-$//').txt"
    perf report -i "$work/perf.data" --no-children --stdio --percent-limit 0.7 --sort dso,symbol \
      -g caller,0.5,callee,function,percent --max-stack 12 2>/dev/null > "$file" || true
    cp "$work/perf.data" "${file%.txt}.perf.data"
    echo "profile: $file" >&2
  fi
  python3 - "$name" "$scenario" "$((c1 - c0))" "$TCK" "$out" "$work/h2load.log" >> "$results" <<'PY'
import os, re, sys
name, scenario, ticks, tck, out, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
ops = rate = p50 = p99 = resumed = None
def ms(us): return f"{us / 1000:.2f}ms"
m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
if m:  # h2load; per-request times from its --log-file (start µs, status, duration µs)
    ops = int(m.group(2))
    r = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out); rate = float(r.group(1)) if r else None
    if os.path.exists(log):
        times = sorted(int(l.split("\t")[2]) for l in open(log) if l.count("\t") >= 2)
        if times:
            p50, p99 = ms(times[len(times) // 2]), ms(times[min(len(times) - 1, int(len(times) * 0.99))])
m = re.search(r"(\d+) requests in ([\d.]+)s", out)
if m and ops is None:  # wrk
    ops = int(m.group(1)); rate = ops / float(m.group(2))
    r = re.search(r"^\s*50%\s+([\d.]+\w+)", out, re.M); p50 = r.group(1) if r else None
    r = re.search(r"^\s*99%\s+([\d.]+\w+)", out, re.M); p99 = r.group(1) if r else None
m = re.search(r"(\d+) connections in (\d+) real seconds", out)
if m and ops is None:  # examples/visitors.rs
    ops = int(m.group(1)); rate = ops / int(m.group(2))
    r = re.search(r"resumed (\d+)", out); resumed = f"{int(r.group(1)) / ops:.0%}" if r and ops else None
    r = re.search(r"50% (\S+)", out); p50 = r.group(1) if r else None
    r = re.search(r"99% (\S+)", out); p99 = r.group(1) if r else None
us = ticks / tck * 1e6 / ops if ops else None
fmt = lambda v, f: (f % v) if v is not None else "-"
print("\t".join([scenario, name, fmt(rate, "%.0f"), fmt(us, "%.1f"), p50 or "-", p99 or "-", resumed or "-"]))
PY
}


for server in $SERVERS; do
  case $server in
    onehttps) pid=$EDGE_PID port=$EDGE ;;
    nginx) pid=$NGINX_PID port=$NGINX ;;
    haproxy) pid=$HAPROXY_PID port=$HAPROXY ;;
  esac
  url="https://localhost:$port/"
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "benches/load.sh: $server is not running:" >&2
    tail -5 "$work/$server.log" "$work/nginx.err" 2>/dev/null >&2 || true
    exit 1
  fi
  h2load --h1 -n 20000 -c 16 "$url" >/dev/null 2>&1 || true   # warm-up
  log=--log-file=$work/h2load.log
  run "$server" "$pid" "keep-alive HTTP/1.1 (h2load --h1 -c16)" h2load "$log" --h1 -D "$DURATION" -c 16 -t 1 "$url"
  run "$server" "$pid" "keep-alive HTTP/1.1, 64 KiB responses (h2load --h1 -c16)" h2load "$log" --h1 -D "$DURATION" -c 16 -t 1 "${url}64k"
  run "$server" "$pid" "HTTP/2, 10 streams (h2load -c16 -m10)" h2load "$log" -D "$DURATION" -c 16 -m 10 -t 1 "$url"
  run "$server" "$pid" "HTTP/2, 100 streams per connection (h2load -c4 -m100)" h2load "$log" -D "$DURATION" -c 4 -m 100 -t 1 "$url"
  run "$server" "$pid" "HTTP/2, 64 KiB responses (h2load -c16 -m10)" h2load "$log" -D "$DURATION" -c 16 -m 10 -t 1 "${url}64k"
  run "$server" "$pid" "new visitor: full TLS handshake + GET (4 clients)" "$VISITORS" "$port" new "$DURATION" 4
  run "$server" "$pid" "returning visitor: resumed handshake + GET (4 clients)" "$VISITORS" "$port" reuse "$DURATION" 4
  run "$server" "$pid" "returning visitor, wrk Connection: close (-c16)" wrk -t1 -c16 -d"${DURATION}s" --latency -H "Connection: close" "$url"
  [[ -z $ONLY || "idle TLS connection" =~ $ONLY ]] || continue
  # Idle TLS connections: RSS growth per connection held open after its handshake.
  before=$(rss "$pid")
  rm -f "$work/idle.out"
  python3 - "$port" "$IDLE" > "$work/idle.out" <<'PY' &
import socket, ssl, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
conns = []
for _ in range(n):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    conns.append(s)
print("held", flush=True)
time.sleep(30)
PY
  idle_pid=$!
  for _ in $(seq 300); do grep -q held "$work/idle.out" 2>/dev/null && break; sleep 0.2; done
  sleep 1
  after=$(rss "$pid")
  kill $idle_pid 2>/dev/null || true
  wait $idle_pid 2>/dev/null || true
  printf 'idle TLS connection (%d held): KB each\t%s\t-\t%s KB/conn\t-\t-\t-\n' "$IDLE" "$server" \
    "$(awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { printf "%.1f", (a - b) / n }')" >> "$results"
done

# Replaces the section NAME of BENCHMARKS.md (between `<!-- load.sh:NAME -->` and
# `<!-- /load.sh:NAME -->`) with standard input; appends it when the file has none. The
# other sections (restart, fleet: written by hand from their benches) stay as they are.
section() {
  python3 - "$1" "$2" <<'PY'
import sys
name, text = sys.argv[1], sys.argv[2]
begin, end = f"<!-- load.sh:{name} -->", f"<!-- /load.sh:{name} -->"
try:
    doc = open("BENCHMARKS.md").read()
except FileNotFoundError:
    doc = "# Benchmarks\n"
block = f"{begin}\n{text.rstrip()}\n{end}"
if begin in doc and end in doc:
    doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
else:
    doc = doc.rstrip() + "\n\n" + block + "\n"
open("BENCHMARKS.md", "w").write(doc)
PY
}

table=$(python3 - "$results" "$(nproc)" "$(nginx -v 2>&1 | sed 's/.*\///')" "$(haproxy -v | head -1 | awk '{print $3}')" "$("$ONEHTTPS" --version)" "$WORKERS" "$DURATION" <<'PY'
import collections, datetime, platform, sys
path, cores, nginx, haproxy, ours, workers, duration = sys.argv[1:8]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
by = collections.OrderedDict()
for scenario, server, rate, us, p50, p99, resumed in rows:
    by.setdefault(scenario, {})[server] = (rate, us, p50, p99, resumed)
print(f"## Requests and handshakes beside nginx and haproxy (`benches/load.sh`)\n\n"
      f"Run {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {platform.node()} "
      f"({cores} cores, {platform.machine()}, Linux {platform.release()}); clients on the same machine, loopback, {duration} s per scenario.\n"
      f"Servers: {ours} (release build, `server.workers = {workers}`: one single-threaded runtime per worker), nginx {nginx} (`worker_processes {workers}`), "
      f"haproxy {haproxy} (`nbthread {workers}`); one ECDSA P-256 certificate; origin: nginx `return 200` (23 bytes) or a 64 KiB file.\n"
      "CPU/op is the server's own utime+stime (all its processes) divided by completed operations. "
      "Latency: per request from h2load's log (HTTP/2 rows: a request waits behind the others on its connection), "
      "per connection for the visitors (connect + handshake + GET) and wrk. "
      "Visitors: `examples/visitors.rs`, 4 threads of blocking rustls clients offering X25519 only (what every server here supports); "
      "`resumed`: share of their connections resumed with the previous connection's TLS 1.3 ticket.\n")
print("| scenario | server | ops/s | server CPU µs/op | latency p50 | p99 | resumed |")
print("|---|---|---|---|---|---|---|")
for scenario, servers in by.items():
    for server in ("onehttps", "nginx", "haproxy"):
        if server in servers:
            rate, us, p50, p99, resumed = servers[server]
            print(f"| {scenario} | {server} | {rate} | {us} | {p50} | {p99} | {resumed} |")
PY
)
echo "$table"
if [[ -n $ONLY || $SERVERS != "onehttps nginx haproxy" ]]; then
  exit 0   # a partial run: BENCHMARKS.md keeps the full one
fi
section requests "$table"

# Many sites in one table: memory per site, start to serving, cold vs cached signing key.
if [[ -n $SITES ]]; then
  # shellcheck disable=SC2086
  sites_table=$(cargo bench --quiet --bench sites -- $SITES 2>"$work/sites.err") || {
    cat "$work/sites.err" >&2; exit 1; }
  sites_text=$(
    echo "## Many sites on one node (\`cargo bench --bench sites\`)"
    echo
    echo "Each site has its own ECDSA P-256 certificate and key (one local CA, one intermediate), loaded"
    echo "as the edge loads its store: chain parsed, key opened and sealed again in memory, not decoded."
    echo "RSS is the growth of the process; start→serving runs from process start to the first handshake"
    echo "served on a socket with every site in the table; handshakes are in-memory TLS 1.3 full"
    echo "handshakes (X25519MLKEM768), server-side CPU only, to a site whose key is sealed (cold: opened"
    echo "and decoded on the spot) or already in the key cache."
    echo
    echo "| sites | RSS | RSS/site | start→serving | cold-key handshake | cached-key handshake |"
    echo "|---|---|---|---|---|---|"
    echo "$sites_table" | awk -F'|' 'NR > 1 { printf "|%s|%s|%s|%s|%s|%s|\n", $1, $2, $3, $4, $5, $6 }'
  )
  echo "$sites_text"
  section sites "$sites_text"
fi

# A fleet on etcd: how long a renewed certificate takes from the store to every other node
# (three edges, a three-member etcd cluster and Pebble, as tests/fleet.rs starts them).
if [[ $FLEET == 1 ]]; then
  fleet_line=$(cargo test --release --test fleet -- --ignored --nocapture swap_propagation 2>/dev/null | grep -E 'renewals:|swap propagation')
  fleet_text=$(
    echo "## Swap propagation through a real renewal (\`cargo test --release --test fleet -- --ignored swap_propagation\`)"
    echo
    echo "Three edges on one three-member etcd cluster (all on this machine), thirty forced renewals"
    echo "through Pebble, each on the next node. Propagation runs from the issuing node's log line"
    echo "written just before the record goes to etcd to each other node's \"swapped in\" line."
    echo "($(date -u '+%Y-%m-%d %H:%M'), release build.)"
    echo
    echo "$fleet_line" | sed 's/^/    /'
  )
  echo "$fleet_text"
  section fleet "$fleet_text"
fi

#!/usr/bin/env bash
# Instructions per request in the gateway, counted by callgrind: a figure that does not move with
# whatever else the machine is doing (wall-clock profiles on a 2-core machine shared with the
# broker do), so an optimisation is proven by an A/B of two builds.
#
#   scripts/profile-gateway.sh [SECONDS [CONNECTIONS [TARGET]]]   (default 20 8 gateway)
#
# Runs a release `warren run greeting_service` as usual and a release `warren gateway` under
# valgrind --tool=callgrind, warms up with wrk for 5 s, zeroes the counters, loads it with wrk
# (1 thread, CONNECTIONS connections, POST /rpc/greeting_service/hello) for SECONDS, dumps, and
# prints the instructions per request in all and in the main parts. TARGET `ideal` profiles the
# bench's ideal front instead (`warren-bench http-floor --call-over`: the same call behind a bare
# hyper server), so the two profiles' difference is the gateway's own work. Needs RabbitMQ on
# AMQP_URL, valgrind, wrk and curl. The profile stays in target/profile/ (target/profile-ideal/
# for the ideal front) for callgrind_annotate or kcachegrind. Environment: WARREN (the binary;
# default: built with cargo build --release; BENCH likewise for warren-bench).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-20}
connections=${2:-8}
target=${3:-gateway}
case "$target" in
    gateway) server=(gateway --listen 127.0.0.1:0); out=target/profile ;;
    ideal) server=(http-floor --listen 127.0.0.1:0 --call-over "${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}")
        out=target/profile-ideal ;;
    *) echo "TARGET is gateway or ideal, not $target" >&2; exit 2 ;;
esac
for tool in valgrind callgrind_control callgrind_annotate wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install valgrind wrk curl)" >&2; exit 1; }
done
if [ -z "${WARREN:-}" ] || [ -z "${BENCH:-}" ]; then
    cargo build --release --quiet -p warren -p warren-bench
    WARREN="${WARREN:-${CARGO_TARGET_DIR:-target}/release/warren}"
    BENCH="${BENCH:-${CARGO_TARGET_DIR:-target}/release/warren-bench}"
fi
# The gateway is `warren gateway`; the ideal front is the benchmark's own server.
profiled="$WARREN"
[ "$target" = ideal ] && profiled="$BENCH"
rm -rf "$out" && mkdir -p "$out"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

"$WARREN" run greeting_service --max-workers 64 >"$out/greeter.log" 2>&1 &
pids+=($!)
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
    "$profiled" "${server[@]}" >"$out/gateway.log" 2>"$out/valgrind.log" &
gateway=$!
pids+=("$gateway")

# The gateway prints its address first; under valgrind it takes some seconds to start.
address=""
for _ in $(seq 1 600); do
    address=$(grep -o 'http://[0-9.:]*' "$out/gateway.log" | head -1 || true)
    # (The ideal front has no /readyz: any HTTP answer means it serves.)
    [ -n "$address" ] && curl -s -o /dev/null "$address/readyz" && break
    address=""
    sleep 0.1
done
[ -n "$address" ] || { echo "the gateway did not become ready; see $out/" >&2; exit 1; }

cat >"$out/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"name": "Matt"}'
wrk.headers["Content-Type"] = "application/json"
LUA
load() { wrk -t1 -c"$connections" -d"$1"s -s "$out/post.lua" "$address/rpc/greeting_service/hello"; }
load 5 >/dev/null
callgrind_control --zero "$gateway" >/dev/null 2>&1
load "$seconds" >"$out/wrk.txt"
callgrind_control --dump "$gateway" >/dev/null 2>&1
requests=$(awk '/requests in/ {print $1}' "$out/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$out/wrk.txt")
[ -z "$non2xx" ] || { echo "the load had $non2xx failed requests; see $out/wrk.txt" >&2; exit 1; }

profile=$(ls "$out"/callgrind.out.* | head -1)
callgrind_annotate --threshold=100 --inclusive=yes "$profile" >"$out/inclusive.txt" 2>/dev/null
python3 - "$out/inclusive.txt" "$requests" "$target at $connections connections" <<'PY'
import re, sys
path, requests = sys.argv[1], int(sys.argv[2])
inclusive = {}
for line in open(path):
    m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*)", line)
    if m:
        inclusive.setdefault(m.group(2), int(m.group(1).replace(",", "")))
def cost(*alternatives):
    """The largest inclusive cost of a function whose name holds one of `alternatives`
    (names move as the compiler inlines differently from build to build)."""
    return max((n for name, n in inclusive.items() if any(a in name for a in alternatives)), default=0)
total = cost("PROGRAM TOTALS")
parts = [
    ("HTTP connection tasks (hyper, with the handler in them)", cost(
        "GracefulConnectionFuture<C,F> as core::future::future::Future>::poll",
        "hyper::server::conn::http1::Connection<I,S> as core::future::future::Future>::poll")),
    ("  the call through mesh (publish, wait, decode the reply)", cost(
        "mesh::amqp::client::RpcClient::send::{{closure}} ",
        "RpcClient as mesh::outbound::Outbound>::call::{{closure}} ")),
    ("  the answer (status, metrics, JSON response)", cost("warren_gateway::rpc::answer")),
    ("  metrics of the call", cost("mesh::call_metrics::CallMetrics::record")),
    ("AMQP I/O loop (lapin: frames in and out)", cost("lapin::io_loop::IoLoop<RK,C>::start::{{closure}}")),
    ("  parsing frames", cost("lapin::io_loop::IoLoop<RK,C>::handle_frames")),
    ("allocator (malloc + free)", cost("mi_malloc_aligned") + cost("mi_free")),
]
print(f"{sys.argv[3]}, {requests} requests: {total / requests:,.0f} instructions per request")
for label, n in parts:
    print(f"  {n / requests:>9,.0f}  {n / max(total, 1):6.1%}  {label}")
PY
echo "profile: $profile (callgrind_annotate --inclusive=yes $profile)"

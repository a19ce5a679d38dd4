#!/usr/bin/env bash
# Installs what building and testing weft needs on a fresh machine with rustup and
# apt: the wasm32-wasip2 target, the servers the tests start (nats-server,
# redis-server, docker-registry), and from PyPI the OCI tests' other side (`oras`)
# and `bcrypt` for the registry's htpasswd, and `opentelemetry-proto` for the
# telemetry tests' OTLP receiver. Idempotent: a second run changes nothing.
set -euo pipefail

rustup target add wasm32-wasip2 >/dev/null

missing=()
command -v nats-server >/dev/null || missing+=(nats-server)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v docker-registry >/dev/null || missing+=(docker-registry)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -c "import oras.client, bcrypt, opentelemetry.proto, grpc" 2>/dev/null || {
    echo "installing oras bcrypt opentelemetry-proto grpcio (PyPI)" >&2
    python3 -m pip install -q oras bcrypt opentelemetry-proto grpcio
}

#!/usr/bin/env bash
# Builds weft and the example's components, then runs examples/hello on embedded
# defaults (no servers needed).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build -p weft
# Only the example's two components, where weft-guests' build script puts every
# guest for the tests (same target directory and profile settings, so the test
# suite reuses them): the other guests are not needed to run the example.
CARGO_PROFILE_RELEASE_DEBUG=false cargo build --release --target wasm32-wasip2 --target-dir target/guests \
    -p greeter -p greeter-client
exec target/debug/weft run examples/hello/workload.yaml "$@"

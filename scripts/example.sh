#!/usr/bin/env bash
# Builds weft and the example's components, then runs examples/hello on embedded
# defaults (no servers needed).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# The guest components are built by weft-guests' build script.
cargo build -p weft-guests -p weft
exec target/debug/weft run examples/hello/workload.yaml "$@"

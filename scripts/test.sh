#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# One build from scratch gains nothing from incremental state; it only costs
# disk (gigabytes across the test binaries).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo fmt --all -- --check
# The host crates' tests; weft-guests' build script builds every guest component
# once for all of them.
cargo test
cargo clippy --workspace --all-targets -- -D warnings

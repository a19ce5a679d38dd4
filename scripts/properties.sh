#!/usr/bin/env bash
# The property tests at length (CI runs them with fewer cases): manifest parsing
# and validation, interface names and versions, the HTTP router, the file-name
# encoder and the data-scope encoder. `PROPTEST_CASES` sets the cases per property.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${PROPTEST_CASES:-20000}"
cargo test -p weft-runtime --test properties
cargo test -p weft-runtime --lib -- interface::tests::properties
cargo test -p weft-plugins --lib -- router::tests::properties filenames::tests::any_name scope::tests::the_encoding

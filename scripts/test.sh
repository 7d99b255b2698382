#!/usr/bin/env bash
# Everything the tests need, then every test: formatting, lints, unit, property and end-to-end
# tests. The real samples are read from ../shared/realdata (FLOWMERGE_REALDATA overrides).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# The build cache lives outside the clone so repeated runs are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flowmerge/target}"
export FLOWMERGE_REALDATA="${FLOWMERGE_REALDATA:-$root/../shared/realdata}"

echo "== toolchain"
cargo --version
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --workspace

#!/usr/bin/env bash
# Benchmark: `flowmerge compact` against DuckDB on the same generated flow logs, in one run.
# Usage: bench/run.sh            (720 files / 1.44M records in each of `flowmerge gen`'s three
#                                 profiles — keys repeating ~10×, real-like ~1.2×, none — the
#                                 1,000-file / 3M-record batch, one batch of 4M distinct keys under
#                                 --memory-limit 768MiB, 2M keys of one address pair under
#                                 256MiB, a window with hostile objects under 768MiB, a
#                                 window of 200 CloudTrail objects under 768MiB;
#                                 bench/independent.py: the same checks on traffic
#                                 from a generator of its own, with a conservation oracle;
#                                 bench/rollup.py: the rollup of a day)
#        BENCH_QUICK=1 bench/run.sh   (a small set, to check the script itself)
#        BENCH_RUNS=7 bench/run.sh    (7 alternating runs of each tool per set instead of 3)
# Installs what it needs (duckdb from PyPI into a cached venv); builds flowmerge in release mode.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flowmerge/target}"
venv="${BENCH_VENV:-$HOME/.cache/flowmerge/venv-bench}"

cargo build --release --locked -p flowmerge-cli --bin flowmerge --manifest-path "$root/Cargo.toml"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/pip" install --quiet --disable-pip-version-check 'duckdb>=1.1'

"$venv/bin/python" "$here/bench.py" --flowmerge "$CARGO_TARGET_DIR/release/flowmerge" \
  --work "${BENCH_WORK:-$here/out}" ${BENCH_QUICK:+--quick}
# The performance issue's checks on traffic from a generator independent of `flowmerge gen`.
"$venv/bin/python" "$here/independent.py" --flowmerge "$CARGO_TARGET_DIR/release/flowmerge" \
  --work "${BENCH_WORK:-$here/out}" ${BENCH_QUICK:+--quick}
# The rollup of a day (BENCH_QUICK: two hours of two accounts).
"$venv/bin/python" "$here/rollup.py" --flowmerge "$CARGO_TARGET_DIR/release/flowmerge" \
  --work "${BENCH_WORK:-$here/out}" ${BENCH_QUICK:+--hours 2 --accounts 2}

#!/bin/sh
# Executor footprint and launch latency, mesokit vs pymesos, on one `mesokit local` cluster in
# one run (crates/mesokit/tests/executor_footprint.rs does the work; figures are printed as a
# markdown table for docs/benchmarks.md).
#
#   bench/executor_footprint.sh [rounds]
#
# Builds the dedicated `mesokit-executor` binary with the `executor` profile (small code:
# opt-level s, fat LTO, one codegen unit, stripped) and the release test, then measures with
# that binary as the cluster's executor; MESOKIT_BENCH_EXECUTOR="<argv>" measures another one
# (e.g. "$PWD/target/release/mesokit executor"). Needs the pymesos venv of scripts/test.sh
# (MESOKIT_PYTHON, default .venv/bin/python). MESOKIT_BENCH_SMAPS=1 also prints the largest
# mappings of each executor.
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-30}
: "${MESOKIT_PYTHON:=$PWD/.venv/bin/python}"
export MESOKIT_PYTHON
"$MESOKIT_PYTHON" -c 'import pymesos' || {
    echo "pymesos not importable with $MESOKIT_PYTHON: run scripts/test.sh first" >&2
    exit 1
}
if [ -z "${MESOKIT_BENCH_EXECUTOR:-}" ]; then
    cargo build --profile executor -p mesokit-executor --bin mesokit-executor
    MESOKIT_BENCH_EXECUTOR="${CARGO_TARGET_DIR:-$PWD/target}/executor/mesokit-executor"
fi
export MESOKIT_BENCH_EXECUTOR
ls -l "${MESOKIT_BENCH_EXECUTOR%% *}"
MESOKIT_BENCH_ROUNDS=$rounds cargo test --release -p mesokit --test executor_footprint \
    -- --ignored --nocapture 2>&1 | grep -E '^(\||executor command|mesokit:|pymesos:)'

#!/usr/bin/env bash
# Throughput of the local cluster: N short command tasks (default 1000 x `true`) launched and
# finished through `mesokit local` by a minimal scheduler (crates/mesokit/examples/launch_many.rs),
# plus the peak RSS of the cluster process (VmHWM; executors and tasks are separate processes).
#
#   bench/local_tasks.sh [TASKS] [AGENTS]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
tasks="${1:-1000}"
agents="${2:-4}"
target="${CARGO_TARGET_DIR:-$repo/target}"

cargo build --release -q -p mesokit --bin mesokit --example launch_many
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
work="$(mktemp -d "${BENCH_WORK_PARENT:-${TMPDIR:-/tmp}}/mesokit-bench.XXXXXX")"
"$target/release/mesokit" local --port "$port" --agent-port 0 --agents "$agents" \
    --resources 'cpus:8;mem:16384;disk:20000;ports:[31000-32000]' \
    --allocation-interval-ms 100 --work-dir "$work" >"$work/local.log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.05
done
result="$("$target/release/examples/launch_many" "http://127.0.0.1:$port" "$tasks" true)"
hwm="$(awk '/VmHWM/ {print $2}' /proc/$pid/status)"
echo "$result agents=$agents cluster_peak_rss_kib=$hwm"

#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then checks
# formatting and lints and runs every test.
#
#   scripts/test.sh            # what CI runs (.ci/run), with CI=true
#
# What it installs (once; later runs reuse it):
#   - Debian packages: python3-http-parser, python3-venv (pymesos's parser does not build on
#     Python 3.11 from PyPI; Debian ships a working build); curl and unzip (the local agent
#     fetches URIs and extracts archives with them); zookeeper (the framework's ZooKeeper store,
#     leader election and master detection are tested against a real server)
#   - .venv/ at the repository root: a venv over the system Python with pymesos from PyPI
# Under CI=true a dependency that cannot be installed fails the run; elsewhere too, since a
# skipped dependency would silently skip the tests that need it.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
log() { printf '== %s\n' "$*" >&2; }

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "apt-get install ${missing[*]}"
    local sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    $sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
}

# --- Python venv with pymesos (third-party client for compatibility tests and benchmarks)
apt_install python3-http-parser python3-venv curl unzip zookeeper
[[ -f /usr/share/java/zookeeper.jar ]] || { echo "ZooKeeper is not installed (/usr/share/java/zookeeper.jar)" >&2; exit 1; }
if ! .venv/bin/python -c 'import pymesos, http_parser.parser' >/dev/null 2>&1; then
    log "creating .venv with pymesos"
    /usr/bin/python3 -m venv --system-site-packages .venv
    .venv/bin/pip install -q pymesos
fi
.venv/bin/python -c 'import pymesos' || { echo "pymesos is not importable from .venv" >&2; exit 1; }
export MESOKIT_PYTHON="$repo/.venv/bin/python"

# --- Rust checks and tests
log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "cargo test"
cargo test --workspace 2>&1

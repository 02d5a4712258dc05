#!/usr/bin/env bash
# Decode benchmark: mesokit's JSON RecordIO event decoder vs pymesos's own decode path.
#
#   bench/decode_vs_pymesos.sh            # from any directory
#
# Steps:
#   1. makes sure <repo>/.venv exists with pymesos (Debian python3-http-parser + a venv with
#      --system-site-packages + `pip install pymesos`; pymesos's http-parser does not build on 3.11);
#   2. builds the streams with bench/mkstream.py (cached; deterministic):
#        offers : OFFERS_EVENTS  OFFERS events x 100 offers  (default 200)
#        updates: UPDATES_EVENTS UPDATE events               (default 200000)
#   3. runs bench/pymesos_decode.py on each stream, once per transport in PYMESOS_TRANSPORTS
#      (default "mem tcp"; see the header of pymesos_decode.py);
#   4. runs `cargo run --release -q -p mesokit-proto --example decode_stream -- --format json FILE`;
#   5. prints a table with the MB/s ratio mesokit/pymesos per kind.
#
# Environment knobs:
#   OFFERS_EVENTS, UPDATES_EVENTS   stream sizes (defaults above)
#   STREAM_DIR                      where streams go (default ${CARGO_TARGET_DIR:-<repo>/target}/bench-streams)
#   PYMESOS_TRANSPORTS              "mem", "tcp" or "mem tcp" (default)
#   PYMESOS_MIN_TIME                seconds of measured runs per pymesos figure (default 2)
#   SKIP_MESOKIT=1                  only run the pymesos side
#   CARGO_TARGET_DIR                respected (cargo reads it; streams default under it)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$REPO/bench"
VENV="$REPO/.venv"
PY="$VENV/bin/python"
OFFERS_EVENTS="${OFFERS_EVENTS:-200}"
UPDATES_EVENTS="${UPDATES_EVENTS:-200000}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
STREAM_DIR="${STREAM_DIR:-$TARGET_DIR/bench-streams}"
PYMESOS_TRANSPORTS="${PYMESOS_TRANSPORTS:-mem tcp}"
PYMESOS_MIN_TIME="${PYMESOS_MIN_TIME:-2}"
SKIP_MESOKIT="${SKIP_MESOKIT:-0}"

log() { printf '>> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- 1. venv with pymesos
venv_ok() {
    [[ -x "$PY" ]] && "$PY" -c 'import pymesos.process, http_parser.parser' >/dev/null 2>&1
}

setup_venv() {
    if ! /usr/bin/python3 -c 'import http_parser.parser, venv, ensurepip' >/dev/null 2>&1; then
        log "installing python3-http-parser python3-venv (Debian packages)"
        local SUDO=""
        if [[ "$(id -u)" != 0 ]]; then
            command -v sudo >/dev/null || die "need root (or sudo) to apt-get install python3-http-parser python3-venv"
            SUDO="sudo"
        fi
        $SUDO apt-get install -y python3-http-parser python3-venv >&2 \
            || { $SUDO apt-get update >&2 && $SUDO apt-get install -y python3-http-parser python3-venv >&2; }
    fi
    if [[ ! -x "$PY" ]]; then
        log "creating $VENV (--system-site-packages, for Debian's http_parser)"
        /usr/bin/python3 -m venv --system-site-packages "$VENV"
    fi
    log "pip install pymesos"
    "$VENV/bin/pip" install -q pymesos >&2
    venv_ok || die "pymesos still not importable from $PY"
}

venv_ok || setup_venv

# ---------------------------------------------------------------- 2. streams
mkdir -p "$STREAM_DIR"
OFFERS_FILE="$STREAM_DIR/offers-${OFFERS_EVENTS}x100.json.recordio"
UPDATES_FILE="$STREAM_DIR/updates-${UPDATES_EVENTS}.json.recordio"

make_stream() {  # kind count file
    if [[ -s "$3" ]]; then
        log "reusing $3"
    else
        log "building $3"
        "$PY" "$BENCH/mkstream.py" "$1" "$2" "$3.tmp" >&2
        mv "$3.tmp" "$3"
    fi
}
make_stream offers "$OFFERS_EVENTS" "$OFFERS_FILE"
make_stream updates "$UPDATES_EVENTS" "$UPDATES_FILE"

# ---------------------------------------------------------------- helpers
# kv LINE KEY -> value of KEY=value in a result line
kv() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n1; }

# ---------------------------------------------------------------- 3. pymesos
declare -A PYM   # PYM[kind,transport] = result line
for kind in offers updates; do
    file="OFFERS_FILE"; [[ $kind == updates ]] && file="UPDATES_FILE"
    for tp in $PYMESOS_TRANSPORTS; do
        log "pymesos ($tp) on $kind"
        line="$("$PY" "$BENCH/pymesos_decode.py" --transport "$tp" --kind "$kind" \
                 --min-time "$PYMESOS_MIN_TIME" "${!file}" | grep '^pymesos ' | tail -n1)"
        [[ -n "$line" ]] || die "pymesos_decode.py printed no result for $kind/$tp"
        echo "$line"
        PYM[$kind,$tp]="$line"
    done
done

# ---------------------------------------------------------------- 4. mesokit
declare -A MK    # MK[kind] = result line (borrowed views)
declare -A MKO   # MKO[kind] = result line (owned prost types)
MESOKIT_FAILED=0
if [[ "$SKIP_MESOKIT" != 1 ]]; then
    command -v cargo >/dev/null || die "cargo not found (set SKIP_MESOKIT=1 to run only the pymesos side)"
    log "building mesokit-proto example decode_stream (release)"
    if (cd "$REPO" && cargo build --release -q -p mesokit-proto --example decode_stream >&2); then
        for kind in offers updates; do
            file="OFFERS_FILE"; [[ $kind == updates ]] && file="UPDATES_FILE"
            log "mesokit on $kind"
            if out="$(cd "$REPO" && cargo run --release -q -p mesokit-proto --example decode_stream -- \
                         --format json "${!file}")" \
               && line="$(grep '^mesokit ' <<<"$out" | tail -n1)" && [[ -n "$line" ]]; then
                echo "$out"
                MK[$kind]="$line"
                MKO[$kind]="$(grep '^mesokit-owned ' <<<"$out" | tail -n1)"
            else
                log "mesokit decode_stream failed on $kind"
                MESOKIT_FAILED=1
            fi
        done
    else
        log "cargo build of decode_stream failed; table will show n/a for mesokit"
        MESOKIT_FAILED=1
    fi
fi

# ---------------------------------------------------------------- 5. table
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.1fx", a / b }'; }
or_na() { [[ -n "$1" ]] && printf '%s' "$1" || printf 'n/a'; }

echo
hdr="$(printf '%-8s %10s %8s' kind MB events)"
for tp in $PYMESOS_TRANSPORTS; do hdr+="$(printf ' %14s' "pymesos-$tp")"; done
hdr+="$(printf ' %14s %12s' mesokit-owned mesokit)"
for tp in $PYMESOS_TRANSPORTS; do hdr+="$(printf ' %18s' "mesokit/pym-$tp")"; done
echo "$hdr   (MB/s, MB = 10^6 bytes)"
for kind in offers updates; do
    first="${PYM[$kind,${PYMESOS_TRANSPORTS%% *}]}"
    bytes="$(kv "$first" bytes)"; events="$(kv "$first" events)"
    mk_line="${MK[$kind]:-}"
    mk="$(kv "$mk_line" MBps)"
    if [[ -n "$mk_line" && "$(kv "$mk_line" events)" != "$events" ]]; then
        log "WARNING: mesokit decoded $(kv "$mk_line" events) events on $kind, pymesos $events"
    fi
    row="$(printf '%-8s %10.1f %8s' "$kind" "$(awk -v b="$bytes" 'BEGIN{print b/1e6}')" "$events")"
    for tp in $PYMESOS_TRANSPORTS; do row+="$(printf ' %14s' "$(kv "${PYM[$kind,$tp]}" MBps)")"; done
    row+="$(printf ' %14s %12s' "$(or_na "$(kv "${MKO[$kind]:-}" MBps)")" "$(or_na "$mk")")"
    for tp in $PYMESOS_TRANSPORTS; do row+="$(printf ' %18s' "$(ratio "$mk" "$(kv "${PYM[$kind,$tp]}" MBps)")")"; done
    echo "$row"
done
echo "events/s:"
for kind in offers updates; do
    row="$(printf '  %-8s' "$kind")"
    for tp in $PYMESOS_TRANSPORTS; do row+="$(printf ' pymesos-%s=%s' "$tp" "$(kv "${PYM[$kind,$tp]}" events_per_s)")"; done
    row+=" mesokit=$(or_na "$(kv "${MK[$kind]:-}" events_per_s)")"
    echo "$row"
done

exit "$MESOKIT_FAILED"

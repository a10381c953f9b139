#!/usr/bin/env bash
# test_serve_load.sh — `sdgen serve` under load, interrupted, and left by its clients (real HTTP on 127.0.0.1).
#   1. 50 txt2img requests from 10 concurrent clients (tests/serve/a1111_client.py, a barrier starts them together)
#      against --queue 4: every answer is 200 with one image or 503 "queue is full" with Retry-After, at least 5 are
#      served and some refused, no client hangs, the server stays up, and its resident memory returns to within
#      max(32 MB, 25%) of its idle level after a warm-up request.
#   2. /sdapi/v1/interrupt during a 50-step job: the job stops after at most one more step (the server logs the step
#      it was at when asked and the one it stopped after), its request answers 200 with no image.
#   3. a client that disconnects while its request is queued is dropped from the queue (its seed never runs), the
#      running job finishes normally.
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/serve-load
rm -rf "$TMP"
mkdir -p "$TMP/cache"
export XDG_CACHE_HOME=$TMP/cache
unset SDGEN_VOCAB SDGEN_MODEL SDGEN_API_AUTH
PY=/usr/bin/python3
CLIENT=$SRC/tests/serve/a1111_client.py
DEMO=$SRC/models/demo.safetensors
# Under AddressSanitizer freed memory waits in its quarantine and allocator caches instead of going back to the
# system: without them the resident-size check would measure the sanitizer, not the server.
if [ "${SDGEN_SANITIZE:-OFF}" = ON ]; then
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0:allocator_release_to_os_interval_ms=100"
fi
# shellcheck source=serve/lib.sh
. "$SRC/tests/serve/lib.sh"

run_client() { # run_client NAME ARGS...: one client mode; its result line, its failures shown
  local name=$1
  shift
  if $PY "$CLIENT" "$@" >"$TMP/$name.txt" 2>&1; then ok "$name: $(tail -n 1 "$TMP/$name.txt")"; else
    bad "$name: $(tail -n 1 "$TMP/$name.txt")"
    grep -E '^(FAIL|Traceback|  )' "$TMP/$name.txt" | sed 's/^/     | /' >&2
  fi
  grep '^ok ' "$TMP/$name.txt" | sed 's/^/     /'
}

if start_server load -m "$DEMO" --queue 4; then
  run_client load load "$SRV_URL" "$SRV_PID" "$TMP"
  check "load: 503 answers logged" "$(grep -c 'POST /sdapi/v1/txt2img 503' "$SRV_LOG" | awk '{print ($1 > 0)}')" 1
  still_serving "after the load"
  run_client interrupt interrupt "$SRV_URL" "$SRV_LOG"
  run_client dropped dropped "$SRV_URL" "$SRV_LOG"
  still_serving "after interrupt and dropped client"
  stop_server load
  check "exit 0 after SIGTERM" "$SRV_RC" 0
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

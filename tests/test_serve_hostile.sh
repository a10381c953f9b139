#!/usr/bin/env bash
# test_serve_hostile.sh — `sdgen serve` against hostile input (real HTTP and raw sockets on 127.0.0.1); each gets a
# clear 4xx and the server keeps serving (tests/serve/a1111_client.py hostile):
#   malformed JSON, a non-object, 100,000-deep nesting, \u0000 and lone surrogates, non-UTF-8 prompts, huge and negative
#   sizes, out-of-range seeds and numbers, too many images, a 70 KB prompt, save_images without --save-dir (path-like
#   prompt), invalid / non-image / truncated base64 init images, a 100 MB body (Content-Length and chunked), 10,000 and
#   200 headers, a non-HTTP request line, a foreign Host, a cross-origin POST, a slowloris client (408 after --timeout
#   while others are served) and an idle connection (closed); yet a job that runs longer than --timeout is answered.
# Then with --save-dir: a path-like prompt with save_images writes one PNG inside the folder and nothing beside it.
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/serve-hostile
rm -rf "$TMP"
mkdir -p "$TMP/cache" "$TMP/box/saved"
export XDG_CACHE_HOME=$TMP/cache
unset SDGEN_VOCAB SDGEN_MODEL SDGEN_API_AUTH
PY=/usr/bin/python3
CLIENT=$SRC/tests/serve/a1111_client.py
DEMO=$SRC/models/demo.safetensors
# shellcheck source=serve/lib.sh
. "$SRC/tests/serve/lib.sh"

run_client() {
  local name=$1
  shift
  if $PY "$CLIENT" "$@" >"$TMP/$name.txt" 2>&1; then ok "$name: $(tail -n 1 "$TMP/$name.txt")"; else
    bad "$name: $(tail -n 1 "$TMP/$name.txt")"
    grep -E '^(FAIL|Traceback|  )' "$TMP/$name.txt" | sed 's/^/     | /' >&2
  fi
  grep '^ok ' "$TMP/$name.txt" | sed 's/^/     /'
}

if start_server hostile -m "$DEMO"; then
  head -c 100000000 /dev/zero >"$TMP/100MB"
  check "curl, 100 MB body: 413" "$(curl -s -o "$TMP/big.json" -w '%{http_code}' --max-time 120 \
    -H 'Content-Type: application/json' --data-binary @"$TMP/100MB" "$SRV_URL/sdapi/v1/txt2img")" 413
  check "curl, 100 MB body: A1111 error naming the limit" "$(grep -c '"detail":"the body is 100000000 bytes; at most' \
    "$TMP/big.json")" 1
  rm -f "$TMP/100MB"
  run_client hostile hostile "$SRV_URL" "$TMP"
  still_serving "after the hostile input"
  check "every request was logged with its status (none left out)" \
    "$(grep -cE ' (GET|POST|-) /[^ ]* (4[0-9][0-9]|200|503) [0-9.]+s' "$SRV_LOG" | awk '{print ($1 >= 40)}')" 1
  stop_server hostile
  check "exit 0 after SIGTERM" "$SRV_RC" 0
fi

if start_server slow -m "$DEMO" --timeout 1; then
  run_client slow slow "$SRV_URL"
  # the time-out is for clients, not for the answer: a job longer than --timeout still gets it. How long a job takes
  # depends on the machine, so the job grows (4x the pixels each round) until one does outlast the time-out.
  secs=0
  for size in 128 256 512 1024; do
    code=$(curl -s -o "$TMP/long.json" -w '%{http_code}' --max-time 900 \
      -d '{"prompt":"a red star","steps":50,"width":'$size',"height":'$size'}' "$SRV_URL/sdapi/v1/txt2img")
    secs=$(grep 'POST /sdapi/v1/txt2img 200' "$SRV_LOG" | tail -n 1 | sed -n 's/.* \([0-9.]*\)s$/\1/p')
    [ "$code" = 200 ] && [ "$(awk -v t="${secs:-0}" 'BEGIN {print (t > 1.5)}')" = 1 ] && break
  done
  check "a job longer than --timeout 1 (${size}x${size}): 200 with its image" \
    "$code $(grep -c '^{"images":\["iVBOR' "$TMP/long.json")" "200 1"
  check "that job did take longer than the time-out (${secs}s)" "$(awk -v t="${secs:-0}" 'BEGIN {print (t > 1)}')" 1
  still_serving "after the slow clients"
  stop_server slow
fi

if start_server save -m "$DEMO" --save-dir "$TMP/box/saved"; then
  run_client save save "$SRV_URL" "$TMP/box/saved"
  stop_server save
fi
"$SDGEN" serve -m "$DEMO" --save-dir "$TMP/missing/dir" >/dev/null 2>"$TMP/sd.err"
check "--save-dir that does not exist: exit 2" "$?" 2

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

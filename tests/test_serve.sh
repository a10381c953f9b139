#!/usr/bin/env bash
# test_serve.sh — `sdgen serve` over real HTTP on 127.0.0.1 (a free port), driven by curl and by a client written
# against A1111's documented API (tests/serve/a1111_client.py, Python standard library only).
#   1. curl: txt2img with the demo model gives the PNG bytes of `sdgen -p ... --seed ... -W -H --steps --cfg-scale
#      --sampler` (parameters chunk included); the request is logged (client, endpoint, status, seconds).
#   2. the A1111 client: samplers (each name/alias accepted by the CLI, every CLI sampler listed), schedulers,
#      sd-models, options, progress; txt2img batch of 2 = the CLI's two seeds; info parses and its seeds match;
#      png-info round-trips; Karras + clip skip, defaults, send_images; img2img (plain and data-URL base64) = `sdgen -i`;
#      OpenAI /v1/images/generations = the CLI; error statuses and A1111's error shape.
#   3. the golden tiny SD 1.x model: txt2img = the CLI's bytes (CPU and GPU noise).
#   4. --api-auth: 401 without / with wrong credentials (WWW-Authenticate), 200 with the right ones; --cors-origin:
#      the allowed origin gets Access-Control-Allow-Origin, a preflight 204, another origin 403.
#   3b. LoRA tags through the server give the CLI's PNG bytes (loras/ beside the model; --lora-dir with --lora-apply
#      fly, two LoRAs, then none); /sdapi/v1/loras lists the folder's *.safetensors; a missing LoRA fails its request
#      and the server keeps serving; a bad --lora-dir or --lora-apply exits 2.
#   5. a non-loopback --listen without --api-auth is refused (exit 2, nothing bound); bad options exit 2.
#   6. SIGTERM during a 200-step job: its client gets 503, a queued one too, the server exits 0 and says "stopped".
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SHARED=${SDGEN_SHARED:-../shared}
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/serve
rm -rf "$TMP"
mkdir -p "$TMP/cache" "$TMP/py"
export XDG_CACHE_HOME=$TMP/cache # the model-hash cache of server and CLI
unset SDGEN_VOCAB SDGEN_MODEL SDGEN_API_AUTH
PY=/usr/bin/python3
CLIENT=$SRC/tests/serve/a1111_client.py
DEMO=$SRC/models/demo.safetensors
TINY=$SHARED/golden/models/tiny-sd1.safetensors
VOCAB=$SHARED/clip
# shellcheck source=serve/lib.sh
. "$SRC/tests/serve/lib.sh"

# ---- 1. curl ----
if start_server demo -m "$DEMO" --queue 4; then
  P="a large red circle on the left, blue background"
  curl -s --max-time 300 -H 'Content-Type: application/json' -o "$TMP/curl.json" -w '%{http_code}' \
    -d "{\"prompt\":\"$P\",\"seed\":42,\"width\":64,\"height\":64,\"steps\":8,\"cfg_scale\":7.5,\"sampler_name\":\"DDIM\"}" \
    "$SRV_URL/sdapi/v1/txt2img" >"$TMP/curl.code"
  check "curl txt2img: 200" "$(cat "$TMP/curl.code")" 200
  sed -n 's/^{"images":\["\([^"]*\)".*/\1/p' "$TMP/curl.json" | base64 -d >"$TMP/curl.png"
  "$SDGEN" -m "$DEMO" -p "$P" --seed 42 -W 64 -H 64 --steps 8 --cfg-scale 7.5 --sampler ddim -o "$TMP/cli.png" -q
  if cmp -s "$TMP/curl.png" "$TMP/cli.png" && [ -s "$TMP/cli.png" ]; then
    ok "curl txt2img: PNG bytes equal the CLI's ($(stat -c %s "$TMP/cli.png") bytes, parameters chunk included)"
  else
    bad "curl txt2img: PNG differs from the CLI's ($(stat -c %s "$TMP/curl.png") vs $(stat -c %s "$TMP/cli.png") bytes)"
  fi
  if grep -qE '^[0-9T:.-]+Z 127\.0\.0\.1 POST /sdapi/v1/txt2img 200 [0-9]+\.[0-9]{3}s$' "$SRV_LOG"; then
    ok "one log line: time, client, method, endpoint, status, seconds"
  else
    bad "no request log line for the txt2img"
  fi

  # ---- 2. the A1111 client ----
  if $PY "$CLIENT" functional "$SRV_URL" "$SDGEN" "$DEMO" "$TMP/py" >"$TMP/functional.txt" 2>&1; then
    ok "A1111 client: $(tail -n 1 "$TMP/functional.txt")"
  else
    bad "A1111 client: $(tail -n 1 "$TMP/functional.txt")"
    grep '^FAIL' "$TMP/functional.txt" | sed 's/^/     | /' >&2
  fi
  still_serving "after the functional checks"
  stop_server demo
  check "SIGTERM when idle: exit 0" "$SRV_RC" 0
fi

# ---- 3. the golden tiny model ----
if start_server tiny -m "$TINY" --vocab "$VOCAB"; then
  if $PY "$CLIENT" tiny "$SRV_URL" "$SDGEN" "$TINY" "$VOCAB" "$TMP/py" >"$TMP/tiny.txt" 2>&1; then
    ok "tiny model: $(tail -n 1 "$TMP/tiny.txt")"
  else
    bad "tiny model: $(tail -n 1 "$TMP/tiny.txt")"
    grep '^FAIL' "$TMP/tiny.txt" | sed 's/^/     | /' >&2
  fi
  stop_server tiny INT
  check "SIGINT when idle: exit 0" "$SRV_RC" 0
fi
check "sdgen --help mentions serve" "$("$SDGEN" --help | grep -c '^       sdgen serve ')" 1

# ---- 3b. LoRAs: tags through the server = the CLI; --lora-dir and --lora-apply; /sdapi/v1/loras ----
if [ -f "$TINY" ]; then
  LG=$SHARED/golden/models
  mkdir -p "$TMP/lm/loras" "$TMP/ld/sub.safetensors"
  ln -sf "$TINY" "$TMP/lm/tiny.safetensors"
  cp "$LG/lora-kohya-tiny-sd1.safetensors" "$TMP/lm/loras/kohya.safetensors"
  cp "$LG/lora-diffusers-tiny-sd1.safetensors" "$TMP/ld/diff.safetensors"
  cp "$LG/lora-kohya-tiny-sd1.safetensors" "$TMP/ld/k2.safetensors"
  echo notes >"$TMP/ld/readme.txt"
  LM=$TMP/lm/tiny.safetensors
  LP="a red apple on a wooden table"
  # lora_pair NAME TAGS CLI-OPTIONS...: the server's PNG for "$LP TAGS" against the CLI's with those options
  lora_pair() {
    local name=$1 tags=$2
    shift 2
    local code
    code=$(curl -s --max-time 300 -o "$TMP/$name.json" -w '%{http_code}' -d "{\"prompt\":\"$LP $tags\",\"seed\":42,\
\"width\":64,\"height\":64,\"steps\":2,\"cfg_scale\":7,\"sampler_name\":\"DDIM\"}" "$SRV_URL/sdapi/v1/txt2img")
    check "$name: 200" "$code" 200
    sed -n 's/^{"images":\["\([^"]*\)".*/\1/p' "$TMP/$name.json" | base64 -d >"$TMP/$name.png"
    "$SDGEN" -q -m "$LM" --vocab "$VOCAB" -p "$LP $tags" --seed 42 -W 64 -H 64 --steps 2 --cfg-scale 7 \
      --sampler ddim -o "$TMP/$name-cli.png" "$@" >/dev/null
    if [ -s "$TMP/$name.png" ] && cmp -s "$TMP/$name.png" "$TMP/$name-cli.png"; then
      ok "$name: PNG bytes equal the CLI's"
    else
      bad "$name: the server's PNG differs from the CLI's"
    fi
  }
  if start_server loras -m "$LM" --vocab "$VOCAB"; then
    lora_pair lora-beside "<lora:kohya:0.8>"
    check "lora-beside: the answer's infotext has the LoRA's hash" "$(grep -c 'Lora hashes' "$TMP/lora-beside.json")" 1
    check "/sdapi/v1/loras: loras/ beside the model" \
      "$(curl -s --max-time 60 "$SRV_URL/sdapi/v1/loras" | grep -o '"name":"[^"]*"' | tr '\n' ' ')" '"name":"kohya" '
    stop_server loras
  fi
  if start_server lorafly -m "$LM" --vocab "$VOCAB" --lora-dir "$TMP/ld" --lora-apply fly; then
    lora_pair lora-fly "<lora:diff:1> <lora:k2:0.8>" --lora-dir "$TMP/ld" --lora-apply fly
    lora_pair lora-fly-none "" --lora-dir "$TMP/ld" --lora-apply fly
    curl -s --max-time 60 "$SRV_URL/sdapi/v1/loras" >"$TMP/loras.json"
    check "/sdapi/v1/loras: the --lora-dir files, sorted, only *.safetensors files" \
      "$(grep -o '"name":"[^"]*"' "$TMP/loras.json" | tr '\n' ' ')" '"name":"diff" "name":"k2" '
    check "/sdapi/v1/loras: A1111's fields" "$(grep -c "\"alias\":\"k2\",\"path\":\"$TMP/ld/k2.safetensors\",\"metadata\":{}" \
      "$TMP/loras.json")" 1
    code=$(curl -s --max-time 60 -o "$TMP/lmiss.json" -w '%{http_code}' \
      -d "{\"prompt\":\"$LP <lora:kohya:1>\",\"steps\":2,\"width\":64,\"height\":64}" "$SRV_URL/sdapi/v1/txt2img")
    check "a tag naming no file in --lora-dir: an error status" "$([ "$code" -ge 400 ] && echo yes)" yes
    check "a tag naming no file: the message names the file" "$(grep -c "no file $TMP/ld/kohya.safetensors" "$TMP/lmiss.json")" 1
    still_serving "after a missing LoRA"
    stop_server lorafly
  fi
  for bad_args in "--lora-dir $TMP/nowhere" "--lora-dir $TMP/ld/readme.txt" "--lora-apply sometimes"; do
    # shellcheck disable=SC2086
    "$SDGEN" serve -m "$LM" --vocab "$VOCAB" $bad_args >/dev/null 2>"$TMP/opt.err"
    rc=$?
    if [ "$rc" = 2 ] && [ "$(wc -l <"$TMP/opt.err")" = 1 ]; then ok "serve $bad_args: exit 2, $(cat "$TMP/opt.err")"; else
      bad "serve $bad_args: exit $rc: $(head -c 300 "$TMP/opt.err")"
    fi
  done
fi

# ---- 4. credentials and CORS ----
if start_server auth -m "$DEMO" --api-auth 'ann:s3cret:with:colons' --cors-origin http://front.example; then
  code() { curl -s -o "$TMP/body" -D "$TMP/head" -w '%{http_code}' --max-time 60 "$@"; }
  check "no credentials: 401" "$(code "$SRV_URL/sdapi/v1/samplers")" 401
  check "no credentials: WWW-Authenticate Basic" "$(grep -ci '^WWW-Authenticate: Basic' "$TMP/head")" 1
  check "no credentials: detail" "$(grep -o '"detail":"[^"]*"' "$TMP/body")" '"detail":"Not authenticated"'
  check "wrong password: 401" "$(code -u 'ann:s3cret:with:colon' "$SRV_URL/sdapi/v1/samplers")" 401
  check "wrong password: detail" "$(grep -o '"detail":"[^"]*"' "$TMP/body")" '"detail":"Incorrect username or password"'
  check "wrong user: 401" "$(code -u 'bob:s3cret:with:colons' "$SRV_URL/sdapi/v1/samplers")" 401
  check "right credentials: 200" "$(code -u 'ann:s3cret:with:colons' "$SRV_URL/sdapi/v1/samplers")" 200
  check "OpenAI-style Bearer USER:PASS: 200" "$(code -H 'Authorization: Bearer ann:s3cret:with:colons' \
    -d '{"prompt":"a","n":1,"steps":2}' "$SRV_URL/v1/images/generations")" 200
  check "wrong Bearer token: 401 in OpenAI's error shape" "$(code -H 'Authorization: Bearer sk-123' \
    -d '{"prompt":"a"}' "$SRV_URL/v1/images/generations") $(grep -c '"error":{"message"' "$TMP/body")" "401 1"
  check "right credentials, other Host (auth replaces the localhost rule): 200" \
    "$(code -u 'ann:s3cret:with:colons' -H 'Host: sd.example' "$SRV_URL/sdapi/v1/options")" 200
  check "allowed origin: 200" \
    "$(code -u 'ann:s3cret:with:colons' -H 'Origin: http://front.example' "$SRV_URL/sdapi/v1/sd-models")" 200
  check "allowed origin: Access-Control-Allow-Origin" \
    "$(sed -n 's/^Access-Control-Allow-Origin: \(.*\)\r$/\1/Ip' "$TMP/head")" http://front.example
  check "allowed origin: credentials allowed" "$(grep -ci '^Access-Control-Allow-Credentials: true' "$TMP/head")" 1
  check "preflight (no credentials): 204" "$(code -X OPTIONS -H 'Origin: http://front.example' \
    -H 'Access-Control-Request-Method: POST' "$SRV_URL/sdapi/v1/txt2img")" 204
  check "preflight: methods" "$(sed -n 's/^Access-Control-Allow-Methods: \(.*\)\r$/\1/Ip' "$TMP/head")" "GET, POST, OPTIONS"
  check "other origin: 403" "$(code -u 'ann:s3cret:with:colons' -H 'Origin: http://evil.example' \
    "$SRV_URL/sdapi/v1/samplers")" 403
  if $PY -c "
import sys; sys.path.insert(0, '$SRC/tests/serve'); import a1111_client as c
st = c.Api('$SRV_URL', auth='ann:s3cret:with:colons').txt2img(prompt='a', steps=2)[0]
sys.exit(0 if st == 200 else 1)"; then ok "A1111 client with Basic auth: txt2img 200"; else bad "A1111 client with Basic auth: txt2img"; fi
  stop_server auth
  check "auth server: exit 0" "$SRV_RC" 0
fi

# ---- 5. refused start-ups ----
"$SDGEN" serve -m "$DEMO" --listen 0.0.0.0:0 >"$TMP/nl.out" 2>"$TMP/nl.err"
check "non-loopback --listen without --api-auth: exit 2" "$?" 2
check "non-loopback: says how to allow it" "$(grep -c 'reachable from other machines: set --api-auth' "$TMP/nl.err")" 1
check "non-loopback: nothing printed on stdout (never listened)" "$(cat "$TMP/nl.out")" ""
for bad_args in "--queue 0" "--listen 127.0.0.1:99999" "--listen nohost" "--api-auth nocolon" "--max-body 2G" \
  "--timeout 0" "--bogus"; do
  # shellcheck disable=SC2086
  "$SDGEN" serve -m "$DEMO" $bad_args >/dev/null 2>"$TMP/opt.err"
  rc=$?
  if [ "$rc" = 2 ] && [ "$(wc -l <"$TMP/opt.err")" = 1 ]; then ok "serve $bad_args: exit 2, $(cat "$TMP/opt.err")"; else
    bad "serve $bad_args: exit $rc: $(head -c 300 "$TMP/opt.err")"
  fi
done

# ---- 6. SIGTERM with a job running and one queued ----
if start_server term -m "$DEMO" --queue 2; then
  curl -s --max-time 300 -o "$TMP/long.json" -w '%{http_code}' -d '{"prompt":"a","steps":200,"width":128,"height":128}' \
    "$SRV_URL/sdapi/v1/txt2img" >"$TMP/long.code" &
  c1=$!
  t0=$SECONDS
  until grep -q '"sampling_step":[1-9]' <(curl -s --max-time 10 "$SRV_URL/sdapi/v1/progress") ||
    [ $((SECONDS - t0)) -gt 120 ]; do sleep 0.05; done
  curl -s --max-time 300 -o "$TMP/queued.json" -w '%{http_code}' -d '{"prompt":"b","steps":2}' \
    "$SRV_URL/sdapi/v1/txt2img" >"$TMP/queued.code" &
  c2=$!
  until grep -q '"queued":1' <(curl -s --max-time 10 "$SRV_URL/sdapi/v1/progress") || [ $((SECONDS - t0)) -gt 120 ]; do
    sleep 0.05
  done
  stop_server term TERM
  wait "$c1" "$c2"
  check "SIGTERM: the running job's client gets 503" "$(cat "$TMP/long.code")" 503
  check "SIGTERM: it says the job was cancelled" "$(grep -c 'shutting down: the job was cancelled' "$TMP/long.json")" 1
  check "SIGTERM: the queued client gets 503" "$(cat "$TMP/queued.code")" 503
  check "SIGTERM: exit 0" "$SRV_RC" 0
  check "SIGTERM: the log says so and ends with 'stopped'" \
    "$(grep -c 'SIGTERM: cancelling the running job' "$SRV_LOG") $(tail -n 1 "$SRV_LOG" | grep -c 'sdgen serve: stopped$')" "1 1"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

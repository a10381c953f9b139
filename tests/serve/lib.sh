# tests/serve/lib.sh — helpers of the `sdgen serve` tests (sourced): start a server on 127.0.0.1 on a free port
# (--listen 127.0.0.1:0; the server prints its URL on stdout), stop it, and the ok/bad/check counters.
# Every wait is bounded; a server that does not come up or go down in time is a failure, never a hang.

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1" >&2; }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2' want '$3'"; fi; }

# start_server NAME ARGS...: sets SRV_PID, SRV_URL, SRV_LOG (stderr), SRV_OUT (stdout); 0 when it listens
start_server() {
  local name=$1
  shift
  SRV_LOG=$TMP/$name.log
  SRV_OUT=$TMP/$name.out
  : >"$SRV_OUT"
  "$SDGEN" serve --listen 127.0.0.1:0 "$@" >"$SRV_OUT" 2>"$SRV_LOG" &
  SRV_PID=$!
  local t0=$SECONDS
  while [ ! -s "$SRV_OUT" ] && kill -0 "$SRV_PID" 2>/dev/null && [ $((SECONDS - t0)) -lt 120 ]; do sleep 0.05; done
  SRV_URL=$(head -n 1 "$SRV_OUT")
  case "$SRV_URL" in
  http://127.0.0.1:*) return 0 ;;
  esac
  bad "$name: the server did not start (log below)"
  sed 's/^/     | /' "$SRV_LOG" | tail -n 20 >&2
  kill -9 "$SRV_PID" 2>/dev/null
  return 1
}

# stop_server NAME [SIGNAL]: signal it (TERM), wait up to 60 s; SRV_RC = its exit status (124: had to be killed)
stop_server() {
  local sig=${2:-TERM} t0=$SECONDS
  kill "-$sig" "$SRV_PID" 2>/dev/null
  while kill -0 "$SRV_PID" 2>/dev/null && [ $((SECONDS - t0)) -lt 60 ]; do sleep 0.05; done
  if kill -0 "$SRV_PID" 2>/dev/null; then
    kill -9 "$SRV_PID" 2>/dev/null
    wait "$SRV_PID" 2>/dev/null
    SRV_RC=124
  else
    wait "$SRV_PID"
    SRV_RC=$?
  fi
  if grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$SRV_LOG"; then
    bad "$1: sanitizer report"
    sed 's/^/     | /' "$SRV_LOG" | grep -A 12 -E "Sanitizer|runtime error" | head -n 40 >&2
  fi
}

# still_serving NAME: the process is alive and answers GET /sdapi/v1/samplers with 200
still_serving() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$SRV_URL/sdapi/v1/samplers")
  if kill -0 "$SRV_PID" 2>/dev/null && [ "$code" = 200 ]; then ok "$1: server still serving"; else
    bad "$1: server not serving (GET samplers: $code)"
  fi
}

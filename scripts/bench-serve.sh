#!/usr/bin/env bash
# bench-serve.sh — what one image costs through `sdgen serve` against the `sdgen` command, for the same image
# (docs/SERVER.md "Per-request overhead").
#
#   scripts/bench-serve.sh [-n RUNS] [--steps N] MODEL [sdgen options such as --vocab DIR --weights f32]
#
# Runs the same 64x64 txt2img RUNS times (default 5) as `sdgen -p ... -o x.png` (a new process each time: start,
# model open, vocabulary, generation, PNG) and as POST /sdapi/v1/txt2img to one server started once (after one
# warm-up request), and prints wall times (min and median) and CPU time per image (user + system: the command's
# own, the server process's growth over the runs), and what the server saves per request. The outputs are checked
# to be the same PNG. On a busy machine the minimum wall time and the CPU time are the better estimates.
# Needs curl, base64 and GNU time; uses build/sdgen unless $SDGEN is set; the model-hash cache goes to a
# temporary folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sdgen="${SDGEN:-$root/build/sdgen}"
runs=5
steps=4
while [ $# -gt 0 ]; do
  case "$1" in
  -n) runs=$2; shift 2 ;;
  --steps) steps=$2; shift 2 ;;
  *) break ;;
  esac
done
model="${1:?usage: bench-serve.sh [-n RUNS] [--steps N] MODEL [sdgen options]}"
shift
tmp=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME=$tmp/cache
prompt="a large red circle on the left, blue background"
now() { date +%s.%N; }
stats() { sort -g | awk '{a[NR]=$1} END {printf "wall min %.3f s, median %.3f s", a[1], a[int((NR+1)/2)]}'; }
# user + system CPU seconds of a process so far (proc(5): fields 14 and 15, in clock ticks)
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

"$sdgen" serve -m "$model" "$@" --listen 127.0.0.1:0 >"$tmp/url" 2>"$tmp/log" &
pid=$!
while [ ! -s "$tmp/url" ]; do
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/log" >&2; exit 1; }
  sleep 0.1
done
url=$(cat "$tmp/url")
body="{\"prompt\":\"$prompt\",\"seed\":1,\"width\":64,\"height\":64,\"steps\":$steps,\"cfg_scale\":7.5,\"sampler_name\":\"Euler a\"}"
curl -s -o /dev/null -d "$body" "$url/sdapi/v1/txt2img" # warm-up: first use of the weights
c0=$(cpu_of "$pid")
for i in $(seq "$runs"); do
  t0=$(now)
  curl -s -o "$tmp/resp.json" -d "$body" "$url/sdapi/v1/txt2img"
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'
done >"$tmp/server.t"
server_cpu=$(awk -v a="$c0" -v b="$(cpu_of "$pid")" -v n="$runs" 'BEGIN {print (b - a) / n}')
sed -n 's/^{"images":\["\([^"]*\)".*/\1/p' "$tmp/resp.json" | base64 -d >"$tmp/server.png"
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=
# the CLI, once to fill the hash cache (as the server did at start), then timed
"$sdgen" -m "$model" "$@" -p "$prompt" --seed 1 -W 64 -H 64 --steps "$steps" --sampler euler_a -q -o "$tmp/cli.png" \
  --overwrite >/dev/null
for i in $(seq "$runs"); do
  /usr/bin/time -o "$tmp/time" -f "%e %U %S" "$sdgen" -m "$model" "$@" -p "$prompt" --seed 1 -W 64 -H 64 \
    --steps "$steps" --sampler euler_a -q -o "$tmp/cli.png" --overwrite >/dev/null
  read -r e u sy <"$tmp/time"
  echo "$e" >>"$tmp/cli.t"
  awk -v u="$u" -v s="$sy" 'BEGIN {print u + s}' >>"$tmp/cli.cpu"
done
cmp -s "$tmp/server.png" "$tmp/cli.png" && same="same PNG bytes" || same="PNG BYTES DIFFER"
echo "model $model $*: 64x64, $steps steps, $runs runs ($same)"
cli_cpu=$(awk '{s += $1} END {print s / NR}' "$tmp/cli.cpu")
printf '  sdgen (new process): %s; CPU %.3f s per image\n' "$(stats <"$tmp/cli.t")" "$cli_cpu"
printf '  sdgen serve (HTTP):  %s; CPU %.3f s per image\n' "$(stats <"$tmp/server.t")" "$server_cpu"
cmin=$(sort -g "$tmp/cli.t" | head -1)
smin=$(sort -g "$tmp/server.t" | head -1)
printf '  saved per request: wall %.3f s (min - min), CPU %.3f s\n' "$(awk -v a="$cmin" -v b="$smin" 'BEGIN {print a - b}')" \
  "$(awk -v a="$cli_cpu" -v b="$server_cpu" 'BEGIN {print a - b}')"

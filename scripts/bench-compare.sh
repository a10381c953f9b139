#!/bin/bash
# bench-compare.sh — run `sdgen bench` on the full-size random-weight SD 1.5 checkpoint at 256×256
# and 512×512 (several runs each, medians) and write the table into docs/PERFORMANCE.md between
# the markers <!-- bench-compare:begin --> and <!-- bench-compare:end --> (appended when absent).
#
#   scripts/bench-compare.sh [--runs 3] [--steps 3] [--weights "f16 f32"] [--sizes "256 512"]
#                            [--threads N] [--sdgen PATH] [--model PATH] [--out FILE] [--no-write]
#
# Defaults: build-perf/sdgen (else build/sdgen), /var/tmp/sdgen-ckpt/sd15.safetensors (made by
# scripts/make-full-ckpts.sh /var/tmp/sdgen-ckpt sd15 when missing), 3 runs of 3 timed steps.
# Every run's JSON is kept under $BENCH_DIR (default /tmp/sdgen-bench-compare) for inspection.
# Benchmarks need a quiet machine: the load average before and after is written with the table.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
runs=3
steps=3
weights="f16"
sizes="256 512"
threads=""
sdgen=""
model="/var/tmp/sdgen-ckpt/sd15.safetensors"
out="$here/docs/PERFORMANCE.md"
write=1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --weights) weights="$2"; shift 2 ;;
        --sizes) sizes="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --sdgen) sdgen="$2"; shift 2 ;;
        --model) model="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --no-write) write=0; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "bench-compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$sdgen" ]; then
    for c in "$here/build-perf/sdgen" "$here/build/sdgen"; do
        [ -x "$c" ] && { sdgen="$c"; break; }
    done
fi
[ -x "$sdgen" ] || { echo "bench-compare.sh: no sdgen binary (build first or pass --sdgen)" >&2; exit 2; }
if [ ! -f "$model" ]; then
    "$here/scripts/make-full-ckpts.sh" "$(dirname "$model")" sd15
fi
export SDGEN_VOCAB="${SDGEN_VOCAB:-$here/../shared/clip/bpe_simple_vocab_16e6.txt.gz}"
dir="${BENCH_DIR:-/tmp/sdgen-bench-compare}"
mkdir -p "$dir"
rm -f "$dir"/run-*.json

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
targs=()
[ -n "$threads" ] && targs=(--threads "$threads")
for wm in $weights; do
    for s in $sizes; do
        for r in $(seq 1 "$runs"); do
            f="$dir/run-$wm-$s-$r.json"
            echo "bench-compare: ${s}x${s} weights $wm run $r/$runs" >&2
            "$sdgen" bench -m "$model" -W "$s" -H "$s" --steps "$steps" --weights "$wm" "${targs[@]}" --json > "$f"
        done
    done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
ncpu="$(nproc)"
mem="$(awk '/MemTotal/ {printf "%.1f GB", $2 / 1048576}' /proc/meminfo)"
rev="$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$here" status --porcelain -- src include 2>/dev/null | head -1)"
[ -n "$dirty" ] && rev="$rev+local changes"

table="$(python3 - "$dir" "$runs" "$weights" "$sizes" <<'EOF'
import json, statistics, sys
d, runs, weights, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
def med(xs):
    return statistics.median(xs)
print("| size | weights | s/step (CFG) | U-Net GFLOP/s | % of sgemm | sgemm GFLOP/s (median; best call) | U-Net CPU-s/step | VAE decode s | VAE GFLOP/s | VAE % of sgemm | peak RSS GB |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for wm in weights:
    for s in sizes:
        js = [json.load(open(f"{d}/run-{wm}-{s}-{r}.json")) for r in range(1, runs + 1)]
        g = lambda k: med([j[k] for j in js])
        vae = "vae_decode_s" in js[0]
        print(f"| {s}×{s} | {wm} | {g('unet_s_per_step'):.2f} | {g('unet_gflops'):.1f} | {g('unet_pct_of_sgemm'):.0f}% "
              f"| {g('sgemm_gflops'):.1f}; {g('sgemm_best_gflops'):.1f} | {g('unet_cpu_s_per_step'):.2f} "
              f"| {g('vae_decode_s') if vae else float('nan'):.2f} | {g('vae_gflops') if vae else float('nan'):.1f} "
              f"| {g('vae_pct_of_sgemm') if vae else float('nan'):.0f}% | {g('peak_rss_bytes') / 1e9:.2f} |")
print()
print("Per run (s/step; % of sgemm; VAE s): " + "; ".join(
    f"{s}/{wm}: " + ", ".join(
        f"{j['unet_s_per_step']:.2f} s {j['unet_pct_of_sgemm']:.0f}% {j.get('vae_decode_s', float('nan')):.1f} s"
        for j in [json.load(open(f"{d}/run-{wm}-{s}-{r}.json")) for r in range(1, runs + 1)])
    for wm in weights for s in sizes))
EOF
)"

block="<!-- bench-compare:begin -->
Written by \`scripts/bench-compare.sh\` on $started (sdgen $rev).

- Machine: $cpu, $ncpu CPUs, $mem RAM; threads: ${threads:-all CPUs}; OpenBLAS kernels as selected by sdgen (\`OPENBLAS_CORETYPE\`: ${OPENBLAS_CORETYPE:-auto}).
- Command: \`$(basename "$sdgen") bench -m sd15.safetensors -W S -H S --steps $steps --weights W --json\`, $runs runs per row, medians; full-size random-weight SD 1.5 checkpoint from \`../shared/tools/mkckpt\`.
- Load average before / after: $load_before / $load_after.
- % of sgemm: the effective rate (analytic FLOPs / time) over OpenBLAS's own threaded sgemm 1536³ measured in the same process: the median rate of its calls during 2 s before and 2 s after the timed U-Net steps (the best single call is shown too).

$table
<!-- bench-compare:end -->"

if [ "$write" = 1 ]; then
    python3 - "$out" "$block" <<'EOF'
import sys, os
path, block = sys.argv[1], sys.argv[2]
text = open(path).read() if os.path.exists(path) else "# sdgen performance\n"
b, e = "<!-- bench-compare:begin -->", "<!-- bench-compare:end -->"
if b in text and e in text:
    text = text[:text.index(b)] + block + text[text.index(e) + len(e):]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
EOF
    echo "bench-compare: table written to $out" >&2
fi
printf '%s\n' "$block"

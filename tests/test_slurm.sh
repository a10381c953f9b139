#!/usr/bin/env bash
# test_slurm.sh — a sharded batch under a real Slurm (docs/SCALE-OUT.md, "Why the test suite runs Slurm"):
#   1. a single-node cluster on localhost (scripts/slurm/local-cluster.sh: its own munged, slurmctld and
#      slurmd with everything in a temporary folder; exit 77 = skipped where it cannot start);
#   2. a 40-item JSONL batch with the demo model, once by one process (the reference), once as
#      `sbatch --array=0-3 --wait scripts/slurm/sdgen-array.sbatch`: the shard manifests merge (exit 0, 40
#      records) and verify, and the 40 PNGs are byte-identical to the reference;
#   3. the failure drill: the array again into a new folder, task 1 cancelled with scancel in the middle of
#      its shard (sbatch --wait then exits 1, the merge reports the missing items), that index re-submitted
#      alone (sbatch --array=1): merge exit 0 (nothing missing, nothing duplicated), verify exit 0, the same
#      40 PNGs byte for byte, no temporary files left.
# Every Slurm command runs under `timeout`, so a hang fails the test instead of blocking the suite; the
# daemons are stopped by their PID files whatever happens. Prints the timings that docs/SCALE-OUT.md quotes.
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
SDGEN=$(cd "$(dirname "$SDGEN")" && pwd)/$(basename "$SDGEN")
MODEL="$SRC/models/demo.safetensors"
CLUSTER="$SRC/scripts/slurm/local-cluster.sh"
SBATCH_SCRIPT="$SRC/scripts/slurm/sdgen-array.sbatch"
unset SDGEN_VOCAB SDGEN_MODEL SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT JOB_COMPLETION_INDEX AWS_BATCH_JOB_ARRAY_INDEX

# shellcheck source=checks.sh
. "$SRC/tests/checks.sh"
has() { if grep -qF -- "$3" "$2"; then ok "$1"; else bad "$1: no '$3' in: $(head -c 800 "$2")"; fi; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }

# A short folder: the munge socket's path must fit a sockaddr_un (108 bytes).
WORK=$(mktemp -d /tmp/sdgen-slurm.XXXXXX) || exit 1
chmod 755 "$WORK"
CL="$WORK/cluster"
cleanup() {
  if [ -f "$CL/slurm.conf" ]; then
    export SLURM_CONF="$CL/slurm.conf"
    timeout 10 scancel --user="$(id -un)" >/dev/null 2>&1
    n=0
    while [ $n -lt 50 ] && [ -n "$(timeout 5 squeue -h 2>/dev/null)" ]; do sleep 0.2; n=$((n + 1)); done
  fi
  bash "$CLUSTER" stop "$CL"
  rm -rf "$WORK"
}
trap cleanup EXIT

# Debian's slurm-wlm and munge, installed when missing (as root; a no-op when present)
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  timeout 300 bash "$CLUSTER" install >"$WORK/install.out" 2>&1 ||
    { echo "SKIP: Slurm is not installed and could not be: $(tail -n 1 "$WORK/install.out")"; exit 77; }
fi
t0=$(now)
timeout 60 bash "$CLUSTER" start "$CL" >"$WORK/start.out" 2>"$WORK/start.err"
rc=$?
if [ $rc -ne 0 ]; then
  cat "$WORK/start.err" >&2
  if [ $rc -eq 77 ]; then echo "SKIP: no Slurm cluster here: $(tail -n 1 "$WORK/start.err")"; exit 77; fi
  if [ $rc -eq 124 ]; then bad "the cluster did not start within 60 s"; else bad "local-cluster.sh start: exit $rc"; fi
  exit 1
fi
export SLURM_CONF="$CL/slurm.conf"
ok "cluster up in $(secs "$t0" "$(now)") s"

cd "$WORK" || exit 1
# 40 items: plain ones (seed = --seed + position), own seeds, negative prompts, other samplers and CFG
for i in $(seq 0 39); do
  case $((i % 4)) in
  0) echo "{\"prompt\": \"a lighthouse at dusk, picture $i\"}" ;;
  1) echo "{\"prompt\": \"a bowl of fruit $i\", \"negative_prompt\": \"blurry\"}" ;;
  2) echo "{\"prompt\": \"a mountain lake $i\", \"seed\": $((900000 + i)), \"sampler\": \"euler\"}" ;;
  3) echo "{\"prompt\": \"an old bicycle $i\", \"cfg_scale\": 5, \"sampler\": \"dpmpp_2m\"}" ;;
  esac
done >batch.jsonl
# 20 steps (about 0.2 s an image in a release build); the sanitizer build is about 15 times slower, and
# 2 steps keep it within the time limit: what is tested (shards, bytes, cancel, re-queue) is the same.
STEPS=20
[ "${SDGEN_SANITIZE:-OFF}" = ON ] && STEPS=2
ARGS=(--seed 1234 -m "$MODEL" --steps "$STEPS")

# ---- the reference: one process ----
mkdir -p ref
t0=$(now)
timeout 600 "$SDGEN" --prompts batch.jsonl "${ARGS[@]}" --threads 1 -q -o "ref/{index}.png" --manifest ref.jsonl \
  >ref.out 2>ref.err
rc=$?
t_single=$(secs "$t0" "$(now)")
check "one process: exit 0" "$rc" 0
check "one process: 40 PNGs" "$(find ref -name '*.png' | wc -l)" 40

export SDGEN SDGEN_SHARD_COUNT=4
# identical(DIR): how many of the 40 PNGs are byte-identical to the reference
identical() {
  local n=0 i
  for i in $(seq 1 40); do cmp -s "ref/$i.png" "$1/$i.png" && n=$((n + 1)); done
  echo $n
}
# task_figures LOG MANIFEST: "wall s, images s, overhead s" of one task
task_figures() {
  local wall img
  wall=$(grep -o 'exit [0-9]*, end [0-9.]*, [0-9.]* s' "$1" | awk '{print $(NF-1)}')
  img=$(grep -o '"seconds":[0-9.]*' "$2" | cut -d: -f2 | awk '{s += $1} END {printf "%.2f", s}')
  echo "${wall:-?} s wall, ${img:-?} s in images, $(awk -v w="${wall:-0}" -v i="${img:-0}" 'BEGIN {printf "%.2f", w - i}') s overhead"
}

# ---- the array ----
t0=$(now)
t_submit=$t0
timeout 300 sbatch --array=0-3 --wait -o "$WORK/arr-%a.log" -D "$WORK" "$SBATCH_SCRIPT" batch.jsonl out "${ARGS[@]}" \
  >sbatch.out 2>sbatch.err
rc=$?
t_array=$(secs "$t0" "$(now)")
check "sbatch --array=0-3 --wait: exit 0 ($(cat sbatch.out sbatch.err | tr '\n' ' '))" "$rc" 0
for i in 0 1 2 3; do has "task $i: its shard" "arr-$i.log" "shard $i/4 exit 0"; done
timeout 60 "$SDGEN" manifest merge out/manifest-*.jsonl >merged.jsonl 2>merge.err
check "merge: exit 0 ($(tr '\n' ' ' <merge.err))" "$?" 0
check "merge: 40 records" "$(wc -l <merged.jsonl)" 40
check "merge: 40 ok records" "$(grep -c '"status":"ok"' merged.jsonl)" 40
timeout 120 "$SDGEN" manifest verify merged.jsonl >verify.out 2>verify.err
check "verify: exit 0 ($(tr '\n' ' ' <verify.err))" "$?" 0
check "the array: 40 PNGs" "$(find out -name '*.png' | wc -l)" 40
check "the array: byte-identical to one process" "$(identical out)" 40
first=$(cat arr-*.log | grep -o 'start [0-9.]*' | awk '{print $2}' | sort -n | head -n 1)
last=$(cat arr-*.log | grep -o 'end [0-9.]*' | awk '{print $2}' | sort -n | tail -n 1)
echo "figures: one process, 40 images: $t_single s; array of 4 tasks on $(nproc) CPUs (sbatch --wait): $t_array s;" \
  "first task started $(secs "$t_submit" "$first") s after sbatch, last ended $(secs "$t_submit" "$last") s after it"
for i in 0 1 2 3; do echo "figures: task $i: $(task_figures "arr-$i.log" "out/manifest-$i.jsonl")"; done

# ---- the failure drill ----
t0=$(now)
timeout 300 sbatch --array=0-3 --wait --parsable -o "$WORK/drill-%a.log" -D "$WORK" "$SBATCH_SCRIPT" batch.jsonl drill \
  "${ARGS[@]}" >drill.out 2>drill.err &
spid=$!
jobid=""
n=0
while [ $n -lt 100 ] && [ -z "$jobid" ]; do jobid=$(grep -o '^[0-9]*' drill.out 2>/dev/null | head -n 1); sleep 0.1; n=$((n + 1)); done
# cancel task 1 once it has finished 2 of its 10 images
n=0
while [ $n -lt 600 ] && [ "$(cat drill/manifest-1.jsonl 2>/dev/null | wc -l)" -lt 2 ]; do sleep 0.05; n=$((n + 1)); done
timeout 20 scancel "${jobid}_1" 2>scancel.err
check "scancel ${jobid}_1: exit 0 ($(cat scancel.err))" "$?" 0
# the controller keeps the cancelled task's record for MinJobAge (5 s) after it ended
state=""
n=0
while [ $n -lt 40 ] && [ "$state" != JobState=CANCELLED ]; do
  state=$(timeout 10 scontrol -o show job "${jobid}_1" 2>/dev/null | grep -o 'JobState=[A-Z_]*')
  sleep 0.1
  n=$((n + 1))
done
check "task ${jobid}_1 after scancel" "$state" JobState=CANCELLED
wait $spid
rc=$?
# sbatch --wait exits 1 when it still sees the cancelled task at the end, 0 when the other tasks ran on for
# longer than MinJobAge and the record was gone by then: the manifests, not this code, tell what is missing.
case $rc in
0 | 1) ok "sbatch --wait with a cancelled task: exit $rc" ;;
*) bad "sbatch --wait with a cancelled task: exit $rc ($(cat drill.err))" ;;
esac
recs=$(wc -l <drill/manifest-1.jsonl)
if [ "$recs" -ge 2 ] && [ "$recs" -lt 10 ]; then ok "task 1 cancelled mid-shard: $recs of 10 records"; else
  bad "task 1 cancelled mid-shard: $recs of 10 records (not caught in the middle)"; fi
has "task 1 stopped on SIGTERM" drill-1.log "interrupted (SIGTERM)"
timeout 60 "$SDGEN" manifest merge drill/manifest-*.jsonl >/dev/null 2>dmerge1.err
check "merge after the cancel: exit 1" "$?" 1
has "merge after the cancel: items missing" dmerge1.err "items have no record"
timeout 300 sbatch --array=1 --wait -o "$WORK/requeue-%a.log" -D "$WORK" "$SBATCH_SCRIPT" batch.jsonl drill \
  "${ARGS[@]}" >requeue.out 2>requeue.err
check "re-submitted index 1 (sbatch --array=1 --wait): exit 0" "$?" 0
has "re-submitted task: shard 1/4" requeue-1.log "shard 1/4 exit 0"
t_drill=$(secs "$t0" "$(now)")
timeout 60 "$SDGEN" manifest merge drill/manifest-*.jsonl >dmerged.jsonl 2>dmerge.err
check "drill merge: exit 0 ($(tr '\n' ' ' <dmerge.err))" "$?" 0
has "drill merge: nothing missing, failed or duplicated" dmerge.err \
  "40 items, 40 complete, 0 failed, 0 missing; 40 images, 0 generated more than once"
check "drill merge: 40 records" "$(wc -l <dmerged.jsonl)" 40
check "drill: the re-run skipped what task 1 had finished" "$(grep -c skipped-existing drill/manifest-1.jsonl)" "$recs"
timeout 120 "$SDGEN" manifest verify dmerged.jsonl >/dev/null 2>dverify.err
check "drill verify: exit 0 ($(tr '\n' ' ' <dverify.err))" "$?" 0
check "drill: 40 PNGs" "$(find drill -name '*.png' | wc -l)" 40
check "drill: byte-identical to one process" "$(identical drill)" 40
check "drill: no temporary files" "$(find drill -name '.*.tmp-*' | wc -l)" 0
check "drill: nothing but the PNGs and 4 manifests" "$(ls -A drill | wc -l)" 44
echo "figures: failure drill (array, cancel, re-submit) $t_drill s"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

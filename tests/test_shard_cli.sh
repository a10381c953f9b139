#!/usr/bin/env bash
# test_shard_cli.sh — sharded batches and their manifests through the CLI, without a batch system
# (test_slurm.sh runs the same under a real Slurm):
#   1. bad --shard values and environment variables: exit 2 and a message naming the problem;
#   2. a 13-line batch (one malformed line, one item of 2 images, own seeds, {index}/{seed}/{prompt} names)
#      run whole and as 3 shards (one of them chosen by JOB_COMPLETION_INDEX): the same files, byte for byte;
#      the manifests merge (exit 0, one record per image, sorted) and verify;
#   3. merge / verify catch a missing shard, a deleted output, a corrupted PNG, a changed parameters chunk,
#      a duplicated item, records of another batch and a file that is not a manifest;
#   4. re-queue safety: a torn last record, an invalid existing output with --skip-existing (regenerated, the
#      same bytes), a task killed with SIGKILL in the middle and rerun: complete, no temporary files.
# The demo model (models/demo.safetensors), 64×64, 4 steps: well under a second an image.
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/shard-cli
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP" || exit 1
unset SDGEN_VOCAB SDGEN_MODEL SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_MIN SLURM_ARRAY_TASK_MAX \
  SLURM_ARRAY_TASK_STEP JOB_COMPLETION_INDEX SDGEN_SHARD_COUNT AWS_BATCH_JOB_ARRAY_INDEX AWS_BATCH_JOB_ARRAY_SIZE
MODEL="$SRC/models/demo.safetensors"
RUN=(-m "$MODEL" --steps 4 --threads 1 -q)

# shellcheck source=checks.sh
. "$SRC/tests/checks.sh"
has() { # has NAME FILE TEXT: the file holds the text
  if grep -qF -- "$3" "$2"; then ok "$1"; else bad "$1: no '$3' in: $(head -c 600 "$2")"; fi
}
no_crash() { # no_crash NAME RC STDERR_FILE
  if [ "$2" -ge 128 ] || grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$3"; then
    bad "$1: crash or sanitizer report (exit $2)"
    sed 's/^/     | /' "$3" | tail -n 20 >&2
  fi
}
# expect_fail NAME RC_WANTED MESSAGE ARGS...: sdgen ARGS exits RC_WANTED and says MESSAGE on stderr
expect_fail() {
  local name=$1 want=$2 msg=$3
  shift 3
  "$SDGEN" "$@" >"$TMP/ef.out" 2>"$TMP/ef.err"
  local rc=$?
  no_crash "$name" $rc "$TMP/ef.err"
  check "$name: exit $want" "$rc" "$want"
  has "$name: message" "$TMP/ef.err" "$msg"
  check "$name: one line" "$(wc -l <"$TMP/ef.err")" 1
}

# ---- 1. bad input ----
cat >b.jsonl <<'EOF'
{"prompt": "a red apple"}
{"prompt": "a green pear", "negative_prompt": "blurry"}
# a comment: not an item
{"prompt": "two of them", "batch_count": 2}
{"prompt": "own seed", "seed": 18446744073709551615}
{"prompt": 3}
{"prompt": "a blue car", "cfg_scale": 3}
{"prompt": "a yellow house", "steps": 3}

{"prompt": "a small dog", "sampler": "euler"}
{"prompt": "a big cat", "seed": 77}
{"prompt": "a tree"}
{"prompt": "a boat", "width": 72}
{"prompt": "a cloud"}
{"prompt": "the last one"}
EOF
# items (0-based, every item line): 0 apple, 1 pear, 2 two (2 images), 3 own seed, 4 malformed, 5 car, 6 house,
# 7 dog, 8 cat, 9 tree, 10 boat, 11 cloud, 12 last: 13 items, 13 images
expect_fail "--shard 3/2" 2 "shard index 3 is not below the shard count 2" "${RUN[@]}" --prompts b.jsonl --seed 1 --shard 3/2
expect_fail "--shard 0/0" 2 "the shard count must be at least 1" "${RUN[@]}" --prompts b.jsonl --seed 1 --shard 0/0
expect_fail "--shard -1/4" 2 'the index "-1" is not a whole number' "${RUN[@]}" --prompts b.jsonl --seed 1 --shard -1/4
expect_fail "--shard x/4" 2 'the index "x" is not a whole number' "${RUN[@]}" --prompts b.jsonl --seed 1 --shard x/4
expect_fail "--shard 1/four" 2 'the count "four" is not a whole number' "${RUN[@]}" --prompts b.jsonl --seed 1 --shard 1/four
expect_fail "--shard 2" 2 "expected I/N" "${RUN[@]}" --prompts b.jsonl --seed 1 --shard 2
expect_fail "--shard +1/4" 2 'the index "+1" is not a whole number' "${RUN[@]}" --prompts b.jsonl --seed 1 --shard +1/4
expect_fail "--shard on a single prompt" 2 "--shard splits a batch file and needs --prompts" "${RUN[@]}" -p hi --shard 0/2
expect_fail "--manifest on a single prompt" 2 "--manifest records a batch and needs --prompts" "${RUN[@]}" -p hi --manifest m.jsonl
expect_fail "shards without --seed" 2 'b.jsonl:1: no "seed" and no --seed' "${RUN[@]}" --prompts b.jsonl --shard 0/2
SLURM_ARRAY_TASK_ID=1 expect_fail "SLURM_ARRAY_TASK_ID alone" 2 \
  "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not" "${RUN[@]}" --prompts b.jsonl --seed 1
JOB_COMPLETION_INDEX=0 expect_fail "JOB_COMPLETION_INDEX alone" 2 \
  "JOB_COMPLETION_INDEX is set but SDGEN_SHARD_COUNT is not" "${RUN[@]}" --prompts b.jsonl --seed 1
AWS_BATCH_JOB_ARRAY_INDEX=2 expect_fail "AWS_BATCH_JOB_ARRAY_INDEX alone" 2 \
  "AWS_BATCH_JOB_ARRAY_INDEX is set but AWS_BATCH_JOB_ARRAY_SIZE is not" "${RUN[@]}" --prompts b.jsonl --seed 1
AWS_BATCH_JOB_ARRAY_INDEX=two AWS_BATCH_JOB_ARRAY_SIZE=4 expect_fail "AWS index not a number" 2 \
  'AWS_BATCH_JOB_ARRAY_INDEX="two" is not a whole number' "${RUN[@]}" --prompts b.jsonl --seed 1
JOB_COMPLETION_INDEX=4 SDGEN_SHARD_COUNT=4 expect_fail "JOB_COMPLETION_INDEX not below the count" 2 \
  "shard index 4 is not below the shard count 4" "${RUN[@]}" --prompts b.jsonl --seed 1
SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_COUNT=1 SLURM_ARRAY_TASK_MIN=2 SLURM_ARRAY_TASK_MAX=2 \
  expect_fail "a re-submitted Slurm index" 2 "in an array of one task" "${RUN[@]}" --prompts b.jsonl --seed 1
SLURM_ARRAY_TASK_ID=3 SLURM_ARRAY_TASK_COUNT=2 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=3 \
  expect_fail "a Slurm array that is not one range" 2 "is not one range" "${RUN[@]}" --prompts b.jsonl --seed 1
mkdir -p mdir
expect_fail "--manifest a folder" 2 "mdir: cannot open the manifest: Is a directory" "${RUN[@]}" --prompts b.jsonl --seed 1 \
  --manifest mdir
check "bad input: no PNG anywhere" "$(find . -name '*.png' | wc -l)" 0

# ---- 2. the whole batch vs 3 shards ----
TPL='{index}-{seed}-{prompt}.png'
mkdir -p whole shards
"$SDGEN" "${RUN[@]}" --prompts b.jsonl --seed 1000 -o "whole/$TPL" --manifest whole.jsonl >whole.out 2>whole.err
rc=$?
no_crash "whole run" $rc whole.err
check "whole run: exit 1 (one malformed line)" "$rc" 1
check "whole run: 13 PNGs" "$(find whole -name '*.png' | wc -l)" 13
check "whole run: 14 records (13 images, 1 failed item)" "$(wc -l <whole.jsonl)" 14
for i in 0 1; do
  "$SDGEN" "${RUN[@]}" --prompts b.jsonl --seed 1000 -o "shards/$TPL" --shard $i/3 --manifest s$i.jsonl \
    >s$i.out 2>s$i.err
  echo $? >s$i.rc
done
# shard 2 from the environment of a Kubernetes Indexed Job; without -q the source is said
JOB_COMPLETION_INDEX=2 SDGEN_SHARD_COUNT=3 "$SDGEN" -m "$MODEL" --steps 4 --threads 1 --prompts b.jsonl --seed 1000 \
  -o "shards/$TPL" --manifest s2.jsonl >s2.out 2>s2.err
echo $? >s2.rc
no_crash "shard 0" "$(cat s0.rc)" s0.err
no_crash "shard 1" "$(cat s1.rc)" s1.err
no_crash "shard 2" "$(cat s2.rc)" s2.err
check "shard 0/3: exit 0" "$(cat s0.rc)" 0
check "shard 1/3 (item 4 malformed): exit 1" "$(cat s1.rc)" 1
check "shard 2/3: exit 0" "$(cat s2.rc)" 0
has "shard 1/3 reports the malformed line" s1.err 'b.jsonl:6: "prompt" must be a string'
check "shard 0/3 does not report it" "$(grep -c 'must be a string' s0.err)" 0
has "shard 2/3 says its source" s2.err \
  "shard 2/3 from JOB_COMPLETION_INDEX=2, SDGEN_SHARD_COUNT=3: the items at positions k with k mod 3 = 2"
# items 0,3,6,9,12 -> 5 images; 1,4,7,10 -> 3 (4 malformed); 2,5,8,11 -> 5 (item 2 makes 2)
check "shard 0/3: 5 records" "$(wc -l <s0.jsonl)" 5
check "shard 1/3: 4 records" "$(wc -l <s1.jsonl)" 4
check "shard 2/3: 5 records" "$(wc -l <s2.jsonl)" 5
check "shards: the same file names" "$(cd shards && ls | sort | tr '\n' ' ')" "$(cd whole && ls | sort | tr '\n' ' ')"
same=0
for f in whole/*.png; do cmp -s "$f" "shards/${f#whole/}" && same=$((same + 1)); done
check "shards: all 13 PNGs byte-identical to the whole run (metadata included)" "$same" 13
check "names: item 2's images are index 3 and 4, seeds 1002 and 1003" \
  "$(ls whole | grep -cE '^(3-1002|4-1003)-two_of_them.png$')" 2
check "names: item 3 (own seed) is index 5" "$(ls whole | grep -c '^5-18446744073709551615-own_seed.png$')" 1
check "names: item 5 (after the malformed item 4) is index 6, seed 1005" "$(ls whole | grep -c '^6-1005-a_blue_car.png$')" 1
check "names: item 12 is index 13, seed 1000+12" "$(ls whole | grep -c '^13-1012-the_last_one.png$')" 1
# nothing machine-specific in the metadata: no path (the model is named by its file name), no host name
grep -o '"parameters":"[^"]*"' whole.jsonl >params.txt
check "parameters chunks: 13" "$(wc -l <params.txt)" 13
check "parameters chunks: no path" "$(grep -c / params.txt)" 0
check "parameters chunks: no host name" "$(grep -cwF "$(hostname)" params.txt)" 0
has "parameters chunks: the model by name" params.txt "Model: demo, "

"$SDGEN" manifest merge s0.jsonl s1.jsonl s2.jsonl >merged.jsonl 2>merge.err
rc=$?
no_crash merge $rc merge.err
check "merge: exit 1 (one item failed)" "$rc" 1
check "merge: 14 records" "$(wc -l <merged.jsonl)" 14
has "merge: the failed item" merge.err 'failed: item 4 (line 6) image 0: b.jsonl:6: "prompt" must be a string'
has "merge: summary" merge.err "13 items, 12 complete, 1 failed, 0 missing; 14 images, 0 generated more than once"
check "merge: sorted by item, image" "$(grep -o '^{"item":[0-9]*,"image":[0-9]*' merged.jsonl | tr -d '{"a-z:' | tr '\n' ' ')" \
  "0,0 1,0 2,0 2,1 3,0 4,0 5,0 6,0 7,0 8,0 9,0 10,0 11,0 12,0 "
"$SDGEN" manifest verify merged.jsonl >verify.out 2>verify.err
rc=$?
no_crash verify $rc verify.err
check "verify: exit 1 (the failed item; every output intact)" "$rc" 1
has "verify: 13 outputs checked, 0 bad" verify.err "13 outputs checked, 0 bad"

# a batch without the malformed line: complete, exit 0 from run, merge and verify
grep -v '"prompt": 3' b.jsonl >good.jsonl
mkdir -p g
for i in 0 1 2 3; do
  "$SDGEN" "${RUN[@]}" --prompts good.jsonl --seed 1 --steps 2 -o "g/{index}.png" --shard $i/4 --manifest g$i.jsonl \
    >/dev/null 2>g$i.err || bad "good batch shard $i: exit $? ($(head -c 300 g$i.err))"
done
"$SDGEN" manifest merge g0.jsonl g1.jsonl g2.jsonl g3.jsonl >gm.jsonl 2>gm.err
check "complete batch: merge exit 0" "$?" 0
check "complete batch: 13 records" "$(wc -l <gm.jsonl)" 13
"$SDGEN" manifest verify gm.jsonl >/dev/null 2>gv.err
check "complete batch: verify exit 0" "$?" 0
# the record holds the item's settings
has "record: item 1's negative prompt and seed" gm.jsonl \
  '{"item":1,"image":0,"images":1,"items":12,"index":2,"line":2,"shard":"1/4","status":"ok","prompt":"a green pear","negative_prompt":"blurry","seed":2,"steps":2,"cfg_scale":7.5,"sampler":"euler_a"'
has "record: sha256 of the file" gm.jsonl "\"output\":\"g/2.png\",\"sha256\":\"$(sha256sum g/2.png | cut -c1-64)\""

# ---- 3. what merge and verify catch ----
"$SDGEN" manifest merge g0.jsonl g1.jsonl g3.jsonl >/dev/null 2>miss.err
check "a missing shard: merge exit 1" "$?" 1
has "a missing shard: the items" miss.err "missing: 3 of 12 items have no record: 2, 6, 10"
cp g/5.png keep5.png
rm g/5.png
"$SDGEN" manifest verify gm.jsonl >/dev/null 2>del.err
check "a deleted output: verify exit 1" "$?" 1
has "a deleted output: named" del.err "bad output: item 3 (line 5) image 0: g/5.png: No such file or directory"
cp keep5.png g/5.png
printf '\x00\x00\x00\x00' | dd of=g/5.png bs=1 seek=200 conv=notrunc 2>/dev/null
"$SDGEN" manifest verify gm.jsonl >/dev/null 2>cor.err
check "a corrupted PNG: verify exit 1" "$?" 1
has "a corrupted PNG: named" cor.err "bad output: item 3 (line 5) image 0: g/5.png: "
cp keep5.png g/5.png
# a PNG whose pixels and CRCs are fine but that is another item's image
cp g/5.png keep5b.png
cp g/6.png g/5.png
"$SDGEN" manifest verify gm.jsonl >/dev/null 2>swap.err
check "another item's PNG: verify exit 1" "$?" 1
has "another item's PNG: SHA-256 differs" swap.err "g/5.png: SHA-256"
cp keep5b.png g/5.png
"$SDGEN" manifest verify gm.jsonl >/dev/null 2>/dev/null
check "restored: verify exit 0" "$?" 0
# a record whose parameters no longer match the file's chunk (edited record, same sha256)
sed 's/"prompt":"a tree"/"prompt":"a bush"/; s/a tree\\nSteps/a bush\\nSteps/' gm.jsonl >edited.jsonl
"$SDGEN" manifest verify edited.jsonl >/dev/null 2>edit.err
check "an edited record: verify exit 1" "$?" 1
has "an edited record: parameters differ" edit.err "its parameters chunk differs from the manifest's"
# a duplicated item: shard 1 ran twice into two manifests
"$SDGEN" "${RUN[@]}" --prompts good.jsonl --seed 1 --steps 2 -o "g/{index}.png" --shard 1/4 --overwrite \
  --manifest g1again.jsonl >/dev/null 2>&1
"$SDGEN" manifest merge g0.jsonl g1.jsonl g2.jsonl g3.jsonl g1again.jsonl >dup.jsonl 2>dup.err
check "a duplicated item: merge exit 4" "$?" 4
has "a duplicated item: named" dup.err "duplicated: item 1 (line 2) image 0 was generated 2 times (g1.jsonl:1, g1again.jsonl:1)"
check "a duplicated item: still one record per image" "$(wc -l <dup.jsonl)" 13
"$SDGEN" manifest verify g0.jsonl g1.jsonl g2.jsonl g3.jsonl g1again.jsonl >/dev/null 2>dupv.err
check "a duplicated item: verify exit 4" "$?" 4
# records of two batches, a file that is not a manifest, a record missing a field
"$SDGEN" manifest merge g0.jsonl s0.jsonl >/dev/null 2>two.err
check "two batches: merge exit 2" "$?" 2
has "two batches: message" two.err "s0.jsonl:1: a record of another batch"
"$SDGEN" manifest merge b.jsonl >/dev/null 2>notm.err
check "not a manifest: merge exit 2" "$?" 2
has "not a manifest: message" notm.err 'b.jsonl:1: not a manifest record: missing "item"'
printf 'hello\n' >junk.jsonl
"$SDGEN" manifest verify junk.jsonl >/dev/null 2>junk.err
check "junk: verify exit 2" "$?" 2
has "junk: message" junk.err "junk.jsonl:1: not a manifest record: not a JSON object"
"$SDGEN" manifest merge >/dev/null 2>noarg.err
check "merge without files: exit 2" "$?" 2
"$SDGEN" manifest frobnicate x >/dev/null 2>sub.err
check "unknown subcommand: exit 2" "$?" 2
has "unknown subcommand: message" sub.err 'unknown subcommand "frobnicate"'

# ---- 4. re-queue safety ----
# a torn last record (a writer killed inside write()): skipped by merge, and a rerun appends after it on a new line
mkdir -p t
"$SDGEN" "${RUN[@]}" --prompts good.jsonl --seed 1 --steps 2 -o "t/{index}.png" --shard 0/2 --manifest t0.jsonl \
  >/dev/null 2>&1
head -c 150 t0.jsonl | tr -d '\n' >>t0.jsonl # a record cut after 150 bytes, no newline
"$SDGEN" "${RUN[@]}" --prompts good.jsonl --seed 1 --steps 2 -o "t/{index}.png" --shard 0/2 --manifest t0.jsonl \
  --skip-existing >/dev/null 2>t.err
check "rerun after a torn record: exit 0" "$?" 0
# shard 0/2 of good.jsonl: items 0 2 4 6 8 10, item 2 with 2 images: 7 records
check "rerun: 7 + 1 torn + 7 records" "$(wc -l <t0.jsonl)" 15
check "rerun: 7 skipped-existing records" "$(grep -c '"status":"skipped-existing"' t0.jsonl)" 7
"$SDGEN" "${RUN[@]}" --prompts good.jsonl --seed 1 --steps 2 -o "t/{index}.png" --shard 1/2 --manifest t1.jsonl \
  >/dev/null 2>&1
"$SDGEN" manifest merge t0.jsonl t1.jsonl >tm.jsonl 2>tm.err
check "torn record: merge exit 0" "$?" 0
has "torn record: reported" tm.err "1 torn record skipped (a task killed while writing; first at t0.jsonl:8)"
"$SDGEN" manifest verify tm.jsonl >/dev/null 2>&1
check "torn record: verify of the skipped-existing records exit 0" "$?" 0
# --skip-existing regenerates an existing output that is not a complete PNG: the same bytes as before
cp t/3.png t3.keep
head -c 300 t3.keep >t/3.png
"$SDGEN" "${RUN[@]}" --prompts good.jsonl --seed 1 --steps 2 -o "t/{index}.png" --shard 0/2 --manifest t0.jsonl \
  --skip-existing >/dev/null 2>regen.err
check "invalid existing output: exit 0" "$?" 0
check "invalid existing output: regenerated, the same bytes" "$(cmp -s t3.keep t/3.png && echo same)" same
check "invalid existing output: recorded ok" \
  "$(tail -n 7 t0.jsonl | grep '"status":"ok"' | grep -c '"output":"t/3.png","sha256":"[0-9a-f]*","seconds":[0-9.]*,"parameters"')" 1
check "invalid existing output: the others skipped" "$(tail -n 7 t0.jsonl | grep -c skipped-existing)" 6
# killed with SIGKILL in the middle of its shard, then rerun with --skip-existing
for i in $(seq 1 30); do echo "{\"prompt\": \"kill test $i\"}"; done >k.jsonl
mkdir -p k
"$SDGEN" "${RUN[@]}" --steps 8 --prompts k.jsonl --seed 9 -o "k/{index}.png" --shard 0/1 --manifest k.mf \
  >/dev/null 2>k1.err &
pid=$!
n=0
while [ "$n" -lt 300 ] && [ "$(cat k.mf 2>/dev/null | wc -l)" -lt 3 ]; do sleep 0.05; n=$((n + 1)); done
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
before=$(wc -l <k.mf)
if [ "$before" -ge 3 ] && [ "$before" -lt 30 ]; then ok "SIGKILL mid-shard: $before of 30 records"; else
  bad "SIGKILL mid-shard: $before records (the run was not caught in the middle)"; fi
"$SDGEN" manifest merge k.mf >/dev/null 2>k.merge1
check "after SIGKILL: merge exit 1 (incomplete)" "$?" 1
"$SDGEN" "${RUN[@]}" --steps 8 --prompts k.jsonl --seed 9 -o "k/{index}.png" --shard 0/1 --manifest k.mf \
  --skip-existing >/dev/null 2>k2.err
check "rerun after SIGKILL: exit 0" "$?" 0
"$SDGEN" manifest merge k.mf >km.jsonl 2>km.err
check "rerun after SIGKILL: merge exit 0 (nothing missing or duplicated)" "$?" 0
check "rerun after SIGKILL: 30 records" "$(wc -l <km.jsonl)" 30
"$SDGEN" manifest verify km.jsonl >/dev/null 2>kv.err
check "rerun after SIGKILL: verify exit 0" "$?" 0
check "rerun after SIGKILL: 30 PNGs" "$(find k -name '*.png' | wc -l)" 30
check "no temporary files anywhere" "$(find . -name '.*.tmp-*' | wc -l)" 0

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

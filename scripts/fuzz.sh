#!/usr/bin/env bash
# fuzz.sh — build the libFuzzer targets (tests/fuzz/) and run them for a given time each.
#
#   scripts/fuzz.sh TARGET|all SECONDS        e.g.  scripts/fuzz.sh all 20    (CI smoke run)
#                                                   scripts/fuzz.sh safetensors 600
#   scripts/fuzz.sh replay [TARGET|all]       run every committed seed and reproducer
#                                             (tests/fuzz/corpus/NAME, tests/fuzz/crashes/NAME) once
#   scripts/fuzz.sh triage TARGET [DIR]       group the crashes in DIR (default build-fuzz/fuzz-crashes/
#                                             NAME) by sanitizer report + first sdgen frame
# TARGET: safetensors diffusers tokenizer prompt batch image manifest serve lora (or fuzz_NAME).
# Build: clang with -fsanitize=fuzzer,address,undefined into $FUZZ_BUILD (default build-fuzz/fuzz).
# Each target runs alone (one core, nice -n 10) on its seed corpus tests/fuzz/corpus/NAME plus a
# working corpus build-fuzz/fuzz-corpus/NAME that keeps what it learns between runs (the committed
# seeds are never written). Crash reproducers land in build-fuzz/fuzz-crashes/NAME/, full logs in
# build-fuzz/fuzz-logs/NAME.log; a summary line per target gives executions, exec/s, coverage and
# crashes. Replay one input: build-fuzz/fuzz/fuzz_NAME FILE.
# Exit status: 0 no crash, 1 some target crashed (or failed to start), 2 usage / build error.
# Environment: FUZZ_BUILD, FUZZ_OUT (default build-fuzz), FUZZ_JOBS (build parallelism, default 2),
# FUZZ_SRC (library sources to fuzz instead of src/, e.g. a copy with proposed fixes applied),
# SDGEN_SHARED (reference data: ../shared beside the checkout), FUZZ_ARGS (extra libFuzzer flags),
# FUZZ_KEEP_GOING=1: run libFuzzer in fork mode (-fork=1 -ignore_crashes=1 ...) so one known bug does
# not end the run; every crash is still saved and counted (the long campaign of docs/FUZZING.md).
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
all_targets=(safetensors diffusers tokenizer prompt batch image manifest serve lora)
mode=run
case "${1:-}" in
    replay) mode=replay; set -- "${2:-all}" 1 ;;
    triage) mode=triage; triage_dir="${3:-}"; set -- "${2:-}" 1 ;;
esac
if [ $# -ne 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]] || [ "$2" -lt 1 ]; then
    echo "usage: scripts/fuzz.sh TARGET|all SECONDS   (targets: ${all_targets[*]})" >&2
    exit 2
fi
if [ "$1" = all ]; then
    targets=("${all_targets[@]}")
else
    t="${1#fuzz_}"
    case " ${all_targets[*]} " in *" $t "*) targets=("$t") ;; *)
        echo "fuzz.sh: unknown target '$1' (${all_targets[*]} or all)" >&2; exit 2 ;;
    esac
fi
secs="$2"
out="${FUZZ_OUT:-$root/build-fuzz}"
build="${FUZZ_BUILD:-$out/fuzz}"
export SDGEN_SHARED="${SDGEN_SHARED:-$root/../shared}"

cc="$(command -v clang || command -v clang-14 || true)"
if [ -z "$cc" ]; then
    echo "fuzz.sh: clang not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
    exit 2
fi
echo "== building fuzz targets with $cc into $build"
mkdir -p "$out"
if ! cmake -S "$root/tests/fuzz" -B "$build" -DCMAKE_C_COMPILER="$cc" -DSDGEN_SHARED_DIR="$SDGEN_SHARED" \
    -DSDGEN_FUZZ_SRC_DIR="$(cd "${FUZZ_SRC:-$root/src}" && pwd)" \
    >"$out/fuzz-cmake.log" 2>&1; then
    cat "$out/fuzz-cmake.log" >&2
    exit 2
fi
status=0
names=()
for t in "${targets[@]}"; do names+=("fuzz_$t"); done
if ! nice -n 10 cmake --build "$build" -j "${FUZZ_JOBS:-2}" --target "${names[@]}" >"$out/fuzz-build.log" 2>&1; then
    grep -E "error|Error" "$out/fuzz-build.log" | head -20 >&2
    echo "fuzz.sh: build failed (full log: $out/fuzz-build.log)" >&2
    exit 2
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# signature FILE BIN: the kind of failure and the first frame inside src/ (or the target)
signature() {
    local log
    log="$("$2" "$1" 2>&1)"
    local what where
    what="$(grep -oE 'ERROR: AddressSanitizer: [a-z-]+|ERROR: LeakSanitizer|runtime error: .{0,50}' <<<"$log" | head -1)"
    [ -z "$what" ] && what="$(grep -v 'Running [0-9]* inputs' <<<"$log" | grep -oE '^fuzz_[a-z]+: [^:]*: [^:/]*' | head -1)"
    [ -z "$what" ] && what="$(grep -oE 'deadly signal|ERROR: libFuzzer: [a-z-]+' <<<"$log" | head -1)"
    where="$(grep -oE 'in [A-Za-z_0-9]+ [^ ]*/(src|stb|tests/fuzz)/[^ ]*' <<<"$log" | head -1 | sed -E 's/:[0-9]+$//')"
    [ -z "$where" ] && where="$(grep -oE '/usr/include/stb/[^: ]*:[0-9]+' <<<"$log" | head -1)"
    echo "${what:-no failure} @ ${where:-?}"
}

if [ "$mode" = triage ]; then
    t="${targets[0]}"
    dir="${triage_dir:-$out/fuzz-crashes/$t}"
    declare -A seen count
    for f in "$dir"/crash-* "$dir"/timeout-* "$dir"/oom-* "$dir"/leak-*; do
        [ -f "$f" ] || continue
        sig="$(signature "$f" "$build/fuzz_$t")"
        count[$sig]=$(( ${count[$sig]:-0} + 1 ))
        [ -z "${seen[$sig]:-}" ] && seen[$sig]="$f"
    done
    for sig in "${!seen[@]}"; do printf '%4d  %s\n      e.g. %s\n' "${count[$sig]}" "$sig" "${seen[$sig]}"; done
    exit 0
fi
if [ "$mode" = replay ]; then
    for t in "${targets[@]}"; do
        n=0 failed=0
        for f in "$root/tests/fuzz/corpus/$t"/* "$root/tests/fuzz/crashes/$t"/*; do
            [ -f "$f" ] || continue
            n=$((n + 1))
            if ! ("$build/fuzz_$t" "$f") >"$out/fuzz-replay.log" 2>&1; then
                failed=$((failed + 1))
                status=1
                echo "FAIL $t: $f: $(signature "$f" "$build/fuzz_$t")"
            fi
        done
        echo "$t: $n inputs replayed, $failed failed"
    done
    exit "${status:-0}"
fi
printf '%-12s %10s %8s %6s %6s %8s  %s\n' target seconds execs exec/s cov crashes result
for t in "${targets[@]}"; do
    bin="$build/fuzz_$t"
    work="$out/fuzz-corpus/$t"
    crashes="$out/fuzz-crashes/$t"
    log="$out/fuzz-logs/$t.log"
    mkdir -p "$work" "$crashes" "$(dirname "$log")"
    dict=()
    [ -f "$root/tests/fuzz/$t.dict" ] && dict=(-dict="$root/tests/fuzz/$t.dict")
    # crash-, leak-, oom-, timeout- files are failures; slow-unit- files (inputs over 10 s) are not
    before=$(ls "$crashes" | grep -cE '^(crash|leak|oom|timeout)-')
    slow_before=$(ls "$crashes" | grep -c '^slow-unit-')
    start=$(date +%s)
    # -timeout: one input may take at most 30 s; -rss_limit_mb: 2 GB (the loaders cap their allocations
    # well below that); -max_len: big enough for the header-sized seeds.
    keep=()
    [ "${FUZZ_KEEP_GOING:-0}" = 1 ] && keep=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    # shellcheck disable=SC2086
    nice -n 10 "$bin" "$work" "$root/tests/fuzz/corpus/$t" "${dict[@]}" "${keep[@]}" -max_total_time="$secs" \
        -timeout=30 -rss_limit_mb=2048 -max_len=131072 -print_final_stats=1 -artifact_prefix="$crashes/" \
        ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    elapsed=$(( $(date +%s) - start ))
    if [ ${#keep[@]} -gt 0 ]; then
        # fork mode: "#EXECS: cov: C ft: F corp: N exec/s E oom/timeout/crash: a/b/c time: Ts job: J ..."
        last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1)
        execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
        eps=$(grep -oE 'exec/s [0-9]+' <<<"$last" | grep -oE '[0-9]+')
    else
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
        eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    fi
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    after=$(ls "$crashes" | grep -cE '^(crash|leak|oom|timeout)-')
    slow=$(( $(ls "$crashes" | grep -c '^slow-unit-') - slow_before ))
    result=ok
    if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
        result="CRASH (rc $rc; see $log, reproducers in $crashes)"
        status=1
    fi
    [ "$slow" -gt 0 ] && result="$result; $slow slow input(s) (>10 s) in $crashes"
    printf '%-12s %10s %8s %6s %6s %8s  %s\n' "$t" "$elapsed" "${execs:-?}" "${eps:-?}" "${cov:-?}" "$((after - before))" "$result"
done
exit $status

# checks.sh — the pass/fail counters and the basic assertions of the CLI test scripts (sourced after the
# script sets SRC). A script ends with `[ "$fail" -eq 0 ]` after printing its summary; it adds its own
# helpers (has, same, ...) where their meaning is its own.
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1" >&2; }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2' want '$3'"; fi; }

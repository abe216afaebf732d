#!/usr/bin/env bash
# Runs every libFuzzer harness in turn (tests/fuzz/README.md), each on a temporary copy of its
# checked-in corpus (tests/fuzz/corpus/<harness>/), so that what fuzzing adds never lands in
# the repository. Every input of the corpus runs first; then SECONDS of fuzzing.
#
#   tests/fuzz/run.sh SECONDS BIN_DIR [HARNESS...]
#
# `make fuzz-check` (part of `make test`) runs it for a few seconds each, `make fuzz` for
# FUZZ_SECONDS each. Prints one line of figures per harness; exits 1 when any harness failed
# (a crash, a sanitizer report, a property violation, a leak, a timeout), after printing the
# end of its log. The failing input is kept as BIN_DIR/findings/<harness>-crash-<sha1> (or
# leak-, timeout-, oom-): add it to the corpus as finding-<what> once fixed.
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
seconds=$1
bin=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
  harnesses=(fuzz_wire fuzz_json fuzz_inflate fuzz_grpc_message fuzz_grpc fuzz_spool fuzz_config)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/spanrelay-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
findings="$bin/findings"
mkdir -p "$findings"

# Sanitizers stop at the first error with a stack trace; leaks are findings too.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

failed=()
for name in "${harnesses[@]}"; do
  if [ ! -x "$bin/$name" ]; then
    echo "$name: not built ($bin/$name): cmake --build build-fuzz --target fuzzers" >&2
    failed+=("$name")
    continue
  fi
  cp -r "$here/corpus/$name" "$work/$name"
  log="$work/$name.log"
  dict=()
  if [ -f "$here/$name.dict" ]; then
    dict=(-dict="$here/$name.dict")
  fi
  start=$(date +%s)
  if "$bin/$name" -max_total_time="$seconds" -max_len=8192 -timeout=30 -rss_limit_mb=3072 \
      "${dict[@]}" -print_final_stats=1 -artifact_prefix="$findings/$name-" "$work/$name" \
      >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$name")
  fi
  elapsed=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # The last status line: "#N <event> cov: C ft: F corp: I/Sb ..."
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  printf '%-18s %-6s %10s execs in %4ss (%s/s), cov %s, ft %s, corpus %s\n' "$name" "$status" \
    "${execs:-?}" "$elapsed" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
  if [ "$status" = FAILED ]; then
    cp "$log" "$findings/$name.log"
    echo "---- $name: end of its log (all of it: $findings/$name.log) ----"
    grep -vE '^#[0-9]+ .*(NEW|REDUCE|pulse|RELOAD)' "$log" | tail -60
    echo "----"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing: ${#failed[@]} harness(es) failed: ${failed[*]} (inputs in $findings)" >&2
  exit 1
fi

#!/usr/bin/env bash
# spanrelay benchmark against the performance budget (docs/performance.md).
#
#   bash tests/bench/run.sh            # build (RelWithDebInfo, own build dir) and run everything
#   RUNS=5 bash tests/bench/run.sh     # more repetitions
#   SCENARIOS="throughput cpu" bash tests/bench/run.sh
#   PROFILE=1 bash tests/bench/run.sh  # also `perf record` the agent (throughput and cpu runs)
#   SUMMARY_ONLY=1 bash tests/bench/run.sh  # re-print the table of the last run's results
#
# Topology: the agent is pinned to CPU $AGENT_CPU (default 0); the load generator and the sink
# share CPU $LOAD_CPU (default 1). Everything talks over 127.0.0.1. The agent is restarted for
# every run (so VmHWM is per run); the sink lives for the whole script. Each run prints one
# RESULT line (see loadgen.cpp); the summary table takes the median over the runs.
# Not part of `make test`/ctest: performance is measured here, never asserted in tests.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
JOBS=${JOBS:-1}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}       # measurement window per run, seconds
WARMUP=${WARMUP:-2}
AGENT_CPU=${AGENT_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-24318}            # agent receiver; admin on PORT+1 (below the ephemeral range)
SCENARIOS=${SCENARIOS:-"throughput throughput_gzip cpu latency idle codec"}
PROFILE=${PROFILE:-0}
OUT=${OUT:-$BUILD/bench-results}
SKIP_BUILD=${SKIP_BUILD:-0}
# Diagnostics only (the budget is measured with the defaults): the exporter's compression, and
# extra top-level YAML for the agent's config, e.g. AGENT_YAML_EXTRA=$'batch:\n  max_bytes: 1MiB'
EXPORTER_COMPRESSION=${EXPORTER_COMPRESSION:-gzip}
AGENT_YAML_EXTRA=${AGENT_YAML_EXTRA:-}
# PRIO_PACED=1: in the paced scenarios only (cpu, latency: little CPU, so nobody is starved),
# run the agent, the load generator and the sink at nice -15, so that other processes on a
# shared machine delay their wake-ups less: closer to the agent's own latency. Never used for
# the closed-loop scenarios. (Not SCHED_FIFO: with every agent thread at one FIFO priority the
# receiver waits behind the exporter's whole-batch gzip, which CFS/EEVDF would slice.)
PRIO_PACED=${PRIO_PACED:-0}
# After each latency run, the same load straight to a trivial server (a second bench_sink)
# pinned to the agent's CPU: the platform's own round trip, subtracted to get the agent's
# added latency. BASELINE=0 skips it.
BASELINE=${BASELINE:-1}

# ---- summary: medians over the runs in $RESULTS ----
values() { { grep "^scenario=$1 " "$RESULTS" || true; } | tr ' ' '\n' | sed -n "s/^$2=//p"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
range() { sort -g | awk 'NR==1{lo=$1} {hi=$1} END {if (NR > 1) printf "%s–%s", lo, hi; else printf "-"}'; }
med() { values "$1" "$2" | median; }
rng() { values "$1" "$2" | range; }
has() { grep -q "^scenario=$1 " "$RESULTS"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == 0) print "n/a"; else printf "%.2f", a / b}'; }
verdict() {  # value op target
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (v == "n/a") {print "n/a"; exit}
    ok = (op == ">=") ? (v >= t) : (v < t || (op == "<=" && v == t)); print ok ? "meets" : "MISSES" }'
}
kib_to_mib() { awk -v k="$1" 'BEGIN {if (k == "n/a") print "n/a"; else printf "%.1f", k / 1024}'; }
fmt0() { awk -v v="$1" 'BEGIN {if (v == "n/a") print "n/a"; else printf "%.0f", v}'; }

summarize() {
  {
    echo
    runs=$(sed -n 's/^scenario=[a-z_]* run=\([0-9]*\) .*/\1/p' "$RESULTS" | sort -n | tail -1)
    echo "Results: median of ${runs:-0} run(s) per scenario (min–max in brackets), agent on 1 CPU."
    echo
    echo "| Budget | Target | Measured (median) | Range over runs | Ratio to target | Verdict |"
    echo "|---|---|---|---|---|---|"
    if has throughput; then
      v=$(med throughput sink_spans_per_s)
      echo "| (a) throughput, plain protobuf in, gzip out (spans/s delivered) | ≥ 200000 | $(fmt0 "$v") | $(rng throughput sink_spans_per_s) | $(ratio "$v" 200000) | $(verdict "$v" ">=" 200000) |"
      v=$(med throughput spans_per_agent_cpu_s)
      echo "| (a) same, capacity: spans delivered per agent CPU-second | ≥ 200000 | $(fmt0 "$v") | $(rng throughput spans_per_agent_cpu_s) | $(ratio "$v" 200000) | $(verdict "$v" ">=" 200000) |"
    fi
    if has throughput_gzip; then
      v=$(med throughput_gzip sink_spans_per_s)
      echo "| (a') throughput, gzip in, gzip out (spans/s delivered) | ≥ 200000 | $(fmt0 "$v") | $(rng throughput_gzip sink_spans_per_s) | $(ratio "$v" 200000) | $(verdict "$v" ">=" 200000) |"
      v=$(med throughput_gzip spans_per_agent_cpu_s)
      echo "| (a') same, capacity: spans delivered per agent CPU-second | ≥ 200000 | $(fmt0 "$v") | $(rng throughput_gzip spans_per_agent_cpu_s) | $(ratio "$v" 200000) | $(verdict "$v" ">=" 200000) |"
    fi
    if has cpu; then
      v=$(med cpu agent_cpu_pct)
      echo "| (b) agent CPU at 10k spans/s, gzip in and out (% of one core) | ≤ 3 | $v | $(rng cpu agent_cpu_pct) | $(ratio "$v" 3) | $(verdict "$v" "<=" 3) |"
    fi
    if has latency; then
      v=$(med latency p99_us)
      echo "| (c) export round trip p99, 100 spans gzip at 20k spans/s (µs) | < 1000 | $v | $(rng latency p99_us) | $(ratio "$v" 1000) | $(verdict "$v" "<" 1000) |"
      v=$(med latency k_p99_us)
      echo "| (c) same, p99 to the response's arrival at the client socket (kernel timestamp, µs) | < 1000 | $v | $(rng latency k_p99_us) | $(ratio "$v" 1000) | $(verdict "$v" "<" 1000) |"
      v=$(med latency p50_us)
      echo "| (c) export round trip p50, same load (µs) | – | $v | $(rng latency p50_us) | – | – |"
      if has baseline; then
        b50=$(med baseline k_p50_us)
        b99=$(med baseline k_p99_us)
        echo "| (c) control: same load to a trivial server on the agent's CPU, socket p50 / p99 (µs) | – | $b50 / $b99 | $(rng baseline k_p99_us) (p99) | – | – |"
        a99=$(awk -v a="$(med latency k_p99_us)" -v b="$b99" 'BEGIN {printf "%.1f", a - b}')
        a50=$(awk -v a="$(med latency k_p50_us)" -v b="$b50" 'BEGIN {printf "%.1f", a - b}')
        echo "| (c) **added by the agent**, socket p99 (agent − control, µs) | < 1000 | $a99 | – | $(ratio "$a99" 1000) | $(verdict "$a99" "<" 1000) (difference of two noisy p99s: see docs/performance.md) |"
        echo "| (c) added by the agent, socket p50 (agent − control, µs) | – | $a50 | – | – | – |"
      fi
    fi
    if has cpu; then
      v=$(med cpu p99_us)
      echo "| (c) export round trip p99 at 10k spans/s (µs) | < 1000 | $v | $(rng cpu p99_us) | $(ratio "$v" 1000) | $(verdict "$v" "<" 1000) |"
      v=$(med cpu k_p99_us)
      echo "| (c) same, p99 at the client socket (kernel timestamp, µs) | < 1000 | $v | $(rng cpu k_p99_us) | $(ratio "$v" 1000) | $(verdict "$v" "<" 1000) |"
    fi
    hwm=$(for s in $SCENARIOS; do values "$s" agent_vmhwm_kb; done | sort -g | tail -1)
    for s in $SCENARIOS; do
      has "$s" || continue
      [[ $s == idle || $s == baseline ]] && continue
      echo "| (d) peak RSS (VmHWM), $s (MiB) | – | $(kib_to_mib "$(med "$s" agent_vmhwm_kb)") | $(values "$s" agent_vmhwm_kb | range | awk -F'–' '{if (NF == 2) printf "%.1f–%.1f", $1/1024, $2/1024; else print "-"}') | – | – |"
    done
    echo
    echo "Details (medians):"
    echo
    echo "| Scenario | req/s | acked spans/s | delivered spans/s | spans per agent CPU-s | in MB/s | out MB/s | out gzip ratio | p50 µs | p99 µs | p99.9 µs | socket p50 / p99 µs | agent CPU % | per thread % | others on agent CPU % | agent run-queue wait % | 429s | lost | VmHWM MiB |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for s in $SCENARIOS baseline; do
      has "$s" || continue
      # per-thread CPU of the median-CPU run (threads in creation order)
      threads=$(grep "^scenario=$s " "$RESULTS" | awk -v m="$(med "$s" agent_cpu_pct)" '{for (i = 1; i <= NF; i++) {split($i, kv, "="); f[kv[1]] = kv[2]} if (f["agent_cpu_pct"] == m) {print f["agent_threads_cpu_pct"]; exit}}')
      echo "| $s | $(fmt0 "$(med "$s" req_per_s)") | $(fmt0 "$(med "$s" acked_spans_per_s)") | $(fmt0 "$(med "$s" sink_spans_per_s)") | $(fmt0 "$(med "$s" spans_per_agent_cpu_s)") | $(med "$s" in_mb_per_s) | $(med "$s" sink_mb_per_s) | $(med "$s" out_gzip_ratio) | $(med "$s" p50_us) | $(med "$s" p99_us) | $(med "$s" p999_us) | $(med "$s" k_p50_us) / $(med "$s" k_p99_us) | $(med "$s" agent_cpu_pct) | ${threads:--} | $(med "$s" others_on_agent_cpu_pct) | $(med "$s" agent_runq_wait_pct) | $(med "$s" status_429) | $(med "$s" lost) | $(kib_to_mib "$(med "$s" agent_vmhwm_kb)") |"
    done
    echo
    if [[ -s $OUT/codec.md && $SCENARIOS == *codec* ]]; then
      echo "Per-stage CPU cost (bench_codec on CPU $AGENT_CPU, no networking):"
      echo
      cat "$OUT/codec.md"
      echo
    fi
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Peak RSS over all runs: $(kib_to_mib "${hwm:-n/a}") MiB. Raw per-run lines: $RESULTS"
    [[ -n ${START:-} ]] && echo "Bench wall time: $(( $(date +%s) - START )) s."
    true
  } | tee "$OUT/summary.md"
}

RESULTS=$OUT/results.txt
if [[ ${SUMMARY_ONLY:-0} == 1 ]]; then  # re-print the table of an earlier run's $OUT
  summarize
  exit 0
fi

if [[ $SKIP_BUILD != 1 ]]; then
  echo "== building (RelWithDebInfo, $BUILD, -j$JOBS)" >&2
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j "$JOBS" --target spanrelay bench_loadgen bench_sink bench_codec >&2
fi
AGENT_BIN=$BUILD/spanrelay
LOADGEN=$BUILD/tests/bench/bench_loadgen
SINK=$BUILD/tests/bench/bench_sink
CODEC=$BUILD/tests/bench/bench_codec

if (( $(nproc) < 2 )); then
  echo "warning: fewer than 2 CPUs: the agent and the load generator will share one" >&2
  LOAD_CPU=$AGENT_CPU
fi
mkdir -p "$OUT"
: >"$RESULTS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/spanrelay-bench.XXXXXX")
SINK_PID=""
AGENT_PID=""
cleanup() {
  [[ -n $AGENT_PID ]] && kill -TERM "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  [[ -n $SINK_PID ]] && kill -TERM "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$PORT" $((PORT + 1)); do
  if port_open "$p"; then
    echo "error: port $p is in use (set PORT=...)" >&2
    exit 1
  fi
done

# ---- the sink upstream ----
taskset -c "$LOAD_CPU" "$SINK" --listen 127.0.0.1:0 --port-file "$TMP/sink.port" \
  2>"$OUT/sink.log" &
SINK_PID=$!
for _ in $(seq 100); do [[ -s $TMP/sink.port ]] && break; sleep 0.05; done
SINK_PORT=$(cat "$TMP/sink.port")

cat >"$TMP/agent.yaml" <<EOF
receivers:
  http:
    endpoint: 127.0.0.1:$PORT
exporters:
  sink:
    type: otlp_http
    endpoint: http://127.0.0.1:$SINK_PORT
    compression: $EXPORTER_COMPRESSION
log:
  level: warn
admin:
  endpoint: 127.0.0.1:$((PORT + 1))
$AGENT_YAML_EXTRA
EOF

start_agent() {  # $1: log file, then an optional command prefix (chrt ...)
  local log=$1
  shift
  "$@" taskset -c "$AGENT_CPU" "$AGENT_BIN" --config "$TMP/agent.yaml" >"$log" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 200); do
    port_open "$PORT" && return 0
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.02
  done
  echo "error: the agent did not start; see $log" >&2
  cat "$log" >&2
  exit 1
}

stop_agent() {  # $1: file for the final metrics
  curl -s "http://127.0.0.1:$((PORT + 1))/metrics" >"$1" || true
  kill -TERM "$AGENT_PID"
  wait "$AGENT_PID" || true
  AGENT_PID=""
}

# name -> load generator arguments, runs, window
scenario_args() {
  case $1 in
    # (a) maximum sustained throughput: SDK-size batches (512 spans), plain protobuf, 4
    # connections in closed loop.
    throughput) echo "--spans 512 --connections 4 --rate 0" ;;
    # (a') the same with gzip-encoded requests, as SDKs send by default.
    throughput_gzip) echo "--spans 512 --connections 4 --rate 0 --gzip" ;;
    # (b) CPU at a fixed 10k spans/s, 100-span gzip requests (100 req/s) on 2 connections.
    cpu) echo "--spans 100 --connections 2 --rate 10000 --gzip" ;;
    # (b, optional) the same 10k spans/s in SDK-default 512-span requests (20 req/s).
    cpu_512) echo "--spans 512 --connections 2 --rate 10000 --gzip" ;;
    # (c) latency of a 100-span gzip export at moderate load (20k spans/s = 200 req/s).
    latency) echo "--spans 100 --connections 4 --rate 20000 --gzip" ;;
    # agent at rest: CPU with no traffic.
    idle) echo "--idle" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}
scenario_runs() { [[ $1 == idle ]] && echo 1 || echo "$RUNS"; }
scenario_window() {
  case $1 in
    cpu | cpu_512) echo $((DURATION + DURATION / 2)) ;;  # longer: CPU ticks are 10 ms
    idle) echo 5 ;;
    *) echo "$DURATION" ;;
  esac
}

# The control for (c): the latency scenario's load sent directly to a bench_sink on the agent's
# CPU (no agent), recorded as scenario "baseline".
run_baseline() {  # $1 run number
  rm -f "$TMP/sink2.port"
  taskset -c "$AGENT_CPU" "$SINK" --listen 127.0.0.1:0 --port-file "$TMP/sink2.port" \
    2>>"$OUT/sink-baseline.log" &
  local pid=$!
  for _ in $(seq 100); do [[ -s $TMP/sink2.port ]] && break; sleep 0.05; done
  local line
  # shellcheck disable=SC2046
  line=$(taskset -c "$LOAD_CPU" "$LOADGEN" --target "127.0.0.1:$(cat "$TMP/sink2.port")" \
    --pid "$pid" --agent-cpu "$AGENT_CPU" --warmup "$WARMUP" --drain 0 \
    --duration "$(scenario_window latency)" $(scenario_args latency) | grep '^RESULT') || true
  kill -TERM "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
  echo "scenario=baseline run=$1 ${line#RESULT }" >>"$RESULTS"
  echo "  baseline #$1: ${line#RESULT }" >&2
}

run_one() {  # $1 scenario, $2 run number, extra loadgen args...
  local name=$1 run=$2
  shift 2
  local prio=()
  if [[ $PRIO_PACED == 1 && ($name == cpu* || $name == latency) ]]; then
    prio=(nice -n -15)
    renice -n -15 -p "$SINK_PID" >/dev/null
  fi
  start_agent "$OUT/agent-$name-$run.log" "${prio[@]}"
  local line
  # shellcheck disable=SC2046
  line=$("${prio[@]}" taskset -c "$LOAD_CPU" "$LOADGEN" --target "127.0.0.1:$PORT" \
    --sink "127.0.0.1:$SINK_PORT" --pid "$AGENT_PID" --agent-cpu "$AGENT_CPU" --warmup "$WARMUP" \
    --duration "$(scenario_window "$name")" $(scenario_args "$name") "$@" | grep '^RESULT') || {
    echo "error: load generator failed in $name run $run" >&2
    stop_agent /dev/null
    exit 1
  }
  stop_agent "$OUT/metrics-$name-$run.txt"
  if [[ ${#prio[@]} -gt 0 ]]; then
    renice -n 0 -p "$SINK_PID" >/dev/null
    line="$line nice=-15"
  fi
  echo "scenario=$name run=$run ${line#RESULT }" >>"$RESULTS"
  echo "  $name #$run: ${line#RESULT }" >&2
}

echo "== $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //');" \
  "agent on CPU $AGENT_CPU, load generator + sink on CPU $LOAD_CPU; $RUNS run(s) x ${DURATION}s" >&2
START=$(date +%s)
for s in $SCENARIOS; do
  if [[ $s == codec ]]; then
    echo "== scenario codec: per-stage CPU cost, bench_codec on CPU $AGENT_CPU" >&2
    taskset -c "$AGENT_CPU" "$CODEC" --spans 100 --reps 5 >"$OUT/codec.md"
    cat "$OUT/codec.md" >&2
    continue
  fi
  echo "== scenario $s: $(scenario_args "$s")" >&2
  for r in $(seq "$(scenario_runs "$s")"); do
    run_one "$s" "$r"
    if [[ $s == latency && $BASELINE == 1 ]]; then
      run_baseline "$r"
    fi
  done
done

if [[ $PROFILE == 1 ]]; then
  for ps in ${PROFILE_SCENARIOS:-throughput cpu}; do
    echo "== profile: perf record -g on the agent during a $ps run" >&2
    start_agent "$OUT/agent-profile-$ps.log"
    # shellcheck disable=SC2046
    taskset -c "$LOAD_CPU" "$LOADGEN" --target "127.0.0.1:$PORT" --sink "127.0.0.1:$SINK_PORT" \
      --pid "$AGENT_PID" --agent-cpu "$AGENT_CPU" --warmup 1 --duration "$((DURATION + 2))" \
      $(scenario_args "$ps") >"$OUT/profile-loadgen-$ps.txt" &
    LG=$!
    sleep 2
    data=$OUT/perf-$ps.data
    perf record -F 499 --call-graph dwarf,16384 -p "$AGENT_PID" -o "$data" \
      -- sleep "$DURATION" >"$OUT/perf-record-$ps.log" 2>&1 ||
      echo "perf record failed: see $OUT/perf-record-$ps.log" >&2
    wait "$LG" || true
    stop_agent /dev/null
    [[ -s $data ]] || continue
    squeeze() { grep -E '^ +[0-9]' | sed 's/  */ /g' | cut -c1-170; }
    # Self time by library, by function, and inclusive time of the agent's own functions.
    perf report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null | squeeze \
      >"$OUT/perf-$ps-dso.txt" || true
    perf report -i "$data" --no-children --sort dso,symbol --percent-limit 0.5 --stdio \
      -g none 2>/dev/null | squeeze >"$OUT/perf-$ps-self.txt" || true
    perf report -i "$data" --children --sort symbol --percent-limit 0.5 --stdio -g none \
      2>/dev/null | squeeze |
      grep -E 'spanrelay::|inflate|deflate_compress|sys_recvmsg|sys_sendmsg|epoll_wait|exc_page_fault|memset|memmove|_M_mutate|futex' \
      | grep -vE 'boost::asio::detail|__invoke|_M_invoke|std::function|_Function_handler' \
      >"$OUT/perf-$ps-inclusive.txt" || true
    echo "   $OUT/perf-$ps-{dso,self,inclusive}.txt" >&2
    head -8 "$OUT/perf-$ps-dso.txt" >&2
  done
fi

summarize

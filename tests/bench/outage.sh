#!/usr/bin/env bash
# Memory through a long upstream outage (issue 4, docs/reliability.md): the agent takes a paced
# load while its only upstream refuses connections; its RSS is sampled every $SAMPLE seconds.
# Run once with the memory-only buffer and once with the disk spool.
#
#   bash tests/bench/outage.sh                    # 300 s per mode, 10k spans/s, gzip in
#   DURATION=1800 MODES=spool bash tests/bench/outage.sh
#
# Prints, per mode, a table of: seconds, VmRSS MiB, buffer_used_bytes, spool bytes, spans
# acknowledged, spans refused (429) and the peak (VmHWM). Not part of `make test`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
DURATION=${DURATION:-300}
SAMPLE=${SAMPLE:-15}
RATE=${RATE:-10000}
MODES=${MODES:-"memory spool"}
PORT=${PORT:-24418}  # receiver; admin on PORT+1 (below the ephemeral range)
SKIP_BUILD=${SKIP_BUILD:-0}

if [[ $SKIP_BUILD != 1 ]]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j 1 --target spanrelay bench_loadgen >&2
fi
AGENT_BIN=$BUILD/spanrelay
LOADGEN=$BUILD/tests/bench/bench_loadgen

TMP=$(mktemp -d)
AGENT_PID=
LOAD_PID=
cleanup() {
  [[ -n $LOAD_PID ]] && kill "$LOAD_PID" 2>/dev/null || true
  [[ -n $AGENT_PID ]] && kill -9 "$AGENT_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

metric() {  # $1: series prefix; sums the samples
  curl -fsS "http://127.0.0.1:$((PORT + 1))/metrics" 2>/dev/null |
    awk -v p="$1" 'index($0, p) == 1 {s += $NF} END {printf "%.0f", s}'
}
status_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$AGENT_PID/status"; }

for mode in $MODES; do
  {
    cat <<EOF
receivers:
  http: {endpoint: "127.0.0.1:$PORT"}
exporters:
  cloud:
    type: otlp_http
    endpoint: http://127.0.0.1:9/otlp   # discard port: nothing listens, connection refused
admin: {endpoint: "127.0.0.1:$((PORT + 1))"}
log: {level: warn}
EOF
    if [[ $mode == spool ]]; then
      printf 'spool:\n  path: %s/spool\n  max_bytes: 4GiB\n' "$TMP"
    fi
  } >"$TMP/agent.yaml"
  "$AGENT_BIN" --config "$TMP/agent.yaml" >"$TMP/agent-$mode.log" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.05
  done
  "$LOADGEN" --target "127.0.0.1:$PORT" --spans 100 --connections 2 --rate "$RATE" --gzip \
    --warmup 0 --duration "$DURATION" --drain 0 >"$TMP/loadgen-$mode.txt" 2>&1 &
  LOAD_PID=$!
  echo "== $mode: $RATE spans/s for $DURATION s, upstream refusing connections"
  printf '%8s %10s %14s %14s %14s %12s\n' seconds rss_MiB buffer_bytes spool_bytes acked_spans refused
  start=$SECONDS
  while kill -0 "$LOAD_PID" 2>/dev/null; do
    printf '%8d %10.1f %14s %14s %14s %12s\n' $((SECONDS - start)) \
      "$(awk -v k="$(status_kb VmRSS)" 'BEGIN {print k / 1024}')" \
      "$(metric spanrelay_buffer_used_bytes)" "$(metric spanrelay_spool_bytes)" \
      "$(metric spanrelay_receiver_accepted_spans_total)" \
      "$(metric spanrelay_receiver_refused_spans_total)"
    sleep "$SAMPLE"
  done
  wait "$LOAD_PID" || true
  LOAD_PID=
  echo "peak RSS (VmHWM): $(awk -v k="$(status_kb VmHWM)" 'BEGIN {printf "%.1f", k / 1024}') MiB;" \
    "failed (dropped) spans: $(metric spanrelay_exporter_failed_spans_total)"
  kill -TERM "$AGENT_PID"
  wait "$AGENT_PID" || true
  AGENT_PID=
  rm -rf "$TMP/spool"
done

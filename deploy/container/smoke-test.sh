#!/usr/bin/env bash
# Smoke test of the built image (run by `make image`), with buildah only: the image's metadata
# (non-root user, ports, health check, volume, entrypoint), its binary (--version, --validate
# on the shipped config without printing the token), and the agent itself started from the
# image's own entrypoint and config, checked with `spanrelay healthcheck` inside the image.
# Runs in a network namespace of its own (loopback only): the shipped config listens on
# 0.0.0.0, and nothing here may touch the machine's ports or networks.
#
#   deploy/container/smoke-test.sh [IMAGE]     (default localhost/spanrelay:<version>)
#   env: STORAGE_DRIVER (default vfs)
set -euo pipefail

cd "$(dirname "$0")/../.."
if [ -z "${SPANRELAY_SMOKE_NETNS:-}" ]; then
  exec unshare --net env SPANRELAY_SMOKE_NETNS=1 bash "$0" "$@"
fi
ip link set lo up

driver=${STORAGE_DRIVER:-vfs}
buildah() { command buildah --storage-driver "$driver" "$@"; }
version=$(sed -n 's/^project(spanrelay VERSION \([0-9][0-9.]*\).*/\1/p' CMakeLists.txt)
image=${1:-localhost/spanrelay:$version}
token=glc_smoke-SECRET-$RANDOM$RANDOM
env=(--env GRAFANA_CLOUD_OTLP_ENDPOINT=https://otlp-gateway-smoke.invalid/otlp
     --env GRAFANA_CLOUD_INSTANCE_ID=123456 --env "GRAFANA_CLOUD_TOKEN=$token")
failures=0
pass() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*" >&2; failures=$((failures + 1)); }
expect() {  # expect DESCRIPTION ACTUAL WANTED
  if [ "$2" = "$3" ]; then pass "$1: $2"; else fail "$1: got '$2', want '$3'"; fi
}

echo "smoke test of $image"
descendant() {  # descendant PID NAME: the first process called NAME below PID
  local child
  for child in $(pgrep -P "$1"); do
    if [ "$(cat "/proc/$child/comm" 2>/dev/null)" = "$2" ]; then echo "$child"; return 0; fi
    descendant "$child" "$2" && return 0
  done
  return 1
}
meta() { buildah inspect --type image --format "$1" "$image"; }
expect "user" "$(meta '{{.Docker.Config.User}}')" "65532:65532"
expect "ports" "$(meta '{{range $p, $_ := .Docker.Config.ExposedPorts}}{{$p}} {{end}}')" \
  "13133/tcp 4317/tcp 4318/tcp "
expect "health check" "$(meta '{{.Docker.Config.Healthcheck.Test}}')" \
  "[CMD /usr/local/bin/spanrelay healthcheck]"
expect "volume" "$(meta '{{range $v, $_ := .Docker.Config.Volumes}}{{$v}} {{end}}')" \
  "/var/lib/spanrelay "
expect "entrypoint" "$(meta '{{.Docker.Config.Entrypoint}}')" "[/usr/local/bin/spanrelay]"
expect "cmd" "$(meta '{{.Docker.Config.Cmd}}')" "[--config /etc/spanrelay/spanrelay.yaml]"

ctr=$(buildah from --pull=never "$image")
agent_pid=""
cleanup() {
  if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
    local agent
    agent=$(descendant "$agent_pid" spanrelay || true)
    [ -n "$agent" ] && kill -KILL "$agent" 2>/dev/null
    kill -KILL "$agent_pid" 2>/dev/null || true
  fi
  buildah umount "$ctr" >/dev/null 2>&1 || true
  buildah rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
mnt=$(buildah mount "$ctr")
if [ -e "$mnt/bin/sh" ] || [ -e "$mnt/usr/bin/sh" ]; then fail "the image has a shell"; else pass "no shell in the image"; fi
expect "spool volume owner" "$(stat -c %u:%g "$mnt/var/lib/spanrelay")" "65532:65532"
expect "CA bundle" "$(test -s "$mnt/etc/ssl/certs/ca-certificates.crt" && echo present)" present

run() { buildah run --isolation chroot "$@"; }
expect "--version" "$(run "$ctr" -- /usr/local/bin/spanrelay --version 2>&1)" "spanrelay $version"

out=$(run "${env[@]}" "$ctr" -- /usr/local/bin/spanrelay --config /etc/spanrelay/spanrelay.yaml \
  --validate 2>&1) && rc=0 || rc=$?
expect "--validate exit status" "$rc" 0
case "$out" in
  *"configuration OK: /etc/spanrelay/spanrelay.yaml"*) pass "--validate accepts the shipped config" ;;
  *) fail "--validate output: $out" ;;
esac
case "$out" in
  *"$token"*) fail "--validate printed the token" ;;
  *) pass "the token is not printed" ;;
esac
case "$out" in
  *"https://otlp-gateway-smoke.invalid/otlp"*) pass "the endpoint comes from the environment" ;;
  *) fail "the endpoint from the environment is not in: $out" ;;
esac
run "$ctr" -- /usr/local/bin/spanrelay --config /etc/spanrelay/spanrelay.yaml --validate \
  >/dev/null 2>&1 && rc=0 || rc=$?
expect "--validate without the env vars exits 2" "$rc" 2

# The agent, as the image runs it: its entrypoint and command, its user, the shipped config.
log=$(mktemp)
run "${env[@]}" "$ctr" -- /usr/local/bin/spanrelay --config /etc/spanrelay/spanrelay.yaml \
  >"$log" 2>&1 &
agent_pid=$!
healthy=0
deadline=$(( $(date +%s) + 30 ))
while [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$agent_pid" 2>/dev/null; do
  if hc=$(run "$ctr" -- /usr/local/bin/spanrelay healthcheck 2>&1); then healthy=1; break; fi
  sleep 0.5
done
if [ "$healthy" = 1 ]; then pass "HEALTHCHECK command: $hc"; else fail "healthcheck never passed: ${hc:-}"; fi
ready=$(run "$ctr" -- /usr/local/bin/spanrelay healthcheck --url http://127.0.0.1:13133/readyz 2>&1) \
  && pass "readiness: $ready" || fail "readiness: $ready"
# Spans in: one OTLP/JSON span over HTTP, accepted (the upstream is unreachable from here, so
# it waits in the spool).
span='{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"smoke"}}]},"scopeSpans":[{"scope":{"name":"smoke"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"smoke","kind":1,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001000000000"}]}]}]}'
expect "OTLP/HTTP POST /v1/traces" "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
  -H 'Content-Type: application/json' --data "$span" http://127.0.0.1:4318/v1/traces)" 200
expect "accepted spans (/metrics)" "$(curl -s --max-time 5 http://127.0.0.1:13133/metrics |
  awk '$1 == "spanrelay_receiver_accepted_spans_total" { print $2 }')" 1
# The agent process itself (buildah run's descendant): its uid, and what it made in the volume.
agent=$(descendant "$agent_pid" spanrelay || true)
if [ -z "$agent" ]; then
  fail "no spanrelay process below buildah run ($agent_pid)"
  kill -TERM "$agent_pid" 2>/dev/null || true
else
  expect "agent uid (real effective saved fs)" \
    "$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$agent/status")" "65532 65532 65532 65532"
  expect "spool directory in the volume, made by the agent" \
    "$(stat -c %u:%g "/proc/$agent/root/var/lib/spanrelay/spool" 2>&1)" "65532:65532"
  # SIGTERM as `docker stop` sends it: a clean shutdown, exit status 0 (buildah run passes it on).
  kill -TERM "$agent"
fi
wait "$agent_pid" && rc=0 || rc=$?
agent_pid=""
expect "agent exit status after SIGTERM" "$rc" 0
if grep -q "$token" "$log"; then fail "the agent's log shows the token"; else pass "the agent's log does not show the token"; fi
if [ "$failures" -ne 0 ]; then
  echo "--- agent log ---" >&2; tail -n 40 "$log" >&2
fi
rm -f "$log"

echo "image $image: $(buildah images --format '{{.Size}}' "$image" | head -n1) (uncompressed)," \
  "$(du -sh "$mnt" | cut -f1) on disk, $(find "$mnt" -name '*.so*' -type f | wc -l) shared libraries"
if [ "$failures" -ne 0 ]; then
  echo "smoke test: $failures check(s) failed" >&2
  exit 1
fi
echo "smoke test: all checks passed"

#!/usr/bin/env bash
# The unit's sandbox lets the agent do its job. No systemd runs as PID 1 here, so the unit
# cannot be started for real; instead the real binary runs under strace through a short life
# like the service's (start with NOTIFY_SOCKET, WATCHDOG_USEC and a credential; receive spans;
# serve the admin endpoint; export to a file and, through a disk spool, to an https and a gRPC
# upstream that refuse connections; SIGHUP reload; SIGTERM) and every system call it made is
# checked against what the unit allows (the settings are read from the unit file itself):
#   - SystemCallFilter= (groups expanded by `systemd-analyze syscall-filter`),
#   - RestrictAddressFamilies= (socket() and socketpair() families),
#   - MemoryDenyWriteExecute= (no writable+executable mapping, no mprotect(PROT_EXEC)),
#   - ProcSubset=pid (no /proc files other than the process's own),
#   - ProtectSystem=strict (no file written or created outside the agent's own directories).
# Usage: sandbox_test.sh SOURCE_DIR SPANRELAY_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

src=${1:?usage: sandbox_test.sh SOURCE_DIR SPANRELAY_BINARY}
binary=${2:?usage: sandbox_test.sh SOURCE_DIR SPANRELAY_BINARY}
binary=$(realpath "$binary")
unit=$src/deploy/systemd/spanrelay.service
need systemd-analyze systemd
need strace strace
need curl curl
[[ -x $binary ]] || fail "$binary is not built"

tmp=$(mktemp -d)
spid=
cleanup() {
  local rc=$?
  if ((rc != 0)) && [[ -s $tmp/agent.log ]]; then
    echo "---- the agent's log (last 40 lines) ----" >&2
    tail -n 40 "$tmp/agent.log" >&2
  fi
  if [[ -n $spid ]] && kill -0 "$spid" 2>/dev/null; then
    kill -KILL "$spid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---- what the unit allows ----
declare -A group_done=()
expand() {  # expand NAME...: syscall names, @groups expanded recursively
  local name line
  for name in "$@"; do
    if [[ $name == @* ]]; then
      [[ -n ${group_done[$name]:-} ]] && continue
      group_done[$name]=1
      local members=()
      while read -r line; do
        [[ -z $line || $line == \#* || $line == "$name" ]] && continue
        members+=("$line")
      done < <(systemd-analyze syscall-filter --no-pager "$name")
      ((${#members[@]} > 0)) || fail "systemd-analyze syscall-filter $name lists nothing"
      expand "${members[@]}"
    else
      echo "$name"
    fi
  done
}
declare -A allowed=()
mode=
while read -r value; do
  [[ -z $value ]] && { allowed=(); mode=; continue; }
  if [[ $value == ~* ]]; then
    [[ $mode == allow ]] || fail "the test understands a SystemCallFilter= allow list first"
    read -ra names <<<"${value#\~}"
    group_done=()
    while read -r s; do unset "allowed[$s]"; done < <(expand "${names[@]}")
  else
    mode=allow
    read -ra names <<<"$value"
    group_done=()
    while read -r s; do allowed[$s]=1; done < <(expand "${names[@]}")
  fi
done < <(unit_values "$unit" SystemCallFilter)
[[ $mode == allow ]] || fail "$unit has no SystemCallFilter= allow list"
# Always allowed by systemd with an allow list (systemd.exec(5)).
for s in execve exit exit_group getrlimit rt_sigreturn sigreturn; do allowed[$s]=1; done

read -ra families <<<"$(unit_value "$unit" RestrictAddressFamilies)"
((${#families[@]} > 0)) || fail "$unit has no RestrictAddressFamilies="

# ---- a short life under strace ----
state=$tmp/state  # the StateDirectory and WorkingDirectory
mkdir -p "$state" "$tmp/credentials"
printf 'glc_sandbox_%s\n' "$RANDOM$RANDOM" >"$tmp/credentials/token"
cat >"$tmp/spanrelay.yaml" <<EOF
receivers:
  http: {endpoint: "unix:$tmp/http.sock"}
  grpc: {endpoint: "unix:$tmp/grpc.sock"}
batch: {timeout: 100ms}
exporters:
  local: {type: file, path: $state/spans.jsonl}
  cloud:
    type: otlp_http
    endpoint: https://localhost:9/otlp
    auth:
      username: "123456"
      password_file: \${CREDENTIALS_DIRECTORY}/token
    retry: {initial_interval: 100ms, max_interval: 200ms}
  tempo:
    type: otlp_grpc
    endpoint: http://localhost:9
    retry: {initial_interval: 100ms, max_interval: 200ms}
spool: {path: $state/spool, fsync: always}
admin: {endpoint: "unix:$tmp/admin.sock"}
log: {level: debug}
shutdown_timeout: 2s
EOF

(
  cd "$state"
  exec env -i PATH=/usr/bin:/bin LANG=C.UTF-8 NOTIFY_SOCKET="$tmp/notify.sock" \
    WATCHDOG_USEC=1000000 CREDENTIALS_DIRECTORY="$tmp/credentials" \
    strace -f -qq -s 256 -o "$tmp/trace" "$binary" --config "$tmp/spanrelay.yaml"
) >"$tmp/agent.log" 2>&1 &
spid=$!

admin() { curl -s --max-time 5 --unix-socket "$tmp/admin.sock" "http://localhost$1"; }
ready() {
  kill -0 "$spid" 2>/dev/null || fail "the agent exited before it was ready"
  [[ $(admin /readyz 2>/dev/null) == ready* ]]
}
await 60 "the agent under strace to be ready" ready

trace_id=5b8efff798038103d269b633813fc60c
body='{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"sandbox"}}]},"scopeSpans":[{"spans":[{"traceId":"'$trace_id'","spanId":"eee19b7ec3c1b174","name":"GET /items","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}'
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --unix-socket "$tmp/http.sock" \
  -H 'Content-Type: application/json' -d "$body" http://localhost/v1/traces)
[[ $code == 200 ]] || { cat "$tmp/agent.log" >&2; fail "POST /v1/traces answered $code"; }
exported() { grep -qs "$trace_id" "$state/spans.jsonl"; }
await 30 "the span in the file exporter's output" exported
attempted() {  # both network exporters have failed against their closed upstream and retried
  local m
  m=$(admin /metrics) || return 1
  grep -Eq '^spanrelay_exporter_retries_total\{exporter="cloud"\} [1-9]' <<<"$m" &&
    grep -Eq '^spanrelay_exporter_retries_total\{exporter="tempo"\} [1-9]' <<<"$m"
}
await 30 "both network exporters to attempt their upstream" attempted
admin /status.json >/dev/null || fail "GET /status.json"
admin / >/dev/null || fail "GET /"

kill -HUP "$(cat "/proc/$spid/task/$spid/children" | awk '{print $1}')" 2>/dev/null ||
  fail "cannot find the agent under strace"
reloaded() { admin /metrics | grep -Eq '^spanrelay_config_reloads_total\{result="success"\} 1'; }
await 30 "the SIGHUP reload to succeed" reloaded
await 30 "the agent to be ready after the reload" ready
pass "the agent ran under strace: ready, span received and exported, reload by SIGHUP"

kill -TERM "$(cat "/proc/$spid/task/$spid/children" | awk '{print $1}')"
stopped() { ! kill -0 "$spid" 2>/dev/null; }
await 60 "the agent to exit after SIGTERM" stopped
set +e
wait "$spid"
rc=$?
set -e
spid=
((rc == 0)) || { tail -n 30 "$tmp/agent.log" >&2; fail "the agent exited with status $rc after SIGTERM"; }
pass "the agent stopped with status 0 after SIGTERM"

# ---- check every call against the unit ----
trace=$tmp/trace
[[ -s $trace ]] || fail "strace wrote nothing"
problems=0
problem() {
  echo "PROBLEM: $*" >&2
  problems=$((problems + 1))
}

# System calls (strace: "PID name(" or "PID <... name resumed>").
mapfile -t used < <(sed -nE 's/^[0-9]+ +(<\.\.\. )?([a-z0-9_]+)(\(| resumed>).*/\2/p' "$trace" | sort -u)
((${#used[@]} > 20)) || fail "only ${#used[@]} system calls parsed from the trace"
for s in "${used[@]}"; do
  [[ -n ${allowed[$s]:-} ]] ||
    problem "system call $s is denied by SystemCallFilter= (first use: $(grep -m1 -E "^[0-9]+ +$s\(" "$trace" | cut -c1-160))"
done

# Address families.
mapfile -t used_families < <(sed -nE 's/^[0-9]+ +socket(pair)?\((AF_[A-Z0-9]+).*/\2/p' "$trace" | sort -u)
for f in "${used_families[@]}"; do
  [[ " ${families[*]} " == *" $f "* ]] || problem "socket family $f is not in RestrictAddressFamilies=${families[*]}"
done

# MemoryDenyWriteExecute=yes.
if [[ $(unit_value "$unit" MemoryDenyWriteExecute) == yes ]]; then
  grep -E '^[0-9]+ +(mmap|mprotect|pkey_mprotect)\(' "$trace" |
    grep -E 'PROT_[A-Z|]*WRITE[A-Z|]*EXEC|PROT_[A-Z|]*EXEC[A-Z|]*WRITE' >"$tmp/wx" || true
  grep -E '^[0-9]+ +(mprotect|pkey_mprotect)\(.*PROT_EXEC' "$trace" >>"$tmp/wx" || true
  [[ -s $tmp/wx ]] && problem "MemoryDenyWriteExecute=yes would refuse: $(head -n 3 "$tmp/wx")"
fi

# ProcSubset=pid / ProtectProc=invisible: only the process's own /proc entries exist.
# Tolerated: /proc/sys/net/core/somaxconn, which gRPC reads for its listen backlog and, when it
# cannot, uses SOMAXCONN (4096) instead.
if [[ $(unit_value "$unit" ProcSubset) == pid ]]; then
  grep -oE '"/proc/[^"]*"' "$trace" | tr -d '"' | sort -u |
    grep -vE '^/proc/(self|thread-self|[0-9]+)(/|$)' |
    grep -vxF /proc/sys/net/core/somaxconn >"$tmp/proc" || true
  [[ -s $tmp/proc ]] && problem "ProcSubset=pid hides what the agent reads: $(tr '\n' ' ' <"$tmp/proc")"
fi

# ProtectSystem=strict: writes and new files only in the agent's own directories (here $tmp:
# its StateDirectory, credentials and sockets) and /dev/null.
grep -E '^[0-9]+ +(openat|open|creat)\(' "$trace" | grep -E 'O_WRONLY|O_RDWR|O_CREAT' |
  grep -oE '"[^"]*"' | tr -d '"' | sort -u | grep -vE "^($tmp/|/dev/null$)" >"$tmp/writes" || true
grep -E '^[0-9]+ +(mkdir|mkdirat|unlink|unlinkat|rename|renameat2?|link|linkat|symlink|symlinkat|truncate|bind|chmod|fchmodat|chown|lchown|fchownat|utimensat|mknod|mknodat)\(' "$trace" |
  grep -oE '"/[^"]*"' | tr -d '"' | sort -u | grep -vE "^$tmp/" >>"$tmp/writes" || true
[[ -s $tmp/writes ]] && problem "ProtectSystem=strict makes these read-only: $(tr '\n' ' ' <"$tmp/writes")"

if ((problems > 0)); then
  fail "$problems way(s) in which the unit's sandbox would break the agent (above)"
fi
pass "${#used[@]} system calls, families ${used_families[*]}: all allowed by the unit's sandbox"
echo "system calls used: ${used[*]}"

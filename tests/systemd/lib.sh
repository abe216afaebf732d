# Shared helpers for tests/systemd/*.sh (sourced, not run).
# shellcheck shell=bash

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

pass() {
  echo "ok: $*"
}

need() {  # need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 ||
    fail "$1 not found: install the $2 package (deploy/install-deps.sh installs it)"
}

# The value(s) of KEY= in a unit file, one per line, in order (comments and sections ignored).
unit_values() {  # unit_values FILE KEY
  awk -v key="$2" '
    /^[[:space:]]*[#;]/ { next }
    {
      line = $0
      sub(/^[[:space:]]+/, "", line)
      n = index(line, "=")
      if (n == 0) next
      k = substr(line, 1, n - 1)
      sub(/[[:space:]]+$/, "", k)
      if (k != key) next
      v = substr(line, n + 1)
      sub(/^[[:space:]]+/, "", v)
      print v
    }' "$1"
}

unit_value() {  # the last KEY= in FILE (systemd: later assignments win for single values)
  unit_values "$1" "$2" | tail -n 1
}

# A duration as systemd or spanrelay writes it ("30s", "1m30s", "500ms", "2min", "90"), in
# milliseconds. Bare numbers are seconds (systemd's rule).
duration_ms() {
  local text=$1 total=0 num unit
  [[ $text =~ ^[0-9]+$ ]] && { echo $((text * 1000)); return; }
  while [[ -n $text ]]; do
    [[ $text =~ ^([0-9]+)(ms|msec|s|sec|m|min|h|hr)(.*)$ ]] || fail "cannot parse duration \"$1\""
    num=${BASH_REMATCH[1]}
    unit=${BASH_REMATCH[2]}
    text=${BASH_REMATCH[3]}
    case $unit in
      ms | msec) total=$((total + num)) ;;
      s | sec) total=$((total + num * 1000)) ;;
      m | min) total=$((total + num * 60000)) ;;
      h | hr) total=$((total + num * 3600000)) ;;
    esac
  done
  echo "$total"
}

# A top-level or one-level-nested scalar from a simple YAML file, e.g. yaml_scalar f
# shutdown_timeout, or yaml_scalar f spool path. Enough for our own example configs.
yaml_scalar() {  # yaml_scalar FILE KEY [CHILD]
  awk -v key="$2" -v child="${3:-}" '
    { sub(/[[:space:]]+#.*$/, "") }
    /^[^[:space:]#]/ { inside = 0 }
    child == "" && $0 ~ "^" key ":" { v = $0; sub("^" key ":[[:space:]]*", "", v); print v; exit }
    child != "" && $0 ~ "^" key ":" { inside = 1; next }
    inside && $0 ~ "^[[:space:]]+" child ":" {
      v = $0; sub("^[[:space:]]+" child ":[[:space:]]*", "", v); print v; exit
    }' "$1"
}

# Polls COMMAND until it succeeds or SECONDS pass; fails with WHAT.
await() {  # await SECONDS WHAT COMMAND...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out after waiting for: $what"
    sleep 0.05
  done
}

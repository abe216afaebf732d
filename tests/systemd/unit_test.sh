#!/usr/bin/env bash
# The systemd unit as shipped (deploy/systemd/spanrelay.service):
#   1. `systemd-analyze verify` reports nothing at all (it exits 0 even for unknown keys and
#      unparsable values, so any output is a failure), on a copy whose ExecStart*= name the
#      binary just built (verify checks that the executable exists; the DESTDIR install is
#      verified the same way by install_test.sh);
#   2. `systemd-analyze security --offline=yes` rates its exposure at most 2.0;
#   3. the unit and the config it is installed with (config/examples/systemd.yaml) agree: the
#      notify protocol and watchdog, reload by SIGHUP, the token as a credential the config
#      reads, the spool in the StateDirectory, a stop timeout longer than shutdown_timeout.
# Usage: unit_test.sh SOURCE_DIR SPANRELAY_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

src=${1:?usage: unit_test.sh SOURCE_DIR SPANRELAY_BINARY}
binary=${2:?usage: unit_test.sh SOURCE_DIR SPANRELAY_BINARY}
binary=$(realpath "$binary")
unit=$src/deploy/systemd/spanrelay.service
config=$src/config/examples/systemd.yaml
max_exposure=2.0

need systemd-analyze systemd
[[ -f $unit ]] || fail "$unit is missing"
[[ -x $binary ]] || fail "$binary is not built"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- 1. verify ----
mkdir -p "$tmp/units"
sed "s#/usr/local/bin/spanrelay#$binary#g" "$unit" >"$tmp/units/spanrelay.service"
grep -q "$binary" "$tmp/units/spanrelay.service" ||
  fail "the unit's ExecStart= does not name /usr/local/bin/spanrelay"
set +e
out=$(systemd-analyze verify --man=no "$tmp/units/spanrelay.service" 2>&1)
rc=$?
set -e
if ((rc != 0)) || [[ -n $out ]]; then
  echo "$out" >&2
  fail "systemd-analyze verify: exit $rc, diagnostics above"
fi
pass "systemd-analyze verify: no diagnostics"

# ---- 2. security ----
set +e
report=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1)
rc=$?
set -e
exposure=$(sed -n 's/.*Overall exposure level for spanrelay\.service: \([0-9.]*\).*/\1/p' <<<"$report")
if [[ -z $exposure ]] || ((rc != 0)); then
  echo "$report" >&2
  fail "systemd-analyze security --offline=yes: exit $rc, no exposure level found"
fi
if awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e > m) }'; then
  grep '✗' <<<"$report" >&2 || true
  fail "exposure $exposure > $max_exposure (the settings that cost exposure are above)"
fi
pass "systemd-analyze security --offline=yes: exposure $exposure <= $max_exposure"

# ---- 3. the unit and its config agree ----
expect() {  # expect KEY VALUE
  local got
  got=$(unit_value "$unit" "$1")
  [[ $got == "$2" ]] || fail "$1=$got, expected $1=$2"
}
expect Type notify
expect NotifyAccess main
expect ExecReload '/bin/kill -HUP $MAINPID'
expect DynamicUser yes
expect Restart on-failure
watchdog=$(unit_value "$unit" WatchdogSec)
[[ -n $watchdog ]] && (($(duration_ms "$watchdog") > 0)) || fail "WatchdogSec= is not set"

exec_start=$(unit_value "$unit" ExecStart)
exec_pre=$(unit_value "$unit" ExecStartPre)
[[ $exec_start == "/usr/local/bin/spanrelay --config /etc/spanrelay/spanrelay.yaml" ]] ||
  fail "ExecStart=$exec_start"
[[ $exec_pre == "$exec_start --validate" ]] ||
  fail "ExecStartPre= must validate the config ExecStart= runs: ExecStartPre=$exec_pre"

# The token: LoadCredential=<id>:<root-only file>; the config reads $CREDENTIALS_DIRECTORY/<id>.
cred=$(unit_value "$unit" LoadCredential)
[[ $cred =~ ^([A-Za-z0-9_.-]+):(/.+)$ ]] || fail "LoadCredential=$cred"
cred_id=${BASH_REMATCH[1]}
password_file=$(grep -E '^[[:space:]]+password_file:' "$config" | head -n 1 |
  sed -E 's/^[[:space:]]+password_file:[[:space:]]*//; s/[[:space:]]+#.*$//')
[[ $password_file =~ ^\$\{CREDENTIALS_DIRECTORY(:-[^}]*)?\}/$cred_id$ ]] ||
  fail "$config: password_file: $password_file does not read the credential \"$cred_id\""
if grep -Eq '^[[:space:]]+password_env:' "$config"; then
  fail "$config: password_env: the unit passes the token as a credential, not in the environment"
fi

# The spool lives in the StateDirectory= systemd creates for the dynamic user.
state=$(unit_value "$unit" StateDirectory)
[[ -n $state ]] || fail "StateDirectory= is not set"
spool=$(yaml_scalar "$config" spool path)
[[ $spool == /var/lib/$state/* ]] ||
  fail "$config: spool.path $spool is not under StateDirectory=$state (/var/lib/$state)"

# systemd must not SIGKILL the agent while it is still draining.
stop=$(unit_value "$unit" TimeoutStopSec)
drain=$(yaml_scalar "$config" shutdown_timeout)
drain=${drain:-10s}
(($(duration_ms "$stop") > $(duration_ms "$drain"))) ||
  fail "TimeoutStopSec=$stop is not longer than shutdown_timeout: $drain"
pass "the unit and config/examples/systemd.yaml agree (credential \"$cred_id\", spool $spool, stop $stop > $drain)"

# The installed config validates under the unit's conditions with a fake credential.
mkdir -p "$tmp/credentials"
printf 'glc_fake_token_%s\n' "$RANDOM$RANDOM" >"$tmp/credentials/$cred_id"
set +e
out=$(CREDENTIALS_DIRECTORY="$tmp/credentials" "$binary" --config "$config" --validate 2>&1)
rc=$?
set -e
if ((rc != 0)); then
  echo "$out" >&2
  fail "config/examples/systemd.yaml does not validate (exit $rc)"
fi
if grep -qF "$(cat "$tmp/credentials/$cred_id")" <<<"$out"; then
  fail "--validate printed the token"
fi
pass "config/examples/systemd.yaml validates with \$CREDENTIALS_DIRECTORY/$cred_id"

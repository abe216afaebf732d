#!/usr/bin/env bash
# `make install` (cmake --install with PREFIX and DESTDIR, the same rules make install runs) puts
# the binary, the systemd unit, the config and the docs where promised:
#   PREFIX=/usr/local: /usr/local/bin/spanrelay, /usr/local/lib/systemd/system/spanrelay.service
#                      (exactly the checked-in unit), /etc/spanrelay/spanrelay.yaml (exactly
#                      config/examples/systemd.yaml), /usr/local/share/doc/spanrelay/...
#   PREFIX=/usr:       systemd's own unit directory, ExecStart=/usr/bin/spanrelay
#   PREFIX=/opt/...:   ExecStart= follows the prefix
# nothing outside DESTDIR; the installed binary runs; the installed config validates with a fake
# token in a credentials directory (and fails without one); the installed unit passes
# `systemd-analyze verify`; a second install keeps an operator's edited config.
# Usage: install_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

src=${1:?usage: install_test.sh SOURCE_DIR BUILD_DIR}
build=${2:?usage: install_test.sh SOURCE_DIR BUILD_DIR}
need systemd-analyze systemd
need cmake cmake
[[ -x $build/spanrelay ]] || fail "$build/spanrelay is not built"
version=$(sed -n 's/^project(spanrelay VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[[ -n $version ]] || fail "no project version in $src/CMakeLists.txt"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

install_to() {  # install_to DESTDIR PREFIX -> the install log in $tmp/install.log
  touch "$tmp/before-install"
  DESTDIR=$1 cmake --install "$build" --prefix "$2" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log" >&2
    fail "cmake --install --prefix $2 (DESTDIR=$1) failed"
  }
  # DESTDIR honoured: every installed file is under it, none was written in the real place.
  local path
  while read -r path; do
    [[ -e $1$path ]] || fail "install_manifest.txt lists $path, but $1$path does not exist"
    if [[ -e $path && $path -nt $tmp/before-install ]]; then
      fail "DESTDIR=$1 not honoured: $path was written"
    fi
  done <"$build/install_manifest.txt"
}

# ---- PREFIX=/usr/local ----
root=$tmp/root
install_to "$root" /usr/local
bin=$root/usr/local/bin/spanrelay
unit=$root/usr/local/lib/systemd/system/spanrelay.service
conf=$root/etc/spanrelay/spanrelay.yaml
doc=$root/usr/local/share/doc/spanrelay
[[ -x $bin ]] || fail "no executable $bin"
[[ $("$bin" --version) == "spanrelay $version" ]] || fail "$bin --version: $("$bin" --version)"
cmp -s "$unit" "$src/deploy/systemd/spanrelay.service" ||
  fail "$unit differs from deploy/systemd/spanrelay.service (the /usr/local default)"
cmp -s "$conf" "$src/config/examples/systemd.yaml" ||
  fail "$conf is not config/examples/systemd.yaml"
[[ $(stat -c %a "$conf") == 644 ]] || fail "$conf has mode $(stat -c %a "$conf"), not 644"
for f in README.md configuration.md examples/systemd.yaml examples/grafana-cloud.yaml; do
  [[ -f $doc/$f ]] || fail "$doc/$f was not installed"
done
# The unit's Documentation= links resolve to installed files.
for uri in $(unit_value "$unit" Documentation); do
  [[ $uri == file://* ]] || continue
  [[ -f $root${uri#file://} ]] || fail "Documentation=$uri: no such file installed"
done
[[ $(unit_value "$unit" ExecStart) == "/usr/local/bin/spanrelay --config /etc/spanrelay/spanrelay.yaml" ]] ||
  fail "installed ExecStart=$(unit_value "$unit" ExecStart)"
pass "PREFIX=/usr/local: binary (spanrelay $version), unit, config, docs in place"

# The installed unit, verified where its binary is: ExecStart*= prefixed by DESTDIR.
mkdir -p "$tmp/verify"
sed "s#/usr/local/bin/spanrelay#$bin#g" "$unit" >"$tmp/verify/spanrelay.service"
set +e
out=$(systemd-analyze verify --man=no "$tmp/verify/spanrelay.service" 2>&1)
rc=$?
set -e
if ((rc != 0)) || [[ -n $out ]]; then
  echo "$out" >&2
  fail "systemd-analyze verify of the installed unit: exit $rc"
fi
pass "systemd-analyze verify: the installed unit with the installed binary"

# The installed config validates as the unit's ExecStartPre= runs it: the token is a
# credential, $CREDENTIALS_DIRECTORY/token.
cred_id=$(unit_value "$unit" LoadCredential)
cred_id=${cred_id%%:*}
mkdir -p "$tmp/credentials" "$tmp/empty"
token="glc_fake_$RANDOM$RANDOM$RANDOM"
printf '%s\n' "$token" >"$tmp/credentials/$cred_id"
chmod 0400 "$tmp/credentials/$cred_id"
set +e
out=$(cd "$tmp" && env -u GRAFANA_CLOUD_TOKEN CREDENTIALS_DIRECTORY="$tmp/credentials" \
  "$bin" --config "$conf" --validate 2>&1)
rc=$?
set -e
((rc == 0)) || { echo "$out" >&2; fail "the installed config does not validate (exit $rc)"; }
! grep -qF "$token" <<<"$out" || fail "--validate printed the token"
set +e
out=$(CREDENTIALS_DIRECTORY="$tmp/empty" "$bin" --config "$conf" --validate 2>&1)
rc=$?
set -e
((rc != 0)) || fail "the installed config validates without the token credential"
grep -qF "$tmp/empty/$cred_id" <<<"$out" ||
  { echo "$out" >&2; fail "without the credential, --validate does not name $tmp/empty/$cred_id"; }
pass "the installed config validates with \$CREDENTIALS_DIRECTORY/$cred_id and not without it"

# A second install keeps the operator's config.
echo "# edited by the operator" >>"$conf"
install_to "$root" /usr/local
tail -n 1 "$conf" | grep -q "edited by the operator" || fail "make install overwrote $conf"
grep -q "Keeping existing: $conf" "$tmp/install.log" ||
  { cat "$tmp/install.log" >&2; fail "the install log does not say it kept $conf"; }
pass "a second install keeps an existing /etc/spanrelay/spanrelay.yaml"

# ---- PREFIX=/usr and PREFIX=/opt/spanrelay: the unit follows the prefix ----
check_prefix() {  # check_prefix PREFIX UNIT_DIR
  local r=$tmp/root$(echo "$1" | tr / _) u
  install_to "$r" "$1"
  u=$r$2/spanrelay.service
  [[ -f $u ]] || fail "PREFIX=$1: no unit at $2/spanrelay.service"
  [[ -x $r$1/bin/spanrelay ]] || fail "PREFIX=$1: no $1/bin/spanrelay"
  [[ $(unit_value "$u" ExecStart) == "$1/bin/spanrelay --config /etc/spanrelay/spanrelay.yaml" ]] ||
    fail "PREFIX=$1: ExecStart=$(unit_value "$u" ExecStart)"
  [[ $(unit_value "$u" ExecStartPre) == "$1/bin/spanrelay --config /etc/spanrelay/spanrelay.yaml --validate" ]] ||
    fail "PREFIX=$1: ExecStartPre=$(unit_value "$u" ExecStartPre)"
  [[ -f $r/etc/spanrelay/spanrelay.yaml ]] || fail "PREFIX=$1: no /etc/spanrelay/spanrelay.yaml"
  # Apart from the prefix, the very same unit.
  diff <(sed "s#$1/bin/spanrelay#/usr/local/bin/spanrelay#g; s#$1/share/doc/spanrelay#/usr/local/share/doc/spanrelay#g" "$u") \
    "$src/deploy/systemd/spanrelay.service" >&2 ||
    fail "PREFIX=$1: the installed unit differs from the shipped one in more than its paths"
  pass "PREFIX=$1: unit in $2, ExecStart=$1/bin/spanrelay"
}
usr_unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || true)
check_prefix /usr "${usr_unitdir:-/usr/lib/systemd/system}"
check_prefix /opt/spanrelay /opt/spanrelay/lib/systemd/system

# ---- make install runs these same rules with PREFIX and DESTDIR ----
if command -v make >/dev/null 2>&1; then
  plan=$(make -s -n -C "$src" install PREFIX=/usr DESTDIR=/staging 2>&1)
  grep -Eq "DESTDIR='/staging' cmake --install .* --prefix '/usr'" <<<"$plan" ||
    { echo "$plan" >&2; fail "make install does not pass PREFIX and DESTDIR to cmake --install"; }
  pass "make install PREFIX=/usr DESTDIR=/staging runs cmake --install --prefix /usr with DESTDIR"
fi

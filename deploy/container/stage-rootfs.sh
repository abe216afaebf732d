#!/usr/bin/env bash
# Runs in the image's build stage: assembles the whole runtime filesystem under ROOTFS, so the
# final stage is FROM scratch plus one COPY. It holds the stripped binary, exactly the shared
# libraries `ldd` lists for it (with the dynamic loader), the CA bundle, the config, a non-root
# user 65532 "spanrelay", /tmp and the spool directory; plus, for image scanners and licences,
# /etc/os-release and the dpkg status and copyright file of each package a library came from.
#
#   stage-rootfs.sh BINARY CONFIG ROOTFS
set -euo pipefail

binary=$1 config=$2 rootfs=$3
uid=65532

[ -x "$binary" ] || { echo "stage-rootfs: no executable $binary" >&2; exit 1; }
rm -rf "$rootfs"
# Debian 12's merged /usr: /lib and /lib64 are links into /usr, as ldd's paths expect.
install -d -m 0755 "$rootfs"/usr/lib "$rootfs"/usr/lib64 "$rootfs"/usr/local/bin \
  "$rootfs"/etc/spanrelay "$rootfs"/etc/ssl/certs "$rootfs"/usr/lib/ssl \
  "$rootfs"/var/lib/dpkg/status.d "$rootfs"/usr/share/doc
ln -s usr/lib "$rootfs"/lib
ln -s usr/lib64 "$rootfs"/lib64
install -d -m 1777 "$rootfs"/tmp
install -d -m 0750 -o "$uid" -g "$uid" "$rootfs"/var/lib/spanrelay

install -m 0755 "$binary" "$rootfs"/usr/local/bin/spanrelay
install -m 0644 "$config" "$rootfs"/etc/spanrelay/spanrelay.yaml

# Shared libraries, each at the path the loader will look for it.
libs=()
while read -r line; do
  case "$line" in
    *"not found"*) echo "stage-rootfs: $binary: $line" >&2; exit 1 ;;
    *"=> /"*) path=${line#*=> }; libs+=("${path%% (*}") ;;
    /*) libs+=("${line%% (*}") ;;
  esac
done < <(ldd "$binary")
[ ${#libs[@]} -gt 0 ] || { echo "stage-rootfs: ldd listed no libraries" >&2; exit 1; }
for lib in "${libs[@]}"; do
  cp -L --parents "$lib" "$rootfs"
done

# CA certificates: the bundle, where Debian's OpenSSL (OPENSSLDIR /usr/lib/ssl) and gRPC look.
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs"/etc/ssl/certs/
ln -s /etc/ssl/certs/ca-certificates.crt "$rootfs"/usr/lib/ssl/cert.pem
ln -s /etc/ssl/certs "$rootfs"/usr/lib/ssl/certs

cat >"$rootfs"/etc/passwd <<PASSWD
root:x:0:0:root:/root:/usr/sbin/nologin
spanrelay:x:$uid:$uid:spanrelay:/var/lib/spanrelay:/usr/sbin/nologin
PASSWD
cat >"$rootfs"/etc/group <<GROUP
root:x:0:
spanrelay:x:$uid:
GROUP
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs"/etc/nsswitch.conf
cp -L /etc/os-release "$rootfs"/etc/os-release

# The packages the libraries (and the CA bundle) came from, as distroless images record them.
owner() {
  local p candidates=("$1" "$(readlink -f "$1")")
  for p in "${candidates[@]}"; do
    candidates+=("/usr$p" "${p#/usr}")
  done
  for p in "${candidates[@]}"; do
    dpkg-query -S "$p" 2>/dev/null | head -n1 | cut -d: -f1 && return 0
  done
  echo "stage-rootfs: no package owns $1" >&2
  return 1
}
packages=$( { for lib in "${libs[@]}"; do owner "$lib"; done; echo ca-certificates; } | sort -u)
for pkg in $packages; do
  dpkg-query -s "$pkg" >"$rootfs/var/lib/dpkg/status.d/${pkg%%:*}"
  name=${pkg%%:*}
  if [ -f "/usr/share/doc/$name/copyright" ]; then
    install -D -m 0644 "/usr/share/doc/$name/copyright" "$rootfs/usr/share/doc/$name/copyright"
  fi
done

# The libraries resolve inside the staged tree alone.
chroot "$rootfs" /usr/local/bin/spanrelay --version >/dev/null
echo "stage-rootfs: $(echo "$packages" | wc -l) packages, ${#libs[@]} libraries," \
  "$(du -sh "$rootfs" | cut -f1) in $rootfs"

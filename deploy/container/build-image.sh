#!/usr/bin/env bash
# `make image`: builds deploy/container/Dockerfile where no Docker engine and no image registry
# exist. buildah builds the Dockerfile (chroot isolation, vfs storage: no daemon, no overlay
# mounts, works inside a container); the debian:12 base is made locally by debootstrap from
# this machine's own Debian mirror and kept (localhost/debian:12) for the next build.
# Then runs deploy/container/smoke-test.sh on the result.
#
#   deploy/container/build-image.sh [--no-smoke-test | --base-only]
#   env: DEBIAN_MIRROR  (default: the mirror apt uses here for bookworm main)
#        REFRESH_BASE=1 (debootstrap the base again)    IMAGE (default localhost/spanrelay)
#        EXPORT=FILE    (also write a docker-archive tarball, for `docker load`)
#        STORAGE_DRIVER (default vfs; overlay is faster where the kernel allows it)
# Needs root (buildah with vfs storage, debootstrap).
set -euo pipefail

cd "$(dirname "$0")/../.."
smoke=1 base_only=0
case "${1:-}" in
  "") ;;
  --no-smoke-test) smoke=0 ;;
  --base-only) base_only=1 ;;
  *) echo "build-image.sh: unknown argument \"$1\"" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  echo "build-image.sh: needs root (buildah --storage-driver vfs, debootstrap); try sudo" >&2
  exit 1
fi
bash deploy/install-deps.sh --image-tools

driver=${STORAGE_DRIVER:-vfs}
buildah() { command buildah --storage-driver "$driver" "$@"; }
base=localhost/debian:12
image=${IMAGE:-localhost/spanrelay}
version=$(sed -n 's/^project(spanrelay VERSION \([0-9][0-9.]*\).*/\1/p' CMakeLists.txt)
[ -n "$version" ] || { echo "build-image.sh: no version in CMakeLists.txt" >&2; exit 1; }

# ---- the base: debootstrap once, import into buildah's store ----
base_exists() { buildah images --quiet "$base" >/dev/null 2>&1; }
if [ "${REFRESH_BASE:-0}" = 1 ] || ! base_exists; then
  # The Debian archive sites apt is configured with here, for bookworm's suites.
  targets=$(apt-get indextargets --format '$(SITE) $(RELEASE)' 'Created-By: Packages' \
              'Target-Of: deb' | sort -u)
  mirror=${DEBIAN_MIRROR:-$(awk '$2 == "bookworm" { print $1; exit }' <<<"$targets")}
  security=$(awk '$2 == "bookworm-security" { print $1; exit }' <<<"$targets")
  [ -n "$mirror" ] || { echo "build-image.sh: no bookworm mirror configured; set DEBIAN_MIRROR" >&2; exit 1; }
  echo "build-image.sh: debootstrap bookworm (minbase) from $mirror"
  rootfs=$(mktemp -d /var/tmp/spanrelay-debian12.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
    { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log"
  # Like the official image: bookworm, bookworm-updates and the security archive.
  rm -f "$rootfs/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "$security"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$rootfs/etc/apt/sources.list.d/debian.sources"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
  ctr=$(buildah from scratch)
  trap 'rm -rf "$rootfs"; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
  mnt=$(buildah mount "$ctr")
  tar -C "$rootfs" -c . | tar -C "$mnt" -x --numeric-owner --xattrs
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash --os linux --arch "$(dpkg --print-architecture)" "$ctr"
  buildah commit --rm --quiet "$ctr" "$base" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  echo "build-image.sh: base $base made ($(buildah images --format '{{.Size}}' "$base" | head -n1))"
else
  echo "build-image.sh: reusing $base (REFRESH_BASE=1 to make it again)"
fi

[ "$base_only" = 1 ] && exit 0

# ---- the image ----
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
buildah bud --layers --force-rm --pull=never --isolation chroot --format docker \
  --build-arg BASE_IMAGE="$base" --build-arg VERSION="$version" \
  -f deploy/container/Dockerfile -t "$image:$version" -t "$image:latest" . 2>&1 | tee "$log"
# vfs stores every layer in full (the build stage is over 1 GB): keep this build's steps as the
# cache for the next one, drop the untagged images earlier builds left.
keep=$(sed -n 's/^--> \(Using cache \)\{0,1\}\([0-9a-f]\{11,\}\)$/\2/p' "$log")
rm -f "$log"
for id in $(buildah images --all --no-trunc --filter dangling=true --format '{{.ID}}'); do
  id=${id#sha256:}
  grep -q "^${id:0:11}" <<<"$keep" || buildah rmi "$id" >/dev/null 2>&1 || true
done
echo "build-image.sh: built $image:$version in $(( $(date +%s) - start ))s," \
  "$(buildah images --format '{{.Size}}' "$image:$version" | head -n1)"

if [ -n "${EXPORT:-}" ]; then
  rm -f "$EXPORT"
  buildah push --quiet "$image:$version" "docker-archive:$EXPORT:spanrelay:$version"
  echo "build-image.sh: wrote $EXPORT ($(du -h "$EXPORT" | cut -f1)); docker load -i $EXPORT"
fi

if [ "$smoke" = 1 ]; then
  STORAGE_DRIVER=$driver bash deploy/container/smoke-test.sh "$image:$version"
fi

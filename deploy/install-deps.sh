#!/usr/bin/env bash
# Installs spanrelay's dependencies from Debian 12 packages, only those missing. Safe to run
# again; needs root (or sudo) only when something must be installed.
#
#   deploy/install-deps.sh               build and test everything (`make test`): the default
#   deploy/install-deps.sh --build-only  compile the spanrelay binary and nothing else (the
#                                        container image's build stage): no Node.js, no test tools
#   deploy/install-deps.sh --image-tools build the container image without a Docker engine
#                                        (`make image`): buildah, debootstrap, smoke-test tools
set -euo pipefail

mode=test
case "${1:-}" in
  "") ;;
  --build-only) mode=build ;;
  --image-tools) mode=image ;;
  -h | --help)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "install-deps.sh: unknown argument \"$1\" (try --help)" >&2
    exit 2
    ;;
esac

# What compiling the spanrelay binary needs. ca-certificates: the image copies its bundle.
# catch2 is header-only and tiny; CMakeLists.txt looks for it at configure time.
build_packages=(
  build-essential cmake pkg-config ca-certificates
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  libspdlog-dev libyaml-cpp-dev catch2
  zlib1g-dev libdeflate-dev libssl-dev libsystemd-dev
)

case "$mode" in
  build)
    packages=("${build_packages[@]}")
    ;;
  image)
    # buildah builds the Dockerfile and runs the smoke test; debootstrap makes the debian:12
    # base where no registry is reachable. Rootless pieces (uidmap, fuse-overlayfs) are not
    # needed: make image runs as root with the vfs storage driver and chroot isolation.
    # iproute2, curl: the smoke test runs the agent in a network namespace of its own and
    # sends it a span.
    packages=(buildah debootstrap debian-archive-keyring ca-certificates iproute2 curl)
    ;;
  test)
    packages=("${build_packages[@]}"
      git curl openssl
      # systemd-analyze verify/security for the unit's tests
      systemd
      # the status page's browser test (headless)
      chromium
      # the systemd sandbox test traces the agent's system calls
      strace
      # the libFuzzer harnesses (tests/fuzz): clang with ASan/UBSan runtimes and libFuzzer
      clang-14 libclang-rt-14-dev libfuzzer-14-dev
    )
    # Node.js runs the interop suite (the official OpenTelemetry JS SDK); Debian's is enough
    # when the machine has none.
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
      packages+=(nodejs npm)
    fi
    ;;
esac

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

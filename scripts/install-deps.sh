#!/bin/sh
# Install the Debian packages vmove needs.  Idempotent: it asks apt only for
# packages that are missing, so a second run does nothing and needs no network.
#   install-deps.sh runtime   - what `make`, `make demo` and `make guest` need
#   install-deps.sh test      - runtime + what `make check` needs
#   install-deps.sh bench     - runtime + what `make bench` needs
set -eu
RUNTIME="build-essential pkg-config libevent-dev libjansson-dev libsqlite3-dev libssl-dev
 qemu-system-x86 qemu-utils iproute2 kmod cpio gzip zstd socat"
TEST="libcmocka-dev python3-pytest tcpdump openssl iperf3"
BENCH="iperf3 gnuplot-nox"

want="$RUNTIME"
[ "${1:-runtime}" = test ] && want="$RUNTIME $TEST"
[ "${1:-runtime}" = bench ] && want="$RUNTIME $BENCH"

missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing

#!/bin/sh
# Install the Debian packages vmove needs.  Idempotent: it asks apt only for
# packages that are missing, so a second run does nothing and needs no network.
#   install-deps.sh runtime   - what `make`, `make demo` and `make guest` need
#   install-deps.sh test      - runtime + what `make check` needs
#   install-deps.sh bench     - runtime + what `make bench` needs
#   install-deps.sh fuzz      - runtime + what `make fuzz` needs
#   install-deps.sh pkg       - runtime + what `make deb` and the manual pages need
#
# The engine is QEMU 10.  Debian 13 ships it; on Debian 12 it comes from
# bookworm-backports (Debian 13's build), pinned for QEMU's packages only so
# that nothing else on the host is pulled from backports.
set -eu
RUNTIME="build-essential pkg-config libevent-dev libjansson-dev libsqlite3-dev libssl-dev libsystemd-dev
 scdoc iproute2 kmod cpio gzip zstd socat"
ENGINE="qemu-system-x86 qemu-utils"
QEMU_MIN_MAJOR=10
# scdoc builds the manual pages in every build; the rest builds and checks
# the Debian package (test_packaging.py runs in `make check`).
PKG="scdoc debhelper dpkg-dev fakeroot lintian python3 man-db bash-completion"
TEST="libcmocka-dev python3-pytest python3-pytest-xdist chromium prometheus curl tcpdump openssl iperf3 util-linux etcd-server etcd-client valgrind $PKG"
BENCH="iperf3 gnuplot-nox"
FUZZ="clang libclang-rt-14-dev"

want="$RUNTIME"
case "${1:-runtime}" in
    test)  want="$RUNTIME $TEST" ;;
    bench) want="$RUNTIME $BENCH" ;;
    fuzz)  want="$RUNTIME $FUZZ" ;;
    pkg)   want="$RUNTIME $PKG" ;;
esac

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
updated=""
apt_update() {
    [ -n "$updated" ] && return 0
    $SUDO apt-get update -q
    updated=1
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# QEMU's installed major version, or 0.
qemu_major() {
    v=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
    v=${v#*:}
    echo "${v%%.*}" | grep -E '^[0-9]+$' || echo 0
}

codename() {
    . /etc/os-release
    echo "${VERSION_CODENAME:-unknown}"
}

install_engine() {
    if installed qemu-system-x86 && installed qemu-utils &&
       [ "$(qemu_major)" -ge "$QEMU_MIN_MAJOR" ]; then
        return 0
    fi
    case "$(codename)" in
    bookworm)
        src=/etc/apt/sources.list.d/vmove-bookworm-backports.sources
        if [ ! -f "$src" ]; then
            echo "install-deps: adding bookworm-backports for QEMU $QEMU_MIN_MAJOR ($src)"
            $SUDO tee "$src" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
            updated=""
        fi
        # Backports default to priority 100: only QEMU's own packages are
        # raised, so upgrades follow backports for them and nothing else.
        $SUDO tee /etc/apt/preferences.d/vmove-qemu >/dev/null <<'PIN'
Package: qemu-system-x86 qemu-system-common qemu-system-data qemu-system-gui qemu-utils qemu-block-extra qemu-system-modules-opengl qemu-system-modules-spice
Pin: release n=bookworm-backports
Pin-Priority: 500
PIN
        apt_update
        echo "install-deps: installing QEMU from bookworm-backports"
        $SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports $ENGINE
        ;;
    *)
        apt_update
        $SUDO apt-get install -y -q --no-install-recommends $ENGINE
        ;;
    esac
    if [ "$(qemu_major)" -lt "$QEMU_MIN_MAJOR" ]; then
        echo "install-deps: QEMU $(qemu_major) installed; vmove needs QEMU >= $QEMU_MIN_MAJOR" >&2
        exit 1
    fi
}

missing=""
for p in $want; do
    installed "$p" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "install-deps: installing:$missing"
    apt_update
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $missing
fi
install_engine

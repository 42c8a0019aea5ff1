#!/bin/sh
# Build the vmove test guest: a Debian cloud kernel and a busybox initramfs
# that runs vmove-guest (see docs/GUEST.md).
#
#   VMOVE_GUEST_BIN=/abs/path/vmove-guest guest/build-initrd.sh
#
# Outputs ${XDG_CACHE_HOME:-$HOME/.cache}/vmove/guest/{vmlinuz,initrd.img}.
# Debian packages come only from `apt-get download` and are cached under
# .../vmove/guest/pkgs, pinned to the first kernel version resolved; set
# VMOVE_GUEST_REFRESH=1 to resolve and download again.  The initrd is rebuilt
# only when the guest binary, this script or the cached packages changed.
set -eu

die() { echo "build-initrd: error: $*" >&2; exit 1; }
log() { echo "build-initrd: $*" >&2; }

# Load order matters: insmod does not resolve dependencies, and a module
# loaded before its dependencies fails with "Unknown symbol".
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
 virtio_blk failover net_failover virtio_net virtio_console"

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vmove/guest"
PKGS="$CACHE/pkgs"
SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"

[ -n "${VMOVE_GUEST_BIN:-}" ] || die "VMOVE_GUEST_BIN is not set (path of the static vmove-guest binary; 'make guest' sets it)"
[ -f "$VMOVE_GUEST_BIN" ] || die "VMOVE_GUEST_BIN=$VMOVE_GUEST_BIN does not exist"
for tool in apt-get apt-cache dpkg-deb cpio gzip sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (run scripts/install-deps.sh runtime)"
done
if file_out=$(command -v file >/dev/null 2>&1 && file -b "$VMOVE_GUEST_BIN"); then
    case "$file_out" in *dynamically*) die "$VMOVE_GUEST_BIN is dynamically linked; build it with -static" ;; esac
fi

mkdir -p "$CACHE"
# Serialise concurrent builds (parallel test runs share the cache).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.lock"
    flock 9
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vmove-initrd.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

# apt-get download as root drops to the _apt user, which cannot write to a
# root-owned temp dir; that only costs a warning, so say root up front.
apt_download() {
    if [ "$(id -u)" -eq 0 ]; then
        apt-get -q -o APT::Sandbox::User=root download "$@"
    else
        apt-get -q download "$@"
    fi
}

# The versioned kernel package behind the linux-image-cloud-amd64 metapackage.
resolve_kernel_pkg() {
    if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ]; then
            log "apt lists do not know linux-image-cloud-amd64; running apt-get update"
            apt-get update -q >&2 || die "apt-get update failed"
        fi
    fi
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
          sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n 1)
    [ -n "$pkg" ] || die "cannot resolve linux-image-cloud-amd64 to a versioned kernel package (is apt-get update done?)"
    echo "$pkg"
}

# Downloads and unpacks kernel + busybox into $PKGS (once).
fetch_packages() {
    kpkg=$(resolve_kernel_pkg)
    log "downloading $kpkg and busybox-static"
    rm -rf "$PKGS.new"
    mkdir -p "$PKGS.new/debs" "$PKGS.new/root"
    (cd "$TMP" && apt_download "$kpkg" busybox-static >&2) ||
        die "apt-get download $kpkg busybox-static failed"
    for deb in "$TMP"/*.deb; do
        dpkg-deb -x "$deb" "$PKGS.new/root" || die "dpkg-deb -x $deb failed"
        mv "$deb" "$PKGS.new/debs/"
    done
    kver=${kpkg#linux-image-}
    [ -f "$PKGS.new/root/boot/vmlinuz-$kver" ] || die "$kpkg has no /boot/vmlinuz-$kver"
    [ -x "$PKGS.new/root/bin/busybox" ] || die "busybox-static has no /bin/busybox"
    echo "$kver" >"$PKGS.new/kver"
    (cd "$PKGS.new/debs" && ls) >"$PKGS.new/debs.list"
    rm -rf "$PKGS"
    mv "$PKGS.new" "$PKGS"
}

if [ "${VMOVE_GUEST_REFRESH:-0}" = 1 ] || [ ! -f "$PKGS/kver" ] || [ ! -f "$PKGS/debs.list" ]; then
    fetch_packages
fi
KVER=$(cat "$PKGS/kver")
MODDIR="$PKGS/root/lib/modules/$KVER"
[ -d "$MODDIR" ] || die "no modules for $KVER in $PKGS (remove $PKGS and retry)"

# Rebuild only when an input changed.
STAMP_NEW=$(cat "$VMOVE_GUEST_BIN" "$SCRIPT" "$PKGS/debs.list" | sha256sum | cut -d' ' -f1)
if [ -f "$CACHE/initrd.img" ] && [ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initrd.stamp" ] &&
   [ "$(cat "$CACHE/initrd.stamp")" = "$STAMP_NEW" ]; then
    log "up to date: $CACHE/vmlinuz $CACHE/initrd.img (kernel $KVER)"
    exit 0
fi

ROOT="$TMP/root"
mkdir -p "$ROOT/bin" "$ROOT/sbin" "$ROOT/dev" "$ROOT/proc" "$ROOT/sys" "$ROOT/tmp" \
         "$ROOT/run" "$ROOT/root" "$ROOT/etc" "$ROOT/lib/modules/vmove"

# busybox and one symlink per applet.
cp "$PKGS/root/bin/busybox" "$ROOT/bin/busybox"
for applet in $("$ROOT/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$ROOT/bin/$applet"
done

# Modules, flattened, uncompressed (busybox insmod may not know .ko.xz/.zst),
# with the load order in a file /init reads.
for m in $MODULES; do
    src=$(find "$MODDIR/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n 1)
    [ -n "$src" ] || die "module $m not found under $MODDIR"
    dst="$ROOT/lib/modules/vmove/$m.ko"
    case "$src" in
        *.ko)     cp "$src" "$dst" ;;
        *.ko.xz)  xz -dc "$src" >"$dst" ;;
        *.ko.zst) zstd -qdc "$src" >"$dst" ;;
        *.ko.gz)  gzip -dc "$src" >"$dst" ;;
    esac
    echo "$m" >>"$ROOT/lib/modules/vmove/order"
done

install -m 0755 "$VMOVE_GUEST_BIN" "$ROOT/bin/vmove-guest"
echo "root:x:0:0:root:/root:/bin/sh" >"$ROOT/etc/passwd"
echo "vmove-guest" >"$ROOT/etc/hostname"

cat >"$ROOT/init" <<'INIT'
#!/bin/sh
# PID 1 of the vmove test guest (generated by guest/build-initrd.sh).
export PATH=/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
exec </dev/console >/dev/console 2>&1
hostname -F /etc/hostname

for m in $(cat /lib/modules/vmove/order); do
    insmod "/lib/modules/vmove/$m.ko" || echo "vmove-init: insmod $m failed"
done

# Wait (up to 5 s) until every virtio block device has its /dev/vdX node:
# the driver probes asynchronously after insmod returns.
count_virtio_blk() {
    n=0
    for d in /sys/bus/virtio/devices/*; do
        [ "$(cat "$d/device" 2>/dev/null)" = 0x0002 ] && n=$((n + 1))
    done
    echo $n
}
want=$(count_virtio_blk)
i=0
while [ $i -lt 50 ]; do
    have=0
    for b in /sys/block/vd*; do [ -e "/dev/${b##*/}" ] && have=$((have + 1)); done
    [ "$have" -ge "$want" ] && break
    sleep 0.1
    i=$((i + 1))
done
[ "$have" -ge "$want" ] || echo "vmove-init: only $have of $want virtio disks appeared"

ip link set lo up
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        vmove.ip=*) addr=${arg#vmove.ip=} ;;
        vmove.gw=*) gw=${arg#vmove.gw=} ;;
    esac
done
if [ -n "${addr:-}" ]; then
    ip link set eth0 up && ip addr add "$addr" dev eth0 || echo "vmove-init: cannot configure eth0 with $addr"
    [ -n "${gw:-}" ] && { ip route add default via "$gw" || echo "vmove-init: cannot add route via $gw"; }
fi

echo "vmove-guest: booted"

# Keep the workload program alive; its log goes to the console.
(
    while :; do
        /bin/vmove-guest
        echo "vmove-guest: exited with status $?, restarting in 1 s"
        sleep 1
    done
) &

# A shell for a human on the serial console; PID 1 must never exit.
while :; do
    setsid cttyhack /bin/sh -l
    sleep 1
done
INIT
chmod 0755 "$ROOT/init"

# Written next to the targets and renamed, so a QEMU started meanwhile never
# sees half a file.
(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6n) >"$CACHE/initrd.img.tmp" ||
    die "cpio/gzip failed"
cp "$PKGS/root/boot/vmlinuz-$KVER" "$CACHE/vmlinuz.tmp"
mv "$CACHE/vmlinuz.tmp" "$CACHE/vmlinuz"
mv "$CACHE/initrd.img.tmp" "$CACHE/initrd.img"
echo "$STAMP_NEW" >"$CACHE/initrd.stamp"
log "built $CACHE/vmlinuz and $CACHE/initrd.img (kernel $KVER, $(wc -c <"$CACHE/initrd.img") bytes)"

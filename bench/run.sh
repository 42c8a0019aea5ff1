#!/bin/sh
# vmove vs the peer (QEMU as `virsh migrate --live` drives it): see docs/BENCHMARKS.md.
#   bench/run.sh [--quick] [--scenario N[,N...]] [--reps N] [--cap S] [--rates 64,256,max]
# VMOVE_BIN (default build/release/bin) holds vmoved, vmove and vmove-probe.
set -e
here=$(cd "$(dirname "$0")" && pwd)
export VMOVE_BIN="${VMOVE_BIN:-$here/../build/release/bin}"
exec /usr/bin/python3 "$here/bench.py" "$@"

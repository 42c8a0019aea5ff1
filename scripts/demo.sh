#!/bin/sh
# `make demo`: see scripts/demo.py.  Needs root (network namespaces).
set -eu
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it creates network namespaces)" >&2; exit 1; }
exec /usr/bin/python3 "$(dirname "$0")/demo.py"

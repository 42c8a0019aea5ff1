#!/bin/sh
# End-to-end tests: real vmoved, real QEMU (TCG), real guest.
# Debian's pytest through /usr/bin/python3 (the python3 on PATH may be another build).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec /usr/bin/python3 -m pytest -p no:cacheprovider -v "$here" "$@"

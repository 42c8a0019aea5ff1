#!/bin/sh
# End-to-end tests: real vmoved, real QEMU (TCG), real guest, real network
# namespaces.  Debian's pytest through /usr/bin/python3 (the python3 on PATH
# may be another build that cannot see Debian's packages).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
# Namespaces left by an earlier, killed run of the test bed.
/usr/bin/python3 "$here/../testbed/testbed.py" sweep >/dev/null 2>&1 || true
# VMOVE_E2E_MARK: a pytest -m expression; `make check` leaves out the slow
# tests (`make soak` runs them) and the Valgrind ones (`make valgrind-check`
# runs them on a build without ASan).
exec /usr/bin/python3 -m pytest -p no:cacheprovider -v -m "${VMOVE_E2E_MARK:-not slow and not valgrind}" --durations=15 \
    "$here" "$here/../testbed" "$@"

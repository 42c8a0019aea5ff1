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
# VMOVE_E2E_JOBS: test files run in that many pytest-xdist workers at once
# (default 2; 1 runs them one after the other).  Each file stays on one
# worker (--dist loadfile), so a file's module fixtures and its order hold;
# the test beds are built for several at once (own namespaces, subnets and
# state; docs/TESTBED.md).  Most of a test's time is spent waiting on guests
# and timeouts, so two at a time cut the run from 15 to 10 minutes here.
jobs=${VMOVE_E2E_JOBS:-2}
par=""
if [ "$jobs" -gt 1 ]; then
    par="-n $jobs --dist loadfile"
fi
# shellcheck disable=SC2086  # $par is a list of words
exec /usr/bin/python3 -m pytest -p no:cacheprovider -v -m "${VMOVE_E2E_MARK:-not slow and not valgrind}" --durations=15 \
    $par "$here" "$here/../testbed" "$@"

"""The daemons under Valgrind (issue #17): a live migration there and back
with both vmoved processes run by memcheck.  It needs binaries built without
ASan (the two cannot share a process): `make valgrind-check` builds them
(MODE=release, -O2 -g) and runs this file; `make check` calls it.

Valgrind's verdict is the daemon's own exit status: --error-exitcode makes a
vmoved with any memory error, or any definite or indirect leak at exit, exit
97 instead of 0, and the bed's teardown asserts 0.  The test also reads the
Valgrind log for its error summary, so that a silent Valgrind (not installed,
wrong options) cannot pass."""
import glob
import os
import re
import shutil

import pytest

from migrationlib import make_cluster

pytestmark = pytest.mark.valgrind

VALGRIND_EXIT = 97


@pytest.fixture
def vg_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("valgrind")


def valgrind_argv(log_dir):
    return ["valgrind", "--tool=memcheck", "--quiet",
            f"--error-exitcode={VALGRIND_EXIT}",
            "--leak-check=full", "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            # The QEMU supervisor is a fork of vmoved without exec: it would be
            # checked too, and it ends with _exit() on purpose, holding what
            # vmoved allocated.  Its own checks are vmoved's (same code).
            "--child-silent-after-fork=yes",
            f"--log-file={log_dir}/vmoved.%p.log"]


def test_live_migration_there_and_back_under_valgrind(request, vg_logs):
    assert shutil.which("valgrind"), "valgrind is not installed (scripts/install-deps.sh test)"
    cl = make_cluster(request, vmoved_prefix=valgrind_argv(vg_logs))
    ip = cl.create_guest("vg1", mem=64, mem_rate=10, disk_rate=128)
    cl.boot("vg1")
    _, done, _ = cl.move("vg1", 1, 2, probe_ip=ip)
    assert done and done["job"]["state"] == "succeeded"
    cl.assert_only_on("vg1", 2)
    assert cl.verify("vg1", 2)
    _, done, _ = cl.move("vg1", 2, 1, probe_ip=ip)
    assert done["job"]["state"] == "succeeded"
    cl.assert_only_on("vg1", 1)
    assert cl.verify("vg1", 1)
    cl.v(1, "vm", "stop", "vg1", "--force")
    # SIGTERM both daemons now (the bed's teardown would do it too): each
    # must exit 0, which under --error-exitcode means no error and no leak.
    for i in (1, 2):
        cl.stop(i)
    logs = {p: open(p).read() for p in glob.glob(str(vg_logs / "vmoved.*.log"))}
    assert len(logs) >= 2, f"no Valgrind logs in {vg_logs}: was vmoved run under Valgrind?"
    for path, text in logs.items():
        assert not re.search(r"(Invalid (read|write)|uninitialised|definitely lost|indirectly lost)", text), \
            f"{path}:\n{text[-4000:]}"

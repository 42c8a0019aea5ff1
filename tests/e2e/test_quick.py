"""Quick migration: pause, save the state to shared storage, load it on the
destination, resume."""
import glob
import os

import pytest

from migrationlib import make_cluster
from vmovelib import wait_for


@pytest.fixture
def cl(request):
    return make_cluster(request)


def state_files(cl):
    return glob.glob(os.path.join(cl.tb.shared_dir, ".vmove-*.state"))


def test_quick_migration_there_and_back(cl):
    cl.create_guest("qm1", mem=64, mem_rate=20, disk_rate=256)
    cl.boot("qm1")
    p, done, _ = cl.move("qm1", 1, 2, "--quick")
    res = done["job"]["result"]
    assert done["job"]["state"] == "succeeded"
    assert res["tuning"]["quick"] and res["pause_ms"] > 0
    print(f"\nquick migration h1->h2: pause {res['pause_ms']} ms, total {res['total_ms']} ms, "
          f"{res['bytes_sent']} bytes saved")
    cl.assert_only_on("qm1", 2)
    assert cl.verify("qm1", 2)
    assert state_files(cl) == [], "the saved-state file must be removed after success"
    p, done, _ = cl.move("qm1", 2, 1, "--quick")
    assert done["job"]["state"] == "succeeded"
    cl.assert_only_on("qm1", 1)
    assert cl.verify("qm1", 1)
    assert state_files(cl) == []


def test_quick_migration_failure_resumes_on_source(cl):
    """The state cannot be saved (no such directory): the guest, already
    paused for the save, resumes on the source."""
    cl.create_guest("qm2", mem=64)
    cl.boot("qm2")
    missing = os.path.join(cl.tb.shared_dir, "no-such-dir")
    p, done, _ = cl.move("qm2", 1, 2, "--quick", "--state-dir", missing, check=False)
    assert p.returncode == 1
    assert done["job"]["state"] == "failed"
    assert "cannot create the state file" in done["job"]["error"]["message"], done
    wait_for(lambda: cl.where("qm2") == ([1], [1]), 30, "qm2 running on h1 only")
    assert cl.verify("qm2", 1)


def test_quick_migration_destination_qemu_killed_resumes_on_source(cl):
    import signal
    cl.create_guest("qm3", memory="512M", mem=384, mem_rate=0)
    cl.boot("qm3")
    jid = cl.v(1, "move", "qm3", "--to", "h2", "--quick", "--no-wait")["job"]
    wait_for(lambda: cl.qemus(2), 30, "the destination QEMU")
    for pid in cl.qemus(2):
        os.kill(pid, signal.SIGKILL)
    j = wait_for(lambda: (x := cl.v(1, "jobs", "show", str(jid)))["state"] not in ("running", "queued") and x,
                 120, "the job to end")
    assert j["state"] == "failed", j
    wait_for(lambda: cl.where("qm3") == ([1], [1]), 30, "qm3 back running on h1 only")
    assert cl.verify("qm3", 1)
    assert state_files(cl) == []

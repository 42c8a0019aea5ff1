"""Moves after moves.  A disk's block nodes change names after a live
storage move (until QEMU restarts); every later move must ask QEMU for the
current node instead of assuming the original one."""
import os

import pytest

from migrationlib import make_cluster
from vmovelib import qemu_img_check


@pytest.fixture
def cl(request):
    c = make_cluster(request)
    c.configure()
    return c


def local_dir(cl, i, name):
    d = os.path.join(cl.tb.root, cl.tb.host(i).name, name)
    os.makedirs(d, exist_ok=True)
    return d


def disk_path(cl, i, name):
    return cl.v(i, "vm", "show", name)["config"]["disks"][0]["path"]


def test_quick_then_storage_move_then_shared_nothing(cl):
    """The chain a user found failing ("Cannot find device='vda' nor
    node-name='vda'"): quick migration h1 -> h2, move-storage on h2 into a
    local directory, then a shared-nothing move h2 -> h1."""
    cl.create_guest("ch1", mem=64, mem_rate=20, disk_rate=256)
    cl.boot("ch1")
    p, done, _ = cl.move("ch1", 1, 2, "--quick")
    assert done["job"]["state"] == "succeeded", done
    cl.assert_only_on("ch1", 2)
    assert cl.verify("ch1", 2)

    job = cl.v(2, "move-storage", "ch1", "--to", local_dir(cl, 2, "fast"))
    assert job["state"] == "succeeded", job
    assert disk_path(cl, 2, "ch1").startswith(local_dir(cl, 2, "fast"))
    assert cl.verify("ch1", 2)

    p, done, _ = cl.move("ch1", 2, 1, "--with-storage", local_dir(cl, 1, "disks"))
    assert done["job"]["state"] == "succeeded", done
    cl.assert_only_on("ch1", 1)
    assert cl.verify("ch1", 1)
    assert disk_path(cl, 1, "ch1").startswith(local_dir(cl, 1, "disks"))

    # And back by live migration: the guest's disk is now private to h1, so
    # shared-nothing again, into h2's directory.
    p, done, _ = cl.move("ch1", 1, 2, "--with-storage", local_dir(cl, 2, "disks"))
    assert done["job"]["state"] == "succeeded", done
    cl.assert_only_on("ch1", 2)
    assert cl.verify("ch1", 2)
    # The image the chain ends on is sound (checked once QEMU let go of it).
    final = disk_path(cl, 2, "ch1")
    cl.v(2, "vm", "stop", "ch1", "--force")
    qemu_img_check(final)


def test_live_then_quick_from_the_qemu_that_arrived(cl):
    """Found by `make soak-moves` (seed 2): a QEMU that arrived by a TLS live
    migration keeps that migration's tls-creds, and QEMU checks a new
    mapped-ram capability against them, so a quick migration from it was
    refused ("Mapped-ram only available for non-compressed non-TLS multifd
    migration") until the source resets them first."""
    cl.create_guest("ch2", mem=64, mem_rate=20, disk_rate=256)
    cl.boot("ch2")
    p, done, _ = cl.move("ch2", 1, 2)
    assert done["job"]["state"] == "succeeded", done
    cl.assert_only_on("ch2", 2)
    p, done, _ = cl.move("ch2", 2, 1, "--quick", check=False)
    assert done and done["job"]["state"] == "succeeded", (p.stderr, done)
    cl.assert_only_on("ch2", 1)
    assert cl.verify("ch2", 1)

"""The path policy (docs/SECURITY.md, "Paths"): every path a principal names
is canonicalised and must be a regular file or a directory inside the
directories the host's admin allows for its kind (images, kernels, storage,
state); files are told apart by device and inode.  Each attack below runs
against real vmoved: it is refused with an error naming the path, the kind
and the command that would allow it, the VM it aimed at is intact, and the
daemon keeps answering at once."""
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from migrationlib import make_cluster
from vmovelib import CACHE, KERNEL, wait_for


def answers_quickly(agent):
    t = time.monotonic()
    assert agent.vmove("host", "show")["name"] == agent.name
    assert time.monotonic() - t < 1.0


def refused(agent, *args):
    p = agent.run(*args, check=False)
    assert p.returncode != 0, (args, p.stdout)
    return p.stderr


def boot(agent, name, disks=("64M",)):
    agent.create_guest(name, disks=disks)
    agent.vmove("vm", "start", name)
    agent.wait_guest_ready(name)


def assert_intact(agent, name):
    assert agent.vm(name)["state"] == "running"
    assert agent.guest(name, "ping", timeout=30) == "pong"


@pytest.fixture
def outside():
    """A directory no test harness allows."""
    d = tempfile.mkdtemp(prefix="vmove-outside-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_host_file_as_kernel_refused(agent):
    boot(agent, "k0")
    link = os.path.join(agent.root, "vmlinuz-link")
    os.symlink("/etc/shadow", link)
    for flags, why in ((["--kernel", "/etc/shadow"], "kernel /etc/shadow: /etc/shadow is outside"),
                       (["--kernel", KERNEL, "--initrd", "/etc/shadow"], "initrd /etc/shadow: /etc/shadow is outside"),
                       (["--kernel", "/proc/self/root/etc/shadow"], "/etc/shadow is outside")):
        err = refused(agent, "vm", "create", "k1", "--disk", "64M", *flags)
        assert why in err and "the directories this host allows for kernels" in err, err
        assert "`vmove host set --allow-dir kernels=/etc`" in err, err
    err = refused(agent, "vm", "create", "k1", "--kernel", link)
    assert f"{link} is a symbolic link, not a regular file" in err, err
    assert [v["name"] for v in agent.vmove("vm", "list")["vms"]] == ["k0"]
    assert not os.path.exists(os.path.join(agent.state_dir, "vms", "k1"))
    assert_intact(agent, "k0")
    answers_quickly(agent)


def test_other_vms_disk_through_aliases_refused(agent):
    disk = os.path.join(agent.root, "own.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"], check=True)
    boot(agent, "owner", disks=(disk,))
    d, b = os.path.split(disk)
    hard = os.path.join(agent.root, "hard.qcow2")
    os.link(disk, hard)
    aliases = [f"{d}//{b}", f"{d}/./{b}", f"{d}/../{os.path.basename(d)}/{b}", f"/proc/self/root{disk}", hard]
    for alias in aliases:
        err = refused(agent, "vm", "create", "thief", "--disk", alias)
        assert f"disk {alias} is already used by VM owner" in err, (alias, err)
    assert [v["name"] for v in agent.vmove("vm", "list")["vms"]] == ["owner"]
    assert agent.vm("owner")["config"]["disks"][0]["path"] == disk
    assert_intact(agent, "owner")
    answers_quickly(agent)


def test_storage_and_state_dirs_outside_policy_refused(agent):
    boot(agent, "ms1")
    before = sorted(os.listdir("/root"))
    disks = agent.vm("ms1")["config"]["disks"]
    os.makedirs(os.path.join(agent.root, "d"))
    for args in (["--to", "/root"], ["--disk", "vda=/root"], ["--to", os.path.join(agent.root, "d"),
                                                             "--config-to", "/root"]):
        err = refused(agent, "move-storage", "ms1", *args)
        assert "/root is outside the directories this host allows for storage" in err, (args, err)
        assert "`vmove host set --allow-dir storage=/root`" in err, err
    err = refused(agent, "move", "ms1", "--to", "h2", "--quick", "--state-dir", "/root")
    assert "--state-dir /root: /root is outside the directories this host allows for state" in err, err
    assert "`vmove host set --allow-dir state=/root`" in err
    assert sorted(os.listdir("/root")) == before
    assert agent.vmove("jobs", "list")["jobs"] == []
    assert agent.vm("ms1")["config"]["disks"] == disks
    assert_intact(agent, "ms1")
    answers_quickly(agent)


def test_fifo_as_disk_refused_at_once(agent):
    """A FIFO given as a disk used to stall the single-threaded daemon for
    qemu-img's 10 s; it is refused before anything opens it."""
    boot(agent, "f0")
    fifo = os.path.join(agent.root, "disk.qcow2")
    os.mkfifo(fifo)
    for flags in (["--disk", fifo], ["--kernel", fifo]):
        t = time.monotonic()
        err = refused(agent, "vm", "create", "f1", *flags)
        assert time.monotonic() - t < 1.0, "the refusal must not wait for the FIFO"
        assert f"{fifo} is a FIFO, not a regular file" in err, err
        answers_quickly(agent)
    assert_intact(agent, "f0")


def test_recorded_disk_outside_vm_dir_not_unlinked(agent, outside):
    """runtime.json's created_disks names the half-copied disks an aborted
    incoming migration made; after a restart vmoved removes them, but only
    files in the VM's directory or a directory allowed for storage."""
    boot(agent, "keep")
    agent.create_guest("rc1")
    victim = os.path.join(outside, "victim.img")
    with open(victim, "w") as f:
        f.write("precious")
    half = os.path.join(agent.root, "half-copied.qcow2")   # inside the storage policy
    open(half, "w").close()
    agent.stop()
    rt_path = os.path.join(agent.state_dir, "vms", "rc1", "runtime.json")
    rt = json.load(open(rt_path)) if os.path.exists(rt_path) else {"state": "stopped"}
    rt["migration"] = {"role": "incoming", "source": "h9", "job": 1, "committed": False,
                       "created_disks": [victim, f"/proc/self/root{victim}", "/etc/hostname", half]}
    with open(rt_path, "w") as f:
        json.dump(rt, f)
    agent.start()
    wait_for(lambda: not os.path.exists(half), 15, "the recorded disk inside the policy to be removed")
    assert open(victim).read() == "precious"
    assert os.path.exists("/etc/hostname")
    assert f"not removing recorded disk {victim}" in agent.read_log()
    assert [v["name"] for v in agent.vmove("vm", "list")["vms"]] == ["keep"]
    assert_intact(agent, "keep")
    answers_quickly(agent)


def cluster_answers_quickly(cl, i):
    t = time.monotonic()
    assert cl.v(i, "host", "show")["name"] == cl.tb.host(i).name
    assert time.monotonic() - t < 1.0


def test_destination_applies_its_own_policy(request, outside):
    """The destination checks what the source sends against its own
    policy: a --with-storage directory it does not allow, and (for a move on
    shared storage) a kernel outside its kernels directories."""
    cl = make_cluster(request)
    cl.create_guest("dp1", host=1)
    cl.boot("dp1", i=1)
    p, done, _ = cl.move("dp1", 1, 2, "--with-storage", outside, check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert f"host h2 refuses VM dp1: storage directory {outside}: {outside} is outside the directories this host " \
           "allows for storage" in out, out
    assert f"`vmove host set --allow-dir storage={outside}`" in out, out
    assert os.listdir(outside) == []
    wait_for(lambda: cl.where("dp1") == ([1], [1]), 30, "dp1 running on h1 only")
    assert cl.verify("dp1", 1)
    # h2's admin stops allowing the test kernel's directory.
    cache = os.path.realpath(CACHE)
    cl.v(2, "host", "set", "--disallow-dir", f"kernels={cache}")
    p, done, _ = cl.move("dp1", 1, 2, check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert f"host h2 refuses VM dp1: kernel {cache}/vmlinuz: {cache}/vmlinuz is outside the directories this host " \
           "allows for kernels" in out, out
    assert f"`vmove host set --allow-dir kernels={cache}`" in out, out
    wait_for(lambda: cl.where("dp1") == ([1], [1]), 30, "dp1 running on h1 only")
    assert cl.verify("dp1", 1)
    for i in (1, 2):
        cluster_answers_quickly(cl, i)
    shown = cl.v(2, "host", "show")["allowed_dirs"]["kernels"]
    assert cache not in shown["dirs"] and not shown["default"]

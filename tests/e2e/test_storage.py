"""Live storage migration (`vmove move-storage`) on one host, with the real
guest writing checksummed blocks to both disks while they move."""
import json
import os
import signal
import subprocess
import time

import pytest

from vmovelib import VmoveError, check_images_paused, qemu_img_check, wait_for

APPEND = "vmove.mem=32 vmove.disk=vda,vdb vmove.disk_rate=512"


def boot(agent, name, disks=("64M", "64M"), prefill=None):
    agent.create_guest(name, memory="128M", disks=disks, append=APPEND)
    vm = agent.vm(name)
    if prefill:
        # Data the mirror must copy, beyond the guest's own blocks: makes
        # the mirror take a while under --bandwidth.
        for d in vm["config"]["disks"]:
            if d["id"] == prefill[0]:
                subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 1M {prefill[1]}", d["path"]],
                               check=True, capture_output=True)
    agent.vmove("vm", "start", name)
    agent.wait_guest_ready(name)
    time.sleep(1.5)   # let the guest write blocks to both disks
    return agent.vm(name)


def disk_paths(agent, name):
    return {d["id"]: d["path"] for d in agent.vm(name)["config"]["disks"]}


def saved_paths(vm):
    with open(os.path.join(vm["dir"], "vm.json")) as f:
        return {d["id"]: d["path"] for d in json.load(f)["disks"]}


def qemu_cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode(errors="replace")


def verify(agent, name):
    reply = agent.guest(name, "verify")
    assert reply.startswith("ok"), reply


def test_move_all_disks_under_load_then_restart(agent, root):
    vm = boot(agent, "s1")
    old = disk_paths(agent, "s1")
    dest = os.path.join(root, "fast")
    os.makedirs(dest)

    job = agent.vmove("move-storage", "s1", "--to", dest)
    assert job["state"] == "succeeded", job
    res = job["result"]
    print("storage move result:", json.dumps(res))
    new = {d: os.path.join(dest, os.path.basename(p)) for d, p in old.items()}
    assert {d["id"]: d["to"] for d in res["disks"]} == new
    assert disk_paths(agent, "s1") == new
    assert saved_paths(vm) == new
    for p in old.values():
        assert not os.path.exists(p), f"{p} should be deleted"
    assert agent.vm("s1")["state"] == "running"
    verify(agent, "s1")
    check_images_paused(agent.vmove, "s1", new.values())
    assert "storage_move" not in json.load(open(os.path.join(vm["dir"], "runtime.json")))

    # The next boot uses the new files (vm.json), and the data is intact.
    agent.vmove("vm", "stop", "s1", "--force")
    for p in new.values():
        qemu_img_check(p)
    agent.vmove("vm", "start", "s1")
    cmd = qemu_cmdline(agent.vm("s1")["pid"])
    for p in new.values():
        assert p in cmd
    agent.wait_guest_ready("s1")
    time.sleep(1)
    verify(agent, "s1")


def test_move_one_disk_keep_source(agent, root):
    boot(agent, "s2")
    old = disk_paths(agent, "s2")
    dest = os.path.join(root, "other")
    os.makedirs(dest)

    job = agent.vmove("move-storage", "s2", "--disk", "vdb", "--to", dest, "--keep-source")
    assert job["state"] == "succeeded", job
    now = disk_paths(agent, "s2")
    assert now["vda"] == old["vda"]
    assert now["vdb"] == os.path.join(dest, os.path.basename(old["vdb"]))
    assert os.path.exists(old["vdb"]), "--keep-source keeps the old file"
    assert os.listdir(dest) == [os.path.basename(old["vdb"])]
    verify(agent, "s2")
    check_images_paused(agent.vmove, "s2", [now["vdb"]])

    # Again, per-disk directory syntax; the node names of the last move are
    # in use now, and a second move must cope with them.
    dest2 = os.path.join(root, "third")
    os.makedirs(dest2)
    job = agent.vmove("move-storage", "s2", "--disk", f"vdb={dest2}")
    assert job["state"] == "succeeded", job
    assert disk_paths(agent, "s2")["vdb"] == os.path.join(dest2, os.path.basename(old["vdb"]))
    assert not os.path.exists(now["vdb"])
    verify(agent, "s2")


def test_cancel_mid_mirror_keeps_original(agent, root):
    vm = boot(agent, "s3", prefill=("vdb", "48M"))
    old = disk_paths(agent, "s3")
    dest = os.path.join(root, "slow")
    os.makedirs(dest)

    started = agent.vmove("move-storage", "s3", "--to", dest, "--bandwidth", "4", "--no-wait")
    jid = started["job"]
    wait_for(lambda: agent.vmove("jobs", "show", jid)["phase"] == "mirroring", 30, "mirroring")
    wait_for(lambda: (agent.vmove("jobs", "show", jid).get("progress") or {}).get("done_bytes", 0) > 0, 30,
             "mirror progress")
    # Busy: other lifecycle operations refuse meanwhile.
    p = agent.run("vm", "stop", "s3", check=False)
    assert p.returncode != 0 and "busy" in p.stderr
    agent.vmove("jobs", "cancel", jid)
    job = wait_for(lambda: (lambda j: j if j["state"] != "running" else None)(agent.vmove("jobs", "show", jid)),
                   60, "the job to end")
    assert job["state"] == "cancelled", job
    assert disk_paths(agent, "s3") == old
    assert saved_paths(vm) == old
    assert os.listdir(dest) == [], "target files must be deleted"
    for p in old.values():
        assert os.path.exists(p)
    assert agent.vm("s3")["state"] == "running"
    verify(agent, "s3")


def test_vmoved_restart_mid_mirror_rolls_back(agent, root):
    vm = boot(agent, "s4", prefill=("vda", "48M"))
    old = disk_paths(agent, "s4")
    dest = os.path.join(root, "slow")
    os.makedirs(dest)
    jid = agent.vmove("move-storage", "s4", "--to", dest, "--bandwidth", "4", "--no-wait")["job"]
    wait_for(lambda: agent.vmove("jobs", "show", jid)["phase"] == "mirroring", 30, "mirroring")
    time.sleep(0.5)

    agent.stop(sig=signal.SIGKILL)
    agent.start()
    job = wait_for(lambda: (lambda j: j if j["state"] != "running" else None)(agent.vmove("jobs", "show", jid)),
                   60, "the job to be settled")
    assert job["state"] == "failed" and "interrupted by a vmoved restart" in job["error"]["message"], job
    assert disk_paths(agent, "s4") == old and saved_paths(vm) == old
    assert os.listdir(dest) == []
    assert agent.vm("s4")["state"] == "running"
    wait_for(lambda: agent.vm("s4")["qmp_connected"], 10, "QMP re-attach")
    verify(agent, "s4")
    # QEMU no longer runs a mirror: a new move works.
    job = agent.vmove("move-storage", "s4", "--to", dest)
    assert job["state"] == "succeeded", job
    verify(agent, "s4")


def test_qemu_killed_mid_mirror(agent, root):
    boot(agent, "s5", prefill=("vdb", "48M"))
    old = disk_paths(agent, "s5")
    dest = os.path.join(root, "slow")
    os.makedirs(dest)
    jid = agent.vmove("move-storage", "s5", "--to", dest, "--bandwidth", "4", "--no-wait")["job"]
    wait_for(lambda: agent.vmove("jobs", "show", jid)["phase"] == "mirroring", 30, "mirroring")
    os.kill(agent.vm("s5")["pid"], signal.SIGKILL)
    job = wait_for(lambda: (lambda j: j if j["state"] != "running" else None)(agent.vmove("jobs", "show", jid)),
                   30, "the job to fail")
    assert job["state"] == "failed" and "QEMU exited" in job["error"]["message"], job
    assert agent.vm("s5")["state"] == "crashed"
    assert os.listdir(dest) == []
    assert disk_paths(agent, "s5") == old


def test_refusals_change_nothing(agent, root):
    vm = boot(agent, "s6")
    old = disk_paths(agent, "s6")
    dest = os.path.join(root, "d")
    os.makedirs(dest)
    taken = os.path.join(dest, os.path.basename(old["vda"]))
    open(taken, "w").close()

    def refused(*args):
        p = agent.run("move-storage", "s6", *args, check=False)
        assert p.returncode != 0, p.stdout
        return p.stderr

    err = refused("--to", dest)
    assert "already exists" in err and taken in err
    err = refused("--to", dest, "--disk", "vdz")
    assert 'no disk "vdz"' in err
    err = refused("--to", os.path.join(root, "missing"))
    assert "No such file or directory" in err
    err = refused("--to", os.path.join(root, "d2"), "--config-to", "/dev/shm")
    assert "another filesystem" in err or "not a writable" in err, err
    # All problems at once.
    err = refused("--disk", "vdz", "--disk", f"vdb={os.path.join(root, 'missing')}", "--disk", f"vda={dest}")
    assert 'no disk "vdz"' in err and "No such file" in err and "already exists" in err
    assert os.listdir(dest) == [os.path.basename(taken)]
    assert disk_paths(agent, "s6") == old and saved_paths(vm) == old
    assert agent.vmove("jobs", "list")["jobs"] == []
    verify(agent, "s6")

    agent.vmove("vm", "stop", "s6", "--force")
    os.unlink(taken)
    err = refused("--to", dest)
    assert "is stopped" in err
    assert os.listdir(dest) == []


def test_move_disks_and_config(agent, root):
    """--config-to moves the VM's own directory too; the running VM keeps
    working (console, guest channel, QMP) and survives a vmoved restart."""
    vm = boot(agent, "s7")
    old_dir = vm["dir"]
    disks_to = os.path.join(root, "disks7")
    cfg_to = os.path.join(root, "configs")
    os.makedirs(disks_to)
    os.makedirs(cfg_to)
    job = agent.vmove("move-storage", "s7", "--to", disks_to, "--config-to", cfg_to)
    assert job["state"] == "succeeded", job
    new_dir = os.path.join(cfg_to, "s7")
    assert os.path.isfile(os.path.join(new_dir, "vm.json"))
    assert os.path.islink(old_dir) and os.path.realpath(old_dir) == new_dir
    assert all(os.path.dirname(p) == disks_to for p in disk_paths(agent, "s7").values())
    verify(agent, "s7")
    assert "vmove-guest" in agent.run("vm", "console", "s7").stdout
    agent.stop()
    agent.start()
    assert agent.vm("s7")["state"] == "running"
    verify(agent, "s7")
    agent.vmove("vm", "stop", "s7", "--force")
    agent.vmove("vm", "delete", "s7")
    assert not os.path.exists(old_dir) and not os.path.exists(new_dir)

"""Checkpoints (`vmove checkpoint create|list|apply|delete`): external
qcow2 overlays of a running VM whose real guest writes checksummed data to
its memory and both disks; live merges on delete, and a vmoved SIGKILLed in
the middle of one."""
import json
import os
import signal
import subprocess
import time

import pytest

from vmovelib import VmoveError, check_images_paused, qemu_img_check, wait_for

APPEND = "vmove.mem=32 vmove.disk=vda,vdb vmove.disk_rate=512"


def boot(agent, name, append=APPEND):
    agent.create_guest(name, memory="128M", disks=("64M", "64M"), append=append)
    agent.vmove("vm", "start", name)
    agent.wait_guest_ready(name)
    time.sleep(1.5)   # let the guest write blocks to both disks


def verify(agent, name):
    reply = agent.guest(name, "verify")
    assert reply.startswith("ok"), reply
    return reply


def disks(agent, name):
    return {d["id"]: d["path"] for d in agent.vm(name)["config"]["disks"]}


def chain(path):
    p = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", path],
                       capture_output=True, text=True, check=True)
    return [l["filename"] for l in json.loads(p.stdout)]


def all_layers(agent, name):
    return [layer for path in disks(agent, name).values() for layer in chain(path)]


def listing(agent, name):
    return agent.vmove("checkpoint", "list", name)


def by_name(lst):
    return {c["name"]: c for c in lst["checkpoints"]}


def frozen(lst, ck):
    return {d: l["path"] for d, l in by_name(lst)[ck]["layers"].items()}


def snapshot_copy(root, paths, tag):
    """A flat copy of a checkpoint's state (its frozen layers never change)."""
    out = {}
    for d, p in paths.items():
        dst = os.path.join(root, f"copy-{tag}-{d}.qcow2")
        subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "qcow2", p, dst], check=True)
        out[d] = dst
    return out


def same_data(a, b):
    p = subprocess.run(["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "qcow2", a, b],
                       capture_output=True, text=True)
    return p.returncode == 0, p.stdout + p.stderr


def test_three_checkpoints_apply_and_live_deletes(agent, root):
    boot(agent, "ck")
    base = disks(agent, "ck")
    verify(agent, "ck")

    made = []
    for n in ("c1", "c2", "c3"):
        job = agent.vmove("checkpoint", "create", "ck", n)
        assert job["state"] == "succeeded", job
        made.append(job["result"])
        verify(agent, "ck")
        time.sleep(1.5)   # the workloads write between checkpoints
    print("create results:", json.dumps(made))

    lst = listing(agent, "ck")
    cks = by_name(lst)
    assert lst["current"] == "c3"
    assert [cks[n]["parent"] for n in ("c1", "c2", "c3")] == [None, "c1", "c2"]
    assert all(cks[n]["state"] == "ok" and cks[n]["created_ms"] > 0 for n in cks)
    assert cks["c1"]["created_ms"] <= cks["c2"]["created_ms"] <= cks["c3"]["created_ms"]
    assert frozen(lst, "c1") == base, "c1 freezes the original disks"
    # The workloads wrote between checkpoints: the layer frozen at c2 holds data.
    assert all(l["bytes"] > 0 for l in cks["c2"]["layers"].values())
    for d, path in disks(agent, "ck").items():
        assert chain(path) == [path, frozen(lst, "c3")[d], frozen(lst, "c2")[d], base[d]]
    c2_copy = snapshot_copy(root, frozen(lst, "c2"), "c2")
    c3_layers = frozen(lst, "c3")
    c1_own = frozen(lst, "c2")   # the overlay created at c1 is what c2 froze

    # Apply c2 while the VM runs: it boots again from c2's disks.
    old_active = disks(agent, "ck")
    job = agent.vmove("checkpoint", "apply", "ck", "c2")
    assert job["state"] == "succeeded", job
    assert agent.vm("ck")["state"] == "running"
    agent.wait_guest_ready("ck")
    for p in old_active.values():
        assert not os.path.exists(p), f"the discarded state {p} should be deleted"
    lst = listing(agent, "ck")
    assert lst["current"] == "c2"
    for d, path in disks(agent, "ck").items():
        assert chain(path)[1:] == [frozen(lst, "c2")[d], base[d]]
    time.sleep(1.5)
    verify(agent, "ck")

    # Delete c1 live (an intermediate commit of c1's layer into the base).
    job = agent.vmove("checkpoint", "delete", "ck", "c1")
    assert job["state"] == "succeeded", job
    for p in c1_own.values():
        assert not os.path.exists(p), f"c1's layer {p} should be deleted"
    lst = listing(agent, "ck")
    assert set(by_name(lst)) == {"c2", "c3"}
    assert by_name(lst)["c2"]["parent"] is None and by_name(lst)["c3"]["parent"] == "c2"
    assert frozen(lst, "c2") == base
    for d in base:
        ok, out = same_data(c2_copy[d], base[d])
        assert ok, f"c2's state of {d} changed by the merge: {out}"
    # c3 is on another branch now: its layer was rebased onto the base.
    for d, p in c3_layers.items():
        assert chain(p) == [p, base[d]]
    check_images_paused(agent.vmove, "ck", all_layers(agent, "ck"))
    verify(agent, "ck")

    # Delete c3 (a leaf of the abandoned branch): its layers go.
    job = agent.vmove("checkpoint", "delete", "ck", "c3")
    assert job["state"] == "succeeded", job
    for p in c3_layers.values():
        assert not os.path.exists(p), f"c3's layer {p} should be deleted"
    verify(agent, "ck")

    # Delete c2, the parent of the running state: active commit + pivot.
    active = disks(agent, "ck")
    job = agent.vmove("checkpoint", "delete", "ck", "c2")
    assert job["state"] == "succeeded", job
    print("active commit result:", json.dumps(job["result"]))
    assert disks(agent, "ck") == base
    for p in active.values():
        assert not os.path.exists(p), f"the merged layer {p} should be deleted"
    assert listing(agent, "ck")["checkpoints"] == []
    with open(os.path.join(agent.vm("ck")["dir"], "vm.json")) as f:
        saved = json.load(f)
    assert "checkpoints" not in saved and {d["id"]: d["path"] for d in saved["disks"]} == base
    time.sleep(1)
    verify(agent, "ck")
    agent.vmove("vm", "stop", "ck", "--force")
    for p in base.values():
        assert chain(p) == [p]
        qemu_img_check(p)


@pytest.mark.parametrize("kind", ["active", "intermediate"])
def test_vmoved_killed_mid_merge_finishes_it(agent, root, kind):
    boot(agent, "kk", append="vmove.mem=32 vmove.disk=vda,vdb vmove.disk_rate=256")
    base = disks(agent, "kk")
    assert agent.vmove("checkpoint", "create", "kk", "k1")["state"] == "succeeded"
    # Data for the merge to copy: written by the guest into the new layers.
    agent.guest("kk", "disk-rate", "2048")
    time.sleep(3)
    agent.guest("kk", "disk-rate", "256")
    top = disks(agent, "kk")   # the layer k1's delete merges (active, or frozen by k2)
    if kind == "intermediate":
        assert agent.vmove("checkpoint", "create", "kk", "k2")["state"] == "succeeded"
        k2_copy = snapshot_copy(root, top, "k2")
    r = agent.vmove("checkpoint", "delete", "kk", "k1", "--bandwidth", "1", "--no-wait")
    jid = r["job"]
    wait_for(lambda: "merging" in (agent.vmove("jobs", "show", str(jid)).get("phase") or ""), 30, "the merge")
    time.sleep(1)
    assert agent.vmove("jobs", "show", str(jid))["state"] == "running", "the merge ended before the kill"
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(timeout=30)
    agent.log.close()
    with open(os.path.join(agent.state_dir, "vms", "kk", "vm.json")) as f:
        assert json.load(f)["checkpoints"]["list"][0]["state"] == "deleting"
    agent.start()
    job = wait_for(lambda: (lambda j: j if j["state"] != "running" else None)(agent.vmove("jobs", "show", str(jid))),
                   120, "the recovered merge to end")
    assert job["state"] == "succeeded", job
    log = agent.read_log()
    assert "finishing the delete of checkpoint k1" in log
    # QEMU went on merging while vmoved was dead: the restarted one took the job over.
    assert "adopting the job QEMU still runs" in log, log[-3000:]
    for p in top.values():
        assert not os.path.exists(p), f"{p} should be deleted"
    if kind == "active":
        assert listing(agent, "kk")["checkpoints"] == []
        assert disks(agent, "kk") == base
    else:
        lst = listing(agent, "kk")
        assert [(c["name"], c["parent"]) for c in lst["checkpoints"]] == [("k2", None)]
        assert frozen(lst, "k2") == base
        for d in base:
            ok, out = same_data(k2_copy[d], base[d])
            assert ok, f"k2's state of {d} changed by the merge: {out}"
        assert agent.vmove("checkpoint", "delete", "kk", "k2")["state"] == "succeeded"
        assert disks(agent, "kk") == base
    assert agent.vm("kk")["state"] == "running"
    verify(agent, "kk")
    agent.vmove("vm", "stop", "kk", "--force")
    for p in base.values():
        qemu_img_check(p)


def test_memory_checkpoint_resumes_where_it_was(agent, root):
    boot(agent, "mm")
    time.sleep(1)
    up_before = json.loads(agent.guest("mm", "status"))["uptime_ms"]
    job = agent.vmove("checkpoint", "create", "mm", "mem1", "--memory")
    assert job["state"] == "succeeded", job
    res = job["result"]
    print("memory checkpoint:", json.dumps(res))
    assert res["kind"] == "memory" and os.path.getsize(res["vmstate"]) > 16 << 20   # the guest's RAM is in it
    # The guest paused for a short time, not for the whole save of its RAM.
    assert 0 < res["paused_ms"] < res["memory_save_ms"], res
    verify(agent, "mm")
    lst = listing(agent, "mm")
    assert by_name(lst)["mem1"]["kind"] == "memory"
    time.sleep(2)   # the workloads go on writing after the checkpoint
    assert agent.vmove("checkpoint", "apply", "mm", "mem1")["state"] == "succeeded"
    assert agent.vm("mm")["state"] == "running"
    st = json.loads(agent.guest("mm", "status"))
    # Resumed, not rebooted: its clock goes on from the checkpoint.
    assert st["uptime_ms"] >= up_before, (st, up_before)
    # RAM counters and disk blocks agree again: the memory and the disks
    # are of the same instant.
    verify(agent, "mm")
    time.sleep(1)
    verify(agent, "mm")
    assert agent.vmove("checkpoint", "delete", "mm", "mem1")["state"] == "succeeded"
    assert not os.path.exists(res["vmstate"])
    verify(agent, "mm")
    check_images_paused(agent.vmove, "mm", all_layers(agent, "mm"))


def refused(agent, *args):
    with pytest.raises(VmoveError) as e:
        agent.vmove(*args)
    return e.value.proc.stdout + e.value.proc.stderr


def test_stopped_vm_and_bad_input(agent, root):
    agent.create_guest("st", memory="128M", disks=("64M", "64M"), append=APPEND)
    base = disks(agent, "st")
    assert "no VM named" in refused(agent, "checkpoint", "create", "nosuch", "x")
    assert "no VM named" in refused(agent, "checkpoint", "list", "nosuch")
    assert "no checkpoint" in refused(agent, "checkpoint", "apply", "st", "nosuch")
    assert "no checkpoint" in refused(agent, "checkpoint", "delete", "st", "nosuch")
    assert "not a valid checkpoint name" in refused(agent, "checkpoint", "create", "st", "../x")
    assert "a memory checkpoint saves a running guest" in refused(agent, "checkpoint", "create", "st", "m", "--memory")

    # Stopped: qemu-img overlays, apply and offline merges.
    for n in ("s1", "s2"):
        assert agent.vmove("checkpoint", "create", "st", n)["state"] == "succeeded"
    assert "already has a checkpoint" in refused(agent, "checkpoint", "create", "st", "s1")
    s2_layers = frozen(listing(agent, "st"), "s2")
    assert agent.vmove("checkpoint", "apply", "st", "s1")["state"] == "succeeded"
    assert agent.vm("st")["state"] == "stopped"
    # The human tree: s2 and the current state are both children of s1.
    out = agent.run("checkpoint", "list", "st").stdout.splitlines()
    print("\n".join(out))
    assert out[0].startswith("s1  ") and "disk-only" in out[0]
    assert sorted(l.split()[0] for l in out[1:]) == ["*", "s2"] and all(l.startswith("  ") for l in out[1:])
    # s1 has two children now (s2 and the current state): merging is refused.
    msg = refused(agent, "checkpoint", "delete", "st", "s1")
    assert "cannot be merged safely" in msg and "s2" in msg, msg
    assert agent.vmove("checkpoint", "delete", "st", "s2")["state"] == "succeeded"
    for p in s2_layers.values():
        assert not os.path.exists(p)
    active = disks(agent, "st")
    assert agent.vmove("checkpoint", "delete", "st", "s1")["state"] == "succeeded"
    assert disks(agent, "st") == base
    for p in active.values():
        assert not os.path.exists(p)
    for p in base.values():
        assert chain(p) == [p]
        qemu_img_check(p)

    # A storage move is for a running VM: the stopped one is refused and
    # nothing is copied.
    assert agent.vmove("checkpoint", "create", "st", "s3")["state"] == "succeeded"
    dest = os.path.join(root, "elsewhere")
    os.makedirs(dest)
    msg = refused(agent, "move-storage", "st", "--to", dest)
    assert "running or paused VM" in msg, msg
    assert os.listdir(dest) == []


def raw_backing(path):
    """The backing name as written in path's header (not resolved)."""
    p = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], capture_output=True, text=True, check=True)
    return json.loads(p.stdout).get("backing-filename")


def all_files(lst):
    """Every file of the tree: the checkpoints' layers and memory images."""
    out = [l["path"] for c in lst["checkpoints"] for l in c["layers"].values()]
    return out + [c["vmstate"] for c in lst["checkpoints"] if c.get("vmstate")]


def two_checkpoints(agent, name):
    """A disk-only checkpoint and a memory one, the workloads writing between."""
    boot(agent, name)
    assert agent.vmove("checkpoint", "create", name, "k1")["state"] == "succeeded"
    time.sleep(1.5)
    assert agent.vmove("checkpoint", "create", name, "k2", "--memory")["state"] == "succeeded"
    time.sleep(1.5)
    verify(agent, name)
    return listing(agent, name)


def test_storage_move_copies_the_chain(agent, root):
    """move-storage of a running VM with checkpoints: every frozen layer and
    the memory image are copied into the new directory with relative
    backing names, the active layer is mirrored onto the copy (sync=top),
    and the tree names the new files; the old ones are deleted."""
    before = two_checkpoints(agent, "cm")
    old_active = disks(agent, "cm")
    old_files = all_files(before) + list(old_active.values())
    assert len(old_files) == 2 * 3 + 1
    dest = os.path.join(root, "moved")
    os.makedirs(dest)

    job = agent.vmove("move-storage", "cm", "--to", dest)
    assert job["state"] == "succeeded", job
    res = job["result"]
    print("storage move with checkpoints:", json.dumps(res))
    assert res["files_copied"] == 5 and res["notes"] == [], res   # 2 layers x 2 disks + the memory image
    # The mirror copied only the active layers (sync=top), not the chain.
    lst = listing(agent, "cm")
    strip = lambda l: [{k: c[k] for k in ("name", "parent", "created_ms", "kind", "state")} for c in l["checkpoints"]]
    assert lst["current"] == "k2" and strip(lst) == strip(before)
    new_files = all_files(lst) + list(disks(agent, "cm").values())
    assert all(os.path.dirname(p) == dest for p in new_files), new_files
    assert sorted(os.path.basename(p) for p in new_files) == sorted(os.path.basename(p) for p in old_files)
    assert sorted(os.listdir(dest)) == sorted(os.path.basename(p) for p in new_files)
    for p in old_files:
        assert not os.path.exists(p), f"{p} of the old chain is left"
    with open(os.path.join(agent.vm("cm")["dir"], "vm.json")) as f:
        saved = json.load(f)
    assert all(os.path.dirname(p) == dest for c in saved["checkpoints"]["list"] for p in c["disks"].values())
    # The chain is whole, in the new directory, by relative names.
    k1, k2 = frozen(lst, "k1"), frozen(lst, "k2")
    for d, path in disks(agent, "cm").items():
        assert chain(path) == [path, k2[d], k1[d]]
        assert raw_backing(path) == os.path.basename(k2[d])
        assert raw_backing(k2[d]) == os.path.basename(k1[d])
        assert raw_backing(k1[d]) is None
    check_images_paused(agent.vmove, "cm", all_layers(agent, "cm"))
    verify(agent, "cm")

    # The moved tree works: apply the memory checkpoint (its image moved),
    # merge it live (active commit on the copied chain), apply the first.
    assert agent.vmove("checkpoint", "apply", "cm", "k2")["state"] == "succeeded"
    assert agent.vm("cm")["state"] == "running"
    verify(agent, "cm")
    time.sleep(1)
    active = disks(agent, "cm")
    job = agent.vmove("checkpoint", "delete", "cm", "k2")
    assert job["state"] == "succeeded", job
    assert not any(os.path.exists(p) for p in active.values())
    assert disks(agent, "cm") == k2
    verify(agent, "cm")
    assert agent.vmove("checkpoint", "apply", "cm", "k1")["state"] == "succeeded"
    agent.wait_guest_ready("cm")
    verify(agent, "cm")
    for d, path in disks(agent, "cm").items():
        assert chain(path) == [path, k1[d]] and os.path.dirname(path) == dest
    check_images_paused(agent.vmove, "cm", all_layers(agent, "cm"))


def test_storage_move_with_checkpoints_cancelled(agent, root):
    """A cancel while the throttled mirror runs: the VM stays on its old
    chain, the copied layers and targets are removed."""
    before = two_checkpoints(agent, "cc")
    old_active = disks(agent, "cc")
    dest = os.path.join(root, "slow")
    os.makedirs(dest)
    jid = agent.vmove("move-storage", "cc", "--to", dest, "--bandwidth", "1", "--no-wait")["job"]
    wait_for(lambda: agent.vmove("jobs", "show", jid)["phase"] == "mirroring", 60, "mirroring")
    # The layers are copied before the mirror starts.
    assert len(os.listdir(dest)) == 5 + 2, os.listdir(dest)
    agent.vmove("jobs", "cancel", jid)
    job = wait_for(lambda: (lambda j: j if j["state"] != "running" else None)(agent.vmove("jobs", "show", jid)),
                   60, "the job to end")
    assert job["state"] == "cancelled", job
    assert os.listdir(dest) == [], "copies and targets must be removed"
    assert disks(agent, "cc") == old_active
    after = listing(agent, "cc")
    assert after["checkpoints"] == before["checkpoints"]
    for p in all_files(after) + list(old_active.values()):
        assert os.path.exists(p)
    assert agent.vm("cc")["state"] == "running"
    verify(agent, "cc")
    check_images_paused(agent.vmove, "cc", all_layers(agent, "cc"))
    # --keep-source: the old chain stays, the VM runs on the copies.
    job = agent.vmove("move-storage", "cc", "--to", dest, "--keep-source")
    assert job["state"] == "succeeded", job
    assert all(os.path.dirname(p) == dest for p in all_files(listing(agent, "cc")))
    for p in all_files(before) + list(old_active.values()):
        assert os.path.exists(p)
    verify(agent, "cc")


def test_storage_move_one_disk_config_to_and_restart(agent, root):
    """One disk to its own directory with --config-to: its layers move, the
    other disk's chain and the memory image (it lives with the first disk)
    stay.  Then a vmoved SIGKILLed during the throttled mirror of the first
    disk: the restarted vmoved rolls back and removes the copies."""
    before = two_checkpoints(agent, "co")
    vm = agent.vm("co")
    old = disks(agent, "co")
    here = os.path.join(root, "vdb-here")
    cfg_to = os.path.join(root, "configs")
    os.makedirs(here)
    os.makedirs(cfg_to)
    job = agent.vmove("move-storage", "co", "--disk", f"vdb={here}", "--config-to", cfg_to)
    assert job["state"] == "succeeded", job
    assert job["result"]["files_copied"] == 2 and job["result"]["notes"] == [], job["result"]
    lst = listing(agent, "co")
    for ck in ("k1", "k2"):
        assert os.path.dirname(frozen(lst, ck)["vdb"]) == here
        assert frozen(lst, ck)["vda"] == frozen(before, ck)["vda"]
    assert by_name(lst)["k2"]["vmstate"] == by_name(before)["k2"]["vmstate"]
    assert os.path.exists(by_name(lst)["k2"]["vmstate"])
    assert disks(agent, "co")["vda"] == old["vda"]
    assert sorted(os.listdir(here)) == ["vdb.ck1.qcow2", "vdb.ck2.qcow2", "vdb.qcow2"]
    for ck in ("k1", "k2"):
        assert not os.path.exists(frozen(before, ck)["vdb"])
    assert not os.path.exists(old["vdb"])
    assert os.path.realpath(vm["dir"]) == os.path.join(cfg_to, "co")
    check_images_paused(agent.vmove, "co", all_layers(agent, "co"))
    verify(agent, "co")

    time.sleep(4)   # the workloads fill the active layer: the throttled mirror takes seconds
    slow = os.path.join(root, "vda-slow")
    os.makedirs(slow)
    jid = agent.vmove("move-storage", "co", "--disk", f"vda={slow}", "--bandwidth", "1", "--no-wait")["job"]
    wait_for(lambda: agent.vmove("jobs", "show", jid)["phase"] == "mirroring", 60, "mirroring")
    # vda's two layers and the memory image are copied, the target made.
    assert len(os.listdir(slow)) == 4, os.listdir(slow)
    agent.stop(sig=signal.SIGKILL)
    agent.start()
    job = wait_for(lambda: (lambda j: j if j["state"] != "running" else None)(agent.vmove("jobs", "show", jid)),
                   60, "the job to be settled")
    assert job["state"] == "failed" and "interrupted by a vmoved restart" in job["error"]["message"], job
    assert os.listdir(slow) == [], "the copies must be removed"
    assert disks(agent, "co")["vda"] == old["vda"]
    assert listing(agent, "co")["checkpoints"] == lst["checkpoints"]
    wait_for(lambda: agent.vm("co")["qmp_connected"], 10, "QMP re-attach")
    verify(agent, "co")
    check_images_paused(agent.vmove, "co", all_layers(agent, "co"))


@pytest.fixture
def cl(request):
    from migrationlib import make_cluster
    return make_cluster(request)


def test_live_migration_keeps_checkpoints(cl):
    """Shared storage: the chain stays where it is, the tree travels in
    vm.json, and the destination can list, merge and apply it."""
    cl.create_guest("mv", mem=32, mem_rate=10, disk_rate=256)
    cl.boot("mv")
    base = cl.v(1, "vm", "show", "mv")["config"]["disks"][0]["path"]
    for n in ("m1", "m2"):
        assert cl.v(1, "checkpoint", "create", "mv", n)["state"] == "succeeded"
        time.sleep(1)
    before = cl.v(1, "checkpoint", "list", "mv")
    # Shared-nothing would flatten the chain: refused, and the VM stays.
    p = cl.run(1, "move", "mv", "--to", "h2", "--with-storage", cl.tb.shared_dir)
    assert p.returncode != 0 and "checkpoint" in p.stderr and "flatten" in p.stderr, p.stderr
    cl.assert_only_on("mv", 1)

    p, done, _ = cl.move("mv", 1, 2)
    assert done["job"]["state"] == "succeeded"
    cl.assert_only_on("mv", 2)
    cl.verify("mv", 2)
    after = cl.v(2, "checkpoint", "list", "mv")
    strip = lambda l: [{k: c[k] for k in ("name", "parent", "created_ms", "kind", "state")} for c in l["checkpoints"]]
    assert after["current"] == "m2" and strip(after) == strip(before)
    # Merge m2 live on h2 (active commit), then apply m1 there.
    top = cl.v(2, "vm", "show", "mv")["config"]["disks"][0]["path"]
    assert cl.v(2, "checkpoint", "delete", "mv", "m2")["state"] == "succeeded"
    assert not os.path.exists(top)
    cl.verify("mv", 2)
    assert cl.v(2, "checkpoint", "apply", "mv", "m1")["state"] == "succeeded"
    cl.wait_guest("mv", 2)
    cl.verify("mv", 2)
    lst = cl.v(2, "checkpoint", "list", "mv")
    assert lst["current"] == "m1" and [c["name"] for c in lst["checkpoints"]] == ["m1"]
    assert chain(cl.v(2, "vm", "show", "mv")["config"]["disks"][0]["path"])[1:] == [base]

"""Slow helpers do not block vmoved (docs/SECURITY.md, "Slow helpers"):
qemu-img runs as a child the event loop does not wait for.  A qemu-img that
stalls on one image (a wrapper first in vmoved's PATH that sleeps for files
named *stall*, as an image on a hung network filesystem would) holds only
the request that named it: `host show` still answers within a second."""
import json
import os
import shutil
import subprocess
import time

import pytest

import vmovelib
from vmovelib import VMOVE

STALL_S = 4


@pytest.fixture
def slow_agent(root, request, monkeypatch):
    real = shutil.which("qemu-img")
    wrap = os.path.join(root, "slow-bin")
    os.makedirs(wrap)
    with open(os.path.join(wrap, "qemu-img"), "w") as f:
        f.write(f'#!/bin/sh\nfor a; do case "$a" in *stall*) sleep {STALL_S};; esac; done\nexec {real} "$@"\n')
    os.chmod(os.path.join(wrap, "qemu-img"), 0o755)
    monkeypatch.setattr(vmovelib, "ENV", dict(vmovelib.ENV, PATH=wrap + ":" + os.environ["PATH"]))
    a = vmovelib.Agent(root, "h1").start()
    yield a
    try:
        a.stop()
    finally:
        vmovelib.cleanup([a], root)


def answers_while(a, proc):
    """host show, every 200 ms until proc ends: the slowest answer."""
    slowest = 0.0
    while proc.poll() is None:
        t = time.monotonic()
        assert a.vmove("host", "show")["name"] == "h1"
        slowest = max(slowest, time.monotonic() - t)
        time.sleep(0.2)
    return slowest


def test_stalled_qemu_img_does_not_block_the_daemon(slow_agent):
    a = slow_agent
    disk = os.path.join(a.root, "stall.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"], check=True)
    t0 = time.monotonic()
    create = subprocess.Popen([VMOVE, "-H", "unix:" + a.sock, "--json", "vm", "create", "s1", "--disk", disk],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=vmovelib.ENV)
    time.sleep(0.5)   # the create is waiting for qemu-img now
    slowest = answers_while(a, create)
    out, err = create.communicate()
    took = time.monotonic() - t0
    assert create.returncode == 0, err
    # The wrapper really stalled the create, and the daemon answered meanwhile.
    assert took >= STALL_S, took
    assert slowest < 1.0, slowest
    assert a.vm("s1")["config"]["disks"][0]["path"] == disk
    # A non-qcow2 image is still refused, after the same asynchronous check.
    raw = os.path.join(a.root, "stall-raw.img")
    with open(raw, "wb") as f:
        f.truncate(1 << 20)
    p = a.run("vm", "create", "s2", "--disk", raw, check=False)
    assert p.returncode != 0 and f"disk {raw}: not a qcow2 image (raw)" in p.stderr, p.stderr

    # vm import --check: qemu-img check of the source's qcow2 disk, likewise.
    src = os.path.join(a.root, "import-stall")
    os.makedirs(src)
    shutil.copy(disk, os.path.join(src, "vda.qcow2"))
    cfg = json.load(open(os.path.join(a.state_dir, "vms", "s1", "vm.json")))
    cfg["name"] = "s3"
    cfg["uuid"] = "2b5e0a9c-3f0e-4d5e-9a7b-2c1d3e4f5a6b"
    cfg["disks"] = [{"id": "vda", "path": os.path.join(src, "vda.qcow2"), "bus": "virtio"}]
    with open(os.path.join(src, "vm.json"), "w") as f:
        json.dump(cfg, f)
    t0 = time.monotonic()
    check = subprocess.Popen([VMOVE, "-H", "unix:" + a.sock, "--json", "vm", "import", src, "--check"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=vmovelib.ENV)
    time.sleep(0.5)
    slowest = answers_while(a, check)
    out, err = check.communicate()
    assert time.monotonic() - t0 >= STALL_S
    assert slowest < 1.0, slowest
    rep = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    assert rep["compatible"] is True, rep
    # A corrupt qcow2 is still reported as corrupt.
    with open(os.path.join(src, "vda.qcow2"), "r+b") as f:
        f.seek(0x30)   # l1_size: far beyond the file
        f.write((0x7fffffff).to_bytes(4, "big"))
    p = a.run("vm", "import", src, "--check", json_out=True, check=False)
    rep = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
    assert rep["compatible"] is False, rep
    assert any(i.get("code") == "disk-corrupt" for i in rep.get("incompatibilities", [])), rep


def test_shutdown_while_a_check_waits(slow_agent):
    """vmoved stopped while an import's qemu-img check is still running:
    the check is killed, the request answered, and nothing leaks (the
    fixture's stop asserts exit 0, which ASan's leak check turns into 66)."""
    a = slow_agent
    src = os.path.join(a.root, "import-stall")
    os.makedirs(src)
    a.vmove("vm", "create", "s4", "--disk", "64M")
    cfg = json.load(open(os.path.join(a.state_dir, "vms", "s4", "vm.json")))
    disk = os.path.join(src, "stall.qcow2")
    shutil.copy(cfg["disks"][0]["path"], disk)
    cfg.update(name="s5", uuid="3b5e0a9c-3f0e-4d5e-9a7b-2c1d3e4f5a6b")
    cfg["disks"][0]["path"] = disk
    with open(os.path.join(src, "vm.json"), "w") as f:
        json.dump(cfg, f)
    check = subprocess.Popen([VMOVE, "-H", "unix:" + a.sock, "--json", "vm", "import", src, "--check"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=vmovelib.ENV)
    vmovelib.wait_for(lambda: helper_children(a, "qemu-img"), 10, "qemu-img check to run")
    helpers = helper_children(a, "qemu-img")
    t = time.monotonic()
    a.stop()
    assert time.monotonic() - t < STALL_S, "vmoved waited for the check"
    check.communicate(timeout=30)
    assert check.returncode != 0
    # Killed, not left running after vmoved (as it was before the fix).
    assert not [p for p in helpers if alive(p)], "qemu-img outlived vmoved"


# ---- a big disk: real qemu-img and sha256sum, seconds each ----------------------

BIG_MIB = 512


def helper_children(a, name):
    """Pids of vmoved's children named name (qemu-img, sha256sum, sh)."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        if ppid == a.proc.pid and comm == name:
            pids.append(int(p))
    return pids


def alive(pid):
    """pid runs (a zombie or a gone process does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def timed_answers(a, busy, seen=None):
    """`host show` and `vm list`, again and again while busy(): every
    answer's time in seconds."""
    times = []
    while True:
        t = time.monotonic()
        more = busy()   # a request too (jobs show), or a look at the CLI
        times.append(time.monotonic() - t)
        if not more:
            return times
        for args in (("host", "show"), ("vm", "list")):
            t = time.monotonic()
            a.vmove(*args, timeout=60)
            times.append(time.monotonic() - t)
        if seen is not None:
            seen.update(n for n in ("qemu-img", "sha256sum") if helper_children(a, n))
        time.sleep(0.1)


@pytest.fixture(scope="module")
def big():
    """h1 with a stopped VM whose one disk is BIG_MIB of random data (no
    zero cluster to skip: qemu-img and sha256sum read and write it all)."""
    root = vmovelib.make_root("vmove-e2e-async-")
    a = vmovelib.Agent(root, "h1").start()
    try:
        a.create_guest("big", memory="128M", disks=(f"{BIG_MIB}M",))
        vda = a.vm("big")["config"]["disks"][0]["path"]
        raw = os.path.join(root, "random.raw")
        subprocess.run(["dd", "if=/dev/urandom", f"of={raw}", "bs=1M", f"count={BIG_MIB}", "iflag=fullblock",
                        "status=none"], check=True)
        subprocess.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", raw, vda], check=True)
        os.unlink(raw)
        yield a
        a.stop()
    finally:
        print("===== vmoved log (last 40 lines) =====\n" + "".join(a.read_log().splitlines(True)[-40:]))
        vmovelib.cleanup([a], root)


def test_big_export_and_import_leave_the_loop_free(big):
    """A stopped VM's export (qemu-img convert, then sha256sum of every
    file) and its import in copy mode (sha256sum, convert, check) take
    seconds; meanwhile another client's `host show` and `vm list` each
    answer within a second, every time."""
    a = big
    out = os.path.join(a.root, "export")
    t0 = time.monotonic()
    job = a.vmove("vm", "export", "big", "--to", out, "--no-wait")["job"]
    seen = set()
    state = {}

    def running():
        state.update(a.vmove("jobs", "show", str(job)))
        return state["state"] == "running"
    times = timed_answers(a, running, seen)
    took = time.monotonic() - t0
    assert state["state"] == "succeeded", state
    print(f"export of {BIG_MIB} MiB: {took:.1f} s; {len(times)} answers meanwhile, slowest {max(times):.3f} s")
    assert len(times) >= 6 and max(times) < 1.0, times
    # The helpers really ran while the daemon answered, for seconds.
    assert seen == {"qemu-img", "sha256sum"}, seen
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    vda = [f for f in manifest["files"] if f["path"] == "vda.qcow2"][0]
    assert vda["size"] == os.path.getsize(os.path.join(out, "vda.qcow2"))
    assert vda["sha256"] == subprocess.run(["sha256sum", os.path.join(out, "vda.qcow2")], capture_output=True,
                                           text=True, check=True).stdout.split()[0]

    t0 = time.monotonic()
    imp = subprocess.Popen([VMOVE, "-H", "unix:" + a.sock, "--json", "vm", "import", out, "--mode", "copy-new-id",
                            "--name", "big2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=vmovelib.ENV)
    seen = set()
    times = timed_answers(a, lambda: imp.poll() is None, seen)
    took = time.monotonic() - t0
    stdout, stderr = imp.communicate()
    assert imp.returncode == 0, stderr
    print(f"import of {BIG_MIB} MiB: {took:.1f} s; {len(times)} answers meanwhile, slowest {max(times):.3f} s")
    assert len(times) >= 6 and max(times) < 1.0, times
    assert seen == {"qemu-img", "sha256sum"}, seen
    copy = a.vm("big2")["config"]["disks"][0]["path"]
    assert subprocess.run(["qemu-img", "compare", "-q", "-f", "qcow2", "-F", "qcow2", os.path.join(out, "vda.qcow2"),
                           copy]).returncode == 0
    a.vmove("vm", "delete", "big2")


def test_cancel_during_convert_leaves_nothing(big):
    """Cancel while qemu-img convert runs: the child is killed at once and
    DIR.partial removed."""
    a = big
    out = os.path.join(a.root, "export-cancelled")
    job = a.vmove("vm", "export", "big", "--to", out, "--no-wait")["job"]
    vmovelib.wait_for(lambda: helper_children(a, "qemu-img"), 20, "qemu-img convert to run")
    convert = helper_children(a, "qemu-img")
    a.vmove("jobs", "cancel", str(job))
    rec = vmovelib.wait_for(lambda: (lambda j: j if j["state"] != "running" else None)(
        a.vmove("jobs", "show", str(job))), 5, "the export to end")
    assert rec["state"] in ("cancelled", "failed") and "cancelled" in rec["error"]["message"], rec
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")
    assert not [p for p in convert if alive(p)], "qemu-img still runs"
    assert a.vm("big")["state"] == "stopped"


def test_shutdown_during_import_copy_leaves_nothing(big):
    """vmoved stopped while an import copies a disk: qemu-img is killed,
    the new VM's directory removed, vmoved exits cleanly (no leak)."""
    a = big
    src = os.path.join(a.root, "export")   # test_big_export_... wrote it
    if not os.path.exists(src):
        pytest.skip("needs the export of test_big_export_and_import_leave_the_loop_free")
    imp = subprocess.Popen([VMOVE, "-H", "unix:" + a.sock, "--json", "vm", "import", src, "--mode", "copy-new-id",
                            "--name", "big3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=vmovelib.ENV)
    vmovelib.wait_for(lambda: helper_children(a, "qemu-img"), 30, "qemu-img convert to run")
    helpers = helper_children(a, "qemu-img")
    a.stop()
    imp.communicate(timeout=30)
    assert imp.returncode != 0
    assert not [p for p in helpers if alive(p)], "qemu-img outlived vmoved"
    assert not os.path.exists(os.path.join(a.state_dir, "vms", "big3"))
    a.start()
    assert [v["name"] for v in a.vmove("vm", "list")["vms"]] == ["big"]


# ---- a running VM: storage move targets and checkpoint layers on slow storage ----

APPEND = "vmove.mem=32 vmove.disk=vda vmove.disk_rate=512"


def boot(a, name):
    a.create_guest(name, memory="128M", disks=("64M",), append=APPEND)
    a.vmove("vm", "start", name)
    a.wait_guest_ready(name)
    time.sleep(1)   # the guest has written blocks to check later
    return {d["id"]: d["path"] for d in a.vm(name)["config"]["disks"]}


def verify(a, name):
    reply = a.guest(name, "verify")
    assert reply.startswith("ok"), reply


def timed_cli(a, *args):
    """Run `vmove --json ARGS` while other requests are timed: (took,
    slowest other answer, the CLI's process after it ended)."""
    t0 = time.monotonic()
    p = subprocess.Popen([VMOVE, "-H", "unix:" + a.sock, "--json", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=vmovelib.ENV)
    time.sleep(0.5)   # the request is waiting for qemu-img now
    slowest = answers_while(a, p)
    p.out, p.err = p.communicate()
    return time.monotonic() - t0, slowest, p


def test_slow_target_and_checkpoint_layers_do_not_block(slow_agent):
    """move-storage into a directory on stalling storage (qemu-img create of
    the target waits STALL_S), then a checkpoint of the VM whose disk now
    lives there (qemu-img info of the backing file and create of the overlay
    wait STALL_S each): both take that long, and `host show` answers within
    a second all the while; the guest's data is intact after each."""
    a = slow_agent
    old = boot(a, "m1")
    dest = os.path.join(a.root, "stall-storage")
    os.makedirs(dest)
    took, slowest, p = timed_cli(a, "move-storage", "m1", "--to", dest)
    assert p.returncode == 0, p.err
    print(f"move-storage with a stalled target: {took:.1f} s, slowest other answer {slowest:.3f} s")
    assert took >= STALL_S, took
    assert slowest < 1.0, slowest
    new = {d: os.path.join(dest, os.path.basename(path)) for d, path in old.items()}
    assert {d["id"]: d["path"] for d in a.vm("m1")["config"]["disks"]} == new
    assert a.vm("m1")["state"] == "running"
    verify(a, "m1")

    took, slowest, p = timed_cli(a, "checkpoint", "create", "m1", "c1")
    assert p.returncode == 0, p.err
    print(f"checkpoint create on stalled storage: {took:.1f} s, slowest other answer {slowest:.3f} s")
    assert took >= 2 * STALL_S, took
    assert slowest < 1.0, slowest
    tree = a.vmove("checkpoint", "list", "m1")
    assert [c["name"] for c in tree["checkpoints"]] == ["c1"] and tree["current"] == "c1", tree
    layer = a.vm("m1")["config"]["disks"][0]["path"]
    assert os.path.dirname(layer) == dest and layer != new["vda"], layer
    assert a.vm("m1")["state"] == "running"
    verify(a, "m1")


def test_cancel_while_the_target_is_created(slow_agent):
    """Cancel a storage move while qemu-img create of its target stalls:
    the helper is killed, the job ends cancelled, the VM runs on its
    original disk with its data intact, and no target file is left."""
    a = slow_agent
    old = boot(a, "m2")
    dest = os.path.join(a.root, "stall-cancel")
    os.makedirs(dest)
    job = a.vmove("move-storage", "m2", "--to", dest, "--no-wait")["job"]
    vmovelib.wait_for(lambda: helper_children(a, "qemu-img"), 10, "qemu-img create to run")
    helpers = helper_children(a, "qemu-img")
    assert os.listdir(dest), "the target is claimed before qemu-img runs"
    t = time.monotonic()
    a.vmove("jobs", "cancel", str(job))
    rec = vmovelib.wait_for(lambda: (lambda j: j if j["state"] != "running" else None)(
        a.vmove("jobs", "show", str(job))), 10, "the storage move to end")
    took = time.monotonic() - t
    assert took < STALL_S, f"the cancel waited for qemu-img ({took:.1f} s)"
    assert rec["state"] in ("cancelled", "failed") and "cancelled" in rec["error"]["message"], rec
    assert not [p for p in helpers if alive(p)], "qemu-img still runs"
    assert os.listdir(dest) == [], os.listdir(dest)
    vm = a.vm("m2")
    assert vm["state"] == "running"
    assert {d["id"]: d["path"] for d in vm["config"]["disks"]} == old
    for path in old.values():
        assert os.path.exists(path)
    verify(a, "m2")
    # The same move, asked again, goes through (nothing was left claimed).
    assert a.vmove("move-storage", "m2", "--to", dest, timeout=120)["state"] == "succeeded"
    verify(a, "m2")


def test_vm_set_info_and_storage_check_on_a_stalled_image(slow_agent):
    """`vm set --add-disk` of an image on stalling storage, then `vm info`,
    `move-storage --check`, a new disk there and an export of the VM that
    now has them: each waits for qemu-img on that storage (STALL_S), and
    `host show` answers within a second meanwhile.  What qemu-img said still
    counts: the disk is attached as qcow2, info shows its format and size,
    the check reports the problems of a stopped VM, the new disk is a qcow2,
    the export is complete; a raw image is still refused."""
    a = slow_agent
    a.vmove("vm", "create", "v1", "--disk", "64M")
    img = os.path.join(a.root, "stall-extra.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "32M"], check=True)
    took, slowest, p = timed_cli(a, "vm", "set", "v1", "--add-disk", img)
    assert p.returncode == 0, p.err
    print(f"vm set --add-disk of a stalled image: {took:.1f} s, slowest other answer {slowest:.3f} s")
    assert took >= STALL_S and slowest < 1.0, (took, slowest)
    assert img in [d["path"] for d in a.vm("v1")["config"]["disks"]]

    took, slowest, p = timed_cli(a, "vm", "info", "v1")
    assert p.returncode == 0, p.err
    print(f"vm info with a stalled disk: {took:.1f} s, slowest other answer {slowest:.3f} s")
    assert took >= STALL_S and slowest < 1.0, (took, slowest)
    info = json.loads([l for l in p.out.splitlines() if l.startswith("{")][-1])
    extra = [d for d in info["disks"] if d["path"] == img][0]
    assert extra["format"] == "qcow2" and extra["virtual_bytes"] == 32 << 20, extra

    dest = os.path.join(a.root, "check-dest")
    os.makedirs(dest)
    took, slowest, p = timed_cli(a, "move-storage", "v1", "--to", dest, "--check")
    print(f"move-storage --check with a stalled disk: {took:.1f} s, slowest other answer {slowest:.3f} s")
    assert took >= STALL_S and slowest < 1.0, (took, slowest)
    assert "stopped" in p.out + p.err, (p.out, p.err)

    # A new disk on the same storage: claimed, then qemu-img create in a child.
    new = os.path.join(a.root, "stall-new.qcow2")
    took, slowest, p = timed_cli(a, "vm", "set", "v1", "--add-disk", f"{new},size=16M")
    assert p.returncode == 0, p.err
    print(f"vm set --add-disk PATH,size= on stalled storage: {took:.1f} s, slowest other answer {slowest:.3f} s")
    assert took >= STALL_S and slowest < 1.0, (took, slowest)
    assert new in [d["path"] for d in a.vm("v1")["config"]["disks"]]
    assert subprocess.run(["qemu-img", "info", "-f", "qcow2", new], capture_output=True).returncode == 0
    # Asked again, the same new path is refused and nothing changes.
    before = a.vm("v1")["config"]["disks"]
    r = a.run("vm", "set", "v1", "--add-disk", f"{new},size=16M", check=False)
    assert r.returncode != 0 and a.vm("v1")["config"]["disks"] == before, r.stderr

    # An export of the VM: each disk's qemu-img info (and convert) in children.
    out = os.path.join(a.root, "export-v1")
    took, slowest, p = timed_cli(a, "vm", "export", "v1", "--to", out)
    assert p.returncode == 0, p.err
    print(f"vm export with stalled disks: {took:.1f} s, slowest other answer {slowest:.3f} s")
    assert took >= STALL_S and slowest < 1.0, (took, slowest)
    assert os.path.exists(os.path.join(out, "manifest.json"))

    raw = os.path.join(a.root, "stall-raw.img")
    with open(raw, "wb") as f:
        f.truncate(1 << 20)
    r = a.run("vm", "set", "v1", "--add-disk", raw, check=False)
    assert r.returncode != 0 and f"disk {raw}: not a qcow2 image (raw)" in r.stderr, r.stderr
    assert raw not in [d["path"] for d in a.vm("v1")["config"]["disks"]]

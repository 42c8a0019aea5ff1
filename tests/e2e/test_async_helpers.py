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

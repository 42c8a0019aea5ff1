"""Live export (`vmove vm export`) and import with the compatibility check
(`vmove vm import`), with the real guest writing checksummed blocks while it
is exported, and two hosts (h1 exports, h2 imports) with their own vmoved.

What the tests show:
- a live export of a running VM is a consistent point in time: every block
  the guest had written up to one instant, none after it (decoded from the
  exported images), the manifest's sha256 match, the files never change
  afterwards, and a cancelled export leaves no directory behind;
- the export imports on h2 in each of the three modes, and each import
  starts and passes the guest's verify;
- an import with a missing switch, a moved disk and too much memory: --check
  lists all three with their fixes, the interactive run (a pty) asks three
  questions and prints the equivalent flags, the flags (and --plan) import it;
- unsafe images are refused and the host file they name is never opened
  (inotify on it);
- bad input (a broken config, truncated disks, a directory that is not a VM)
  gets a clear error, and nothing is left behind."""
import ctypes
import hashlib
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import time
import zlib

import pytest

import vmovelib
from vmovelib import VMOVE, ENV, qemu_img_check, wait_for

APPEND = "vmove.mem=16 vmove.disk=vda,vdb vmove.disk_rate=512"
BLOCK = 4096
MAGIC = 0x4b4c4245564f4d56


@pytest.fixture(scope="module")
def bed():
    root = vmovelib.make_root("vmove-e2e-exchange-")
    h1 = vmovelib.Agent(root, "h1").start()
    h2 = vmovelib.Agent(root, "h2").start()
    try:
        yield {"root": root, "h1": h1, "h2": h2}
        h1.stop()
        h2.stop()
    finally:
        for a in (h1, h2):
            log = a.read_log()
            print(f"===== {a.name} vmoved log (last 40 lines) =====\n" + "".join(log.splitlines(True)[-40:]))
        vmovelib.cleanup([h1, h2], root)


def status(agent, name):
    return json.loads(agent.guest(name, "status"))


def verify(agent, name):
    reply = agent.guest(name, "verify")
    assert reply.startswith("ok"), reply
    return reply


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def blocks_of(image, tmpdir):
    """(written, nblocks) of a guest disk image: the guest's counter at the
    instant the image holds, after checking that every block agrees with it
    (docs/GUEST.md, "Disk block format")."""
    raw = os.path.join(tmpdir, os.path.basename(image) + ".raw")
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", image, raw], check=True)
    seqs = {}
    with open(raw, "rb") as f:
        data = f.read()
    os.unlink(raw)
    n = len(data) // BLOCK
    for b in range(1, n):
        blk = data[b * BLOCK:(b + 1) * BLOCK]
        if struct.unpack_from("<Q", blk, 0)[0] != MAGIC:
            continue
        assert zlib.crc32(blk[:4092]) == struct.unpack_from("<I", blk, 4092)[0], f"block {b}: bad crc"
        assert struct.unpack_from("<Q", blk, 24)[0] == b, f"block {b}: wrong block number"
        seqs[b] = struct.unpack_from("<Q", blk, 32)[0]
    assert seqs, f"{image}: no guest blocks"
    written = max(seqs.values()) + 1
    for b in range(1, n):
        if written > b - 1:
            want = (b - 1) + (n - 1) * ((written - 1 - (b - 1)) // (n - 1))
            assert seqs.get(b) == want, f"{image} block {b}: seq {seqs.get(b)}, a consistent image has {want}"
        else:
            assert b not in seqs, f"{image} block {b}: written after the export point"
    return written, n


@pytest.fixture(scope="module")
def exported(bed):
    """g1 running on h1 with both workloads, exported live to EXPORT."""
    h1, root = bed["h1"], bed["root"]
    h1.create_guest("g1", memory="128M", disks=("64M", "64M"), append=APPEND)
    vda = h1.vm("g1")["config"]["disks"][0]["path"]
    # Data far from the guest's blocks: makes a capped copy take a while.
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 24M 24M", vda], check=True, capture_output=True)
    h1.vmove("vm", "start", "g1")
    h1.wait_guest_ready("g1")
    time.sleep(1.5)

    # A cancelled export: nothing is left, the VM runs on.
    cancelled = os.path.join(root, "cancelled")
    acc = h1.vmove("vm", "export", "g1", "--to", cancelled, "--bandwidth", "1", "--no-wait")
    wait_for(lambda: h1.vmove("jobs", "show", str(acc["job"])).get("phase") == "copying", 20, "the copy to start")
    h1.vmove("jobs", "cancel", str(acc["job"]))
    job = wait_for(lambda: (lambda j: j if j["state"] != "running" else None)(h1.vmove("jobs", "show", str(acc["job"]))),
                   30, "the export to end")
    assert job["state"] in ("cancelled", "failed") and "cancelled" in job["error"]["message"], job
    assert not os.path.exists(cancelled) and not os.path.exists(cancelled + ".partial")
    assert h1.vm("g1")["state"] == "running"
    verify(h1, "g1")

    export = os.path.join(root, "export")
    before = status(h1, "g1")["disk_blocks_written"]
    t = time.time()
    job = h1.vmove("vm", "export", "g1", "--to", export)
    took = time.time() - t
    after = status(h1, "g1")["disk_blocks_written"]
    assert job["state"] == "succeeded", job
    assert job["result"]["live"] is True
    print(f"live export of 2 x 64 MiB: {took:.2f} s (job {job['result']['total_ms']} ms, "
          f"copy {job['result']['copy_ms']} ms); guest blocks written before {before}, after {after}")
    return {"dir": export, "job": job, "before": before, "after": after}


def test_live_export_is_a_point_in_time(bed, exported):
    h1, root, export = bed["h1"], bed["root"], exported["dir"]
    assert sorted(os.listdir(export)) == ["manifest.json", "vda.qcow2", "vdb.qcow2", "vm.json"]
    assert not os.path.exists(export + ".partial")
    manifest = json.load(open(os.path.join(export, "manifest.json")))
    assert manifest["kind"] == "vmove-export" and manifest["live"] is True
    assert {f["path"] for f in manifest["files"]} == {"vm.json", "vda.qcow2", "vdb.qcow2"}
    for f in manifest["files"]:
        p = os.path.join(export, f["path"])
        assert os.path.getsize(p) == f["size"]
        assert sha256(p) == f["sha256"], f["path"]
    cfg = json.load(open(os.path.join(export, "vm.json")))
    assert cfg["uuid"] == h1.vm("g1")["config"]["uuid"]
    assert [d["path"] for d in cfg["disks"]] == [os.path.join(export, "vda.qcow2"), os.path.join(export, "vdb.qcow2")]
    for d in ("vda", "vdb"):
        img = os.path.join(export, d + ".qcow2")
        qemu_img_check(img)
        out = json.loads(subprocess.run(["qemu-img", "info", "-f", "qcow2", "--output=json", img],
                                        capture_output=True, text=True, check=True).stdout)
        assert "backing-filename" not in out   # flattened: stands alone
        written, _ = blocks_of(img, root)
        # The export holds everything written before it started and nothing
        # the guest wrote after it ended.
        assert exported["before"][d] <= written <= exported["after"][d], (d, written, exported)
    # The prefilled data came along.
    p = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 24M 24M", os.path.join(export, "vda.qcow2")],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "Pattern verification failed" not in p.stdout, p.stdout
    # The guest keeps writing; none of it reaches the export.
    now = status(h1, "g1")["disk_blocks_written"]
    wait_for(lambda: status(h1, "g1")["disk_blocks_written"]["vda"] > now["vda"] + 50, 30, "more guest writes")
    for f in manifest["files"]:
        assert sha256(os.path.join(export, f["path"])) == f["sha256"]
    verify(h1, "g1")
    assert h1.vm("g1")["state"] == "running"


def boot_and_verify(agent, name):
    agent.vmove("vm", "start", name)
    agent.wait_guest_ready(name)
    time.sleep(1)
    reply = verify(agent, name)
    agent.vmove("vm", "stop", name, "--force")
    return reply


def test_import_in_three_modes_on_another_host(bed, exported):
    h2, root, export = bed["h2"], bed["root"], exported["dir"]
    uuid = exported["job"]["result"] and json.load(open(os.path.join(export, "vm.json")))["uuid"]
    rep = h2.vmove("vm", "import", export, "--check")
    assert rep["compatible"] is True and rep["incompatibilities"] == [], rep
    assert rep["source"]["kind"] == "vmove-export"

    # copy: same uuid, the disks copied next to the VM on h2.
    out = h2.vmove("vm", "import", export, "--mode", "copy")
    vm = out["vm"]
    assert vm["name"] == "g1" and vm["config"]["uuid"] == uuid
    for d in vm["config"]["disks"]:
        assert d["path"].startswith(os.path.join(h2.state_dir, "vms", "g1") + "/"), d
        src = os.path.join(export, d["id"] + ".qcow2")
        assert subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", src, d["path"]],
                              capture_output=True).returncode == 0, f"{d['id']}: the copy differs from the export"
    print("copy:", boot_and_verify(h2, "g1"))

    # copy-new-id into --to DIR: a new uuid, the disks in DIR/NAME.
    to = os.path.join(root, "h2-disks")
    os.makedirs(to)
    out = h2.vmove("vm", "import", export, "--mode", "copy-new-id", "--name", "g1-new", "--to", to)
    vm = out["vm"]
    assert vm["config"]["uuid"] != uuid
    assert sorted(os.listdir(os.path.join(to, "g1-new"))) == ["vda.qcow2", "vdb.qcow2"]
    print("copy-new-id:", boot_and_verify(h2, "g1-new"))

    # register: the same uuid as the copy is refused, with the fix.
    p = h2.run("vm", "import", export, "--name", "g1-reg", check=False)
    assert p.returncode == 2 and "uuid-exists" in p.stdout and "--mode copy-new-id" in p.stdout, p.stdout + p.stderr
    assert "g1-reg" not in [v["name"] for v in h2.vmove("vm", "list")["vms"]]
    h2.vmove("vm", "delete", "g1")
    out = h2.vmove("vm", "import", export, "--name", "g1-reg")
    vm = out["vm"]
    assert vm["config"]["uuid"] == uuid
    assert [d["path"] for d in vm["config"]["disks"]] == [os.path.join(export, "vda.qcow2"),
                                                          os.path.join(export, "vdb.qcow2")]
    print("register:", boot_and_verify(h2, "g1-reg"))
    # Deleting a registered VM keeps the files it was registered with.
    h2.vmove("vm", "delete", "g1-reg")
    h2.vmove("vm", "delete", "g1-new")
    assert os.path.exists(os.path.join(export, "vda.qcow2"))


def mismatched_source(root, export, name):
    """An import directory whose config names a switch h2 lacks, a disk that
    moved (vda) and more memory than h2 has."""
    src = os.path.join(root, name)
    moved = os.path.join(root, name + "-moved")
    os.makedirs(src)
    os.makedirs(moved)
    shutil.copy(os.path.join(export, "vda.qcow2"), moved)
    shutil.copy(os.path.join(export, "vdb.qcow2"), src)
    cfg = json.load(open(os.path.join(export, "vm.json")))
    cfg["name"] = name
    cfg["uuid"] = "0b5e0a9c-3f0e-4d5e-9a7b-2c1d3e4f5a6b"
    cfg["memory_mib"] = 1048576
    cfg["nics"] = [{"switch": "nosuchbr9", "mac": "52:54:00:12:34:56"}]
    for d in cfg["disks"]:
        d["path"] = os.path.join(root, "old-place", d["id"] + ".qcow2")
    with open(os.path.join(src, "vm.json"), "w") as f:
        json.dump(cfg, f)
    return src, os.path.join(moved, "vda.qcow2")


class Pty:
    """vmove on a terminal: stdin and stdout are a pty, as for a person."""

    def __init__(self, args):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([VMOVE] + args, stdin=slave, stdout=slave, stderr=slave, env=ENV,
                                     close_fds=True)
        os.close(slave)
        self.out = ""

    def expect(self, pattern, timeout=60):
        deadline = time.time() + timeout
        while not re.search(pattern, self.out):
            left = deadline - time.time()
            assert left > 0, f"no {pattern!r} in:\n{self.out}"
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    chunk = os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    chunk = ""
                if not chunk:
                    assert re.search(pattern, self.out), f"EOF before {pattern!r}:\n{self.out}"
                self.out += chunk
        return re.search(pattern, self.out)

    def send(self, line):
        os.write(self.master, (line + "\n").encode())

    def finish(self, timeout=120):
        try:
            while True:
                r, _, _ = select.select([self.master], [], [], 1)
                if r:
                    chunk = os.read(self.master, 4096).decode(errors="replace")
                    if not chunk:
                        break
                    self.out += chunk
                elif self.proc.poll() is not None:
                    break
        except OSError:
            pass
        rc = self.proc.wait(timeout=timeout)
        os.close(self.master)
        return rc


def option_number(menu_text, flag):
    m = re.search(r"(\d+)\) " + re.escape(flag), menu_text)
    assert m, f"no {flag} option in:\n{menu_text}"
    return m.group(1)


def test_mismatches_check_ask_and_fix(bed, exported):
    h2, root, export = bed["h2"], bed["root"], exported["dir"]
    src, moved_vda = mismatched_source(root, export, "mm")
    p = h2.run("vm", "import", src, "--check", "--mode", "copy", json_out=True, check=False)
    assert p.returncode == 2, p.stdout + p.stderr
    rep = json.loads(p.stdout)
    assert rep["compatible"] is False
    codes = sorted(i["code"] for i in rep["incompatibilities"])
    assert codes == ["disk-missing", "memory-exceeds-host", "switch-missing"], rep["incompatibilities"]
    by = {i["code"]: i for i in rep["incompatibilities"]}
    assert {f["flag"] for f in by["switch-missing"]["fixes"]} >= {"--drop-nic"}
    assert {f["flag"] for f in by["disk-missing"]["fixes"]} == {"--disk", "--search-dir"}
    assert by["disk-missing"]["subject"] == "disks[0]"
    assert by["memory-exceeds-host"]["fixes"][0]["flag"] == "--memory"
    assert 0 < by["memory-exceeds-host"]["fixes"][0]["max"] < 1048576
    # The words say the same.
    p = h2.run("vm", "import", src, "--check", "--mode", "copy", check=False)
    assert p.returncode == 2
    for c in codes:
        assert c in p.stdout
    assert "nosuchbr9" in p.stdout and "--search-dir" in p.stdout and "--memory" in p.stdout

    # On a terminal it asks about each of the three, then imports.
    t = Pty(["-H", "unix:" + h2.sock, "vm", "import", src, "--mode", "copy"])
    asked = 0
    for _ in range(3):
        m = t.expect(r"\[(\d)/3\] ([a-z-]+):[^\n]*\n((?:  .*\n)+?)choice")
        asked += 1
        code, menu = m.group(2), m.group(3)
        t.out = t.out[m.end():]
        if code == "switch-missing":
            t.send(option_number(menu, "--drop-nic"))
        elif code == "disk-missing":
            t.send(option_number(menu, "--disk"))
            t.expect(r"PATH: ")
            t.send(moved_vda)
        else:
            assert code == "memory-exceeds-host"
            t.send(option_number(menu, "--memory"))
            t.expect(r"MIB \(at most \d+\): ")
            t.send("128")
    m = t.expect(r"the same without questions:\s*\n\s*(vmove vm import [^\r\n]*)")
    flags = m.group(1)
    rc = t.finish()
    assert asked == 3
    assert rc == 0, t.out
    assert "--drop-nic 0" in flags and f"--disk vda={moved_vda}" in flags and "--memory 128" in flags, flags
    vm = h2.vm("mm")
    assert vm["config"]["memory_mib"] == 128 and vm["config"]["nics"] == []
    h2.vmove("vm", "delete", "mm")

    # The printed flags, without questions, do the same.
    args = flags.split()[3:]
    out = h2.vmove("vm", "import", *args)
    assert out["vm"]["config"]["memory_mib"] == 128
    print("flags import:", boot_and_verify(h2, "mm"))
    h2.vmove("vm", "delete", "mm")

    # The report's JSON, edited, is a plan.
    rep["answers"].update({"memory_mib": 128, "drop_nics": [0], "disks": {"vda": moved_vda}})
    plan = os.path.join(root, "plan.json")
    with open(plan, "w") as f:
        json.dump(rep, f)
    assert h2.vmove("vm", "import", "--plan", plan, "--check")["compatible"] is True
    out = h2.vmove("vm", "import", "--plan", plan)
    assert out["vm"]["name"] == "mm" and out["vm"]["config"]["nics"] == []
    h2.vmove("vm", "delete", "mm")


class Inotify:
    """Who opens a file: inotify IN_OPEN | IN_ACCESS on it."""
    IN_ACCESS, IN_OPEN, IN_NONBLOCK = 0x1, 0x20, 0o4000

    def __init__(self, path):
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(self.IN_NONBLOCK)
        assert self.fd >= 0
        assert self.libc.inotify_add_watch(self.fd, path.encode(), self.IN_OPEN | self.IN_ACCESS) >= 0

    def events(self):
        try:
            return len(os.read(self.fd, 65536))
        except BlockingIOError:
            return 0

    def close(self):
        os.close(self.fd)


def unsafe_source(root, export, name, make_disk):
    src = os.path.join(root, name)
    os.makedirs(src)
    cfg = json.load(open(os.path.join(export, "vm.json")))
    cfg["name"] = name
    cfg["uuid"] = "1b5e0a9c-3f0e-4d5e-9a7b-2c1d3e4f5a6b"
    cfg["disks"] = [{"id": "vda", "path": os.path.join(src, "vda.qcow2"), "bus": "virtio"}]
    make_disk(os.path.join(src, "vda.qcow2"))
    with open(os.path.join(src, "vm.json"), "w") as f:
        json.dump(cfg, f)
    return src


def nothing_left(agent, root, name, to=None):
    assert name not in [v["name"] for v in agent.vmove("vm", "list")["vms"]]
    assert not os.path.exists(os.path.join(agent.state_dir, "vms", name))
    if to:
        assert not os.path.exists(os.path.join(to, name))


def test_unsafe_images_refused_without_reading_host_files(bed, exported):
    h2, root, export = bed["h2"], bed["root"], exported["dir"]
    secret = os.path.join(root, "secret.img")
    with open(secret, "wb") as f:
        f.write(b"host secret " * 1000)
    to = os.path.join(root, "unsafe-to")
    os.makedirs(to)

    def backing(p):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", "-u", p, "64M"],
                       check=True)

    def data_file(p):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={secret},data_file_raw=on",
                        p, "64M"], check=True)

    def vmdk_descriptor(p):
        with open(p, "w") as f:   # named .qcow2: the header decides, not the name
            f.write(f'# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 24 FLAT "{secret}" 0\n')

    # Made before the watch: qemu-img create -o data_file opens the file.
    cases = [("unsafe-backing", backing, "backing file"), ("unsafe-data", data_file, "data file"),
             ("unsafe-vmdk", vmdk_descriptor, "VMDK descriptor")]
    sources = [(name, unsafe_source(root, export, name, make), why) for name, make, why in cases]
    watch = Inotify(secret)
    try:
        for name, src, why in sources:
            for mode in ("register", "copy"):
                p = h2.run("vm", "import", src, "--check", "--mode", mode, json_out=True, check=False)
                assert p.returncode == 2, p.stdout + p.stderr
                items = json.loads(p.stdout)["incompatibilities"]
                assert [i["code"] for i in items] == ["disk-unsafe"], items
                assert why in items[0]["message"], items[0]
                extra = ["--to", to] if mode == "copy" else []
                p = h2.run("vm", "import", src, "--mode", mode, *extra, check=False)
                assert p.returncode == 2 and "disk-unsafe" in p.stdout, p.stdout + p.stderr
                nothing_left(h2, root, name, to)
        assert watch.events() == 0, "an import check opened the host file an image names"
        with open(secret, "rb") as f:   # the watch works: this is seen
            f.read(1)
        assert watch.events() > 0
    finally:
        watch.close()
    assert os.listdir(to) == []


def test_bad_input_clear_errors_nothing_left(bed, exported):
    h1, h2, root, export = bed["h1"], bed["h2"], bed["root"], exported["dir"]

    def check_codes(src, *extra):
        p = h2.run("vm", "import", src, "--check", *extra, json_out=True, check=False)
        assert p.returncode == 2, p.stdout + p.stderr
        return json.loads(p.stdout)["incompatibilities"]

    # A broken config: the parser's message, with the place.
    broken = os.path.join(root, "broken")
    os.makedirs(broken)
    with open(os.path.join(broken, "vm.json"), "w") as f:
        f.write('{"version": 1, "name": oops}\n')
    items = check_codes(broken)
    assert [i["code"] for i in items] == ["config-invalid"]
    assert "vm.json:1:" in items[0]["message"], items[0]
    # A directory that is not a VM, and one that does not exist.
    notvm = os.path.join(root, "not-a-vm")
    os.makedirs(notvm)
    open(os.path.join(notvm, "README"), "w").write("hello\n")
    items = check_codes(notvm)
    assert [i["code"] for i in items] == ["not-a-vm"] and "no vm.json" in items[0]["message"]
    assert [i["code"] for i in check_codes(os.path.join(root, "nowhere"))] == ["source-missing"]
    # A vm.json that is a link to a host file is never parsed (its errors would quote it).
    linked = os.path.join(root, "linked")
    os.makedirs(linked)
    os.symlink("/etc/hostname", os.path.join(linked, "vm.json"))
    items = check_codes(linked)
    assert [i["code"] for i in items] == ["source-denied"], items
    assert "symbolic link" in items[0]["message"] or "outside" in items[0]["message"], items[0]

    # Truncated disks: an export whose vda was cut (the manifest says so),
    # and a bare config whose disk lost all but its first sectors.
    cut = os.path.join(root, "cut-export")
    shutil.copytree(export, cut)
    with open(os.path.join(cut, "vda.qcow2"), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(cut, "vda.qcow2")) // 2)
    items = check_codes(cut, "--mode", "copy", "--name", "cut1")
    assert [i["code"] for i in items] == ["disk-checksum"] and "truncated" in items[0]["message"], items
    os.unlink(os.path.join(cut, "manifest.json"))
    with open(os.path.join(cut, "vda.qcow2"), "r+b") as f:
        f.truncate(1024)
    items = check_codes(cut, "--mode", "copy", "--name", "cut1")
    assert [i["code"] for i in items] == ["disk-corrupt"] and "truncated" in items[0]["message"], items
    to = os.path.join(root, "bad-to")
    os.makedirs(to)
    for src, name in ((broken, "broken"), (notvm, "not-a-vm"), (cut, "cut1")):
        p = h2.run("vm", "import", src, "--mode", "copy", "--name", name, "--to", to, check=False)
        assert p.returncode == 2 and "nothing was imported" in p.stderr, p.stdout + p.stderr
        nothing_left(h2, root, name, to)
    assert os.listdir(to) == []
    # Bad flags are usage errors; a bad mode is the daemon's clear refusal.
    p = h2.run("vm", "import", export, "--map-switch", "novalue", check=False)
    assert p.returncode == 2 and "OLD=NEW" in p.stderr
    p = h2.run("vm", "import", export, "--mode", "teleport", check=False)
    assert p.returncode != 0 and "register, copy or copy-new-id" in p.stderr
    p = h2.run("vm", "import", export, "--name", "x1", "--map-switch", "br7=br8", "--check", check=False)
    assert p.returncode == 2 and "answer-unused" in p.stdout and "no NIC on br7" in p.stdout

    # Export refusals: an existing target, an unknown VM, --memory; nothing created.
    p = h1.run("vm", "export", "g1", "--to", export, check=False)
    assert p.returncode != 0 and "already exists" in p.stderr
    p = h1.run("vm", "export", "nosuchvm", "--to", os.path.join(root, "e2"), check=False)
    assert p.returncode != 0 and "no VM named" in p.stderr
    p = h1.run("vm", "export", "g1", "--to", os.path.join(root, "e3"), "--memory", check=False)
    assert p.returncode != 0 and "not supported yet" in p.stderr
    for d in ("e2", "e3"):
        assert not os.path.exists(os.path.join(root, d)) and not os.path.exists(os.path.join(root, d + ".partial"))


def test_foreign_disks_are_converted_in_copy_modes(bed, exported):
    """VHDX, VHD and VMDK disks (made from the export with qemu-img): told
    apart by their headers, refused by register (vmove runs qcow2 only),
    converted by copy; the VM starts and verifies on the converted disks."""
    h2, root, export = bed["h2"], bed["root"], exported["dir"]
    src = os.path.join(root, "foreign")
    os.makedirs(src)
    cfg = json.load(open(os.path.join(export, "vm.json")))
    cfg["name"] = "fx"
    cfg["uuid"] = "2b5e0a9c-3f0e-4d5e-9a7b-2c1d3e4f5a6b"
    # Names that lie about the format: the header decides.
    kinds = {"vda": ("vhdx", "vda.vhdx"), "vdb": ("vpc", "vdb.img")}
    for d in cfg["disks"]:
        fmt, name = kinds[d["id"]]
        subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", fmt, os.path.join(export, d["id"] + ".qcow2"),
                        os.path.join(src, name)], check=True)
        d["path"] = os.path.join(src, name)
    with open(os.path.join(src, "vm.json"), "w") as f:
        json.dump(cfg, f)
    p = h2.run("vm", "import", src, "--check", json_out=True, check=False)
    assert p.returncode == 2
    items = json.loads(p.stdout)["incompatibilities"]
    assert sorted((i["code"], i["value"]) for i in items) == [("disk-format", "vhd"), ("disk-format", "vhdx")], items
    assert all(i["fixes"][0]["flag"] == "--mode" and i["fixes"][0]["arg"] == "copy" for i in items)
    rep = h2.vmove("vm", "import", src, "--check", "--mode", "copy")
    assert rep["compatible"] is True, rep
    assert sorted(i["value"] for i in rep["info"] if i["code"] == "disk-format") == ["vhd", "vhdx"]
    assert sorted(d["action"] for d in rep["plan"]["disks"]) == ["convert", "convert"]
    vm = h2.vmove("vm", "import", src, "--mode", "copy")["vm"]
    for d in vm["config"]["disks"]:
        out = json.loads(subprocess.run(["qemu-img", "info", "-f", "qcow2", "--output=json", d["path"]],
                                        capture_output=True, text=True, check=True).stdout)
        assert out["format"] == "qcow2" and d["path"].endswith(d["id"] + ".qcow2")
        assert subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", os.path.join(export, d["id"] + ".qcow2"),
                               d["path"]], capture_output=True).returncode == 0
    print("converted:", boot_and_verify(h2, "fx"))
    h2.vmove("vm", "delete", "fx")

    # A sparse VMDK imports the same way.
    vm_src = os.path.join(root, "foreign-vmdk")
    os.makedirs(vm_src)
    cfg["name"], cfg["uuid"] = "fy", "3b5e0a9c-3f0e-4d5e-9a7b-2c1d3e4f5a6b"
    cfg["disks"] = cfg["disks"][:1]
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "vmdk", os.path.join(export, "vda.qcow2"),
                    os.path.join(vm_src, "vda.vmdk")], check=True)
    cfg["disks"][0]["path"] = os.path.join(vm_src, "vda.vmdk")
    with open(os.path.join(vm_src, "vm.json"), "w") as f:
        json.dump(cfg, f)
    vm = h2.vmove("vm", "import", vm_src, "--mode", "copy-new-id")["vm"]
    assert vm["config"]["uuid"] != cfg["uuid"]
    h2.vmove("vm", "delete", "fy")


def test_export_of_a_stopped_vm(bed, exported):
    """The same export of a stopped VM (qemu-img convert): identical to its
    disks, a manifest that matches, importable."""
    h1, h2, root = bed["h1"], bed["h2"], bed["root"]
    h1.vmove("vm", "stop", "g1", "--force")
    out = os.path.join(root, "export-stopped")
    job = h1.vmove("vm", "export", "g1", "--to", out)
    assert job["state"] == "succeeded" and job["result"]["live"] is False, job
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["live"] is False
    for f in manifest["files"]:
        assert sha256(os.path.join(out, f["path"])) == f["sha256"]
    for d in h1.vm("g1")["config"]["disks"]:
        img = os.path.join(out, d["id"] + ".qcow2")
        qemu_img_check(img)
        assert subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", d["path"], img],
                              capture_output=True).returncode == 0, d
        blocks_of(img, root)
    rep = h2.vmove("vm", "import", out, "--check", "--mode", "copy-new-id", "--name", "g1-stopped")
    assert rep["compatible"] is True, rep
    assert h1.vm("g1")["state"] == "stopped"

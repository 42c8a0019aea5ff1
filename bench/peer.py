#!/usr/bin/python3
"""The peer: a live migration driven the way `virsh migrate --live` drives
QEMU, speaking QMP directly (unix sockets, JSON lines).  Stdlib only.

What libvirt does for a plain `virsh migrate --live` (no --parallel, no
--compressed, no --auto-converge, no --postcopy), and what this driver does:

  destination: start QEMU paused with `-incoming defer`, the same command
               line as the source; migrate-set-capabilities events=on;
               migrate-incoming tcp:MIG_IP:PORT
  source:      migrate-set-capabilities events=on;
               migrate-set-parameters max-bandwidth=<huge> (libvirt lifts
               QEMU's 128 MiB/s cap); everything else stays QEMU's default
               (downtime-limit 300 ms, one stream, no compression, no
               auto-converge); migrate tcp:MIG_IP:PORT; follow
               query-migrate / MIGRATION events until "completed"
  destination: wait until its incoming side is "completed", `cont`,
               `announce-self`
  source:      `quit`

`migrate_copy_storage()` adds what libvirt does for `--copy-storage-all`
(NBD export on the destination, background blockdev-mirror, the mirror
cancelled at pre-switchover); see its docstring.

The QEMU command line is the one vmoved builds (src/qemu/qemu_argv.c), with
the versioned machine type that "q35" resolves to on this QEMU, as vmoved
records it.

Used as a module by bench/bench.py; `peer.py --self-test` only checks the
argv builder.
"""
import json
import os
import queue
import secrets
import socket
import subprocess
import threading
import time

QEMU = "qemu-system-x86_64"
# libvirt's "unlimited": QEMU_DOMAIN_MIG_BANDWIDTH_MAX MiB/s, i.e. about
# INT64_MAX bytes/s.  QEMU 7.2 accepts anything up to SIZE_MAX.
HUGE_BANDWIDTH = (2**63 - 1) // (1024 * 1024) * (1024 * 1024)


class QMPError(RuntimeError):
    pass


class QMP:
    """Minimal synchronous QMP client with a reader thread: replies are
    matched by id, events are queued (and recorded with their arrival time)."""

    def __init__(self, path, timeout=30):
        self.path = path
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise QMPError(f"cannot connect to QMP socket {path}")
                time.sleep(0.05)
        self.f = self.sock.makefile("rb")
        self.wlock = threading.Lock()
        self.replies = {}
        self.cv = threading.Condition()
        self.events = queue.Queue()
        self.next_id = 0
        self.closed = False
        greeting = json.loads(self.f.readline())
        if "QMP" not in greeting:
            raise QMPError(f"bad greeting {greeting}")
        self.version = greeting["QMP"]["version"]["qemu"]
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()
        self.cmd("qmp_capabilities")

    def _reader(self):
        try:
            for line in self.f:
                msg = json.loads(line)
                if "event" in msg:
                    self.events.put((time.monotonic(), msg))
                elif "id" in msg:
                    with self.cv:
                        self.replies[msg["id"]] = msg
                        self.cv.notify_all()
        except (OSError, ValueError):
            pass
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def cmd(self, name, args=None, timeout=30, check=True):
        with self.cv:
            self.next_id += 1
            i = self.next_id
        msg = {"execute": name, "id": i}
        if args:
            msg["arguments"] = args
        try:
            with self.wlock:
                self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as e:
            raise QMPError(f"{name}: {e}")
        deadline = time.monotonic() + timeout
        with self.cv:
            while i not in self.replies:
                if self.closed:
                    if name == "quit":
                        return {}
                    raise QMPError(f"{name}: QEMU closed the QMP connection")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise QMPError(f"{name}: no reply within {timeout}s")
                self.cv.wait(left)
            r = self.replies.pop(i)
        if "error" in r:
            if check:
                raise QMPError(f"{name}: {r['error'].get('desc')}")
            return r
        return r.get("return")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def default_machine():
    """The versioned machine type "q35" is an alias of here (vmoved's default)."""
    out = subprocess.run([QEMU, "-machine", "help"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("q35 ") and "(alias of " in line:
            return line.split("(alias of ", 1)[1].split(")", 1)[0]
    return "q35"


def qemu_argv(name, uuid, vm_dir, memory_mib, cpus, disk, tap, mac, kernel, initrd, append,
              machine=None, accel="tcg", incoming=None):
    """The command line vmoved builds (src/qemu/qemu_argv.c), for one disk and one NIC."""
    machine = machine or default_machine()
    mem = f"{memory_mib}M"
    a = [QEMU, "-name", f"guest={name},debug-threads=on", "-uuid", uuid, "-nodefaults",
         "-no-user-config", "-display", "none", "-machine", f"{machine},accel={accel}",
         "-m", mem, "-smp", str(cpus), "-msg", "timestamp=on", "-S",
         "-chardev", f"socket,id=qmp,path={vm_dir}/qmp.sock,server=on,wait=off",
         "-mon", "chardev=qmp,mode=control",
         "-chardev", f"socket,id=console,path={vm_dir}/console.sock,server=on,wait=off,"
                     f"logfile={vm_dir}/console.log,logappend=on",
         "-serial", "chardev:console",
         "-device", "virtio-serial-pci,id=vser0",
         "-chardev", f"socket,id=guest0,path={vm_dir}/guest.sock,server=on,wait=off",
         "-device", "virtserialport,bus=vser0.0,chardev=guest0,id=guest0port,name=org.vmove.guest.0"]
    if disk:
        a += ["-blockdev", json.dumps({"driver": "file", "filename": disk, "node-name": "vda-file",
                                       "discard": "unmap"}, separators=(",", ":")),
              "-blockdev", json.dumps({"driver": "qcow2", "file": "vda-file", "node-name": "vda",
                                       "discard": "unmap"}, separators=(",", ":")),
              "-device", "virtio-blk-pci,drive=vda,id=vda-dev"]
    if tap:
        a += ["-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
              "-device", f"virtio-net-pci,netdev=net0,mac={mac},id=net0-dev"]
    a += ["-kernel", kernel, "-initrd", initrd, "-append", append]
    if incoming:
        a += ["-incoming", incoming]
    return a


def guest_command(sock_path, command, timeout=120):
    """Send one command on the guest's control channel (docs/GUEST.md):
    ping TOKEN first, skip lines until pong TOKEN, then read the reply."""
    token = secrets.token_hex(6)
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock_path)
        s.settimeout(1.0)
        s.sendall(f"ping {token}\n{command}\n".encode())
        buf = b""
        seen_pong = False
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise QMPError("guest channel closed")
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.decode(errors="replace").rstrip("\r")
                if not seen_pong:
                    seen_pong = line == f"pong {token}"
                    continue
                return line
        raise QMPError(f"guest did not answer {command!r} within {timeout}s")


class PeerVM:
    """One QEMU started by the peer driver inside a host's namespace."""

    def __init__(self, ns, vm_dir, argv, tap, switch="switch0"):
        self.ns, self.vm_dir, self.argv, self.tap, self.switch = ns, vm_dir, argv, tap, switch
        self.proc = None
        self.qmp = None

    def start(self):
        os.makedirs(self.vm_dir, exist_ok=True)
        for f in ("qmp.sock", "console.sock", "guest.sock"):
            try:
                os.unlink(os.path.join(self.vm_dir, f))
            except FileNotFoundError:
                pass
        log = open(os.path.join(self.vm_dir, "qemu.log"), "ab")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns] + self.argv, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        try:
            self.qmp = QMP(os.path.join(self.vm_dir, "qmp.sock"), timeout=30)
        except QMPError:
            raise QMPError(f"QEMU did not come up: {self.log_tail()}")
        # What vmoved does before `cont` (and libvirt before starting the
        # guest): plug the tap QEMU created into the host's VM switch.
        if self.tap:
            subprocess.run(["ip", "-n", self.ns, "link", "set", "dev", self.tap, "master", self.switch, "up"],
                           check=True, capture_output=True)
        return self

    def log_tail(self, n=2000):
        try:
            with open(os.path.join(self.vm_dir, "qemu.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def console_has(self, text):
        try:
            with open(os.path.join(self.vm_dir, "console.log"), "rb") as f:
                return text.encode() in f.read()
        except OSError:
            return False

    def guest(self, command, timeout=120):
        return guest_command(os.path.join(self.vm_dir, "guest.sock"), command, timeout)

    def stop(self):
        if self.qmp:
            try:
                self.qmp.cmd("quit", timeout=5, check=False)
            except (QMPError, OSError):
                pass     # QEMU is already gone (a failed incoming migration exits)
            self.qmp.close()
            self.qmp = None
        if self.proc:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def migrate(src, dst, dst_ip, port, cap_s=120.0, poll_s=0.1, on_sample=None, t0=None, src_caps=(), dst_caps=(),
            dst_prepare=None, on_pre_switchover=None, before_cont=None, out=None):
    """Live-migrate src -> dst the libvirt way.  `dst` has been started with
    `-incoming defer` (not yet listening).  Returns a dict of measurements.

    Times are from the moment this is called, which the caller should place
    right before starting the destination QEMU (libvirt's prepare), so the
    total is comparable to vmove's job total (prepare .. confirm).

    The hooks are for --copy-storage-all (migrate_copy_storage below):
    dst_prepare() runs on the destination after migrate-incoming (NBD server),
    and must return before `migrate`; on_pre_switchover() runs while the
    source sits in "pre-switchover" (needs src_caps=("pause-before-switchover",)),
    before `migrate-continue`; before_cont() runs on the destination after
    its incoming side completed, before `cont`."""
    t0 = time.monotonic() if t0 is None else t0
    out = {"converged": False, "samples": []} if out is None else out
    out.setdefault("samples", [])
    out["converged"] = False
    for q, extra in ((src.qmp, src_caps), (dst.qmp, dst_caps)):
        caps = [{"capability": "events", "state": True}] + [{"capability": c, "state": True} for c in extra]
        q.cmd("migrate-set-capabilities", {"capabilities": caps})
    dst.qmp.cmd("migrate-incoming", {"uri": f"tcp:{dst_ip}:{port}"})
    if dst_prepare:
        if dst_prepare() is False:
            out["total_ms"] = round((time.monotonic() - t0) * 1000)
            return out
    src.qmp.cmd("migrate-set-parameters", {"max-bandwidth": HUGE_BANDWIDTH})
    out["params"] = src.qmp.cmd("query-migrate-parameters")
    out["capabilities"] = [c["capability"] for c in src.qmp.cmd("query-migrate-capabilities") if c["state"]]
    t_mig = time.monotonic()
    src.qmp.cmd("migrate", {"uri": f"tcp:{dst_ip}:{port}"})
    info = {}
    status = None
    while True:
        info = src.qmp.cmd("query-migrate")
        status = info.get("status")
        now = time.monotonic()
        ram = info.get("ram") or {}
        if "remaining" in ram:
            s = (round((now - t0) * 1000), ram["remaining"], ram.get("transferred", 0))
            out["samples"].append(s)
            if on_sample:
                on_sample(s)
        if status in ("completed", "failed", "cancelled"):
            break
        if status == "pre-switchover" and not out.get("pre_switchover_done"):
            # libvirt: guest stopped, mirrors cancelled (complete copies), then continue.
            out["pre_switchover_done"] = True
            t_ps = time.monotonic()
            if on_pre_switchover:
                on_pre_switchover()
            out["pre_switchover_ms"] = round((time.monotonic() - t_ps) * 1000)
            src.qmp.cmd("migrate-continue", {"state": "pre-switchover"})
            continue
        if now - t_mig > cap_s and status not in ("cancelling", "device", "pre-switchover"):
            src.qmp.cmd("migrate_cancel", check=False)
            out["capped"] = True
        # Wake early on a MIGRATION event (the events capability is on).
        try:
            _, ev = src.qmp.events.get(timeout=poll_s)
            if ev.get("event") == "MIGRATION" and ev["data"].get("status") == "completed":
                continue
        except queue.Empty:
            pass
    out["status"] = status
    out["qemu_total_ms"] = info.get("total-time")
    out["qemu_downtime_ms"] = info.get("downtime")
    ram = info.get("ram") or {}
    out["bytes_sent"] = ram.get("transferred")
    out["passes"] = ram.get("dirty-sync-count")
    out["transfer_ms"] = round((time.monotonic() - t_mig) * 1000)
    if status != "completed":
        out["error"] = info.get("error-desc", status)
        out["total_ms"] = round((time.monotonic() - t0) * 1000)
        return out
    # libvirt's Finish on the destination: wait for the incoming side to
    # complete, then resume the guest and announce its MACs.
    deadline = time.monotonic() + 60
    while True:
        d = dst.qmp.cmd("query-migrate")
        if d.get("status") == "completed":
            break
        if d.get("status") == "failed" or time.monotonic() > deadline:
            out["error"] = f"destination incoming status {d.get('status')}"
            out["total_ms"] = round((time.monotonic() - t0) * 1000)
            return out
        time.sleep(0.005)
    if before_cont:
        before_cont()
    dst.qmp.cmd("cont")
    out["resumed_ms"] = round((time.monotonic() - t0) * 1000)
    dst.qmp.cmd("announce-self", {"initial": 50, "max": 550, "rounds": 5, "step": 100}, check=False)
    # QEMU 7.2 sets "completed" just before it fills in total-time and
    # downtime: read them again (the guest already runs on the destination).
    for _ in range(100):
        if info.get("total-time"):
            break
        time.sleep(0.01)
        info = src.qmp.cmd("query-migrate")
    out["qemu_total_ms"] = info.get("total-time")
    out["qemu_downtime_ms"] = info.get("downtime")
    src.stop()     # libvirt's Confirm: the source QEMU goes away
    out["total_ms"] = round((time.monotonic() - t0) * 1000)
    out["converged"] = True
    return out


def migrate_copy_storage(src, dst, dst_ip, port, nbd_port, nodes, cap_s=120.0, mirror_cap_s=600.0, t0=None,
                         on_sample=None):
    """`virsh migrate --live --copy-storage-all` (libvirt >= 6 with -blockdev,
    QEMU 7.2): the destination has been started with `-incoming defer` on
    freshly created images of the same size (libvirt pre-creates them).

      destination: migrate-set-capabilities events, late-block-activate;
                   migrate-incoming; nbd-server-start on its migration
                   address; block-export-add (writable) per disk node
      source:      blockdev-add an nbd node per disk; blockdev-mirror
                   sync=full with QEMU's default copy mode (background, as
                   libvirt without --copy-storage-synchronous-writes); wait
                   until every mirror is ready; migrate with
                   pause-before-switchover (libvirt always enables it on the
                   source); at "pre-switchover" (guest stopped)
                   block-job-cancel every mirror (a ready mirror cancelled
                   leaves a complete copy) and wait for them to end;
                   migrate-continue
      destination: incoming completed -> nbd-server-stop, cont, announce-self
      source:      quit
    Returns migrate()'s dict plus mirror_ms / mirror_bytes."""
    t0 = time.monotonic() if t0 is None else t0
    out = {"converged": False, "samples": []}
    jobs = [f"drive-{n}" for n in nodes]

    def dst_prepare():
        dst.qmp.cmd("nbd-server-start", {"addr": {"type": "inet", "data": {"host": dst_ip, "port": str(nbd_port)}}})
        for n in nodes:
            dst.qmp.cmd("block-export-add", {"type": "nbd", "id": f"nbd-{n}", "node-name": n, "writable": True,
                                             "name": n})
        t_m = time.monotonic()
        for n, j in zip(nodes, jobs):
            src.qmp.cmd("blockdev-add", {"driver": "nbd", "node-name": f"migration-{n}-storage",
                                         "server": {"type": "inet", "host": dst_ip, "port": str(nbd_port)},
                                         "export": n})
            src.qmp.cmd("blockdev-mirror", {"job-id": j, "device": n, "target": f"migration-{n}-storage",
                                            "sync": "full"})
        while True:
            bj = {x["device"]: x for x in src.qmp.cmd("query-block-jobs")}
            if any(j not in bj for j in jobs):
                out["error"] = f"a mirror ended before it was ready: {sorted(bj)}"
                return False
            if all(bj[j].get("ready") for j in jobs):
                break
            if time.monotonic() - t_m > mirror_cap_s:
                for j in jobs:
                    src.qmp.cmd("block-job-cancel", {"device": j, "force": True}, check=False)
                out["error"] = f"mirror not ready within {mirror_cap_s:.0f} s"
                out["capped"] = True
                return False
            time.sleep(0.1)
        out["mirror_ms"] = round((time.monotonic() - t_m) * 1000)
        out["mirror_bytes"] = sum(bj[j].get("len", 0) for j in jobs)
        out["mirror_ready_ms"] = round((time.monotonic() - t0) * 1000)
        return True

    def cancel_mirrors():
        for j in jobs:
            src.qmp.cmd("block-job-cancel", {"device": j})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            left = {x["device"] for x in src.qmp.cmd("query-block-jobs")} & set(jobs)
            if not left:
                return
            time.sleep(0.005)
        raise QMPError(f"mirrors {sorted(left)} did not end within 60 s of block-job-cancel")

    def before_cont():
        dst.qmp.cmd("nbd-server-stop")

    r = migrate(src, dst, dst_ip, port, cap_s=cap_s, t0=t0, on_sample=on_sample,
                src_caps=("pause-before-switchover",), dst_caps=("late-block-activate",), dst_prepare=dst_prepare,
                on_pre_switchover=cancel_mirrors, before_cont=before_cont, out=out)
    if not r["converged"]:
        for j in jobs:
            try:
                src.qmp.cmd("block-job-cancel", {"device": j, "force": True}, check=False)
            except QMPError:
                pass
    return r


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--self-test"]:
        a = qemu_argv("t", "00000000-0000-0000-0000-000000000000", "/tmp/x", 2048, 1, "/d.qcow2", "vmab", "52:54:00:00:00:01",
                      "/k", "/i", "console=ttyS0", incoming="defer")
        assert a[a.index("-m") + 1] == "2048M", a
        assert a[a.index("-machine") + 1].startswith("pc-q35-"), a
        print(" ".join(a))
        print("ok")
    else:
        print(__doc__)

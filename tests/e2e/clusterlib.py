"""A 3-host vmove cluster on a 3-member etcd (real etcd, TLS), with an HA
guest, fault injectors and an independent double-run oracle."""
import json
import os
import signal
import subprocess
import threading
import time

from migrationlib import GUEST_ECHO_PORT, Cluster, tbmod
import etcdbed
from vmovelib import BIN, ENV, wait_for

TTL = 3


class DoubleRunOracle(threading.Thread):
    """Every 10 ms, from the root namespace: which hosts run a QEMU for the
    VM (by /proc/PID/cmdline and the host's state dir).  Any sample with
    two is a double run.  It knows nothing of vmove's own view."""

    def __init__(self, ha, name):
        super().__init__(daemon=True)
        self.ha, self.want = ha, f"guest={name},".encode()
        self.dirs = {i: ha.tb.host(i).state_dir.encode() for i in range(1, ha.n + 1)}
        self.overlaps, self.samples = [], 0
        self.stop_ev = threading.Event()
        # A live migration has two QEMUs by design, the destination's paused
        # until the commit (test_migration.py checks that part): while
        # `moving`, two are allowed.
        self.moving = False

    def hosts_running(self):
        seen = set()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
                with open(f"/proc/{pid}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except OSError:
                continue
            if b"qemu-system" not in cmd or self.want not in cmd or state in (b"Z", b"X"):
                continue
            seen |= {i for i, d in self.dirs.items() if d in cmd}
        return seen

    def run(self):
        while not self.stop_ev.is_set():
            s = self.hosts_running()
            self.samples += 1
            if len(s) > 1 and not self.moving:
                self.overlaps.append((time.monotonic(), sorted(s)))
            time.sleep(0.01)

    def stop(self):
        self.stop_ev.set()
        self.join(5)


class HA(Cluster):
    def __init__(self, tb, n=3):
        super().__init__(tb, n)

    def form(self, ttl=TTL):
        shared = self.tb.shared_dir
        r = self.v(1, "cluster", "create", "c1", "--etcd", self.tb.etcd_urls, "--shared-dir", shared,
                   "--ttl", str(ttl))
        assert r["created"] is True, r
        for i in range(2, self.n + 1):
            r = self.v(i, "cluster", "join", "c1", "--etcd", self.tb.etcd_urls)
            assert r["cluster"] == "c1", r
        wait_for(lambda: all(m["state"] == "up" for m in self.show(1)["members"])
                 and len(self.show(1)["members"]) == self.n, 30, "every member up")

    def show(self, i=1):
        return self.v(i, "cluster", "show", check=False) or {}

    def owner(self, name, i=None, skip=()):
        """The VM's owner record as a live member shows it (skip: hosts
        not to ask, e.g. a frozen one)."""
        for j in ([i] if i else range(1, self.n + 1)):
            if j in skip:
                continue
            h = self.tb.host(j)
            if h.proc is None or h.proc.poll() is not None:
                continue
            s = self.show(j)
            for vm in s.get("ha_vms", []):
                if vm["vm"] == name:
                    return vm
        return None

    def create_ha_guest(self, name, host=1, disk_rate=256, k=0, isolation=None):
        ip = self.create_guest(name, mem=32, mem_rate=8, disk_rate=disk_rate, host=host, k=k,
                               extra="vmove.disk_resume=1")
        self.boot(name, host)
        iso = ["--isolation", isolation] if isolation else []
        r = self.v(host, "vm", "set", name, "--ha", "on", "--priority", "high", *iso)
        assert r["ha"] is True and r["isolation"] == (isolation or "stop"), r
        return ip

    def fence_deadline(self, i, name):
        """What the VM's shim is armed with (0: never fenced)."""
        d = self.v(i, "vm", "show", name)["dir"]
        with open(os.path.join(d, "fence.deadline")) as f:
            return int(f.read().strip())

    def etcdctl(self, *args):
        """etcdctl against the first etcd member that answers."""
        for k in range(1, len(self.tb.etcd_members) + 1):
            p = etcdbed.etcdctl(self.tb, k, *args)
            if p.returncode == 0:
                return p
        raise AssertionError(f"etcdctl {args}: {p.stderr}")

    def echo_ok(self, ip, timeout=0.3):
        """One UDP echo from the client namespace to the guest."""
        code = (f"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout({timeout});"
                f"s.sendto(b'x',('{ip}',{GUEST_ECHO_PORT}));s.recvfrom(64);print('ok')")
        p = self.tb.run_in("client", ["/usr/bin/python3", "-c", code], check=False, timeout=5)
        return p.stdout.strip() == "ok"

    def wait_echo(self, ip, timeout):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.echo_ok(ip):
                return time.monotonic()
        raise AssertionError(f"guest {ip} did not answer within {timeout}s")

    def running_on(self, name):
        return [i for i in range(1, self.n + 1) if self.qemu_of(i, name)]

    def kill_namespace(self, i):
        """Host i "dies": every process of its namespace, SIGKILL."""
        h = self.tb.host(i)
        pids = subprocess.run(["ip", "netns", "pids", h.ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if h.proc is not None:
            h.proc.wait(timeout=10)

    def events(self, i):
        return (self.v(i, "cluster", "events") or {}).get("events", [])


def make_ha(request, n=3):
    tb = tbmod.make_testbed(request, n_hosts=n, tls=True, etcd=3,
                            vmoved=os.path.join(BIN, "vmoved"), vmove=os.path.join(BIN, "vmove"))
    env = dict(ENV, VMOVE_TEST_NO_IMAGE_LOCKING="1")
    ha = HA(tb, n)
    ha.start = lambda i: tb.start_host(i, env=env)
    for i in range(1, n + 1):
        ha.start(i)
    # No `peer add`: cluster members find each other through etcd.
    ha.configure(peers=False)

    def stop_cleanly():
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for i in range(1, n + 1):
                print(f"\n===== vmoved log of {tb.host(i).name} (last 80 lines) =====\n{tb.log_tail(i, 80)}")
        for i in range(1, n + 1):
            h = tb.host(i)
            if h.proc is not None and h.proc.poll() is None:
                ha.stop(i)
    request.addfinalizer(stop_cleanly)
    return ha


def rto_line(what, t_fault, t_running, t_echo):
    return (f"RTO {what}: guest running {t_running - t_fault:.2f} s, "
            f"first echo answer {t_echo - t_fault:.2f} s after the fault")


def dump(x):
    return json.dumps(x, indent=1)

"""A two-host test bed with vmove configured for live migration, and a guest
with its workloads on shared storage."""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../testbed"))
import testbed as tbmod  # noqa: E402
from vmovelib import BIN, CACHE, ENV, KERNEL, INITRD, allow_dir_args, wait_for  # noqa: E402

GUEST_ECHO_PORT = 7777


class Cluster:
    def __init__(self, tb, n=2):
        self.tb = tb
        self.n = n
        self.h1, self.h2 = tb.host(1), tb.host(2)

    # ---- hosts
    def start(self, i):
        self.tb.start_host(i, env=ENV)

    def stop(self, i, sig=signal.SIGTERM):
        h = self.tb.host(i)
        self.tb.stop_host(i, sig=sig)
        if sig == signal.SIGTERM:
            assert h.proc.returncode == 0, f"vmoved {h.name} exited {h.proc.returncode}:\n{self.tb.log_tail(i, 60)}"

    def configure(self, networks=None, peers=True):
        nets = networks or [self.tb.subnet("mig")]
        for i in range(1, self.n + 1):
            for j in range(1, self.n + 1):
                if i != j:
                    other = self.tb.host(j)
                    if peers:
                        self.v(i, "peer", "add", other.name, f"{other.mgmt_ip}:{other.port}")
                    self.v(i, "acl", "grant", f"host:{other.name}", "migrate.in", "migrate.out")
            # The path policy: the test bed's directories and the guest's kernel.
            args = ["host", "set", "--migration-incoming", "on", "--migration-outgoing", "on"]
            args += allow_dir_args(self.tb.allowed_dirs() + [CACHE])
            for n in nets:
                args += ["--migration-network", n]
            self.v(i, *args)

    # ---- CLI
    def v(self, i, *args, check=True, timeout=300):
        """vmove --json ARGS on host i: the last JSON line (commands that wait
        for a job stream events first)."""
        p = self.tb.vmove(i, "--json", *args, check=check, timeout=timeout)
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None

    def run(self, i, *args, timeout=300):
        return self.tb.vmove(i, *args, check=False, timeout=timeout)

    def vm_names(self, i):
        return [v["name"] for v in self.v(i, "vm", "list")["vms"]]

    def qemus(self, i):
        """QEMU processes running for host i (by its state dir), from /proc."""
        sd = self.tb.host(i).state_dir.encode()
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"qemu-system-x86_64") and any(sd in c for c in cmd):
                out.append(int(pid))
        return out

    def where(self, name):
        """Hosts whose vmoved lists the VM running, and hosts with a QEMU for it."""
        hosts = range(1, self.n + 1)
        listed = [i for i in hosts if any(v["name"] == name and v["state"] == "running"
                                          for v in self.v(i, "vm", "list")["vms"])]
        qemus = [i for i in hosts if self.qemu_of(i, name)]
        return listed, qemus

    def qemu_of(self, i, name):
        """QEMU processes on host i for this VM (its -name guest=NAME)."""
        want = f"guest={name},".encode()
        return [pid for pid in self.qemus(i) if want in open(f"/proc/{pid}/cmdline", "rb").read()]

    def assert_only_on(self, name, i):
        listed, qemus = self.where(name)
        assert listed == [i], f"{name} listed running on {listed}, expected only [{i}]"
        assert qemus == [i], f"QEMU for {name} runs on hosts {qemus}, expected only [{i}]"

    # ---- guest
    def create_guest(self, name, memory="256M", mem=64, mem_rate=20, disk_rate=256, k=0, extra="", host=1):
        disk = os.path.join(self.tb.shared_dir, f"{name}.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"], check=True)
        ip = self.tb.guest_ip(k)
        append = (f"console=ttyS0 quiet panic=-1 vmove.mem={mem} vmove.mem_rate={mem_rate} vmove.disk=vda "
                  f"vmove.disk_rate={disk_rate} vmove.echo={GUEST_ECHO_PORT} vmove.ip={ip}/24 {extra}")
        self.v(host, "vm", "create", name, "--memory", memory, "--disk", disk, "--nic", "switch0",
               "--kernel", KERNEL, "--initrd", INITRD, "--append", append.strip())
        return ip

    def boot(self, name, i=1):
        self.v(i, "vm", "start", name)
        self.wait_guest(name, i)

    def guest(self, i, name, *cmd):
        return self.v(i, "vm", "guest", name, *cmd, check=False)

    def wait_guest(self, name, i):
        wait_for(lambda: (self.guest(i, name, "ping") or {}).get("reply") == "pong", 120, f"guest {name} on h{i}")

    def verify(self, name, i):
        r = self.guest(i, name, "verify")
        assert r and r.get("reply", "").startswith("ok"), f"verify of {name} on h{i}: {r}"
        return r["reply"]

    def move(self, name, src, dst, *extra, probe_ip=None, check=True, to_name=None):
        """vmove move, run in the client namespace so it can probe the guest
        (to_name: a --to other than host dst's name)."""
        argv = [os.path.join(BIN, "vmove"), "-H", "unix:" + self.tb.host(src).sock, "--json", "move", name,
                "--to", to_name or self.tb.host(dst).name] + list(extra)
        if probe_ip:
            argv += ["--probe", f"{probe_ip}:{GUEST_ECHO_PORT}"]
        p = self.tb.run_in("client", argv, check=False, timeout=600)
        lines = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        done = next((l for l in lines if "ok" in l), None)   # the final document (docs/JSON.md)
        if check:
            assert p.returncode == 0, f"move failed: {p.stderr[-3000:]} {json.dumps((done or {}).get('job', {}).get('error'))}"
        return p, done, lines

    def job_phase(self, i, jid):
        return self.v(i, "jobs", "show", str(jid)).get("phase")


def make_cluster(request, n=2, vmoved_prefix=(), before_start=None):
    """A started, configured n-host bed.  vmoved_prefix: an argv that runs
    vmoved under another program (test_valgrind.py: Valgrind).
    before_start(tb): called before any vmoved starts -- the place for
    mounts, which each vmoved's mount namespace (`ip netns exec` makes one)
    copies when it starts and never sees if made later."""
    tb = tbmod.make_testbed(request, n_hosts=n, tls=True,
                            vmoved=list(vmoved_prefix) + [os.path.join(BIN, "vmoved")],
                            vmove=os.path.join(BIN, "vmove"))
    if before_start:
        before_start(tb)
    c = Cluster(tb, n)
    for i in range(1, n + 1):
        c.start(i)
    c.configure()

    def stop_cleanly():
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            # What the daemons said is the first thing to read about a failure.
            for i in range(1, n + 1):
                print(f"\n===== vmoved log of {tb.host(i).name} (last 60 lines) =====\n{tb.log_tail(i, 60)}")
        # vmoved must exit 0 on SIGTERM: ASan/LSan findings would make it fail.
        for i in range(1, n + 1):
            h = tb.host(i)
            if h.proc is not None and h.proc.poll() is None:
                c.stop(i)
    request.addfinalizer(stop_cleanly)
    return c

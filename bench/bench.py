#!/usr/bin/python3
"""vmove against the peer (QEMU driven the way `virsh migrate --live` drives
it, bench/peer.py), side by side, on the same guest and the same links of a
2-host test bed (tests/testbed).  See docs/BENCHMARKS.md.

    bench/run.sh [--quick] [--scenario N[,N...]] [--reps N] [--cap S]

Writes bench/results/YYYYmmdd-HHMMSS.{md,json}, bench/results/latest.md and
bench/results/remaining.png.  Stdlib only (Debian's /usr/bin/python3).
"""
import argparse
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import traceback
import uuid as uuidmod

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tests/testbed"))
sys.path.insert(0, HERE)
import testbed as tbmod  # noqa: E402
import peer  # noqa: E402

BIN = os.path.abspath(os.environ.get("VMOVE_BIN", os.path.join(ROOT, "build/release/bin")))
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "vmove/guest")
KERNEL = os.path.join(CACHE, "vmlinuz")
INITRD = os.path.join(CACHE, "initrd.img")
RESULTS = os.path.join(HERE, "results")
ECHO_PORT = 7777
MIG_PORT = 49152
GIB = 1024**3
MIB = 1024**2

LINKS = {"unshaped": None, "10gbit": "10gbit", "1gbit": "1gbit"}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ test bed

class Bed:
    """A fresh 2-host test bed with vmove configured for live migration."""

    def __init__(self, n_hosts=2, postcopy=False):
        self.postcopy = postcopy   # both hosts allow post-copy (scenario 2 --postcopy)
        self.tb = tbmod.Testbed(n_hosts=n_hosts, tls=True, vmoved=os.path.join(BIN, "vmoved"),
                                vmove=os.path.join(BIN, "vmove"),
                                keep=os.environ.get("VMOVE_TESTBED_KEEP") == "1")
        self.link = "unshaped"
        self.seq = 0

    def __enter__(self):
        tb = self.tb
        tb.up()
        try:
            for i in (1, 2):
                tb.start_host(i)
            for i, other in ((1, tb.host(2)), (2, tb.host(1))):
                tb.vmove(i, "peer", "add", other.name, f"{other.mgmt_ip}:{other.port}")
                # Rights at both ends: the other host may send and receive (root's moves run as its host).
                tb.vmove(i, "acl", "grant", f"host:{other.name}", "migrate.in", "migrate.out")
                # Like for like: the peer (virsh migrate without --tls) sends plaintext.
                # vmove's default is TLS; both hosts must allow plaintext explicitly.
                tb.vmove(i, "host", "set", "--allow-insecure-migration", "on")
                # The path policy: requests may name files only where the admin allows.
                dirs = [a for k in ("images", "kernels", "storage", "state") for d in (tb.root, CACHE)
                        for a in ("--allow-dir", f"{k}={os.path.realpath(d)}")]
                tb.vmove(i, "host", "set", "--migration-incoming", "on", "--migration-outgoing", "on",
                         "--migration-network", tb.subnet("mig"), *dirs)
                if self.postcopy:
                    tb.vmove(i, "host", "set", "--postcopy", "allow")
        except BaseException:
            tb.down()
            raise
        return self

    def __exit__(self, *exc):
        for i in (1, 2):
            try:
                self.tb.stop_host(i)
            except Exception:
                pass
        self.tb.down()

    def healthy(self):
        tb = self.tb
        return os.path.isdir(tb.shared_dir) and all(
            tb.host(i).proc is not None and tb.host(i).proc.poll() is None and os.path.exists(tb.host(i).sock)
            for i in (1, 2))

    def rebuild(self):
        """Something outside the benchmark removed the bed (seen once while
        another engineer's test run was sweeping): make a new one."""
        link = self.link
        try:
            self.__exit__(None, None, None)
        except Exception:
            pass
        self.__init__()
        self.__enter__()
        self.set_link(link)

    def set_link(self, link):
        for i in (1, 2):
            if LINKS[link]:
                self.tb.shape(i, "mig", rate=LINKS[link])
            else:
                self.tb.unshape(i, "mig")
        self.link = link

    def tx_bytes(self, i=1, dev="mig0"):
        out = subprocess.run(["ip", "-n", self.tb.host(i).ns, "-s", "-j", "link", "show", dev],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)[0]["stats64"]["tx"]["bytes"]

    def vmove(self, i, *args, check=True, timeout=300):
        p = self.tb.vmove(i, "--json", *[str(a) for a in args], check=check, timeout=timeout)
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else {"rc": p.returncode, "stderr": p.stderr}

    def flush_client_arp(self):
        """Every run reuses the guest IP with a new MAC: drop the client's
        stale neighbour entry, or its first echoes go to the old MAC."""
        subprocess.run(["ip", "-n", self.tb.client_ns, "neigh", "flush", "all"], capture_output=True)

    def new_name(self, prefix):
        self.seq += 1
        return f"{prefix}{self.seq:02d}"


def private_dir(bed, i):
    """A directory only host i uses (shared-nothing: not the bed's shared dir)."""
    d = os.path.join(bed.tb.root, bed.tb.host(i).name, "disks")
    os.makedirs(d, exist_ok=True)
    return d


def make_disk(path, spec):
    """A fresh qcow2; with spec["prefill"], that much of it written (0x5a) before boot."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, spec["disk_size"]], check=True)
    pre = spec.get("prefill_bytes") or 0
    if pre:
        chunk = 256 * MIB
        cmds = []
        for off in range(0, pre, chunk):
            cmds += ["-c", f"write -P 0x5a {off} {min(chunk, pre - off)}"]
        subprocess.run(["qemu-io", "-f", "qcow2"] + cmds + [path], check=True, capture_output=True)


def guest_append(ip, spec):
    a = (f"console=ttyS0 quiet panic=-1 vmove.mem={spec['mem']} vmove.mem_rate={spec['rate']} "
         f"vmove.mem_pattern={spec['pattern']} vmove.disk=vda vmove.disk_rate={spec['disk_rate']} "
         f"vmove.echo={ECHO_PORT} vmove.ip={ip}/24 vmove.seed={secrets.randbelow(1 << 30)}")
    return a


def wait_file_text(path, text, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                if text.encode() in f.read():
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


class Probe:
    """vmove-probe in the client namespace, as the vmove CLI runs it."""

    def __init__(self, bed, ip):
        self.bed = bed
        d = bed.tb.root
        tag = secrets.token_hex(4)
        self.out = os.path.join(d, f"probe.{tag}.json")
        self.stop_file = os.path.join(d, f"probe.{tag}.stop")
        self.ready = os.path.join(d, f"probe.{tag}.ready")
        with open(self.out, "w") as f:
            self.proc = bed.tb.run_in("client", [os.path.join(BIN, "vmove-probe"), "--target", f"{ip}:{ECHO_PORT}",
                                                 "--stop-file", self.stop_file, "--ready-file", self.ready,
                                                 "--duration", "3600", "--wait-first", "30"],
                                      popen=True, stdout=f)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the probe got no echo from the guest")
            time.sleep(0.05)

    def finish(self):
        time.sleep(0.3)       # as the CLI: let a few more echoes arrive, then stop
        open(self.stop_file, "w").close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            with open(self.out) as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return None


# ------------------------------------------------------------------ one run

def qemu_cmdline_for(state_dir):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                c = [x.decode() for x in f.read().split(b"\0")[:-1]]
        except OSError:
            continue
        if c and c[0].endswith("qemu-system-x86_64") and any(state_dir in x for x in c):
            return c
    return None


def normalize_argv(argv, vm_dir, name, uuid, tap, mac, disk, seed_re=re.compile(r"vmove\.seed=\d+")):
    out = []
    for a in argv:
        a = a.replace(vm_dir, "VMDIR").replace(disk, "DISK").replace(tap, "TAP").replace(mac, "MAC")
        a = a.replace(f"guest={name},", "guest=NAME,").replace(uuid, "UUID")
        a = seed_re.sub("vmove.seed=S", a)
        out.append(a)
    return out


class VmoveGuest:
    """A guest booted by vmoved on h1 and moved with `vmove move`."""
    side = "vmove"

    def __init__(self, bed, spec, k=0):
        self.bed, self.spec, self.k = bed, spec, k
        tb = bed.tb
        self.name = bed.new_name("v")
        self.sn = bool(spec.get("shared_nothing"))
        base = private_dir(bed, 1) if self.sn else tb.shared_dir
        self.disk = os.path.join(base, f"{self.name}.qcow2")
        self.dst_dir = private_dir(bed, 2) if self.sn else None
        self.ip = tb.guest_ip(k)
        self.where = 1
        self.r = {"side": "vmove", "vm": self.name}

    def boot(self, wait=True):
        tb, name, spec = self.bed.tb, self.name, self.spec
        make_disk(self.disk, spec)
        self.bed.vmove(1, "vm", "create", name, "--memory", f"{spec['memory_mib']}M", "--cpus", "1", "--disk",
                       self.disk, "--nic", "switch0", "--kernel", KERNEL, "--initrd", INITRD,
                       "--append", guest_append(self.ip, spec))
        self.bed.vmove(1, "vm", "start", name)
        self.vm_dir = os.path.join(tb.host(1).state_dir, "vms", name)
        if wait:
            self.wait_ready()

    def wait_ready(self):
        wait_file_text(os.path.join(self.vm_dir, "console.log"), "vmove-guest: ready", 180, "guest ready")
        show = self.bed.vmove(1, "vm", "show", self.name)
        argv = qemu_cmdline_for(self.vm_dir)
        if argv:
            cfg = show["config"]
            tap = f"vm{cfg['uuid'].replace('-', '')[:8]}n0"
            self.r["qemu_argv_normalized"] = normalize_argv(argv, self.vm_dir, self.name, cfg["uuid"], tap,
                                                            cfg["nics"][0]["mac"], self.disk)

    def move(self, extra=()):
        bed, tb, r, spec = self.bed, self.bed.tb, self.r, self.spec
        r["extra"] = list(extra)
        bed.flush_client_arp()
        cmd = [os.path.join(BIN, "vmove"), "-H", "unix:" + tb.host(1).sock, "--json", "move", self.name, "--to",
               tb.host(2).name, "--probe", f"{self.ip}:{ECHO_PORT}", "--max-duration", str(int(spec["cap_s"]))]
        if self.sn:
            cmd += ["--with-storage", self.dst_dir]
        cmd += list(extra)
        r["command"] = "ip netns exec CLIENT_NS " + shlex.join(cmd)
        tx0 = bed.tx_bytes(1)
        t0 = time.monotonic()
        p = tb.run_in("client", cmd, check=False, timeout=spec["cap_s"] + 300)
        r["wall_ms"] = round((time.monotonic() - t0) * 1000)
        r["wire_bytes"] = bed.tx_bytes(1) - tx0
        r["rc"] = p.returncode
        events = []
        for line in p.stdout.splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
        done = next((e for e in events if "ok" in e), None)
        samples = []
        for e in events:
            pr = (e.get("data") or {}).get("progress")
            if pr and pr.get("phase") == "mirror" and pr.get("disks"):
                r["mirror_bytes"] = sum(d.get("len") or 0 for d in pr["disks"])
                if all(d.get("ready") for d in pr["disks"]):
                    r.setdefault("mirror_ready_ms", pr.get("elapsed_ms"))
            if pr and pr.get("status") in ("active", "device", "completed") and pr.get("ram_total"):
                smp = [pr["elapsed_ms"], pr["ram_remaining"], pr["bytes_sent"]]
                if not samples or samples[-1] != smp:
                    samples.append(smp)
        r["samples"] = samples
        job = (done or {}).get("job") or {}
        res = job.get("result") or {}
        r["probe"] = (done or {}).get("probe")
        r["client_gap_ms"] = (r["probe"] or {}).get("max_gap_ms")
        r["switchover_gap_ms"] = switchover_gap(r["probe"])
        r["job_state"] = job.get("state")
        if p.returncode == 0 and job.get("state") == "succeeded":
            self.where = 2
            r["converged"] = True
            for k in ("total_ms", "qemu_downtime_ms", "qemu_total_ms", "bytes_sent", "passes", "downtime_limit_ms",
                      "policy_actions"):
                r[k] = res.get(k)
        else:
            r["converged"] = False
            r["error"] = (job.get("error") or {}).get("message") or p.stderr.strip()[-500:]
            prog = job.get("progress") or {}
            r["policy_actions"] = prog.get("policy_actions")
            r["last_progress"] = {k: prog.get(k) for k in ("status", "ram_remaining", "bytes_sent", "pass",
                                                            "throttle_pct", "downtime_limit_ms", "elapsed_ms")}
            listed = [v["name"] for v in bed.vmove(2, "vm", "list").get("vms", [])]
            self.where = 2 if self.name in listed else 1

    def verify(self):
        v = self.bed.vmove(self.where, "vm", "guest", self.name, "verify", timeout=180)
        self.r["verify"] = v.get("reply") if isinstance(v, dict) else str(v)
        self.r["verify_host"] = f"h{self.where}"
        self.r["verify_ok"] = bool(self.r["verify"] and self.r["verify"].startswith("ok"))

    def cleanup(self):
        for i in (1, 2):
            self.bed.vmove(i, "vm", "stop", self.name, "--force", check=False, timeout=60)
            self.bed.vmove(i, "vm", "delete", self.name, check=False, timeout=60)
        for f in (self.disk, os.path.join(self.dst_dir, f"{self.name}.qcow2") if self.sn else None):
            try:
                if f:
                    os.unlink(f)
            except OSError:
                pass


class PeerGuest:
    """A guest in a QEMU the peer driver starts on h1, moved like libvirt."""
    side = "peer"

    def __init__(self, bed, spec, k=0):
        self.bed, self.spec, self.k = bed, spec, k
        tb = bed.tb
        self.name = name = bed.new_name("p")
        self.sn = bool(spec.get("shared_nothing"))
        self.disk = os.path.join(private_dir(bed, 1) if self.sn else tb.shared_dir, f"{name}.qcow2")
        self.dst_disk = os.path.join(private_dir(bed, 2), f"{name}.qcow2") if self.sn else self.disk
        self.ip = tb.guest_ip(k)
        uuid = str(uuidmod.uuid4())
        tap = f"vm{uuid.replace('-', '')[:8]}n0"
        mac = "52:54:00:%02x:%02x:%02x" % tuple(secrets.token_bytes(3))
        append = guest_append(self.ip, spec)
        self.dirs = {i: os.path.join(tb.root, "peer", f"h{i}", name) for i in (1, 2)}

        def argv(i, incoming=None):
            return peer.qemu_argv(name, uuid, self.dirs[i], spec["memory_mib"], 1,
                                  self.disk if i == 1 else self.dst_disk, tap, mac, KERNEL,
                                  INITRD, append, incoming=incoming)
        self.src = peer.PeerVM(tb.host(1).ns, self.dirs[1], argv(1), tap)
        self.dst = peer.PeerVM(tb.host(2).ns, self.dirs[2], argv(2, "defer"), tap)
        self.who = self.src
        self.r = {"side": "peer", "vm": name,
                  "qemu_argv_normalized": normalize_argv(self.src.argv, self.dirs[1], name, uuid, tap, mac, self.disk),
                  "command": ("bench/peer.py migrate_copy_storage()" if self.sn else "bench/peer.py migrate()")
                  + " between QEMUs started with: " + shlex.join(self.dst.argv)}

    def boot(self, wait=True):
        make_disk(self.disk, self.spec)
        self.src.start()
        self.src.qmp.cmd("cont")
        if wait:
            self.wait_ready()

    def wait_ready(self):
        wait_file_text(os.path.join(self.dirs[1], "console.log"), "vmove-guest: ready", 180, "guest ready")

    def move(self, extra=()):
        bed, tb, r = self.bed, self.bed.tb, self.r
        probe = None
        try:
            bed.flush_client_arp()
            probe = Probe(bed, self.ip)
            tx0 = bed.tx_bytes(1)
            t0 = time.monotonic()
            if self.sn:
                # libvirt's Prepare pre-creates the destination image (same virtual size), empty.
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", self.dst_disk, self.spec["disk_size"]],
                               check=True)
            self.dst.start()     # libvirt's Prepare: destination QEMU, paused, -incoming defer
            if self.sn:
                m = peer.migrate_copy_storage(self.src, self.dst, tb.host(2).mig_ip, MIG_PORT + self.k,
                                              MIG_PORT + 100 + self.k, ["vda"], cap_s=self.spec["cap_s"],
                                              mirror_cap_s=self.spec["cap_s"] * 3, t0=t0)
            else:
                m = peer.migrate(self.src, self.dst, tb.host(2).mig_ip, MIG_PORT + self.k, cap_s=self.spec["cap_s"],
                                 t0=t0)
            r["wall_ms"] = round((time.monotonic() - t0) * 1000)
            r["wire_bytes"] = bed.tx_bytes(1) - tx0
            r["probe"] = probe.finish()
            probe = None
            r["client_gap_ms"] = (r["probe"] or {}).get("max_gap_ms")
            r["switchover_gap_ms"] = switchover_gap(r["probe"])
            for k in ("converged", "status", "total_ms", "qemu_total_ms", "qemu_downtime_ms", "bytes_sent", "passes",
                      "samples", "error", "params", "capabilities", "resumed_ms", "transfer_ms", "capped",
                      "mirror_ms", "mirror_bytes", "mirror_ready_ms", "pre_switchover_ms"):
                if k in m:
                    r[k] = m[k]
            if m["converged"]:
                self.who = self.dst
            else:
                self.dst.stop()
        finally:
            if probe:
                probe.finish()

    def verify(self):
        self.r["verify"] = self.who.guest("verify", timeout=180)
        self.r["verify_host"] = "h2" if self.who is self.dst else "h1"
        self.r["verify_ok"] = self.r["verify"].startswith("ok")

    def cleanup(self):
        if "error" in self.r and "traceback" in self.r:
            self.r["qemu_log"] = {"src": self.src.log_tail(800), "dst": self.dst.log_tail(800)}
        self.src.stop()
        self.dst.stop()
        for f in {self.disk, self.dst_disk}:
            try:
                os.unlink(f)
            except OSError:
                pass


def guarded(g, step, *a):
    try:
        step(*a)
        return True
    except Exception as e:
        g.r["converged"] = False
        g.r["verify_ok"] = False
        g.r.setdefault("error", f"{type(e).__name__}: {e}")
        g.r["traceback"] = traceback.format_exc()[-2000:]
        return False


def run_one(bed, spec, side, extra=()):
    g = (VmoveGuest if side == "vmove" else PeerGuest)(bed, spec)
    try:
        if guarded(g, g.boot):
            time.sleep(spec.get("settle", 1.0))
            if guarded(g, g.move, extra):
                guarded(g, g.verify)
    finally:
        g.cleanup()
    return g.r


# ------------------------------------------------------------------ scenarios

def base_spec(args, **kw):
    s = {"memory_mib": 2048, "mem": 512, "rate": 0, "pattern": "random", "disk_rate": 256, "disk_size": "256M",
         "cap_s": args.cap, "settle": 1.0}
    s.update(kw)
    return s


def switchover_gap(probe):
    """The longest client gap at the switch-over, as the vmove CLI computes
    it (src/cli/cmd-move.c): the longest gap ending in the move's last
    600 ms; the probe stops 300 ms after the move.  0 if there is no gap of
    20 ms or more there (the probe does not list shorter ones).  Computed
    here for both sides, from the probe's gap list."""
    if not probe or "gaps" not in probe or not probe.get("duration_ms"):
        return None
    done = probe["duration_ms"] - 300
    return max([g["ms"] for g in probe["gaps"] if g["start_ms"] + g["ms"] >= done - 600] or [0.0])


def gap_position(r):
    """Where the client's longest gap was: the probe starts just before the
    move and stops 300 ms after it ends (as the vmove CLI does)."""
    pr = r.get("probe") or {}
    if pr.get("max_gap_ms") is None or not pr.get("duration_ms"):
        return None
    end_before_done = pr["duration_ms"] - 300 - (pr["max_gap_start_ms"] + pr["max_gap_ms"])
    start_after_begin = pr["max_gap_start_ms"]
    r["gap_start_ms"] = round(start_after_begin)
    r["gap_end_before_done_ms"] = round(end_before_done)
    return "switch-over" if end_before_done < 600 else "transfer"


def one_line(r):
    if not r.get("converged"):
        return (f"{r['side']:5s} DID NOT FINISH ({str(r.get('error'))[:160]}); verify on {r.get('verify_host')}: "
                f"{r.get('verify')}")
    return (f"{r['side']:5s} total {r['total_ms']/1000:.2f} s, QEMU downtime {r['qemu_downtime_ms']} ms, "
            f"client gap {fmt_num(r.get('client_gap_ms'))} ms (at {r.get('gap_at')}), {r['bytes_sent']/MIB:.0f} MiB sent, "
            f"{r['wire_bytes']/MIB:.0f} MiB on mig0; verify: {r.get('verify')}")


def fmt_num(x, nd=0):
    return "-" if x is None else f"{x:.{nd}f}"


def foreign_load(bed):
    """Other work on this machine while we measure: QEMUs that are not ours
    (e.g. someone's `make check`) and the load average."""
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                c = f.read()
        except OSError:
            continue
        if c.split(b"\0")[0].endswith(b"qemu-system-x86_64") and bed.tb.root.encode() not in c:
            n += 1
    with open("/proc/loadavg") as f:
        la = float(f.read().split()[0])
    return {"foreign_qemus": n, "loadavg1": la}


def pair(bed, spec, rep, variants, label, out):
    """Run every variant once, alternating the order between repetitions."""
    order = variants if rep % 2 == 0 else list(reversed(variants))
    for side, extra in order:
        t = time.monotonic()
        load = foreign_load(bed)
        r = run_one(bed, spec, side, extra)
        if not bed.healthy():
            log(f"  {label} rep {rep+1} {variant_name(side, extra)}: the test bed vanished under the run "
                f"({str(r.get('error'))[:200]}); rebuilding it and running again")
            bed.rebuild()
            r = run_one(bed, spec, side, extra)
            r["retried_after_bed_vanished"] = True
        r["variant"] = variant_name(side, extra)
        r["condition"] = label
        r["rep"] = rep
        r["link"] = bed.link
        r["spec"] = spec
        r["run_s"] = round(time.monotonic() - t, 1)
        r["gap_at"] = gap_position(r)
        r.update(load)
        if load["foreign_qemus"]:
            r["foreign_load_after"] = foreign_load(bed)
        log(f"  {label} rep {rep+1} {r['variant']}: {one_line(r)}"
            + (f" [{load['foreign_qemus']} other QEMUs running on this machine]" if load["foreign_qemus"] else ""))
        out.append(r)


def variant_name(side, extra):
    return side + ("" if not extra else " " + " ".join(extra))


def scenario1(args, out):
    with Bed() as bed:
        spec = base_spec(args, rate=0)
        for rep in range(args.reps):
            pair(bed, spec, rep, [("vmove", ()), ("peer", ())], "idle, unshaped", out)


def scenario2(args, out):
    variants = [("vmove", ()), ("peer", ())]
    if args.postcopy:
        variants.insert(1, ("vmove", ("--converge", "postcopy")))
    with Bed(postcopy=args.postcopy) as bed:
        for link in args.links2:
            bed.set_link(link)
            for rate in args.rates:
                # touch: a rewrite is one store per page, so "max" dirties as
                # fast as the guest can (the "dirtied flat out"),
                # not as fast as it can compute random page contents.
                spec = base_spec(args, rate=rate, pattern="touch")
                for rep in range(args.reps):
                    pair(bed, spec, rep, variants, f"{link}, dirty {rate} MiB/s", out)


def scenario3(args, out):
    with Bed() as bed:
        bed.set_link("1gbit")
        spec = base_spec(args, rate=args.rate3, pattern="compressible")
        for rep in range(args.reps):
            pair(bed, spec, rep, [("vmove", ()), ("vmove", ("--compress", "zstd")), ("peer", ())],
                 f"1gbit, compressible, dirty {args.rate3} MiB/s", out)


def scenario4(args, out):
    """Shared-nothing: each host's disk is in a directory only it uses; the
    disk moves with the memory (vmove --with-storage vs libvirt's
    --copy-storage-all flow, bench/peer.py migrate_copy_storage)."""
    size_gib, pre_mib = (1, 512) if args.quick else (4, 2048)
    with Bed() as bed:
        # The cap covers the disk copy too: three times the migration cap.
        spec = base_spec(args, rate=0, disk_size=f"{size_gib}G", prefill_bytes=pre_mib * MIB, disk_rate=1024,
                         shared_nothing=True, cap_s=args.cap * 3)
        label = (f"shared-nothing, {size_gib} GiB disk with {pre_mib} MiB written, guest writing 1 MiB/s, "
                 f"2 GiB RAM idle, unshaped")
        for rep in range(args.reps):
            pair(bed, spec, rep, [("vmove", ()), ("peer", ())], label, out)


def drain_h1(bed, gs, r, timeout):
    """`vmove host drain h1 --to h2` on h1; per-VM results from the child jobs."""
    tb = bed.tb
    tx0 = bed.tx_bytes(1)
    t0 = time.monotonic()
    cmd = ["host", "drain", tb.host(1).name, "--to", tb.host(2).name]
    r["command"] = "vmove -H unix:H1SOCK --json " + " ".join(cmd)
    final = bed.vmove(1, *cmd, check=False, timeout=timeout)
    r["wall_ms"] = round((time.monotonic() - t0) * 1000)
    r["wire_bytes"] = bed.tx_bytes(1) - tx0
    res = final.get("result") or (final.get("error") or {}).get("result") or {}
    r["drain_result"] = res
    r["drain_state"] = final.get("state")
    if not res:
        r["error"] = f"no drain result: {json.dumps(final)[:500]}"
    r["total_ms"] = res.get("total_ms")
    items = {it.get("vm"): it for it in res.get("vms", [])}
    for g in gs:
        it = items.get(g.name)
        if not it:
            g.r["converged"] = False
            g.r["error"] = "not in the drain's result"
            continue
        g.r["drain_item"] = it
        job = bed.vmove(1, "jobs", "show", str(it.get("job")), check=False) if it.get("job") else {}
        jr = job.get("result") or {}
        g.r["job_state"] = it.get("state")
        if it.get("state") == "succeeded":
            g.r["converged"] = True
            g.where = 2 if it.get("to") == tb.host(2).name else 1
            for k in ("total_ms", "qemu_downtime_ms", "qemu_total_ms", "bytes_sent", "passes", "policy_actions"):
                g.r[k] = jr.get(k)
        else:
            g.r["converged"] = False
            g.r["error"] = (it.get("error") or {}).get("message") or it.get("state")
            listed = [v["name"] for v in bed.vmove(2, "vm", "list").get("vms", [])]
            g.where = 2 if g.name in listed else 1


def scenario5(args, out):
    """Drain: N guests running on h1 at once.  vmove: `vmove host drain h1
    --to h2` (queued moves, at most 2 at a time, the default limit);
    `vmove move` one after the other; the peer as a script around virsh
    would do it: one migration after the other."""
    n, mem_mib, hot = (4, 512, 64) if args.quick else (6, 1024, 128)
    with Bed() as bed:
        spec = base_spec(args, memory_mib=mem_mib, mem=hot, rate=16, disk_size="64M", disk_rate=64)
        cond = f"{n} guests of {mem_mib} MiB ({hot} MiB at 16 MiB/s) on h1 -> h2"
        variants = ["vmove host drain", f"vmove move x{n}", "peer"]
        for rep in range(args.reps5):
            for variant in (variants if rep % 2 == 0 else list(reversed(variants))):
                side = "peer" if variant == "peer" else "vmove"
                cls = VmoveGuest if side == "vmove" else PeerGuest
                load = foreign_load(bed)
                gs = [cls(bed, spec, k) for k in range(n)]
                r = {"side": side, "variant": variant, "condition": cond, "rep": rep, "link": bed.link, "spec": spec}
                t_run = time.monotonic()
                try:
                    for g in gs:
                        guarded(g, g.boot, False)
                    for g in gs:
                        if "error" not in g.r:
                            guarded(g, g.wait_ready)
                    time.sleep(spec["settle"])
                    booted = [g for g in gs if "error" not in g.r]
                    if len(booted) < n:
                        r["error"] = "; ".join(f"{g.name}: boot failed: {g.r.get('error')}" for g in gs
                                               if g not in booted)
                    if variant == "vmove host drain":
                        if booted:
                            try:
                                drain_h1(bed, booted, r, timeout=args.cap * n + 300)
                            except Exception as e:
                                r["error"] = f"{type(e).__name__}: {e}"
                                r["traceback"] = traceback.format_exc()[-2000:]
                    else:
                        tx0 = bed.tx_bytes(1)
                        t = time.monotonic()
                        for g in booted:
                            guarded(g, g.move)
                        r["wall_ms"] = round((time.monotonic() - t) * 1000)
                        r["total_ms"] = r["wall_ms"]
                        r["wire_bytes"] = bed.tx_bytes(1) - tx0
                    for g in booted:
                        if g.r.get("converged") or (g.r.get("error") and "traceback" not in g.r):
                            guarded(g, g.verify)
                finally:
                    for g in gs:
                        g.cleanup()
                    if variant == "vmove host drain":
                        bed.vmove(1, "host", "resume", bed.tb.host(1).name, check=False)
                rs = [g.r for g in gs]
                r["runs"] = rs
                r["converged"] = bool(rs) and all(x.get("converged") for x in rs) and "error" not in r
                r["verify_ok"] = bool(rs) and all(x.get("verify_ok") for x in rs)
                r["verify"] = "; ".join(f"{x['vm']} on {x.get('verify_host')}: {x.get('verify')}" for x in rs)
                r["run_s"] = round(time.monotonic() - t_run, 1)
                r.update(load)
                if r["converged"]:
                    r["bytes_sent"] = sum(x.get("bytes_sent") or 0 for x in rs)
                    r["qemu_downtime_ms"] = max((x.get("qemu_downtime_ms") or 0) for x in rs)
                    gaps = [x.get("client_gap_ms") for x in rs if x.get("client_gap_ms") is not None]
                    r["client_gap_ms"] = max(gaps) if gaps else None
                else:
                    r.setdefault("error", "; ".join(f"{x['vm']}: {x.get('error')}" for x in rs
                                                    if not x.get("converged")))
                tot = r.get("total_ms")
                log(f"  {cond} rep {rep+1} {variant}: total {fmt_num(tot / 1000 if tot else None, 1)} s, "
                    f"all converged {r['converged']}, all verified {r['verify_ok']}"
                    + ("" if r["converged"] else f" ({str(r.get('error'))[:300]})")
                    + (f" [{load['foreign_qemus']} other QEMUs running on this machine]"
                       if load["foreign_qemus"] else ""))
                out.append(r)


def scenario6(args, out, iperf):
    with Bed() as bed:
        for link in ("unshaped", "10gbit", "1gbit"):
            bed.set_link(link)
            vals = []
            for _ in range(args.iperf_reps):
                vals.append(bed.tb.iperf3(1, 2, "mig", seconds=args.iperf_s))
            iperf[link] = vals
            log(f"  iperf3 h1->h2 over mig, {link}: " + ", ".join(f"{v/1e9:.2f}" for v in vals) + " Gbit/s")


# ------------------------------------------------------------------ report

def stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


METRICS = [
    ("total time (s)", lambda r: r["total_ms"] / 1000, 2),
    ("QEMU downtime (ms)", lambda r: r["qemu_downtime_ms"], 0),
    ("client-observed downtime (ms)", lambda r: r.get("client_gap_ms"), 0),
    ("client gap at switch-over (ms; 0 = none >= 20)", lambda r: r.get("switchover_gap_ms"), 0),
    ("RAM bytes sent, QEMU (MiB)", lambda r: r["bytes_sent"] / MIB, 0),
    ("bytes on the wire, mig0 tx (MiB)", lambda r: r["wire_bytes"] / MIB, 0),
    ("wire throughput during transfer (Gbit/s)", lambda r: throughput(r) / 1e9 if throughput(r) else None, 2),
]


def throughput(r):
    t = r.get("qemu_total_ms")
    if not r.get("converged") or not t or "wire_bytes" not in r:
        return None
    if (r.get("spec") or {}).get("shared_nothing"):
        return None     # the wire also carried the disk copy, outside QEMU's migration time
    return r["wire_bytes"] * 8 / (t / 1000)


def fmt_stat(s, nd):
    if not s:
        return "-"
    if s["n"] == 1:
        return f"{s['median']:.{nd}f}"
    return f"{s['median']:.{nd}f} [{s['min']:.{nd}f}-{s['max']:.{nd}f}]"


def summarize(runs):
    """{condition: {variant: {...}}} with per-metric stats over good runs."""
    summ = {}
    for r in runs:
        c = summ.setdefault(r["condition"], {})
        v = c.setdefault(r["variant"], {"runs": [], "converged": 0, "capped": 0, "failed": 0, "verify_failed": 0})
        v["runs"].append(r)
        if not r.get("verify_ok"):
            v["verify_failed"] += 1
        if r.get("converged") and r.get("verify_ok"):
            v["converged"] += 1
        elif not r.get("converged"):
            v["capped" if is_cap(r) else "failed"] += 1
    for c in summ.values():
        for v in c.values():
            good = [r for r in v["runs"] if r.get("converged") and r.get("verify_ok")]
            v["metrics"] = {}
            for name, f, nd in METRICS:
                vals = []
                for r in good:
                    try:
                        vals.append(f(r))
                    except (KeyError, TypeError):
                        pass
                v["metrics"][name] = stats(vals)
    return summ


def is_cap(r):
    e = str(r.get("error") or "")
    return bool(r.get("capped")) or "max-duration" in e or "max duration" in e or "did not converge" in e \
        or "cancel" in e.lower() or re.search(r"did not finish within \d+ s", e) is not None


def ratio(a, b):
    if not a or not b or not b["median"]:
        return None
    return a["median"] / b["median"]


def render_md(meta, runs, iperf, summ):
    L = []
    L.append(f"# vmove vs peer (`virsh migrate --live`-style QEMU) — {meta['date']}")
    L.append("")
    L.append(f"- commit `{meta['git_commit']}`{' (+ uncommitted changes)' if meta.get('git_dirty') else ''}; "
             f"command `{meta['command']}`")
    L.append(f"- machine: {meta['machine']['cpu_model']}, {meta['machine']['nproc']} CPUs, "
             f"{meta['machine']['mem_gib']:.1f} GiB RAM, kernel {meta['machine']['kernel']}; {meta['qemu_version']}; "
             f"accelerator TCG")
    L.append(f"- repetitions {meta['reps']}, cap {meta['cap_s']} s per migration (a capped run = did not converge), "
             f"mode {'quick' if meta['quick'] else 'full'}, wall time {meta.get('wall_s', 0)/60:.1f} min")
    L.append(f"- peer QEMU argv identical to vmoved's (paths, names, uuid, MAC, seed normalized): "
             f"{meta.get('argv_identical')}")
    busy = [r for r in runs if r.get("foreign_qemus")]
    L.append(f"- other work on the machine: {len(busy)} of {len(runs)} runs started while QEMUs that are not "
             f"the benchmark's were running (e.g. a concurrent `make check`); those numbers are noisier"
             + (f" ({', '.join(sorted({r['condition'] + ' ' + r['variant'] for r in busy}))})" if busy else ""))
    L.append("- numbers: median [min-max] over runs that finished and passed `verify`; ratios are vmove/peer "
             "medians (< 1 = vmove better, except throughput)")
    L.append("")
    titles = {1: "Scenario 1: idle guest (2 GiB, 512 MiB static data), unshaped link",
              2: "Scenario 2: 2 GiB, 512 MiB kept hot at several dirty rates",
              3: "Scenario 3: 1 Gbit/s, compressible guest memory",
              4: "Scenario 4: shared-nothing migration (disk and memory; hosts share only the network)",
              5: "Scenario 5: drain a host",
              6: "Scenario 6: physical limit (iperf3, raw TCP on the migration link)"}
    by_sc = {}
    for r in runs:
        by_sc.setdefault(r["scenario"], []).append(r)
    for sc in meta["scenarios"]:
        L.append(f"## {titles[sc]}")
        L.append("")
        if sc == 4:
            L.append("vmove: `vmove move NAME --to h2 --with-storage H2DIR` (NBD + write-blocking mirror, then "
                     "memory); peer: libvirt's `--copy-storage-all` flow (NBD export on h2, `blockdev-mirror` "
                     "sync=full in QEMU's default background mode, ready, `migrate` with pause-before-switchover, "
                     "mirror cancelled at pre-switchover, `nbd-server-stop`, `cont`). Each host's disk is in a "
                     "directory only it uses. Bytes on the wire include the disk copy; \"RAM bytes sent\" does "
                     "not. Cap: 3x the migration cap, for the disk copy and the memory together.")
            L.append("")
        if sc == 5:
            L.append("`vmove host drain h1 --to h2` (each VM an ordinary queued move, at most 2 at a time: the "
                     "default per-host limit; total = the drain's `total_ms`) vs the same guests moved one after "
                     "the other: `vmove move` xN, and the peer as a script around `virsh migrate --live` "
                     "(total = the whole sequence). QEMU downtime = the worst of the N; bytes = the sum. The "
                     "drain runs without the client probe (\"-\").")
            L.append("")
        if sc == 6:
            L.append("| link | iperf3 h1->h2 (Gbit/s) | best vmove migration | best peer migration |")
            L.append("|---|---|---|---|")
            for link, vals in iperf.items():
                s = stats(vals)
                raw = s["median"] if s else None
                bests = []
                for side in ("vmove", "peer"):
                    tps = [(throughput(r), r["variant"], r["condition"]) for r in runs
                           if r.get("link") == link and r["side"] == side and throughput(r) and r.get("verify_ok")
                           and r["scenario"] != 5]
                    if tps and raw:
                        b = max(tps)
                        bests.append(f"{b[0]/1e9:.2f} Gbit/s = {b[0]/raw*100:.0f}% ({b[1]}, {b[2]})")
                    else:
                        bests.append("-")
                L.append(f"| {link} | {fmt_stat({k: v/1e9 if k != 'n' else v for k, v in s.items()}, 2) if s else '-'} "
                         f"| {bests[0]} | {bests[1]} |")
            L.append("")
            L.append("Migration throughput = bytes on mig0 (tx, source) / QEMU's transfer time (total-time). "
                     "Per-run throughput fractions are in the per-condition tables above.")
            L.append("")
            continue
        conds = []
        for r in by_sc.get(sc, []):
            if r["condition"] not in conds:
                conds.append(r["condition"])
        if not conds:
            L.append("(not run)")
            L.append("")
            continue
        L.append("| condition | metric | " + " | ".join(variants_of(summ, conds)) + " | ratios vmove/peer |")
        L.append("|---|---|" + "---|" * (len(variants_of(summ, conds)) + 1))
        for c in conds:
            vs = variants_of(summ, conds)
            row = [c, "finished / runs"]
            for vn in vs:
                v = summ[c].get(vn)
                if not v:
                    row.append("-")
                    continue
                n = len(v["runs"])
                extra = []
                if v["capped"]:
                    extra.append(f"{v['capped']} capped = did not converge")
                if v["failed"]:
                    extra.append(f"{v['failed']} failed")
                if v["verify_failed"]:
                    extra.append(f"{v['verify_failed']} verify FAILED")
                row.append(f"{v['converged']}/{n}" + (f" ({', '.join(extra)})" if extra else ""))
            row.append("")
            L.append("| " + " | ".join(row) + " |")
            row = ["", "where the longest client gap was"]
            for vn in vs:
                v = summ[c].get(vn)
                cnt = {}
                for r in (v or {}).get("runs", []):
                    if r.get("gap_at"):
                        cnt[r["gap_at"]] = cnt.get(r["gap_at"], 0) + 1
                row.append(", ".join(f"{k} {n}x" for k, n in sorted(cnt.items())) or "-")
            row.append("")
            L.append("| " + " | ".join(row) + " |")
            link = next((r["link"] for r in runs if r["condition"] == c), None)
            raw = stats(iperf.get(link, []))
            for name, _, nd in METRICS:
                row = ["", name]
                for vn in vs:
                    v = summ[c].get(vn)
                    row.append(fmt_stat(v["metrics"][name], nd) if v else "-")
                ps = (summ[c].get("peer") or {}).get("metrics", {}).get(name)
                rats = []
                for vn in vs:
                    if vn.startswith("vmove"):
                        rr = ratio(summ[c][vn]["metrics"][name], ps) if summ[c].get(vn) else None
                        if rr is not None:
                            rats.append(f"{vn}: {rr:.2f}")
                if name.startswith("wire throughput") and raw:
                    for vn in vs:
                        m = summ[c].get(vn, {}).get("metrics", {}).get(name)
                        if m:
                            rats.append(f"{vn} = {m['median']*1e9/raw['median']*100:.0f}% of iperf3")
                if not ps and any(summ[c].get(vn, {}).get("metrics", {}).get(name) for vn in vs if vn != "peer"):
                    rats.append("peer: no finished run")
                row.append("; ".join(rats))
                L.append("| " + " | ".join(row) + " |")
        L.append("")
        if sc == 2:
            L.append("Where each side stops converging (a rate counts as converged if every repetition finished "
                     "within the cap and verified):")
            L.append("")
            for vn in ("vmove", "peer"):
                for link in meta.get("links2", []):
                    ok, bad = [], []
                    for c in conds:
                        if not c.startswith(link + ","):
                            continue
                        v = summ[c].get(vn)
                        if not v:
                            continue
                        rate = c.split("dirty ")[1].split(" ")[0]
                        (ok if v["converged"] == len(v["runs"]) else bad).append(rate)
                    if not bad:
                        L.append(f"- {vn}, {link}: finished at every rate tried ({', '.join(ok)} MiB/s)")
                    else:
                        L.append(f"- {vn}, {link}: finished at {', '.join(ok) or 'no rate tried'}; "
                                 f"did not (always) finish at {', '.join(bad)} MiB/s")
            L.append("")
    fails = [r for r in runs if not r.get("verify_ok") or (not r.get("converged") and not is_cap(r))]
    if fails:
        L.append("## Failures (not counted as results)")
        L.append("")
        for r in fails:
            L.append(f"- {r['condition']} rep {r['rep']+1} {r['variant']}: converged={r.get('converged')} "
                     f"verify={r.get('verify') or '; '.join(str(x.get('verify')) for x in r.get('runs', []))!r} "
                     f"error={str(r.get('error'))[:300]!r}")
        L.append("")
    targets = target_check(summ, meta)
    if targets:
        L.append("## Targets from the issue")
        L.append("")
        for t in targets:
            L.append(f"- {t}")
        L.append("")
    return "\n".join(L) + "\n"


def variants_of(summ, conds):
    vs = []
    for c in conds:
        for v in summ[c]:
            if v not in vs:
                vs.append(v)
    vs.sort(key=lambda v: (v == "peer", v))
    return vs


def target_check(summ, meta):
    out = []
    hot = [c for c in summ if "dirty max" in c and "," in c and c.split(",")[0] in ("unshaped", "10gbit")]
    for c in hot:
        v, p = summ[c].get("vmove"), summ[c].get("peer")
        if not v or not p:
            continue
        tm, pm = v["metrics"]["total time (s)"], p["metrics"]["total time (s)"]
        bm, pb = v["metrics"]["bytes on the wire, mig0 tx (MiB)"], p["metrics"]["bytes on the wire, mig0 tx (MiB)"]
        gm = v["metrics"]["client-observed downtime (ms)"]
        sw = v["metrics"].get("client gap at switch-over (ms; 0 = none >= 20)")
        r1, r2 = ratio(tm, pm), ratio(bm, pb)
        out.append(f"{c}: total vmove/peer = {fmt_num(r1, 2)} (target <= 0.2: "
                   f"{'met' if r1 is not None and r1 <= 0.2 else 'NOT met'}); "
                   f"wire bytes vmove/peer = {fmt_num(r2, 2)} (target <= 0.15: "
                   f"{'met' if r2 is not None and r2 <= 0.15 else 'NOT met'}); "
                   f"client-observed downtime median {fmt_num(gm['median'] if gm else None)} ms (target <= 50: "
                   f"{'met' if gm and gm['median'] <= 50 else 'NOT met'}; at switch-over alone: median "
                   f"{fmt_num(sw['median'] if sw else None)} ms, "
                   f"{'<= 50' if sw and sw['median'] <= 50 else 'not <= 50'})")
    sc2 = [c for c in summ if "dirty" in c and "compressible" not in c]
    if sc2:
        allok = all(summ[c]["vmove"]["converged"] == len(summ[c]["vmove"]["runs"]) for c in sc2 if "vmove" in summ[c])
        out.append(f"vmove finishes at every dirty rate and link tried: {'met' if allok else 'NOT met'}")
    for c in summ:
        if "compressible" in c and "peer" in summ[c]:
            pm = summ[c]["peer"]["metrics"]["total time (s)"]
            for vn in summ[c]:
                if vn.startswith("vmove"):
                    r = ratio(summ[c][vn]["metrics"]["total time (s)"], pm)
                    out.append(f"{c}, {vn}: total vmove/peer = {fmt_num(r, 2)} (target <= 0.4: "
                               f"{'met' if r is not None and r <= 0.4 else 'NOT met'})")
    return out


def plot_rate(rates):
    """The plotted condition: the guest dirtying flat out, the issue's
    headline case, else the highest rate run."""
    return "max" if "max" in rates or not rates else rates[-1]


def plot(runs, rate, link, path):
    """Remaining RAM over time, vmove vs peer, first repetition of one condition."""
    cond = f"{link}, dirty {rate} MiB/s"
    sel = {}
    for r in runs:
        if r.get("condition") == cond and r["variant"] in ("vmove", "peer") and r.get("samples") \
                and r["variant"] not in sel:
            sel[r["variant"]] = r
    if not sel or not shutil.which("gnuplot"):
        return None
    d = os.path.dirname(path)
    files = {}
    for vn, r in sel.items():
        fn = os.path.join(d, f".remaining-{vn}.dat")
        with open(fn, "w") as f:
            for t, rem, _ in r["samples"]:
                f.write(f"{t/1000:.3f} {rem/MIB:.1f}\n")
        files[vn] = (fn, r)
    plots = []
    for vn, (fn, r) in files.items():
        state = "finished" if r.get("converged") else "did not converge"
        plots.append(f"'{fn}' using 1:2 with linespoints title '{vn} ({state})'")
    script = (f"set terminal pngcairo size 900,500 noenhanced\nset output '{path}'\n"
              f"set title 'Remaining RAM, 2 GiB guest, 512 MiB dirtied at {rate} MiB/s, {link} link (TCG)'\n"
              f"set xlabel 'seconds since the move began'\nset ylabel 'remaining (MiB)'\nset grid\n"
              f"set key top right\nset logscale y\nplot " + ", ".join(plots) + "\n")
    res = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if res.returncode != 0:
        script = script.replace("pngcairo", "png")
        res = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    for fn, _ in files.values():
        os.unlink(fn)
    return cond if res.returncode == 0 else f"gnuplot failed: {res.stderr.strip()}"


def machine_meta():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {"nproc": os.cpu_count(), "mem_gib": mem_kb / 1024 / 1024, "cpu_model": cpu,
            "kernel": platform.release()}


def git(*a):
    return subprocess.run(["git", "-C", ROOT] + list(a), capture_output=True, text=True).stdout.strip()


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repetition, fewer dirty rates, 60 s cap")
    ap.add_argument("--scenario", default="1,2,3,4,5,6", help="comma-separated list (default all)")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--cap", type=float, default=None, help="seconds before a migration counts as not converging")
    ap.add_argument("--rates", default=None, help="scenario 2 dirty rates, MiB/s or max (default 64,256,max)")
    ap.add_argument("--links", default="10gbit,1gbit", help="scenario 2 links (default 10gbit,1gbit)")
    ap.add_argument("--postcopy", action="store_true",
                    help="scenario 2 also runs vmove --converge postcopy (both hosts allow post-copy)")
    ap.add_argument("--render", metavar="JSON", help="only rewrite JSON's .md (and latest.md) from its runs")
    args = ap.parse_args()
    if args.render:
        with open(args.render) as f:
            d = json.load(f)
        md = render_md(d["meta"], d["runs"], d["iperf3_bps"], summarize(d["runs"]))
        if any(r.get("scenario") == 2 for r in d["runs"]):
            # Redrawn too: the plot is made from the runs' samples.
            d["meta"]["plot"] = plot(d["runs"], plot_rate(d["meta"].get("rates") or []), "10gbit",
                                     os.path.join(RESULTS, "remaining.png"))
        if d["meta"].get("plot") and not str(d["meta"]["plot"]).startswith("gnuplot failed"):
            md += f"\n![remaining RAM over time](remaining.png) — {d['meta']['plot']}, first repetition\n"
        if d["meta"].get("aborted"):
            md += "\n## Aborted scenarios\n\n" + "\n".join(f"- scenario {k}: see JSON `meta.aborted`"
                                                              for k in d["meta"]["aborted"]) + "\n"
        for fn in (args.render[:-5] + ".md", os.path.join(RESULTS, "latest.md")):
            with open(fn, "w") as f:
                f.write(md)
        print(md)
        return
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces)")
    for f in (KERNEL, INITRD, os.path.join(BIN, "vmoved"), os.path.join(BIN, "vmove"), os.path.join(BIN, "vmove-probe")):
        if not os.path.exists(f):
            sys.exit(f"bench: {f} is missing: run `make MODE=release all && make guest` (or `make bench`)")
    args.reps = args.reps or (1 if args.quick else 3)
    args.cap = args.cap or (60.0 if args.quick else 120.0)
    args.rates = (args.rates or ("64,max" if args.quick else "64,256,max")).split(",")
    args.links2 = [x for x in args.links.split(",") if x]
    args.rate3 = 64
    args.reps5 = args.reps   # the issue: at least 3 repetitions (1 in --quick)
    args.iperf_reps = 1 if args.quick else 3
    args.iperf_s = 3
    scen = sorted({int(x) for x in args.scenario.split(",") if x.strip()})
    if not all(1 <= s <= 6 for s in scen):
        sys.exit("bench: scenarios are 1..6")
    swept = tbmod.sweep_stale()
    if swept:
        log(f"swept stale test beds {swept}")
    os.makedirs(RESULTS, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    qv = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "command": " ".join(["bench/run.sh"] + sys.argv[1:]), "machine": machine_meta(), "qemu_version": qv,
            "scenarios": scen, "reps": args.reps, "cap_s": args.cap, "quick": args.quick, "rates": args.rates,
            "links2": args.links2, "scenario3_rate": args.rate3,
            "peer": {"capabilities": "QEMU defaults + events", "max-bandwidth": peer.HUGE_BANDWIDTH,
                     "downtime-limit": "QEMU default (300 ms)"},
            "vmove_bin": BIN}
    log(f"vmove bench: scenarios {scen}, {args.reps} repetition(s), cap {args.cap:.0f} s, "
        f"commit {meta['git_commit'][:12]}, {qv}")
    runs, iperf = [], {}
    t_all = time.monotonic()
    for sc in scen:
        t = time.monotonic()
        log(f"scenario {sc}")
        out = []
        try:
            if sc == 1:
                scenario1(args, out)
            elif sc == 2:
                scenario2(args, out)
            elif sc == 3:
                scenario3(args, out)
            elif sc == 4:
                scenario4(args, out)
            elif sc == 5:
                scenario5(args, out)
            elif sc == 6:
                scenario6(args, out, iperf)
        except Exception:
            log(f"scenario {sc} aborted:\n{traceback.format_exc()}")
            meta.setdefault("aborted", {})[sc] = traceback.format_exc()[-3000:]
        for r in out:
            r["scenario"] = sc
        runs += out
        log(f"scenario {sc} took {(time.monotonic()-t)/60:.1f} min")
    meta["wall_s"] = round(time.monotonic() - t_all)
    # Compare the peer's QEMU command line with vmoved's within each
    # condition (the guest cmdline differs between conditions).
    compared, diffs = 0, []
    for c in sorted({r["condition"] for r in runs}):
        by_side = {}
        for r in runs:
            if r["condition"] == c and r.get("qemu_argv_normalized"):
                a = [re.sub(r"vmove\.ip=\S+", "vmove.ip=IP", x) for x in r["qemu_argv_normalized"]]
                by_side.setdefault(r["side"], set()).add(json.dumps(a))
        if "vmove" in by_side and "peer" in by_side:
            compared += 1
            if by_side["vmove"] != by_side["peer"]:
                diffs.append({"condition": c, "vmove": [json.loads(a) for a in by_side["vmove"]],
                              "peer": [json.loads(a) for a in by_side["peer"]]})
    meta["argv_identical"] = (not diffs) if compared else "not compared"
    if diffs:
        meta["argv_diffs"] = diffs
    summ = summarize(runs)
    if 2 in scen:
        meta["plot"] = plot(runs, plot_rate(args.rates), "10gbit", os.path.join(RESULTS, "remaining.png"))
    md = render_md(meta, runs, iperf, summ)
    if meta.get("plot") and not str(meta["plot"]).startswith("gnuplot failed"):
        md += f"\n![remaining RAM over time]({'remaining.png'}) — {meta['plot']}, first repetition\n"
    if meta.get("aborted"):
        md += "\n## Aborted scenarios\n\n" + "\n".join(f"- scenario {k}: see JSON `meta.aborted`"
                                                          for k in meta["aborted"]) + "\n"
    summ_json = {c: {vn: {k: v for k, v in d.items() if k != "runs"} for vn, d in cs.items()} for c, cs in summ.items()}
    with open(os.path.join(RESULTS, f"{stamp}.json"), "w") as f:
        json.dump({"meta": meta, "iperf3_bps": iperf, "summary": summ_json, "runs": runs}, f, indent=1)
    for fn in (f"{stamp}.md", "latest.md"):
        with open(os.path.join(RESULTS, fn), "w") as f:
            f.write(md)
    print()
    print(md)
    log(f"results: bench/results/{stamp}.md, bench/results/{stamp}.json, bench/results/latest.md"
        + (", bench/results/remaining.png" if meta.get("plot") else ""))


if __name__ == "__main__":
    main()

"""`make soak-moves` (part of `make soak`; issue #17): 3 hosts and 4 guests,
with the mem, disk and echo workloads, go through random moves of every type
while random faults hit random phases.  Invariants are checked after every
step; the first violation stops the soak with the seed that replays it.

    VMOVE_SOAK_MINUTES   how long (default 30)
    VMOVE_SOAK_SEED      the random seed (default: the time; printed)
    VMOVE_SOAK_OUT       the summary (default bench/results/soak-moves.json)

Moves: live, quick, storage (all disks, or the one disk by id), shared-nothing
(--with-storage into the destination's own directory), and drain (then resume).
Faults, each in a random moment of a move: cancel; the source's or the
destination's vmoved SIGKILLed and restarted; the destination's QEMU killed;
the migration link cut for a few seconds; a destination that is down (its
vmoved stopped before the move); a full destination file system (a small
tmpfs as the target directory).

Invariants, after every step:
  - each VM runs on exactly one host (one listing, one QEMU), or is reported
    stopped/crashed on exactly one host and is then started again there;
  - the guest verifies (its memory and disk checksums) -- after a cold boot
    only from that boot on, which is what a restart promises;
  - no disk file is lost (the VM's disks exist) and none is left behind (no
    other file of the VM's in any of the directories the soak uses);
  - every job ends (within JOB_END_S), and no job stays running at the end.
"""
import glob
import json
import os
import random
import signal
import subprocess
import time

import pytest

from migrationlib import make_cluster
from vmovelib import wait_for

MINUTES = float(os.environ.get("VMOVE_SOAK_MINUTES", "30"))
SEED = int(os.environ.get("VMOVE_SOAK_SEED") or time.time())
OUT = os.environ.get("VMOVE_SOAK_OUT",
                     os.path.join(os.path.dirname(__file__), "../../bench/results/soak-moves.json"))
N_HOSTS, N_GUESTS = 3, 4
JOB_END_S = 300
MOVES = ["live", "quick", "storage-all", "storage-one", "shared-nothing", "drain"]
FAULTS = ["cancel", "kill-src-vmoved", "kill-dst-vmoved", "kill-dst-qemu", "cut-link", "dead-peer", "full-disk"]
FAULT_RATE = 0.5


class Violation(AssertionError):
    pass


class Soak:
    def __init__(self, cl, rng):
        self.cl, self.rng = cl, rng
        self.at = {}          # VM -> host index
        self.stats = dict(attempted=0, succeeded=0, failed=0, faults=0, restarts=0, violations=0)
        self.by_fault = {f: 0 for f in FAULTS}
        self.by_move = {m: [0, 0] for m in MOVES}     # attempted, succeeded

    # ---- places
    def local_dir(self, i, sub="disks"):
        d = os.path.join(self.cl.tb.root, self.cl.tb.host(i).name, sub)
        os.makedirs(d, exist_ok=True)
        return d

    def full_dir(self, i):
        """Host i's small file system (mount_full_dirs)."""
        return full_dir_of(self.cl.tb, i)

    def all_dirs(self):
        ds = [self.cl.tb.shared_dir]
        for i in range(1, N_HOSTS + 1):
            ds += [self.local_dir(i), self.local_dir(i, "fast"), self.full_dir(i)]
        return ds

    def disks(self, name):
        return [d["path"] for d in self.cl.v(self.at[name], "vm", "show", name)["config"]["disks"]]

    def shared(self, name):
        return all(p.startswith(self.cl.tb.shared_dir + "/") for p in self.disks(name))

    # ---- set-up
    def boot_guests(self):
        for k in range(N_GUESTS):
            name, host = f"sk{k}", 1 + k % N_HOSTS
            self.cl.create_guest(name, mem=48, mem_rate=10, disk_rate=128, k=k, host=host)
            self.cl.boot(name, host)
            self.at[name] = host

    # ---- one step
    def step(self, n):
        name = self.rng.choice(sorted(self.at))
        src = self.at[name]
        dst = self.rng.choice([i for i in range(1, N_HOSTS + 1) if i != src])
        kind = self.rng.choice(MOVES)
        to_shared = False
        if kind in ("live", "quick") and not self.shared(name):
            # Its disks are private to src: bring them back to shared storage
            # (a storage move), so that live and quick moves stay frequent.
            kind, dst, to_shared = "storage-all", src, True
        fault = self.rng.choice(FAULTS) if self.rng.random() < FAULT_RATE else None
        if fault == "full-disk" and kind not in ("storage-all", "storage-one", "shared-nothing"):
            fault = None
        if fault in ("kill-dst-vmoved", "kill-dst-qemu", "cut-link", "dead-peer") and kind.startswith("storage"):
            fault = "cancel"
        self.stats["attempted"] += 1
        self.by_move[kind][0] += 1
        if fault:
            self.stats["faults"] += 1
            self.by_fault[fault] += 1
        print(f"[{n}] {kind}{' (back to shared)' if to_shared else ''} {name} h{src}->h{dst} fault={fault}", flush=True)
        ok = self.run_move(kind, name, src, dst, fault, to_shared)
        self.stats["succeeded" if ok else "failed"] += 1
        if ok:
            self.by_move[kind][1] += 1
        self.check_all(f"step {n} ({kind} {name} h{src}->h{dst} fault={fault})")

    def start_job(self, kind, name, src, dst, fault, to_shared=False):
        cl = self.cl
        target = self.full_dir(dst if kind == "shared-nothing" else src) if fault == "full-disk" else None
        if to_shared and not target:
            target = cl.tb.shared_dir
        if kind == "live":
            args = ["move", name, "--to", cl.tb.host(dst).name]
        elif kind == "quick":
            args = ["move", name, "--to", cl.tb.host(dst).name, "--quick"]
        elif kind == "shared-nothing":
            args = ["move", name, "--to", cl.tb.host(dst).name, "--with-storage", target or self.local_dir(dst)]
        elif kind == "storage-all":
            args = ["move-storage", name, "--to", target or self.next_storage_dir(name, src)]
        elif kind == "storage-one":
            args = ["move-storage", name, "--disk", f"vda={target or self.next_storage_dir(name, src)}"]
        else:
            args = ["host", "drain", "--to", cl.tb.host(dst).name]
            dst = None
        r = cl.v(src, *args, "--no-wait", check=False, timeout=60)
        return (r or {}).get("job"), dst

    def next_storage_dir(self, name, i):
        """Somewhere the disks are not: the shared directory or a local one."""
        here = os.path.dirname(self.disks(name)[0])
        for d in (self.local_dir(i, "fast"), self.cl.tb.shared_dir, self.local_dir(i)):
            if d != here:
                return d

    def run_move(self, kind, name, src, dst, fault, to_shared=False):
        cl = self.cl
        if fault == "dead-peer":
            cl.tb.stop_host(dst, sig=signal.SIGKILL)
        jid, dst = self.start_job(kind, name, src, dst, fault, to_shared)
        if jid is None:
            self.revive_all()
            return False
        if fault and fault not in ("dead-peer", "full-disk"):
            time.sleep(self.rng.uniform(0.2, 3.0))
            self.inject(fault, src, dst, jid, name)
        if fault == "dead-peer":
            time.sleep(self.rng.uniform(1.0, 4.0))
            cl.v(src, "jobs", "cancel", str(jid), check=False)
        job = self.wait_job(src, jid)
        self.revive_all()
        ok = job["state"] == "succeeded"
        why = ((job.get("error") or {}).get("message") or "")[:160]
        print(f"    -> {job['state']}{': ' + why if why else ''}", flush=True)
        if job["state"] == "failed" and not why:
            raise Violation(f"job {jid} on h{src} ended {job['state']} without saying why: {job}")
        if kind == "drain":
            cl.v(src, "host", "resume", check=False)
        self.relocate()
        if ok and fault == "full-disk":
            self.out_of_full_dir(name)
        return ok

    def out_of_full_dir(self, name):
        """A move that fit after all: take the disk out before the guest
        fills the small file system (that would be the soak's doing)."""
        i = self.at[name]
        if any(p.startswith(self.full_dir(i) + "/") for p in self.disks(name)):
            print(f"    {name} fit into h{i}'s small file system: moving it out", flush=True)
            job = self.cl.v(i, "move-storage", name, "--to", self.local_dir(i), timeout=JOB_END_S)
            if job.get("state") != "succeeded":
                raise Violation(f"{name}: could not leave the small file system: {job}")

    def inject(self, fault, src, dst, jid, name):
        cl = self.cl
        if fault == "cancel":
            cl.v(src, "jobs", "cancel", str(jid), check=False)
        elif fault == "kill-src-vmoved":
            cl.tb.stop_host(src, sig=signal.SIGKILL)
            cl.start(src)
        elif fault == "kill-dst-vmoved" and dst:
            cl.tb.stop_host(dst, sig=signal.SIGKILL)
            cl.start(dst)
        elif fault == "kill-dst-qemu" and dst:
            for pid in cl.qemu_of(dst, name):
                os.kill(pid, signal.SIGKILL)
        elif fault == "cut-link" and dst:
            cl.tb.cut(src)
            time.sleep(self.rng.uniform(1.0, 6.0))
            cl.tb.restore(src)

    def wait_job(self, i, jid):
        def ended():
            j = self.cl.v(i, "jobs", "show", str(jid), check=False)
            return j and j.get("state") not in ("running", "queued") and j
        try:
            return wait_for(ended, JOB_END_S, f"job {jid} on h{i} to end", interval=0.5)
        except AssertionError as e:
            raise Violation(f"a job did not end: {e}") from e

    def revive_all(self):
        for i in range(1, N_HOSTS + 1):
            h = self.cl.tb.host(i)
            if h.proc is None or h.proc.poll() is not None:
                self.cl.start(i)

    def relocate(self):
        """Find each VM again after the move (drain moves several)."""
        for name in self.at:
            listed = [i for i in range(1, N_HOSTS + 1) if name in self.cl.vm_names(i)]
            if len(listed) == 1:
                self.at[name] = listed[0]

    # ---- invariants
    def check_all(self, where):
        for name in sorted(self.at):
            self.check_vm(name, where)

    def check_vm(self, name, where):
        cl = self.cl
        # The destination may take a moment to drop a VM whose move failed.
        def settled():
            return len([i for i in range(1, N_HOSTS + 1) if name in cl.vm_names(i)]) == 1
        try:
            wait_for(settled, 30, f"{name} on one host")
        except AssertionError:
            hosts = [i for i in range(1, N_HOSTS + 1) if name in cl.vm_names(i)]
            raise Violation(f"{where}: {name} is listed on hosts {hosts}")
        [i] = [i for i in range(1, N_HOSTS + 1) if name in cl.vm_names(i)]
        self.at[name] = i
        state = cl.v(i, "vm", "show", name)["state"]
        if state in ("stopped", "crashed"):
            print(f"    {name} is {state} on h{i}: starting it again", flush=True)
            self.stats["restarts"] += 1
            cl.v(i, "vm", "start", name)
            cl.wait_guest(name, i)
        listed, qemus = cl.where(name)
        if listed != [i] or qemus != [i]:
            raise Violation(f"{where}: {name} listed running on {listed}, QEMU on {qemus}")
        r = cl.guest(i, name, "verify")
        if not (r and r.get("reply", "").startswith("ok")):
            raise Violation(f"{where}: verify of {name} on h{i}: {r}")
        disks = self.disks(name)
        for p in disks:
            if not os.path.exists(p):
                raise Violation(f"{where}: {name}'s disk {p} is gone")
        mine = set()
        for d in self.all_dirs():
            mine |= {p for p in glob.glob(os.path.join(d, f"{name}*")) if os.path.isfile(p)}
        extra = mine - set(disks)
        if extra:
            raise Violation(f"{where}: files of {name} left behind: {sorted(extra)}")

    def no_job_running(self):
        for i in range(1, N_HOSTS + 1):
            for j in self.cl.v(i, "jobs", "list").get("jobs", []):
                if j.get("state") in ("running", "queued"):
                    raise Violation(f"h{i}: job {j.get('id')} still {j['state']} at the end")



def full_dir_of(tb, i):
    return os.path.join(tb.root, tb.host(i).name, "full")


# Less than a guest writes in its first seconds (128 KiB/s): a move into it
# runs out of space part-way.
FULL_FS_SIZE = "1m"


@pytest.fixture
def cl(request):
    def mount_full_dirs(tb):
        for i in range(1, N_HOSTS + 1):
            d = full_dir_of(tb, i)
            os.makedirs(d, exist_ok=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FULL_FS_SIZE},mode=0700", "tmpfs", d], check=True)
            # Runs before the bed's own teardown (finalizers run last first).
            request.addfinalizer(lambda d=d: subprocess.run(["umount", "-l", d], check=False))
    return make_cluster(request, n=N_HOSTS, before_start=mount_full_dirs)


def test_soak_moves_with_faults(cl):
    rng = random.Random(SEED)
    print(f"\nsoak: seed {SEED}, {MINUTES} min (replay: VMOVE_SOAK_SEED={SEED})", flush=True)
    s = Soak(cl, rng)
    t0 = time.monotonic()
    n = 0
    err = None
    try:
        s.boot_guests()
        s.check_all("boot")
        while time.monotonic() - t0 < MINUTES * 60:
            n += 1
            s.step(n)
        s.no_job_running()
    except Violation as e:
        s.stats["violations"] += 1
        err = e
    finally:
        summary = dict(s.stats, seed=SEED, minutes=round((time.monotonic() - t0) / 60, 1),
                       faults_by_kind=s.by_fault, moves_by_kind=s.by_move,
                       violation=str(err) if err else None)
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        with open(OUT, "w") as f:
            json.dump(summary, f, indent=1)
        print(f"soak: {s.stats['attempted']} moves attempted, {s.stats['succeeded']} succeeded, "
              f"{s.stats['failed']} failed for a reason, {s.stats['faults']} faults injected, "
              f"{s.stats['restarts']} cold restarts, {s.stats['violations']} invariant violations "
              f"(seed {SEED}, {summary['minutes']} min)", flush=True)
    if err:
        raise AssertionError(f"{err}\nreplay with VMOVE_SOAK_SEED={SEED}")

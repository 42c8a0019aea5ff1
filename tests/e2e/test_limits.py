"""Simultaneous-migration limits, queueing and host drain, on real hosts in
namespaces.  Concurrency is checked from outside vmoved: by sampling the
kernel's TCP connections of QEMU's migration streams."""
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from migrationlib import make_cluster
from vmovelib import wait_for


def boot_many(cl, names, host=1):
    for k, n in enumerate(names):
        cl.create_guest(n, memory="128M", mem=32, mem_rate=8, disk_rate=64, k=k, host=host)
    for n in names:
        cl.v(host, "vm", "start", n)
    for n in names:
        cl.wait_guest(n, host)


class StreamSampler:
    """Counts the distinct migration streams (destination ports of QEMU's
    established TCP connections on the migration network) every 50 ms."""

    def __init__(self, cl, host):
        self.cl, self.host = cl, host
        self.mig_net = cl.tb.subnet("mig").rsplit(".", 1)[0]   # "10.x.2"
        self.max_seen, self.samples, self.stop = 0, 0, False
        self.t = threading.Thread(target=self.run, daemon=True)

    def count(self):
        out = self.cl.tb.run_in(self.host, ["ss", "-tnH", "state", "established"], check=False).stdout
        ports = set()
        for line in out.splitlines():
            cols = line.split()
            if len(cols) >= 4 and cols[3].startswith(self.mig_net + "."):
                local, peer = cols[2], cols[3]
                # Migration streams run between two migration addresses on a
                # QEMU-chosen port; count each (addr, port) pair of the listener.
                ports.add(peer if int(peer.rsplit(":", 1)[1]) > 1024 and not local.endswith(":7070") else None)
        ports.discard(None)
        return ports

    def run(self):
        while not self.stop:
            n = len(self.count())
            self.max_seen = max(self.max_seen, n)
            self.samples += 1
            time.sleep(0.05)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop = True
        self.t.join()


def jobs_by_vm(cl, i):
    return {j["vm"]: j for j in cl.v(i, "jobs", "list", "--all")["jobs"] if j["kind"] == "migrate"}


def wait_jobs_done(cl, i, ids, timeout=300):
    def done():
        states = [cl.v(i, "jobs", "show", str(j))["state"] for j in ids]
        return all(s not in ("running", "queued") for s in states) and states
    return wait_for(done, timeout, f"jobs {ids} to finish", interval=1)


@pytest.fixture
def cl3(request):
    return make_cluster(request, n=3)


@pytest.mark.slow  # make soak: 27 s; queueing is also shown by the drain and restart tests in make check
def test_limit_two_of_five(cl3):
    cl = cl3
    names = [f"q{k}" for k in range(5)]
    boot_many(cl, names)
    cl.tb.shape(1, "mig", rate="300mbit")
    assert cl.v(1, "host", "show")["migration"]["live"]["max"] == 2   # the default
    with StreamSampler(cl, 1) as s:
        ids = [cl.v(1, "move", n, "--to", "h2", "--no-wait")["job"] for n in names]
        listing = cl.run(1, "jobs", "list").stdout
        assert re.search(r"queued \(position \d, waiting for h1\)", listing), listing
        states = wait_jobs_done(cl, 1, ids)
    assert states == ["succeeded"] * 5, states
    print(f"\nmax simultaneous migration streams seen: {s.max_seen} in {s.samples} samples")
    assert s.samples > 20 and 1 <= s.max_seen <= 2
    for n in names:
        cl.assert_only_on(n, 2)
        assert cl.verify(n, 2)


def test_queued_job_cancelled_never_touches_vm(cl3):
    cl = cl3
    names = ["c0", "c1", "c2"]
    boot_many(cl, names)
    cl.v(1, "host", "set", "--max-live-migrations", "1")
    cl.tb.shape(1, "mig", rate="100mbit")
    ids = [cl.v(1, "move", n, "--to", "h2", "--no-wait")["job"] for n in names]
    j = cl.v(1, "jobs", "show", str(ids[2]))
    assert j["state"] == "queued", j
    cl.v(1, "jobs", "cancel", str(ids[2]))
    assert cl.v(1, "jobs", "show", str(ids[2]))["state"] == "cancelled"
    # Raise the limit while one is still queued: it starts at once.
    cl.v(1, "host", "set", "--max-live-migrations", "2")
    # (It may even finish before we look: compression makes short work of it.)
    wait_for(lambda: cl.v(1, "jobs", "show", str(ids[1]))["state"] in ("running", "succeeded"), 30,
             "the queued job to start")
    cl.tb.unshape(1, "mig")
    assert wait_jobs_done(cl, 1, ids[:2]) == ["succeeded", "succeeded"]
    # c2 never moved, was never paused or migrating.
    cl.assert_only_on("c2", 1)
    kinds = [(e["kind"], (e["detail"] or {}).get("to")) for e in cl.v(1, "host", "events", "--vm", "c2")["events"]]
    assert ("vm.state", "migrating") not in kinds and ("vm.state", "paused") not in kinds, kinds
    assert cl.verify("c2", 1)


def test_restart_with_queued_jobs_runs_each_once(cl3):
    cl = cl3
    names = ["r0", "r1", "r2"]
    boot_many(cl, names)
    cl.v(1, "host", "set", "--max-live-migrations", "1")
    cl.tb.shape(1, "mig", rate="100mbit")
    ids = [cl.v(1, "move", n, "--to", "h2", "--no-wait")["job"] for n in names]
    wait_for(lambda: cl.v(1, "jobs", "show", str(ids[0]))["phase"] == "transfer", 60, "the first transfer")
    cl.stop(1, sig=signal.SIGKILL)
    cl.start(1)
    cl.tb.unshape(1, "mig")
    states = wait_jobs_done(cl, 1, ids)
    # The interrupted one failed (VM stays on h1) or completed; the queued ones ran, once each.
    assert states[1:] == ["succeeded", "succeeded"], states
    for n in names[1:]:
        cl.assert_only_on(n, 2)
        assert cl.verify(n, 2)
    first = 2 if states[0] == "succeeded" else 1
    wait_for(lambda: cl.where("r0") == ([first], [first]), 30, "r0 on exactly one host")
    events = cl.v(2, "host", "events")["events"]
    arrivals = [e["vm"] for e in events if e["kind"] == "migration.incoming.finished"]
    assert sorted(arrivals) == sorted(([] if first == 1 else ["r0"]) + ["r1", "r2"]), arrivals


def test_drain_four_vms_to_two_hosts(cl3):
    cl = cl3
    names = [f"d{k}" for k in range(4)]
    boot_many(cl, names)
    p = cl.run(1, "host", "drain", "h1", "--to", "h2", "--to", "h3")
    assert p.returncode == 0, p.stderr
    print("\n" + p.stdout)
    assert "4 moved, 0 failed, total time" in p.stdout
    assert cl.vm_names(1) == []
    placed = {n: [i for i in (2, 3) if n in cl.vm_names(i)] for n in names}
    assert all(len(v) == 1 for v in placed.values()), placed
    assert {v[0] for v in placed.values()} == {2, 3}, f"both destinations used: {placed}"
    for n, (i,) in placed.items():
        cl.assert_only_on(n, i)
        assert cl.verify(n, i)
    show = cl.v(1, "host", "show")
    assert show["migration"]["drained"]
    # Nothing new is placed on a drained host.
    p = cl.run(1, "vm", "create", "new1")
    assert p.returncode == 1 and "drained" in p.stderr
    p = cl.run(2, "move", "d0" if placed["d0"] == [2] else "d1", "--to", "h1")
    assert p.returncode == 1 and "drained" in p.stderr, p.stderr
    cl.v(1, "host", "resume", "h1")
    assert not cl.v(1, "host", "show")["migration"]["drained"]


def test_limit_validation(cl):
    p = cl.run(1, "host", "set", "--max-live-migrations", "0")
    assert p.returncode == 1 and "from 1 to 64" in p.stderr
    p = cl.run(1, "host", "set", "--max-storage-migrations", "x")
    assert p.returncode == 2
    cl.v(1, "host", "set", "--max-live-migrations", "3", "--max-storage-migrations", "4")
    cl.stop(1)
    cl.start(1)
    m = cl.v(1, "host", "show")["migration"]
    assert m["live"]["max"] == 3 and m["storage"]["max"] == 4


@pytest.fixture
def cl(request):
    return make_cluster(request)

"""What a person sees on a terminal: the disk copy of a --with-storage move,
lines that fit the terminal, Ctrl-C leaving the job running, and the result
of a finished job in `jobs show` and `jobs watch`.  One test bed, two moves."""
import json
import os
import re
import subprocess
import time
import uuid

import pytest

from migrationlib import make_cluster, BIN
from test_shared_nothing import create_private_guest, private_dir
from vmovelib import wait_for

COLS = 100


@pytest.fixture
def cl(request):
    return make_cluster(request)


class Pane:
    """A tmux session of COLS columns running one command in the client namespace."""

    def __init__(self, cl, argv):
        self.name = "vmove-progress-" + uuid.uuid4().hex[:8]
        ns = cl.tb._resolve_ns("client")
        cmd = " ".join(["ip", "netns", "exec", ns] + argv) + "; echo EXIT=$?; sleep 600"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(COLS), "-y", "50", cmd], check=True)

    def text(self):
        return subprocess.run(["tmux", "capture-pane", "-p", "-J", "-t", self.name], capture_output=True,
                              text=True).stdout

    def keys(self, *k):
        subprocess.run(["tmux", "send-keys", "-t", self.name, *k], check=True)

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def vmove_argv(cl, i, *args):
    return [os.path.join(BIN, "vmove"), "-H", "unix:" + cl.tb.host(i).sock] + list(args)


def test_progress_on_a_terminal(cl):
    disk, ip = create_private_guest(cl, "pg1", size="256M")
    # Data for the disk copy, on a shaped link: it lasts some seconds.
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x44 1M 120M", disk], check=True, capture_output=True)
    cl.boot("pg1")
    cl.tb.shape(1, "mig", rate="300mbit")
    d2 = private_dir(cl, 2)
    pane = Pane(cl, vmove_argv(cl, 1, "move", "pg1", "--to", "h2", "--with-storage", d2))
    seen = []
    try:
        def copying():
            t = pane.text()
            seen.extend(l for l in t.splitlines() if l.startswith("disk copy"))
            return "EXIT=" in t or None
        wait_for(copying, 300, "the move on the terminal")
        final = pane.text()
    finally:
        pane.close()
        cl.tb.unshape(1, "mig")
    print("\n" + final)
    assert "EXIT=0" in final, final
    # The disk copy was shown while it ran, with its percent, elapsed time and ETA ...
    pcts = [float(m.group(1)) for l in seen if (m := re.match(r"disk copy\s+([\d.]+)%\s+elapsed \S+ \S+\s+ETA", l))]
    assert pcts, f"no disk-copy line seen: {seen[:5]}"
    assert pcts == sorted(pcts), f"the disk copy's percent went back: {pcts}"
    # ... redrawn in place: one line of it remains on the screen, none wider than the terminal.
    assert sum(1 for l in final.splitlines() if l.startswith("disk copy")) == 1, final
    assert all(len(l) < COLS for l in final.splitlines()), final
    assert "migrated pg1 to h2" in final and "total time:" in final
    cl.assert_only_on("pg1", 2)

    # jobs show of the finished job says what it did.
    jid = max(j["id"] for j in cl.v(1, "jobs", "list", "--all")["jobs"] if j["kind"] == "migrate")
    show = cl.run(1, "jobs", "show", str(jid))
    assert show.returncode == 0, show.stderr
    assert "migrated pg1 to h2" in show.stdout and "downtime (QEMU):" in show.stdout, show.stdout
    assert re.search(r"bytes sent:\s+[\d.]+ \S+ in \d+ passes", show.stdout), show.stdout

    # jobs list and host events show readable times and durations.
    listing = cl.run(1, "jobs", "list", "--all").stdout
    assert re.search(rf"job {jid} .*\n  started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d, took [\d.]+ (ms|s)", listing), listing
    events = cl.run(1, "host", "events", "--limit", "3").stdout
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", events), events

    # Ctrl-C during the move back: the client says the job goes on and how to cancel it; the job ends by itself.
    d1 = private_dir(cl, 1)
    pane = Pane(cl, vmove_argv(cl, 2, "move", "pg1", "--to", "h1", "--with-storage", d1))
    try:
        wait_for(lambda: re.search(r"job (\d+): ", pane.text()), 60, "the move back to start")
        pane.keys("C-c")
        wait_for(lambda: "EXIT=" in pane.text(), 30, "the client to stop")
        text = pane.text()
    finally:
        pane.close()
    print(text)
    back = int(re.search(r"job (\d+): ", text).group(1))
    assert "EXIT=130" in text, text
    assert f"job {back} continues" in text and f"jobs cancel {back}" in text, text
    watch = cl.run(2, "jobs", "watch", str(back), timeout=300)
    assert watch.returncode == 0, watch.stderr
    assert "migrated pg1 to h1" in watch.stdout and "total time:" in watch.stdout, watch.stdout
    cl.assert_only_on("pg1", 1)
    assert cl.verify("pg1", 1)


def test_drain_table_redrawn_on_a_terminal(cl):
    """host drain on a terminal redraws its table in place (the screen holds one
    table however often it changed) and ends with the summary; without a
    terminal the same command prints plain lines, no cursor movement."""
    names = ["dr0", "dr1"]
    for k, n in enumerate(names):
        cl.create_guest(n, memory="128M", mem=32, mem_rate=16, disk_rate=64, k=k)
    for n in names:
        cl.boot(n)
    cl.tb.shape(1, "mig", rate="150mbit")   # each move lasts a few seconds: many redraws
    pane = Pane(cl, vmove_argv(cl, 1, "host", "drain", "--to", "h2"))
    screens = []
    try:
        def sample():
            t = pane.text()
            screens.append(t)
            return "EXIT=" in t or None
        wait_for(sample, 300, "the drain on the terminal", interval=0.2)
        final = pane.text()
    finally:
        pane.close()
        cl.tb.unshape(1, "mig")
    print("\n" + final)
    assert "EXIT=0" in final, final

    def tables(text):
        return [l for l in text.splitlines() if re.match(r"drain: \d+/\d+ done", l)]

    # The table changed while it ran (several different tables seen) ...
    seen = {tuple(l for l in s.splitlines() if l.startswith("drain:") or re.match(r"  dr\d\s+-> .*(%|-)$", l))
            for s in screens if tables(s)}
    assert len(seen) >= 3, f"the table hardly changed: {seen}"
    # ... and every screen, the last too, holds one table: one header, each VM's line once.
    for s in screens + [final]:
        assert len(tables(s)) <= 1, s
        for n in names:
            assert sum(1 for l in s.splitlines() if re.match(rf"  {n}\s+-> \S+\s+\S+\s+\S*\s+([\d.]+%|-)", l)) <= 1, s
    assert len(tables(final)) == 1, final
    assert re.search(r"drain: 2/2 done, 0 running", final), final
    # The summary comes last, after the table.
    lines = [l for l in final.splitlines() if l.strip()]
    at = next(i for i, l in enumerate(lines) if l.startswith("drained h1: 2 moved, 0 failed, total time"))
    assert at > next(i for i, l in enumerate(lines) if l.startswith("drain: ")), final
    assert all(re.match(r"  dr\d\s+-> h2\s+succeeded", l) or l.startswith("EXIT=") for l in lines[at + 1:]), final
    for n in names:
        cl.assert_only_on(n, 2)

    # Without a terminal (stderr a pipe): plain lines, no escape sequences, then the summary.
    cl.v(1, "host", "resume", "h1")
    cl.tb.shape(2, "mig", rate="150mbit")
    try:
        p = cl.run(2, "host", "drain", "--to", "h1")
    finally:
        cl.tb.unshape(2, "mig")
    assert p.returncode == 0, p.stderr
    assert "\033" not in p.stderr and "\r" not in p.stderr, repr(p.stderr[:500])
    assert re.search(r"^drain: \d/2 done", p.stderr, re.M), p.stderr
    assert p.stdout.startswith("drained h2: 2 moved, 0 failed, total time"), p.stdout
    for n in names:
        cl.assert_only_on(n, 1)
        assert cl.verify(n, 1)


DISK_KEYS = {"id", "size_bytes", "done_bytes", "total_bytes", "rate_Bps", "eta_s", "ready"}
TOTAL_KEYS = {"disks", "size_bytes", "done_bytes", "total_bytes", "rate_Bps", "eta_s", "percent"}


def json_run(cl, i, *args):
    """vmove --json ARGS on host i: (stream lines, final document)."""
    p = cl.tb.vmove(i, "--json", *args, check=False, timeout=300)
    docs = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    assert docs and docs[-1].get("ok") is True, f"{args}: {p.stderr[-2000:]} {docs[-1:]}"
    return docs[:-1], docs[-1]


def disk_progress(stream, phase):
    """Every disk-progress object the stream carried in this phase."""
    return [e["data"]["progress"] for e in stream
            if e["event"] == "job" and (e["data"].get("progress") or {}).get("phase") == phase]


def check_disk_progress(p, size, what):
    assert set(p) - {"phase", "elapsed_ms"} == TOTAL_KEYS, f"{what}: {sorted(p)}"
    (d,) = p["disks"]
    assert set(d) == DISK_KEYS, f"{what}: {sorted(d)}"
    assert d["id"] == "vda" and d["size_bytes"] == size == p["size_bytes"], (what, d)
    assert 0 <= d["done_bytes"] <= d["total_bytes"], (what, d)
    assert p["done_bytes"] == d["done_bytes"] and p["total_bytes"] == d["total_bytes"], (what, p)
    assert d["rate_Bps"] >= 0 and (d["eta_s"] is None or d["eta_s"] >= 0), (what, d)
    assert 0 <= p["percent"] <= 100, (what, p)
    return d


def test_disk_progress_has_one_shape(cl):
    """move-storage and move --with-storage stream the same disk-progress keys
    (docs/JSON.md, "Disk progress") with sane values, and both results carry
    the same object as disk_copy."""
    size = 128 << 20
    disk, ip = create_private_guest(cl, "pk1", size="128M")
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x33 1M 48M", disk], check=True, capture_output=True)
    cl.boot("pk1")
    # A local storage move at 16 MiB/s: some seconds of "mirroring".
    here = os.path.join(private_dir(cl, 1), "moved")
    os.makedirs(here)
    s_stream, s_final = json_run(cl, 1, "move-storage", "pk1", "--to", here, "--bandwidth", "16")
    # A shared-nothing move on a 200 Mbit/s link: some seconds of "mirror".
    cl.tb.shape(1, "mig", rate="200mbit")
    try:
        m_stream, m_final = json_run(cl, 1, "move", "pk1", "--to", "h2", "--with-storage", private_dir(cl, 2))
    finally:
        cl.tb.unshape(1, "mig")
    cl.assert_only_on("pk1", 2)
    assert cl.verify("pk1", 2)

    storage, mirror = disk_progress(s_stream, "mirroring"), disk_progress(m_stream, "mirror")
    assert len(storage) >= 2 and len(mirror) >= 2, (len(storage), len(mirror))
    for what, seq in (("move-storage", storage), ("move --with-storage", mirror)):
        disks = [check_disk_progress(p, size, what) for p in seq]
        # Something was copied, with a rate and an ETA along the way.
        assert disks[-1]["done_bytes"] >= 40 << 20, (what, disks[-1])
        assert any(d["rate_Bps"] > 0 and d["eta_s"] is not None and d["eta_s"] > 0 for d in disks), (what, disks)
    assert {k for p in storage for k in p["disks"][0]} == {k for p in mirror for k in p["disks"][0]}

    # The results: the same object, final (all copied, in sync, no time left).
    for what, final in (("move-storage", s_final), ("move --with-storage", m_final)):
        dc = final["result"]["disk_copy"]
        (d,) = dc["disks"]
        assert set(dc) == TOTAL_KEYS and set(d) == DISK_KEYS, (what, dc)
        assert d["size_bytes"] == size and d["done_bytes"] == d["total_bytes"] >= 48 << 20, (what, d)
        assert d["ready"] is True and d["eta_s"] == 0 and d["rate_Bps"] > 0 and dc["percent"] == 100, (what, dc)
    # The move-storage at 16 MiB/s: its average rate says so (QEMU's speed, with slack for its bursts).
    assert 8 << 20 < s_final["result"]["disk_copy"]["rate_Bps"] < 24 << 20, s_final["result"]["disk_copy"]

"""What a person sees on a terminal: the disk copy of a --with-storage move,
lines that fit the terminal, Ctrl-C leaving the job running, and the result
of a finished job in `jobs show` and `jobs watch`.  One test bed, two moves."""
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

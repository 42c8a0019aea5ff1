"""vmoved's defaults, its config file and its systemd notifications, with a
real vmoved (no guest needed)."""
import os
import socket
import subprocess
import time

from vmovelib import ENV, VMOVE, VMOVED, Agent, wait_for, cleanup


def test_defaults_match_the_cli(root):
    """vmoved with no flags and vmove with no -H find each other: both use
    /run/vmove/vmoved.sock (and vmoved /var/lib/vmove).  Run in a private
    mount namespace with tmpfs over /run, /var/lib and /etc/vmove, so the
    host's own directories are not touched."""
    script = f"""
set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib
if [ -d /etc/vmove ]; then mount -t tmpfs tmpfs /etc/vmove; fi
{VMOVED} --foreground --name defaults >{root}/vmoved.log 2>&1 &
pid=$!
for i in $(seq 150); do [ -S /run/vmove/vmoved.sock ] && break; sleep 0.2; done
{VMOVE} --json host show >{root}/show.json
stat -c '%a %n' /var/lib/vmove /var/lib/vmove/journal.db >{root}/stat.txt
kill -TERM $pid
wait $pid
"""
    p = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True,
                       env=ENV, timeout=90)
    log = open(os.path.join(root, "vmoved.log")).read()
    assert p.returncode == 0, p.stderr + log
    import json
    assert json.load(open(os.path.join(root, "show.json")))["name"] == "defaults"
    stat = open(os.path.join(root, "stat.txt")).read()
    assert "700 /var/lib/vmove\n" in stat and "/var/lib/vmove/journal.db" in stat
    assert "socket /run/vmove/vmoved.sock" in log


def test_config_file_and_flags_override(root):
    conf = os.path.join(root, "vmoved.conf")
    with open(conf, "w") as f:
        f.write(f"# test\nname = fromfile\nstate-dir = {root}/h1/state\nsocket = {root}/h1/vmoved.sock\n"
                "debug = yes\n")
    a = Agent(root, "h1", extra=["--config", conf])
    try:
        # Agent passes --name h1 on the command line: it must win over the file.
        a.start()
        assert a.vmove("host", "show")["name"] == "h1"
        a.stop()
        # Without --name, the file's name; the file's debug = yes shows.
        a.proc = subprocess.Popen([VMOVED, "--config", conf, "--foreground"], stdout=open(a.log_path, "a"),
                                  stderr=subprocess.STDOUT, env=ENV)
        a.log = open(a.log_path, "a")
        wait_for(lambda: a.try_call("host", "show"), 30, "vmoved to answer")
        assert a.vmove("host", "show")["name"] == "fromfile"
        assert " debug: " in a.read_log()
    finally:
        cleanup([a], root)


def test_notify_ready_and_watchdog(root):
    """Type=notify: READY=1 once the socket answers, and WATCHDOG=1 pings at
    half of WATCHDOG_USEC, on a NOTIFY_SOCKET of our own."""
    path = os.path.join(root, "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(20)
    env = dict(ENV, NOTIFY_SOCKET=path, WATCHDOG_USEC="600000")
    sock = os.path.join(root, "vmoved.sock")
    p = subprocess.Popen([VMOVED, "--state-dir", root + "/state", "--socket", sock, "--foreground"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        first = s.recv(4096).decode()
        assert "READY=1" in first, first
        assert os.path.exists(sock), "READY=1 before the socket was open"
        t0 = time.monotonic()
        pings = 0
        while pings < 3:
            if "WATCHDOG=1" in s.recv(4096).decode():
                pings += 1
        # 3 pings at 300 ms: about 0.6-0.9 s (the first comes with READY).
        assert time.monotonic() - t0 < 5
        p.terminate()
        assert p.wait(timeout=30) == 0
        msgs = []
        s.settimeout(2)
        try:
            while True:
                msgs.append(s.recv(4096).decode())
        except socket.timeout:
            pass
        assert any("STOPPING=1" in m for m in msgs), msgs
    finally:
        if p.poll() is None:
            p.kill()
        s.close()
        cleanup([], root)

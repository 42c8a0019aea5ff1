"""Tests for the multi-host test bed (tests/testbed/testbed.py).

Run: /usr/bin/python3 -m pytest tests/testbed/test_testbed.py
Needs root, iproute2 and iperf3.  All traffic stays inside namespaces
created here.
"""

import json
import os
import signal
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import testbed as tbmod  # noqa: E402
from testbed import PYTHON, Testbed, TestbedError  # noqa: E402

FAKES = os.path.join(HERE, "fakes.py")
FAKE_VMOVED = [PYTHON, FAKES, "vmoved"]
FAKE_VMOVE = [PYTHON, FAKES, "vmove"]
TB_CLI = [PYTHON, os.path.join(HERE, "testbed.py")]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"),
    reason="test bed needs root and iproute2")


def root_links():
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def assert_gone(desc):
    tb_id = desc["id"]
    assert not [ns for ns in tbmod.list_namespaces() if ns.startswith(f"vtb-{tb_id}-")]
    assert not os.path.exists(desc["root"])
    assert not os.path.exists(tbmod._registry_path(tb_id))


@pytest.fixture(scope="module")
def bed(request):
    """One shared 2-host bed for the read-mostly network tests (saves time)."""
    return tbmod.make_testbed(request, n_hosts=2, tls=False)


# ---------------------------------------------------------------- lifecycle

def test_up_down_leaves_nothing_behind():
    links_before = root_links()
    with Testbed(n_hosts=3, tls=False) as tb:
        desc = tb.describe()
        assert sorted(tb.namespaces()) == sorted(
            [tb.hub_ns, tb.client_ns] + [f"vtb-{tb.id}-h{i}" for i in (1, 2, 3)])
        for h in tb.hosts:
            assert os.path.isdir(h.state_dir) and os.path.isdir(h.tls_dir)
            assert len(h.sock.encode()) < 108
            links = tb.run_in(h, ["ip", "-o", "link"]).stdout
            for dev in ("mgmt0", "mig0", "vmup0", "switch0"):
                assert f" {dev}" in links
        assert os.path.isdir(tb.shared_dir)
        # Nothing of ours may ever appear in the root namespace.
        assert root_links() == links_before
    assert_gone(desc)
    assert root_links() == links_before


def test_cleanup_after_exception_in_with_block():
    with pytest.raises(ZeroDivisionError):
        with Testbed(n_hosts=1, tls=False) as tb:
            desc = tb.describe()
            1 / 0
    assert_gone(desc)


def test_given_root_and_names(tmp_path):
    root = tmp_path / "bed"
    with Testbed(host_names=["src", "dst"], root=str(root), tls=False) as tb:
        assert [h.name for h in tb.hosts] == ["src", "dst"]
        assert tb.host("dst").sock == str(root / "dst" / "vmoved.sock")
        assert tb.host(2) is tb.host("dst")
    assert not root.exists()
    with pytest.raises(TestbedError, match="too long"):
        Testbed(n_hosts=1, root=str(tmp_path / ("x" * 100)), tls=False).up()


def _spawn_owner(extra=""):
    """A separate process that owns a bed, so we can kill it."""
    code = (f"import sys, json, signal, time; sys.path.insert(0, {HERE!r}); import testbed\n"
            # As in an interactive run, even if our own runner ignores ^C.
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "tb = testbed.Testbed(n_hosts=1, tls=False).up()\n"
            f"{extra}\n"
            "print(json.dumps(tb.describe()), flush=True)\n"
            "time.sleep(60)\n")
    # stderr is captured: the SIGINT case ends in an expected KeyboardInterrupt trace.
    proc = subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        pytest.fail(f"bed owner died: {proc.communicate()[1]}")
    return proc, json.loads(line)


def test_sigterm_tears_down():
    proc, desc = _spawn_owner()
    assert any(ns.startswith(f"vtb-{desc['id']}-") for ns in tbmod.list_namespaces())
    proc.send_signal(signal.SIGTERM)
    proc.stderr.read()
    assert proc.wait(timeout=20) == -signal.SIGTERM
    assert_gone(desc)


def test_sigint_tears_down():
    proc, desc = _spawn_owner()
    proc.send_signal(signal.SIGINT)
    assert "KeyboardInterrupt" in proc.communicate(timeout=20)[1]
    assert_gone(desc)


def test_sweep_removes_stale_bed_only(bed):
    proc, desc = _spawn_owner()
    proc.kill()                       # SIGKILL: no chance to clean up
    proc.wait()
    assert any(ns.startswith(f"vtb-{desc['id']}-") for ns in tbmod.list_namespaces())
    swept = Testbed.sweep_stale()
    assert desc["id"] in swept
    assert bed.id not in swept        # our own live bed survives
    assert bed.ping(1, bed.host(2).mgmt_ip)
    assert_gone(desc)


# ------------------------------------------------------------- connectivity

def test_hosts_reach_each_other_on_mgmt_and_mig(bed):
    h1, h2 = bed.hosts
    assert bed.ping(h1, h2.mgmt_ip, dev="mgmt0")
    assert bed.ping(h2, h1.mgmt_ip, dev="mgmt0")
    assert bed.ping(h1, h2.mig_ip, dev="mig0")
    assert bed.ping(h2, h1.mig_ip, dev="mig0")


def test_migration_subnet_separate_from_mgmt(bed):
    h1, h2 = bed.hosts
    routes = bed.run_in(h1, ["ip", "route"]).stdout
    assert "default" not in routes
    assert not bed.ping(h1, h2.mgmt_ip, dev="mig0", timeout=1)
    assert not bed.ping(h1, h2.mig_ip, dev="mgmt0", timeout=1)
    assert not bed.ping("client", h1.mgmt_ip, timeout=1)
    assert not bed.ping("client", h1.mig_ip, timeout=1)


def test_vm_segment_spans_hosts_and_client(bed):
    vm1 = bed.add_fake_vm(1, 1)
    vm2 = bed.add_fake_vm(2, 2)
    assert bed.ping("client", bed.guest_ip(1))
    assert bed.ping("client", bed.guest_ip(2))
    assert bed.ping(vm1, bed.guest_ip(2))          # h1 switch0 -> hub -> h2 switch0
    assert bed.ping(vm2, bed.client_ip)
    # Hosts have no address on the VM segment.
    assert "inet " not in bed.run_in(1, ["ip", "addr", "show", "switch0"]).stdout


# ------------------------------------------------------ shaping and faults

def test_shaping_limits_migration_link(bed):
    unshaped = bed.iperf3(1, 2, link="mig", seconds=2)
    bed.shape(2, link="mig", rate="1gbit")
    try:
        forward = bed.iperf3(1, 2, link="mig", seconds=3)
        reverse = bed.iperf3(2, 1, link="mig", seconds=2)
        mgmt = bed.iperf3(1, 2, link="mgmt", seconds=1)     # other links unaffected
    finally:
        bed.unshape(2, link="mig")
    print(f"iperf3 mig: unshaped {unshaped/1e9:.2f} Gbit/s, 1gbit-shaped "
          f"{forward/1e9:.3f} (h1->h2) {reverse/1e9:.3f} (h2->h1), mgmt {mgmt/1e9:.2f}")
    assert 0.7e9 < forward < 1.1e9
    assert 0.7e9 < reverse < 1.1e9
    assert unshaped > 1.5 * forward
    assert mgmt > 1.5 * forward
    assert "tbf" not in bed.run_in("hub", ["tc", "qdisc", "show"]).stdout


@pytest.mark.skipif(not tbmod.netem_available(), reason="kernel lacks netem")
def test_delay(bed):
    h2 = bed.host(2)
    bed.shape(2, link="mig", rate=None, delay_ms=50)
    try:
        t = time.monotonic()
        assert bed.ping(1, h2.mig_ip, timeout=3)
        assert time.monotonic() - t > 0.1
    finally:
        bed.unshape(2, link="mig")


def test_delay_without_netem_is_a_clear_error(bed, monkeypatch):
    monkeypatch.setattr(tbmod, "_netem_ok", False)
    with pytest.raises(TestbedError, match="netem"):
        bed.shape(2, delay_ms=10)


_ECHO_SERVER = """
import socket, sys
srv = socket.create_server((sys.argv[1], 9000))
conn, _ = srv.accept()
while data := conn.recv(4096):
    conn.sendall(data)
"""

# Reads timeouts from stdin; for each, one echo round trip on a single
# long-lived TCP connection -> prints ok / timeout / err.
_ECHO_CLIENT = """
import socket, sys, time
deadline = time.monotonic() + 5
while True:
    try:
        s = socket.create_connection((sys.argv[1], 9000), timeout=1)
        break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.05)
print("connected", flush=True)
for line in sys.stdin:
    s.settimeout(float(line))
    try:
        s.sendall(b"x")
        print("ok" if s.recv(1) == b"x" else "eof", flush=True)
    except socket.timeout:
        print("timeout", flush=True)
    except OSError as e:
        print("err", e, flush=True)
"""


def test_cut_stalls_tcp_and_restore_resumes(bed):
    h2 = bed.host(2)
    server = bed.run_in(2, [PYTHON, "-c", _ECHO_SERVER, h2.mig_ip], popen=True)
    client = bed.run_in(1, [PYTHON, "-c", _ECHO_CLIENT, h2.mig_ip], popen=True)

    def roundtrip(timeout):
        client.stdin.write(f"{timeout}\n")
        client.stdin.flush()
        return client.stdout.readline().strip()

    try:
        assert client.stdout.readline().strip() == "connected"
        assert roundtrip(2) == "ok"
        bed.cut(2, link="mig")
        try:
            assert roundtrip(1.5) == "timeout"          # established session stalls
            assert not bed.ping(1, h2.mig_ip, timeout=1)  # new traffic fails
            assert bed.ping(1, h2.mgmt_ip)              # other links unaffected
        finally:
            bed.restore(2, link="mig")
        # Same TCP session resumes once retransmission gets through.
        assert roundtrip(10) == "ok"
        assert bed.ping(1, h2.mig_ip)
    finally:
        for p in (client, server):
            p.kill()
            p.communicate()


# ------------------------------------------------------------- daemons

def test_start_stop_host_with_fake_vmoved(testbed_factory):
    tb = testbed_factory(n_hosts=2, tls=True, vmoved=FAKE_VMOVED, vmove=FAKE_VMOVE)
    h1, h2 = tb.hosts
    assert os.path.exists(os.path.join(h1.tls_dir, "host.crt"))      # via `vmove pki`
    for h in tb.hosts:
        tb.start_host(h.name, extra_args=["--debug"])
    # vmove reaches each daemon through its unix socket.
    reply = tb.vmove(1, "vm", "list", json=True)
    assert reply["name"] == "h1" and reply["request"] == "vm list"
    assert reply["tls_dir"] == h1.tls_dir and reply["extra"] == ["--debug"]
    assert reply["netns"] != os.readlink("/proc/self/ns/net")        # runs in the host netns
    assert "h2: status" in tb.vmove(2, "status").stdout
    # h2's daemon is listening on h2's mgmt address, reachable from h1.
    probe = ("import socket,sys; s=socket.create_connection((sys.argv[1],7070),timeout=3);"
             "s.sendall(b'hi\\n'); print(s.makefile().readline())")
    out = tb.run_in(h1, [PYTHON, "-c", probe, h2.mgmt_ip]).stdout
    assert json.loads(out)["name"] == "h2"

    assert tb.stop_host(1) == 0                          # SIGTERM: clean exit
    assert "got signal 15" in open(h1.log_path).read()
    assert tb.stop_host(2, sig=signal.SIGKILL) == -signal.SIGKILL
    tb.start_host(2)                                     # restart after a crash
    assert tb.vmove(2, "x", json=True)["name"] == "h2"


def test_vmoved_command_line(testbed_factory):
    tb = testbed_factory(n_hosts=1, tls=False, vmoved="/opt/vmoved")
    h = tb.host(1)
    # Without TLS vmoved may not listen on TCP (it only speaks TLS there).
    assert tb._vmoved_argv(h) == ["/opt/vmoved", "--state-dir", h.state_dir, "--socket", h.sock,
                                  "--name", "h1", "--foreground"]
    tb.tls = True
    assert tb._vmoved_argv(h)[-5:] == ["--listen", f"{h.mgmt_ip}:7070", "--tls-dir", h.tls_dir,
                                       "--foreground"]


def test_start_host_reports_early_exit(testbed_factory):
    tb = testbed_factory(n_hosts=1, tls=False,
                         vmoved_cmd=[PYTHON, "-c", "import sys; print('boom {name}'); sys.exit(3)"])
    with pytest.raises(TestbedError, match="boom h1"):
        tb.start_host(1)


def test_tls_requires_pki_command():
    with pytest.raises(TestbedError, match="tls=False"):
        Testbed(n_hosts=1, tls=True, vmove="/nonexistent/vmove").up()


# ------------------------------------------------------------------- CLI

def test_cli_up_shape_cut_down(tmp_path):
    root = tmp_path / "clibed"
    up = subprocess.run(TB_CLI + ["up", "--hosts", "2", "--root", str(root), "--no-tls",
                                  "--owner-pid", str(os.getpid())],
                        capture_output=True, text=True, check=True)
    desc = json.loads(up.stdout)
    try:
        assert desc["id"] not in Testbed.sweep_stale()     # owner (we) alive
        cli = TB_CLI
        bed = ["--root", str(root)]
        subprocess.run(cli + ["shape", *bed, "2", "--rate", "200mbit"], check=True)
        qd = subprocess.run(cli + ["exec", *bed, "hub", "--", "tc", "qdisc", "show", "dev",
                                   "h2-mig"], capture_output=True, text=True, check=True)
        assert "tbf" in qd.stdout and "200Mbit" in qd.stdout
        subprocess.run(cli + ["unshape", *bed, "h2"], check=True)
        subprocess.run(cli + ["cut", *bed, "1", "--link", "mgmt"], check=True)
        state = subprocess.run(cli + ["exec", *bed, "h1", "ip", "-br", "link", "show", "mgmt0"],
                               capture_output=True, text=True, check=True).stdout
        assert "LOWERLAYERDOWN" in state or "NO-CARRIER" in state
        subprocess.run(cli + ["restore", *bed, "1", "--link", "mgmt"], check=True)
    finally:
        subprocess.run(TB_CLI + ["down", "--root", str(root)], check=True)
    assert_gone(desc)


REAL_VMOVED, REAL_VMOVE = tbmod._default_binary("vmoved"), tbmod._default_binary("vmove")


@pytest.mark.skipif(not (os.access(REAL_VMOVED, os.X_OK) and os.access(REAL_VMOVE, os.X_OK)),
                    reason="vmoved/vmove not built (set VMOVE_VMOVED / VMOVE_VMOVE)")
def test_real_vmoved_smoke(testbed_factory):
    tb = testbed_factory(n_hosts=2, tls=True, vmoved=REAL_VMOVED, vmove=REAL_VMOVE)
    for h in tb.hosts:
        tb.start_host(h)
    assert tb.vmove(1, "host", "show", json=True)["name"] == "h1"
    # Over TLS on the mgmt network, from h2's namespace, as a user h1 lets read.
    tb.vmove(1, "acl", "grant", "user:tester", "vm.read")
    assert tb.vmove_tcp(2, 1, "host", "show", json=True)["name"] == "h1"
    assert tb.stop_host(1) == 0

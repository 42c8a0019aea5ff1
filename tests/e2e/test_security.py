"""The peer channel: TLS 1.3 with mutual authentication, and the local
socket's SO_PEERCRED check."""
import json
import shutil
import os
import socket
import stat
import subprocess

import pytest

from vmovelib import VMOVE, ENV, call, cleanup, pki, remote, start_tls_agent, tls_session, wait_for


@pytest.fixture
def tls_agent(root):
    ca, other = os.path.join(root, "ca"), os.path.join(root, "otherca")
    a = start_tls_agent(root, users=("alice",))
    pki("init", other)
    pki("issue-user", "mallory", "--ca", other, "--out", os.path.join(root, "mallory"))
    # Mallory trusts our CA (so her client accepts the server) but her own
    # certificate comes from another CA: the server must refuse her.
    shutil.copy(os.path.join(ca, "ca.crt"), os.path.join(root, "mallory", "ca.crt"))
    pki("issue-user", "old", "--ca", ca, "--out", os.path.join(root, "old"), "--days", "1",
        "--not-before-offset", str(-10 * 86400))
    yield a
    try:
        a.stop()
    finally:
        cleanup([a], root)


def test_pki_files_and_modes(root):
    ca = os.path.join(root, "ca")
    pki("init", ca)
    p = subprocess.run([VMOVE, "pki", "init", ca], capture_output=True, text=True)
    assert p.returncode == 1 and "already" in p.stderr
    out = os.path.join(root, "h")
    pki("issue-host", "h7", "--ca", ca, "--out", out)
    assert sorted(os.listdir(out)) == ["ca.crt", "host.crt", "host.key"]
    assert os.stat(os.path.join(out, "host.key")).st_mode & 0o777 == 0o600
    out = os.path.join(root, "u")
    pki("issue-user", "bob", "--ca", ca, "--out", out)
    assert sorted(os.listdir(out)) == ["ca.crt", "user.crt", "user.key"]
    assert os.stat(os.path.join(out, "user.key")).st_mode & 0o777 == 0o600
    text = subprocess.run(["openssl", "x509", "-in", os.path.join(out, "user.crt"), "-noout", "-subject"],
                          capture_output=True, text=True).stdout
    assert "CN = bob" in text and "OU = user" in text


def test_user_from_our_ca_is_accepted_with_granted_rights_only(tls_agent, root):
    alice = os.path.join(root, "alice")
    p = remote(tls_agent, alice, "host", "show")
    assert p.returncode == 1 and "permission denied: user:alice lacks vm.read on host h1" in p.stderr, p.stderr
    tls_agent.vmove("acl", "grant", "user:alice", "vm.read")
    p = remote(tls_agent, alice, "host", "show")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["name"] == "h1"
    p = remote(tls_agent, alice, "vm", "create", "x")
    assert p.returncode == 1 and "user:alice lacks vm.manage on host h1" in p.stderr
    assert "acl grant user:alice vm.manage" in p.stderr      # the hint names the fix
    p = remote(tls_agent, alice, "acl", "grant", "user:alice", "host.admin")
    assert p.returncode == 1 and "lacks host.admin" in p.stderr
    # Groups carry rights too.
    tls_agent.vmove("acl", "group", "add", "ops", "user:alice")
    tls_agent.vmove("acl", "grant", "group:ops", "vm.manage")
    p = remote(tls_agent, alice, "vm", "list")
    assert p.returncode == 0
    # Every decision is audited, allowed and denied, with who and from where.
    recs = tls_agent.vmove("audit", "--limit", "100")["records"]
    denied = [r for r in recs if r["verdict"] == "denied" and r["who"] == "user:alice"]
    assert {r["action"] for r in denied} >= {"host.show", "vm.create", "acl.grant"}
    assert all(r["from"].startswith("127.0.0.1:") for r in denied)
    assert any(r["verdict"] == "allowed" and r["action"] == "vm.list" for r in recs)
    assert "TLS connection from 127.0.0.1" in tls_agent.read_log()


def test_acl_bad_input(agent):
    p = agent.run("acl", "grant", "alice", "vm.read", check=False)
    assert p.returncode == 1 and "bad principal" in p.stderr
    p = agent.run("acl", "grant", "user:alice", "vm.fly", check=False)
    assert p.returncode == 1 and "unknown right" in p.stderr
    p = agent.run("acl", "frobnicate", check=False)
    assert p.returncode == 2
    assert agent.vmove("acl", "list")["grants"] == {}


def test_client_cert_from_other_ca_refused(tls_agent, root):
    p = remote(tls_agent, os.path.join(root, "mallory"), "host", "show")
    assert p.returncode != 0, p.stdout
    assert '"name"' not in p.stdout
    wait_for(lambda: "not signed by this host's CA" in tls_agent.read_log(), 5, "refusal in log")


def test_expired_client_cert_refused(tls_agent, root):
    p = remote(tls_agent, os.path.join(root, "old"), "host", "show")
    assert p.returncode != 0 and '"name"' not in p.stdout
    wait_for(lambda: "certificate has expired" in tls_agent.read_log(), 5, "expiry in log")


def test_plain_tcp_client_refused(tls_agent):
    s = socket.create_connection(("127.0.0.1", tls_agent.port), timeout=10)
    s.sendall(b'{"id":1,"method":"host.show","params":{}}\n')
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    assert b'"result"' not in data and b"h1" not in data
    wait_for(lambda: "not speaking TLS" in tls_agent.read_log() or "wrong version" in tls_agent.read_log(),
             5, "plain-TCP refusal in log")


def test_local_socket_refuses_non_root(agent):
    # Let the unprivileged user reach the socket, so that the daemon's
    # SO_PEERCRED check (not file permissions) is what refuses it.
    for d in (agent.root, os.path.dirname(agent.sock)):
        os.chmod(d, 0o755)
    os.chmod(agent.sock, 0o666)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", VMOVE, "-H",
                        "unix:" + agent.sock, "host", "show"], capture_output=True, text=True, env=ENV)
    assert p.returncode == 1, p
    assert "for root only" in p.stderr


def test_server_cert_from_other_ca_refused_by_client(tls_agent, root):
    ident = os.path.join(root, "alice-other-trust")
    shutil.copytree(os.path.join(root, "alice"), ident)
    shutil.copy(os.path.join(root, "otherca", "ca.crt"), os.path.join(ident, "ca.crt"))
    p = remote(tls_agent, ident, "host", "show")
    assert p.returncode == 3 and "not signed by the CA this client trusts" in p.stderr


def test_state_files_private_to_root(agent, root):
    """Nothing under the state directory is readable by another local user:
    every directory is 0700 and every file 0600 from its creation on (QEMU's
    logs and sockets, qemu-img's disks, SQLite's journal included), and a
    non-root process cannot open a guest's disk."""
    import pwd
    agent.create_guest("p1", disks=("64M",), append="vmove.disk=vda")
    agent.vmove("vm", "start", "p1")
    agent.wait_guest_ready("p1")
    loose = []
    for d, dirs, files in os.walk(agent.state_dir):
        for name in dirs + files:
            path = os.path.join(d, name)
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                loose.append(f"{path} {oct(st.st_mode & 0o777)}")
    assert os.stat(agent.state_dir).st_mode & 0o777 == 0o700
    assert loose == [], "readable by others: " + ", ".join(loose)
    disk = agent.vm("p1")["config"]["disks"][0]["path"]
    nobody = pwd.getpwnam("nobody")
    p = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                        "cat", disk], capture_output=True)
    assert p.returncode != 0 and b"Permission denied" in p.stderr
    agent.vmove("vm", "stop", "p1", "--force")


def test_connection_flood_leaves_root_and_log_alone(tls_agent):
    """1500 idle TCP connections against a vmoved held to 1024 descriptors
    (systemd's default): root's local socket still answers at once, the log
    stays small, and the unauthenticated connections are closed after the
    handshake timeout."""
    import resource
    import time
    subprocess.run(["prlimit", "--pid", str(tls_agent.proc.pid), "--nofile=1024:1024"], check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), max(hard, 4096)))
    log_before = os.path.getsize(tls_agent.log_path)
    socks = []
    try:
        for _ in range(1500):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", tls_agent.port))
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(1)
        for _ in range(5):
            t = time.monotonic()
            assert tls_agent.vmove("host", "show")["name"] == "h1"
            assert time.monotonic() - t < 1.0
        # The handshake timeout closes what was accepted and never spoke TLS.
        time.sleep(12)
        closed = 0
        for s in socks[:50]:
            s.setblocking(True)
            s.settimeout(2)
            try:
                closed += s.recv(1) == b""
            except (ConnectionResetError, socket.timeout):
                closed += 1
        assert closed == 50
    finally:
        for s in socks:
            s.close()
    assert tls_agent.vmove("host", "show")["name"] == "h1"
    grown = os.path.getsize(tls_agent.log_path) - log_before
    assert grown < 64 * 1024, f"the log grew by {grown} bytes"


def test_connections_per_principal_capped(tls_agent, root):
    """One user cannot hold every connection: the 33rd is refused with the
    reason, and others (and the user's own first 32) still work."""
    alice = os.path.join(root, "alice")
    tls_agent.vmove("acl", "grant", "user:alice", "vm.read")
    held = [tls_session(tls_agent, alice) for _ in range(32)]
    try:
        extra = tls_session(tls_agent, alice)
        reply = json.loads(extra.makefile().readline())
        assert "has 32 connections open, the most one principal may" in reply["error"]["message"]
        extra.close()
        assert call(held[0], "vm.list")["result"]["vms"] == []
    finally:
        for s in held:
            s.close()
    assert tls_agent.vmove("host", "show")["name"] == "h1"


def test_denials_cannot_flood_the_audit_log(tls_agent, root):
    """A user with no rights at all asks 500 times: the denials are recorded
    up to a rate, the next record says how many were not, and the audit log
    does not grow with the attack."""
    s = tls_session(tls_agent, os.path.join(root, "alice"))
    for i in range(500):
        reply = call(s, "vm.list", rid=i)
        assert "permission denied" in reply["error"]["message"]
    s.close()
    records = tls_agent.vmove("audit", "--limit", "10000")["records"]
    denied = [r for r in records if r["who"] == "user:alice" and r["verdict"] == "denied"]
    assert 1 <= len(denied) <= 40, len(denied)


def test_no_certificate_can_be_local_root(root):
    """user:root is root on a host's local socket: no user certificate may
    carry that name."""
    ca = os.path.join(root, "ca")
    pki("init", ca)
    p = subprocess.run([VMOVE, "pki", "issue-user", "root", "--ca", ca, "--out", os.path.join(root, "r")],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "reserved for root on a host's local socket" in p.stderr


def test_names_cannot_forge_log_lines(agent):
    """A name with a newline in a request is logged on one line."""
    forged = "x\n2026-01-01T00:00:00.000Z vmoved[1] info: FORGED"
    p = subprocess.run([VMOVE, "-H", "unix:" + agent.sock, "vm", "show", forged], capture_output=True, text=True,
                       env=ENV)
    assert p.returncode != 0
    log = agent.read_log()
    assert "FORGED" in log
    assert not any(line.startswith("2026-01-01T00:00:00.000Z") for line in log.splitlines())


def test_mistyped_parameters_get_an_error_not_a_crash(tls_agent, root):
    """What the fuzzers found, against a real vmoved: a user with only
    vm.read sends mistyped and out-of-range parameters; each gets a clear
    invalid_argument error, and the daemon keeps answering at once."""
    import time
    tls_agent.vmove("acl", "grant", "user:alice", "vm.read")
    s = tls_session(tls_agent, os.path.join(root, "alice"))
    for i, (method, params) in enumerate((("host.events", {"vm": 5}), ("jobs.list", {"limit": -1}),
                                          ("jobs.list", {"limit": 1 << 40}), ("vm.show", {"name": ["x"]}),
                                          ("host.events", {"limit": "many"}))):
        reply = call(s, method, params, rid=i)
        assert reply["error"]["code"] == "invalid_argument", (method, params, reply)
    s.close()
    p = subprocess.run([VMOVE, "-H", "unix:" + tls_agent.sock, "audit", "--limit", "-1"], capture_output=True,
                       text=True, env=ENV, timeout=10)
    assert p.returncode != 0 and "limit" in p.stderr
    t = time.monotonic()
    assert tls_agent.vmove("host", "show")["name"] == "h1"
    assert time.monotonic() - t < 1.0

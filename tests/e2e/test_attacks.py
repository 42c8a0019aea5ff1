"""Attacks by principals that hold valid certificates of the cluster's own
CA (docs/SECURITY.md, "Threat model"): each is refused, the VM stays intact
on exactly one host, and the daemon keeps answering others at once."""
import os
import shutil
import time

import pytest

from migrationlib import make_cluster
from test_migration import final_job, start_move_no_wait, wait_transfer


@pytest.fixture
def cl(request):
    c = make_cluster(request, n=2)
    c.configure()
    return c


def host_identity(cl, i):
    """An identity directory holding host i's own certificate and key: the
    CLI then speaks as host:hI, as a peer vmoved would."""
    h = cl.tb.host(i)
    d = os.path.join(cl.tb.root, f"as-{h.name}")
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(h.tls_dir, "ca.crt"), os.path.join(d, "ca.crt"))
    shutil.copy(os.path.join(h.tls_dir, "host.crt"), os.path.join(d, "user.crt"))
    shutil.copy(os.path.join(h.tls_dir, "host.key"), os.path.join(d, "user.key"))
    return d


def assert_answers_quickly(cl, i):
    t = time.monotonic()
    assert cl.v(i, "host", "show")["name"] == cl.tb.host(i).name
    assert time.monotonic() - t < 1.0


def test_host_grants_do_not_open_user_methods(cl):
    """h2 may send and receive VMs (migrate.in, migrate.out on h1), but as a
    host it may not list, delete, start or move h1's VMs: those are a user's
    requests, and a host makes them only with the user's delegation token."""
    cl.create_guest("a1", host=1)
    cl.boot("a1", i=1)
    as_h2 = host_identity(cl, 2)
    for args in (["vm", "list"], ["vm", "delete", "a1"], ["vm", "stop", "a1", "--force"],
                 ["move", "a1", "--to", "h2"], ["acl", "list"], ["host", "set", "--migration-incoming", "off"]):
        p = cl.tb.vmove_tcp(2, 1, *args, identity=as_h2, check=False)
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        assert "host:h2: a host may call only host-to-host methods" in p.stderr, (args, p.stderr)
    cl.assert_only_on("a1", 1)
    assert cl.verify("a1", 1)
    assert_answers_quickly(cl, 1)
    denied = [r for r in cl.v(1, "audit", "--limit", "100")["records"]
              if r["who"] == "host:h2" and r["verdict"] == "denied"]
    assert {r["action"] for r in denied} >= {"vm.list", "vm.delete", "vm.move", "acl.list"}


def test_user_cannot_call_host_to_host_methods(cl):
    """A user, even one with every right, cannot speak the host-to-host
    protocol (migrate.*): only host certificates can."""
    alice = cl.tb.issue_user("alice")
    cl.v(1, "acl", "grant", "user:alice", "vm.read", "vm.manage", "migrate.in", "migrate.out", "host.admin")
    cl.create_guest("a2", host=1)
    cl.boot("a2", i=1)
    # Speak the wire protocol directly (the CLI has no command for these).
    for method in ("migrate.resolve", "migrate.finish", "migrate.capacity"):
        out = raw_call(cl, 2, 1, alice, method, "a2")
        assert "a host-to-host method, for hosts only" in out, (method, out)
    cl.assert_only_on("a2", 1)
    assert cl.verify("a2", 1)
    assert_answers_quickly(cl, 1)


def raw_call(cl, src, dst, identity, method, vm):
    """One request to host dst from host src's namespace, as identity."""
    h = cl.tb.host(dst)
    p = cl.tb.run_in(src, ["/usr/bin/python3", "-c", RAW_CALL, f"{h.name}@{h.mgmt_ip}:{h.port}", identity, method, vm],
                     check=False, timeout=30)
    return p.stdout


def test_foreign_host_cannot_resolve_a_migration(request):
    """h3 holds a valid host certificate and no rights.  While h1 moves a VM
    to h2, h3 asks both ends to "resolve" it (the call a source makes when
    it lost track of its destination): both refuse and audit it, and the move
    ends with the VM on exactly one host, its data intact."""
    cl = make_cluster(request, n=3)
    cl.configure()
    cl.create_guest("m1", mem=128, mem_rate=20, host=1)
    cl.boot("m1", i=1)
    cl.tb.shape(1, "mig", rate="100mbit")
    jid = start_move_no_wait(cl, "m1", 1, 2)
    wait_transfer(cl, 1, jid)
    as_h3 = host_identity(cl, 3)
    for target, why in ((1, "VM m1 is not arriving on host h1: host h3 cannot resolve it"),
                        (2, "VM m1 is not arriving from host h3")):
        out = raw_call(cl, 3, target, as_h3, "migrate.resolve", "m1")
        assert why in out, (target, out)
    assert_answers_quickly(cl, 1)
    cl.tb.unshape(1, "mig")
    j = final_job(cl, 1, jid)
    assert j["state"] == "succeeded", j
    cl.assert_only_on("m1", 2)
    assert cl.verify("m1", 2)
    for i in (1, 2):
        denied = [r for r in cl.v(i, "audit", "--limit", "300")["records"]
                  if r["who"] == "host:h3" and r["action"] == "migrate.resolve" and r["verdict"] == "denied"]
        assert denied, f"h{i} did not audit h3's resolve"


# A rogue destination: a TLS server holding host h3's real certificate that
# answers the host-to-host protocol as the mode says, and counts what
# reaches the migration port it offers.
ROGUE = r'''
import json, os, signal, socket, ssl, sys, threading
def stop(*_):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, stop)
mode, tls_dir, mgmt, port, mig = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
claims = "h2" if mode == "liar" else "h3"
data = socket.socket(); data.bind((mig, 0)); data.listen(4)
got = [0]
def sink():
    while True:
        c, _ = data.accept()
        while True:
            b = c.recv(65536)
            if not b:
                break
            got[0] += len(b)
threading.Thread(target=sink, daemon=True).start()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(os.path.join(tls_dir, "host.crt"), os.path.join(tls_dir, "host.key"))
ctx.load_verify_locations(os.path.join(tls_dir, "ca.crt"))
ctx.verify_mode = ssl.CERT_REQUIRED
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind((mgmt, port)); srv.listen(4)
print("ready", flush=True)
srv.settimeout(60)
def serve(conn):
    f = conn.makefile("rw")
    for line in f:
        req = json.loads(line)
        m = req["method"]
        if m == "migrate.reserve":
            res = {"granted": True, "position": 1, "in_use": 0, "max": 2, "host": claims}
        elif m == "migrate.prepare":
            res = {"ip": mig, "port": data.getsockname()[1], "tls": False, "host": claims}
        elif m == "migrate.resolve":
            res = {"state": "absent", "host": claims}
        else:
            res = {}
        f.write(json.dumps({"id": req["id"], "result": res}) + "\n")
        f.flush()
        print("call", m, flush=True)
try:
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(ctx.wrap_socket(c, server_side=True),), daemon=True).start()
except (socket.timeout, KeyboardInterrupt):
    pass
print("bytes", got[0], flush=True)
'''


def run_rogue(cl, mode, port):
    h3 = cl.tb.host(3)
    p = cl.tb.run_in(3, ["/usr/bin/python3", "-u", "-c", ROGUE, mode, h3.tls_dir, h3.mgmt_ip, str(port), h3.mig_ip],
                     popen=True)
    assert p.stdout.readline().strip() == "ready"
    return p


@pytest.mark.parametrize("mode", ["liar", "plain"])
def test_rogue_destination_gets_nothing(request, mode):
    """h3's vmoved is gone and a rogue program holds h3's real host
    certificate.  h1 is asked to move a VM to that address.  As "liar" it
    says it is h2; as "plain" it says it is h3 (which h1 lets receive VMs)
    and asks for a plaintext stream, which neither h1 nor h3 allow.  Both
    are refused before any RAM leaves h1, and the VM keeps running there."""
    cl = make_cluster(request, n=3)
    cl.configure()
    cl.stop(3)
    cl.create_guest("rg", host=1)
    cl.boot("rg", i=1)
    port = 7100 + (os.getpid() % 500)
    rogue = run_rogue(cl, mode, port)
    try:
        h3 = cl.tb.host(3)
        res = cl.tb.vmove(1, "--json", "move", "rg", "--to", f"{h3.mgmt_ip}:{port}", "--compress", "none",
                          check=False, timeout=120)
        out = res.stdout + res.stderr
        if mode == "liar":
            assert "the destination's certificate is host h3's, but it calls itself h2" in out, out
        else:
            assert "host h3 offered an unencrypted migration stream, and host h1 does not allow one" in out, out
        assert res.returncode != 0
    finally:
        rogue.terminate()
        calls = rogue.communicate(timeout=10)[0]
    cl.start(3)   # the real h3 is back: no host but h1 has the VM
    cl.assert_only_on("rg", 1)
    assert cl.verify("rg", 1)
    assert ("migrate.prepare" in calls) == (mode == "plain"), calls
    assert "bytes 0" in calls, calls   # no RAM (nor anything else) reached the rogue's migration port
    assert_answers_quickly(cl, 1)


# One request over mutual TLS with a user identity, the reply printed.
RAW_CALL = r'''
import json, os, socket, ssl, sys
target, ident, method, vm = sys.argv[1:5]
name, addr = target.split("@")
host, port = addr.rsplit(":", 1)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_verify_locations(os.path.join(ident, "ca.crt"))
ctx.load_cert_chain(os.path.join(ident, "user.crt"), os.path.join(ident, "user.key"))
with socket.create_connection((host, int(port)), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=name) as s:
        s.sendall((json.dumps({"id": 1, "method": method, "params": {"name": vm}}) + "\n").encode())
        print(s.makefile().readline())
'''

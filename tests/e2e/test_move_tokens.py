"""Whose rights a move runs under (docs/SECURITY.md, "Move tokens"): a
certificate user's move carries a token the user signed, which the
destination checks and binds to the source's job; a host's word for a user
is not enough; root's own moves run as its host."""
import base64
import json
import os
import time

import pytest

from migrationlib import make_cluster
from test_attacks import assert_answers_quickly, host_identity
from test_delegation import sign


@pytest.fixture
def cl(request):
    c = make_cluster(request, n=2)
    c.configure()
    return c


# One request over mutual TLS as the identity, params as JSON; the reply printed.
RAW = r'''
import json, os, socket, ssl, sys
target, ident, method, params = sys.argv[1:5]
name, addr = target.split("@")
host, port = addr.rsplit(":", 1)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_verify_locations(os.path.join(ident, "ca.crt"))
ctx.load_cert_chain(os.path.join(ident, "user.crt"), os.path.join(ident, "user.key"))
with socket.create_connection((host, int(port)), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=name) as s:
        s.sendall((json.dumps({"id": 1, "method": method, "params": json.loads(params)}) + "\n").encode())
        print(s.makefile().readline())
'''


def call(cl, src, dst, ident, method, params):
    h = cl.tb.host(dst)
    p = cl.tb.run_in(src, ["/usr/bin/python3", "-c", RAW, f"{h.name}@{h.mgmt_ip}:{h.port}", ident, method,
                           json.dumps(params)], check=False, timeout=30)
    return json.loads(p.stdout)


def move_token(ident, user, vm, src, dst, life=120):
    now = int(time.time())
    payload = json.dumps({"op": "move", "vm": vm, "src": src, "dst": dst, "via": src, "user": user,
                          "iat": now, "exp": now + life, "nonce": base64.b64encode(os.urandom(16)).decode()},
                         sort_keys=True, separators=(",", ":"))
    with open(os.path.join(ident, "user.crt")) as f:
        cert = f.read()
    return {"payload": payload, "sig": sign(ident, payload), "cert": cert}


def audit(cl, i):
    return cl.v(i, "audit", "--limit", "500")["records"]


def error_of(reply):
    return (reply.get("error") or {}).get("message", "")


def test_move_tokens(cl):
    cl.create_guest("mt1", mem=32, host=1)
    cl.boot("mt1", i=1)
    alice = cl.tb.issue_user("alice")
    cl.v(1, "acl", "grant", "user:alice", "migrate.out", "vm.read")
    cl.v(2, "acl", "grant", "user:alice", "migrate.in")

    # A user's move: the CLI signs the token, h1 forwards it, h2 checks alice.
    p = cl.tb.vmove_tcp(2, 1, "move", "mt1", "--to", "h2", identity=alice, check=False)
    assert p.returncode == 0, p.stderr
    cl.assert_only_on("mt1", 2)
    assert cl.verify("mt1", 2)
    a2 = audit(cl, 2)
    assert any(r["who"] == "user:alice" and r["vm"] == "mt1" and r["action"] == "migrate.prepare"
               and r["verdict"] == "allowed" for r in a2), a2[-20:]

    # Root's own move back: checked and audited as host:h2 at h1, never as a user.
    cl.v(2, "move", "mt1", "--to", "h1")
    cl.assert_only_on("mt1", 1)
    assert cl.verify("mt1", 1)
    a1 = [r for r in audit(cl, 1) if r.get("vm") == "mt1"]
    assert any(r["who"] == "host:h2" and r["action"] == "migrate.prepare" and r["verdict"] == "allowed"
               for r in a1), a1
    assert not any(r["who"].startswith("user:") and r["action"].startswith("migrate.") for r in a1), a1

    # h1 (a real host certificate) names a user it has no token for: refused, audited.
    as_h1 = host_identity(cl, 1)
    r = call(cl, 1, 2, as_h1, "migrate.reserve", {"job": 90001, "vm": "mt1", "user": "user:alice"})
    assert "host h1 names user:alice but sends no move token signed by that user" in error_of(r), r
    assert any(x["who"] == "host:h1" and x["verdict"] == "denied" and "no move token" in (x.get("reason") or "")
               for x in audit(cl, 2))

    # "user:root" (what earlier sources send for root's moves) is the host's own move.
    r = call(cl, 1, 2, as_h1, "migrate.reserve", {"job": 90009, "vm": "mt1", "user": "user:root"})
    assert r.get("result", {}).get("granted") is True, r
    call(cl, 1, 2, as_h1, "migrate.unreserve", {"job": 90009})
    a2 = audit(cl, 2)
    assert any(x["who"] == "host:h1" and x["action"] == "migrate.reserve" and x["verdict"] == "allowed"
               and "own move" in (x.get("reason") or "") for x in a2), a2[-10:]
    assert not any(x["who"] == "user:root" and x["action"].startswith("migrate.") for x in a2)

    # A token for VM mt1 cannot move another VM.
    tok = move_token(alice, "alice", "mt1", "h1", "h2")
    r = call(cl, 1, 2, as_h1, "migrate.reserve", {"job": 90002, "vm": "mt2", "user": "user:alice", "move_token": tok})
    assert "the move token is for VM mt1, not mt2" in error_of(r), r

    # Used once (bound to job 90003), then replayed for another job: refused.
    r = call(cl, 1, 2, as_h1, "migrate.reserve", {"job": 90003, "vm": "mt1", "user": "user:alice", "move_token": tok})
    assert r.get("result", {}).get("granted") is True, r
    r2 = call(cl, 1, 2, as_h1, "migrate.reserve", {"job": 90004, "vm": "mt1", "user": "user:alice",
                                                   "move_token": tok})
    assert "the move token was already used (replay refused)" in error_of(r2), r2
    # The bound job cannot change its VM or its user either.
    r3 = call(cl, 1, 2, as_h1, "migrate.reserve", {"job": 90003, "vm": "mt3"})
    assert "job 90003 of host h1 moves VM mt1, not mt3" in error_of(r3), r3
    call(cl, 1, 2, as_h1, "migrate.unreserve", {"job": 90003})

    # Presented by a host other than the one the token names (via): refused.
    as_h2 = host_identity(cl, 2)
    tok = move_token(alice, "alice", "mt1", "h1", "h2")
    r = call(cl, 2, 1, as_h2, "migrate.reserve", {"job": 90005, "vm": "mt1", "move_token": tok})
    assert "may be presented by host h1, not by h2" in error_of(r), r

    # At the source: alice's request needs her token, for this VM.
    r = call(cl, 2, 1, alice, "vm.move", {"name": "mt1", "to": "h2"})
    assert "a move for user:alice needs a move token signed by that user" in error_of(r), r
    r = call(cl, 2, 1, alice, "vm.move", {"name": "mt1", "to": "h2",
                                          "move_token": move_token(alice, "alice", "other", "h1", "h2")})
    assert "the move token is for VM other, not mt1" in error_of(r), r

    cl.assert_only_on("mt1", 1)
    assert cl.verify("mt1", 1)
    assert_answers_quickly(cl, 1)
    assert_answers_quickly(cl, 2)

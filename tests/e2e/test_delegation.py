"""Constrained delegation: a user connected to h1 moves a VM from h2 to h3.
h1 presents a token the user signed (Ed25519); h2 accepts it only if its own
policy lets h1 act for users, and only for what the token names."""
import base64
import json
import os
import re
import signal
import subprocess
import time

import pytest

from migrationlib import make_cluster
from vmovelib import VMOVE


@pytest.fixture
def cl(request):
    return make_cluster(request, n=3)


def token(cl, ident, vm, src, dst, via="h1"):
    p = subprocess.run([VMOVE, "--identity", ident, "token", "create", vm, "--from", src, "--to", dst, "--via", via],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def relay_move(cl, ident, vm, src, dst, tok=None):
    args = ["move", vm, "--from", src, "--to", dst]
    if tok is not None:
        path = os.path.join(cl.tb.root, f"token-{time.monotonic_ns()}.json")
        with open(path, "w") as f:
            json.dump(tok, f)
        args += ["--token-file", path]
    return cl.tb.vmove_tcp(2, 1, *args, identity=ident, check=False)


def sign(ident, payload_text):
    """Sign a hand-made payload with the user's key (openssl pkeyutl, Ed25519:
    a one-shot operation, so the input must be a file)."""
    path = os.path.join(ident, "payload.txt")
    with open(path, "w") as f:
        f.write(payload_text)
    p = subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", os.path.join(ident, "user.key"), "-in", path],
                       capture_output=True, check=True)
    os.unlink(path)
    return base64.b64encode(p.stdout).decode()


def ctrl_c_during_delegated_move(cl, alice):
    h1, h3 = cl.tb.host(1), cl.tb.host(3)
    argv = [VMOVE, "-H", f"h1@{h1.mgmt_ip}:{h1.port}", "--identity", alice, "move", "dl1", "--from", "h3",
            "--to", "h2", "--bandwidth", "40M"]   # Mbit/s: the move lasts long enough to be interrupted
    proc = cl.tb.run_in(2, argv, popen=True)
    lines = []
    for line in proc.stderr:             # "job N: PHASE" once h3's job is streamed
        lines.append(line)
        if re.match(r"job \d+: ", line):
            break
    assert proc.poll() is None, "".join(lines)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    text = "".join(lines) + err
    assert proc.returncode == 130, text
    jid = int(re.search(r"job (\d+): ", text).group(1))
    target = f"h3@{h3.mgmt_ip}:{h3.port}"
    assert f"job {jid} continues on host h3 (Ctrl-C stops only this client)" in text, text
    assert f"cancel it:  vmove -H {target} jobs cancel {jid}" in text, text
    assert f"follow it:  vmove -H {target} jobs watch {jid}" in text, text
    # The printed follow command reaches h3 and sees the job end by itself.
    cl.v(3, "acl", "grant", "user:alice", "vm.read")
    watch = cl.tb.vmove_tcp(2, 3, "jobs", "watch", str(jid), identity=alice, check=False, timeout=300)
    assert watch.returncode == 0 and "migrated dl1 to h2" in watch.stdout, (watch.stdout, watch.stderr)


def test_delegated_move_and_refusals(cl):
    cl.create_guest("dl1", mem=32, host=2)
    cl.boot("dl1", i=2)
    alice = cl.tb.issue_user("alice")
    cl.v(1, "acl", "grant", "user:alice", "migrate.out", "vm.read")
    cl.v(2, "acl", "grant", "user:alice", "migrate.out", "migrate.in")
    cl.v(3, "acl", "grant", "user:alice", "migrate.in", "migrate.out")

    # h2 has no policy for h1 yet: the error says which host must allow which, and how.
    p = relay_move(cl, alice, "dl1", "h2", "h3")
    assert p.returncode == 1 and "host h2 does not allow host:h1 to act for users" in p.stderr, p.stderr
    assert "vmove host set --allow-delegation-from host:h1" in p.stderr
    cl.v(2, "host", "set", "--allow-delegation-from", "host:h1")

    t1 = token(cl, alice, "dl1", "h2", "h3")
    p = relay_move(cl, alice, "dl1", "h2", "h3", t1)
    assert p.returncode == 0, p.stderr
    cl.assert_only_on("dl1", 3)
    assert cl.verify("dl1", 3)

    # The same token again: refused.
    p = relay_move(cl, alice, "dl1", "h2", "h3", t1)
    assert p.returncode == 1 and "already used (replay refused)" in p.stderr, p.stderr

    # h3 lets the group of relays act for users (h1 is in it).
    cl.v(3, "acl", "group", "add", "relays", "host:h1")
    cl.v(3, "host", "set", "--allow-delegation-from", "group:relays")

    # Scoped to another VM, or another destination: refused.
    p = relay_move(cl, alice, "dl1", "h3", "h2", token(cl, alice, "other", "h3", "h2"))
    assert p.returncode == 1 and "token is for VM other, not dl1" in p.stderr, p.stderr
    p = relay_move(cl, alice, "dl1", "h3", "h2", token(cl, alice, "dl1", "h3", "h9"))
    assert p.returncode == 1 and "for a move to h9, not to h2" in p.stderr, p.stderr

    # Tampered: the payload changed after signing.
    t = token(cl, alice, "dl1", "h3", "h2")
    t["payload"] = t["payload"].replace('"dst":"h2"', '"dst":"h2" ')
    p = relay_move(cl, alice, "dl1", "h3", "h2", t)
    assert p.returncode == 1 and "signature does not match" in p.stderr, p.stderr

    # Expired: a correctly signed token whose lifetime is over.
    now = int(time.time())
    payload = json.dumps({"dst": "h2", "exp": now - 60, "iat": now - 360, "nonce": "x" * 22, "op": "migrate",
                          "src": "h3", "user": "alice", "via": "h1", "vm": "dl1"}, separators=(",", ":"),
                         sort_keys=True)
    t = dict(t, payload=payload, sig=sign(alice, payload))
    p = relay_move(cl, alice, "dl1", "h3", "h2", t)
    assert p.returncode == 1 and "expired" in p.stderr, p.stderr
    cl.assert_only_on("dl1", 3)

    # Correctly signed tokens that a careful host still refuses: no nonce
    # (replayable), a ten-year life (kept for later), bound to another
    # relaying host (stolen by h1 from h2's user).
    good = {"dst": "h2", "exp": now + 200, "iat": now, "nonce": "n" * 22, "op": "migrate", "src": "h3",
            "user": "alice", "via": "h1", "vm": "dl1"}
    for change, why in (({"nonce": None}, 'has no "nonce"'),
                        ({"exp": now + 10 * 365 * 86400}, "over the 300 s allowed"),
                        ({"via": "h2"}, "may be presented by host h2, not by h1")):
        fields = {k: v for k, v in dict(good, **change).items() if v is not None}
        payload = json.dumps(fields, separators=(",", ":"), sort_keys=True)
        p = relay_move(cl, alice, "dl1", "h3", "h2", dict(t, payload=payload, sig=sign(alice, payload)))
        assert p.returncode == 1 and why in p.stderr, (why, p.stderr)
        cl.assert_only_on("dl1", 3)

    # A valid token moves it back; Ctrl-C during that delegated move says the
    # job goes on on h3 (the source), with the -H that reaches h3; it does.
    ctrl_c_during_delegated_move(cl, alice)
    cl.assert_only_on("dl1", 2)
    assert cl.verify("dl1", 2)

    # The decisions are in h2's and h3's audit logs.
    a3 = cl.v(3, "audit", "--limit", "300")["records"]
    denials = " ".join(r.get("reason") or "" for r in a3 if r["verdict"] == "denied")
    for why in ("token is for VM other", "move to h9", "signature does not match", "expired"):
        assert why in denials, why
    a2 = cl.v(2, "audit", "--limit", "300")["records"]
    assert any(r["action"] == "delegation" and r["who"] == "user:alice" and r["verdict"] == "allowed" for r in a2)

"""Moves that cannot start say why, in words, and stop waiting after
--max-wait; flags that would do nothing are refused (issue 18, items 2-3)."""
import time

from migrationlib import make_cluster
from vmovelib import wait_for

import pytest


@pytest.fixture
def cl(request):
    return make_cluster(request)


def test_waiting_move_says_why_and_gives_up(cl):
    h2 = cl.tb.host(2)
    cl.create_guest("pw1")
    cl.boot("pw1")

    # Flags that would do nothing: exit 2, naming the flag, before any call.
    for extra, flag in ((["--state-dir", cl.tb.shared_dir], "--state-dir"), (["--keep-source"], "--keep-source"),
                        (["--token-file", "/nonexistent"], "--token-file"), (["--max-wait", "soon"], "--max-wait")):
        p = cl.run(1, "move", "pw1", "--to", h2.name, *extra)
        assert p.returncode == 2 and flag in p.stderr, (extra, p.returncode, p.stderr)

    # A destination that is down: nothing listens on that port.
    cl.v(1, "peer", "add", "h9", f"{h2.mgmt_ip}:{h2.port + 1}")
    t0 = time.monotonic()
    p = cl.run(1, "move", "pw1", "--to", "h9", "--max-wait", "4")
    took = time.monotonic() - t0
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "within --max-wait 4 s" in p.stderr and f"connection refused at {h2.mgmt_ip}:{h2.port + 1}" in p.stderr, \
        p.stderr
    assert "queued (position 0, waiting for h9: cannot reach host h9: connection refused" in p.stderr, p.stderr
    # One reserve call and one 2 s retry past the limit at most.
    assert took < 4 + 12, took
    print(f"\nmove to a host that is down failed after {took:.1f} s (--max-wait 4)")

    # A certificate that names another host: h2's address under the name h3.
    cl.v(1, "peer", "add", "h3", f"{h2.mgmt_ip}:{h2.port}")
    jid = cl.v(1, "move", "pw1", "--to", "h3", "--no-wait", "--max-wait", "120")["job"]
    want = f"the certificate at {h2.mgmt_ip}:{h2.port} names {h2.name}, expected h3"
    j = wait_for(lambda: (j := cl.v(1, "jobs", "show", str(jid))) and
                 want in ((j.get("progress") or {}).get("reason") or "") and j, 30, "the reason in the job")
    assert j["state"] == "queued", j
    listing = cl.run(1, "jobs", "list")
    assert want in listing.stdout, listing.stdout
    cl.v(1, "jobs", "cancel", str(jid))
    wait_for(lambda: cl.v(1, "jobs", "show", str(jid))["state"] == "cancelled", 30, "the cancel")

    # Nothing was touched: the guest runs on h1 only, its data intact, and
    # a move to the real h2 works at once.
    cl.assert_only_on("pw1", 1)
    assert cl.verify("pw1", 1)
    p, done, _ = cl.move("pw1", 1, 2)
    assert done and done["job"]["state"] == "succeeded", p.stderr
    assert cl.verify("pw1", 2)

"""Rights at both ends of a migration: the user and both hosts must be
authorised, and every refusal names the missing right, principal and host."""
import os

import pytest

from migrationlib import make_cluster


@pytest.fixture
def cl(request):
    return make_cluster(request)


def remote_move(cl, ident, name, *extra):
    return cl.tb.vmove_tcp(2, 1, "move", name, "--to", "h2", *extra, identity=ident, check=False)


def test_rights_at_both_ends(cl):
    cl.create_guest("ac1", mem=32)
    cl.boot("ac1")
    alice = cl.tb.issue_user("alice")
    cl.v(1, "acl", "grant", "user:alice", "vm.read")

    # The user lacks migrate.out at the source.
    p = remote_move(cl, alice, "ac1")
    assert p.returncode == 1 and "permission denied: user:alice lacks migrate.out on host h1" in p.stderr, p.stderr

    # ... then lacks migrate.in at the destination.
    cl.v(1, "acl", "grant", "user:alice", "migrate.out")
    p = remote_move(cl, alice, "ac1")
    assert p.returncode == 1 and "user:alice lacks migrate.in on host h2" in p.stderr, p.stderr
    cl.v(2, "acl", "grant", "user:alice", "migrate.in")

    # The source host lacks migrate.in at the destination.
    cl.v(2, "acl", "revoke", "host:h1", "migrate.in")
    p = remote_move(cl, alice, "ac1")
    assert p.returncode == 1 and "host:h1 lacks migrate.in on host h2" in p.stderr, p.stderr
    cl.v(2, "acl", "grant", "host:h1", "migrate.in")

    # The destination host lacks migrate.out at the source.
    cl.v(1, "acl", "revoke", "host:h2", "migrate.out")
    p = remote_move(cl, alice, "ac1")
    assert p.returncode == 1 and "host:h2 lacks migrate.out on host h1" in p.stderr, p.stderr
    cl.v(1, "acl", "grant", "host:h2", "migrate.out")
    cl.assert_only_on("ac1", 1)

    # With every grant in place the move succeeds.
    p = remote_move(cl, alice, "ac1")
    assert p.returncode == 0, p.stderr
    cl.assert_only_on("ac1", 2)
    assert cl.verify("ac1", 2)

    # Both hosts audited the decisions.
    a1 = cl.v(1, "audit", "--limit", "200")["records"]
    a2 = cl.v(2, "audit", "--limit", "200")["records"]
    assert any(r["who"] == "user:alice" and r["verdict"] == "denied" and r["action"] == "vm.move" for r in a1)
    assert any(r["who"] == "host:h2" and r["verdict"] == "denied" for r in a1)
    assert any(r["who"] == "user:alice" and r["verdict"] == "denied" for r in a2)
    assert any(r["who"] == "host:h1" and r["verdict"] == "denied" for r in a2)
    assert any(r["who"] == "user:alice" and r["verdict"] == "allowed" and r["vm"] == "ac1" for r in a2)

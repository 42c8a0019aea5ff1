"""The pre-flight check (issue 18, item 2): `vmove move --check` and
`vmove move-storage --check` list every problem of a move at once, each with
the command that fixes it and the host to run it on, and change nothing; a
move refused by one of them lists them all in its error.  One two-host bed
for the file: h1 ready to send, h2 missing three things."""
import json
import os
import shlex
import subprocess
import tempfile
import time

import pytest

from migrationlib import Cluster, tbmod
from vmovelib import BIN, CACHE, allow_dir_args

MISSING = {("migration.incoming", "h2"), ("rights.host", "h2"), ("migration.network", "h2")}


@pytest.fixture(scope="module")
def cl(request):
    tb = tbmod.make_testbed(request, n_hosts=2, tls=True,
                            vmoved=os.path.join(BIN, "vmoved"), vmove=os.path.join(BIN, "vmove"))
    # A file system too small for any disk, mounted before vmoved starts
    # (each vmoved's mount namespace is a copy made at its start).
    small = os.path.join(tb.root, "small")
    os.makedirs(small, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", small], check=True)
    request.addfinalizer(lambda: subprocess.run(["umount", "-l", small], check=False))
    c = Cluster(tb, 2)
    for i in (1, 2):
        c.start(i)
    h1, h2 = tb.host(1), tb.host(2)
    dirs = allow_dir_args(tb.allowed_dirs() + [CACHE])
    # h1: everything a source needs.
    c.v(1, "peer", "add", "h2", f"{h2.mgmt_ip}:{h2.port}")
    c.v(1, "acl", "grant", "host:h2", "migrate.in", "migrate.out")
    c.v(1, "host", "set", "--migration-incoming", "on", "--migration-outgoing", "on",
        "--migration-network", tb.subnet("mig"), *dirs)
    # h2: knows h1 and allows the paths, but incoming is off, host:h1 has no
    # rights there and it has no migration network.
    c.v(2, "peer", "add", "h1", f"{h1.mgmt_ip}:{h1.port}")
    c.v(2, "host", "set", "--migration-outgoing", "on", *dirs)

    def stop():
        for i in (1, 2):
            if tb.host(i).proc is not None and tb.host(i).proc.poll() is None:
                c.stop(i)
    request.addfinalizer(stop)
    c.create_guest("pc1")
    c.boot("pc1")
    return c


def final(p):
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert lines, (p.returncode, p.stdout, p.stderr)
    return json.loads(lines[-1])


def problems_of(items):
    return {(it["item"], it["host"]): it for it in items if not it["ok"]}


def where(cl, name):
    return 1 if name in cl.vm_names(1) else 2


def test_check_lists_every_problem_and_the_fixes_make_the_move_work(cl):
    t0 = time.monotonic()
    p = cl.run(1, "--json", "move", "pc1", "--to", "h2", "--check")
    took = time.monotonic() - t0
    doc = final(p)
    assert p.returncode == 1 and doc["ok"] is False and doc["error"]["code"] == "check_failed", (p.stdout, p.stderr)
    problems = problems_of(doc["items"])
    assert set(problems) == MISSING, json.dumps(list(problems.values()), indent=1)
    for it in problems.values():
        assert it["fix"].startswith("vmove "), it
    # Everything else that was checked passed (the VM, h1's side, h2's engine).
    checked = {it["item"] for it in doc["items"] if it["status"] == "ok"}
    assert {"vm", "peer", "migration.outgoing", "accel", "qemu", "memory"} <= checked, checked
    print(f"\n--check with 3 problems took {took:.2f} s")

    # The same for people: a table, each fix with its host.
    table = cl.run(1, "move", "pc1", "--to", "h2", "--check")
    assert table.returncode == 1 and "3 problem(s)" in table.stdout, table.stdout
    assert "fix [on h2]: vmove host set --migration-incoming on" in table.stdout, table.stdout
    assert "fix [on h2]: vmove acl grant host:h1 migrate.in" in table.stdout, table.stdout

    # A real move is refused, and its error lists the whole set, not the first.
    p = cl.run(1, "--json", "move", "pc1", "--to", "h2")
    assert p.returncode == 1, p.stdout
    err = final(p)["error"]
    assert {(c["item"], c["host"]) for c in err["checks"]} == MISSING, err
    human = cl.run(1, "move", "pc1", "--to", "h2")
    assert human.returncode == 1 and "vmove host set --migration-incoming on" in human.stderr, human.stderr
    cl.assert_only_on("pc1", 1)

    # Run the fixes as printed, each on its host; then the check passes ...
    for (_, host), it in sorted(problems.items()):
        argv = shlex.split(it["fix"])
        assert argv[0] == "vmove", it
        cl.v(int(host[1:]), *argv[1:])
    p = cl.run(1, "--json", "move", "pc1", "--to", "h2", "--check")
    doc = final(p)
    assert p.returncode == 0 and doc["ok"] is True and not problems_of(doc["items"]), json.dumps(doc, indent=1)
    # ... and the move works at the first try.
    p, done, _ = cl.move("pc1", 1, 2)
    assert done and done["state"] == "succeeded", p.stderr
    cl.assert_only_on("pc1", 2)
    assert cl.verify("pc1", 2)


def test_check_against_a_host_that_is_down_says_why(cl):
    src = where(cl, "pc1")
    h2 = cl.tb.host(2)
    cl.v(src, "peer", "add", "h9", f"{h2.mgmt_ip}:{h2.port + 1}", "--no-verify")
    t0 = time.monotonic()
    p = cl.run(src, "--json", "move", "pc1", "--to", "h9", "--check")
    took = time.monotonic() - t0
    doc = final(p)
    assert p.returncode == 1 and not doc["ok"], p.stdout
    peer = problems_of(doc["items"])[("peer", "h9")]
    assert f"connection refused at {h2.mgmt_ip}:{h2.port + 1}" in peer["problem"], peer
    assert any(it["item"] == "destination" and it["status"] == "unchecked" for it in doc["items"]), doc
    assert took < 10, took
    cl.v(src, "peer", "remove", "h9")
    print(f"\n--check against a host that is down took {took:.2f} s")


def test_move_storage_check_reports_policy_and_space(cl):
    src = where(cl, "pc1")
    outside = tempfile.mkdtemp(prefix="vmove-check-outside-")
    try:
        p = cl.run(src, "--json", "move-storage", "pc1", "--to", outside, "--check")
        doc = final(p)
        assert p.returncode == 1 and doc["error"]["code"] == "check_failed", p.stdout
        (it,) = [i for i in doc["items"] if not i["ok"]]
        assert "outside the directories this host allows" in it["problem"], it
        assert it["fix"] == f"vmove host set --allow-dir storage={os.path.realpath(outside)}", it
    finally:
        os.rmdir(outside)
    small = os.path.join(cl.tb.root, "small")
    p = cl.run(src, "move-storage", "pc1", "--to", small, "--check")
    assert p.returncode == 1 and "storage.space" in p.stdout and "PROBLEM" in p.stdout and " free" in p.stdout, p.stdout
    # The real move says the same, and vmoved lives on: the space problem
    # used to print the name of a directory already freed (ASan caught it).
    p = cl.run(src, "move-storage", "pc1", "--to", small)
    assert p.returncode == 1 and "free, the disks moving there need" in p.stderr, (p.returncode, p.stderr)
    assert cl.v(src, "host", "show")["name"] == f"h{src}"
    # A good target passes, and nothing moved.
    good = os.path.join(cl.tb.shared_dir, "moved")
    os.makedirs(good, exist_ok=True)
    p = cl.run(src, "--json", "move-storage", "pc1", "--to", good, "--check")
    assert p.returncode == 0 and final(p)["ok"], p.stdout
    assert not os.listdir(good)


def test_move_storage_refuses_flags_that_would_do_nothing(cl):
    src = where(cl, "pc1")
    d = cl.tb.shared_dir
    # --to with every --disk naming its own directory: no disk would go to --to.
    p = cl.run(src, "move-storage", "pc1", "--to", d, "--disk", f"vda={d}")
    assert p.returncode == 2 and "--to does nothing: every --disk names its own directory" in p.stderr, p.stderr
    # The same disk twice: the first --disk would be dropped.
    p = cl.run(src, "--json", "move-storage", "pc1", "--disk", "vda", "--disk", f"vda={d}", "--check")
    doc = final(p)
    assert p.returncode == 2 and doc["error"]["code"] == "usage", p.stdout
    assert doc["error"]["message"] == "--disk vda is given twice: name each disk once", doc
    # Still accepted: --to for the disks named without =DIR.
    p = cl.run(src, "--json", "move-storage", "pc1", "--to", d, "--disk", "vda", "--check")
    assert p.returncode != 2 and "items" in final(p), (p.returncode, p.stdout, p.stderr)


def test_delegated_check_names_the_policy_and_rights(cl):
    """alice, connected to the relay, checks a move of a VM on the other host
    (--from): each round lists what stands in the way with its fix; after
    the fixes the delegated move works at the first try."""
    src = where(cl, "pc1")
    relay = 3 - src
    alice = cl.tb.issue_user("alice")
    cl.v(relay, "acl", "grant", "user:alice", "migrate.out", "vm.read")
    argv = ["move", "pc1", "--from", f"h{src}", "--to", f"h{relay}"]
    rounds = []
    for _ in range(5):
        p = cl.tb.vmove_tcp(src, relay, "--json", *argv, "--check", identity=alice, check=False)
        doc = final(p)
        if doc["ok"]:
            break
        problems = problems_of(doc["items"])
        rounds.append(sorted(problems))
        for it in problems.values():
            assert it.get("fix", "").startswith("vmove "), it
            cl.v(int(it["host"][1:]), *shlex.split(it["fix"])[1:])
    assert doc["ok"] and p.returncode == 0, (rounds, p.stdout, p.stderr)
    # The first round names the source's delegation policy, and its fix.
    assert ("delegation", f"h{src}") in rounds[0], rounds
    print(f"\ndelegated check: {len(rounds)} round(s) of fixes: {rounds}")
    p = cl.tb.vmove_tcp(src, relay, *argv, identity=alice, check=False)
    assert p.returncode == 0, p.stderr
    cl.assert_only_on("pc1", relay)
    assert cl.verify("pc1", relay)


def test_user_without_migrate_out_gets_that_one_denial(cl):
    """A user who may see the VM but not move it (vm.read, no migrate.out)
    gets exactly that denial from `move --check` and from `move`, and not
    the pre-flight list: the list would show the hosts' settings and
    rights to someone who has no right to move (docs/SECURITY.md)."""
    src = where(cl, "pc1")
    dst = 3 - src
    bob = cl.tb.issue_user("bob")
    cl.v(src, "acl", "grant", "user:bob", "vm.read")
    for extra in (["--check"], []):
        p = cl.tb.vmove_tcp(src, src, "--json", "move", "pc1", "--to", f"h{dst}", *extra, identity=bob, check=False)
        doc = final(p)
        assert p.returncode != 0 and not doc["ok"], (extra, p.stdout, p.stderr)
        err = doc["error"]
        assert err["code"] == "permission_denied" and "migrate.out" in err["message"], (extra, err)
        assert "items" not in doc and "checks" not in err, (extra, doc)
        assert "user:bob" in err["message"], err
    cl.assert_only_on("pc1", src)


def test_quick_check_covers_the_state_dir(cl):
    """`move --quick --check` checks where the guest's memory would be
    written (--state-dir, or next to the first disk): allowed here, writable,
    and with room for the memory; each problem with its fix."""
    src = where(cl, "pc1")
    dst = 3 - src

    def state_items(*extra):
        p = cl.run(src, "--json", "move", "pc1", "--to", f"h{dst}", "--quick", *extra, "--check")
        return [i for i in final(p)["items"] if i["item"].startswith("state.")]

    outside = tempfile.mkdtemp(prefix="vmove-check-state-")
    try:
        (it,) = state_items("--state-dir", outside)
        assert not it["ok"] and it["item"] == "state.dir" and it["host"] == f"h{src}", it
        assert "outside the directories this host allows" in it["problem"], it
        assert it["fix"] == f"vmove host set --allow-dir state={outside}", it
    finally:
        os.rmdir(outside)
    (it,) = state_items("--state-dir", os.path.join(cl.tb.root, "small"))     # a 64 KiB tmpfs
    assert not it["ok"] and it["item"] == "state.space" and "needs up to 256M" in it["problem"], it
    (it,) = state_items()          # next to the first disk, on the shared storage
    assert it["ok"] and it["item"] == "state.dir", it
    assert where(cl, "pc1") == src

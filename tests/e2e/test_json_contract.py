"""docs/JSON.md, the one JSON contract, against a real vmoved: every command
of the command table (as `vmove --help` lists it) run with --json, in a case
that succeeds and one that fails, prints on stdout zero or more stream lines
{"event", "data"} and then exactly one final document, an object whose "ok"
is true exactly when the exit status is 0 and which, when false, carries
"error": {"code", "message"}.  Also `vm info`, `vm set`, `vm list`,
`--disk PATH,size=` and the units of issue #18 on a stopped VM, and on one
running VM under TCG (the one guest this file boots)."""
import json
import os
import re
import subprocess

import pytest

from test_cli_help import COMMANDS
from vmovelib import Agent, cleanup, make_root

OK, FAIL, EITHER = True, False, None


@pytest.fixture(scope="module")
def bed():
    root = make_root("vmove-json-")
    agent = Agent(root).start()
    try:
        yield agent, root
    finally:
        cleanup([agent], root)


def final_of(p, what):
    """Check the contract on one run; return its final document."""
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    assert lines, f"{what}: nothing on stdout (rc {p.returncode}, stderr {p.stderr[-500:]!r})"
    docs = []
    for l in lines:
        try:
            docs.append(json.loads(l))
        except ValueError:
            raise AssertionError(f"{what}: a line of stdout is not JSON: {l[:200]!r}")
    *stream, final = docs
    for s in stream:
        assert isinstance(s, dict) and set(s) == {"event", "data"} and isinstance(s["event"], str), \
            f"{what}: not a stream line before the final document: {s}"
    assert isinstance(final, dict) and isinstance(final.get("ok"), bool), f"{what}: final document {final}"
    assert final["ok"] == (p.returncode == 0), f"{what}: ok={final['ok']} but exit status {p.returncode}"
    if not final["ok"]:
        err = final.get("error")
        assert isinstance(err, dict) and isinstance(err.get("code"), str) and err.get("message"), \
            f"{what}: a failure without error.code/message: {final}"
    return final


def cases(root):
    """[(words, args, expected ok)] covering every command; EITHER where the
    outcome depends on things this test does not set up (a peer, etcd), the
    contract is checked all the same."""
    d = lambda *p: os.path.join(root, *p)
    return [
        (["host", "show"], [], OK), (["host", "show"], ["--bogus"], FAIL),
        (["host", "set"], ["--max-live-migrations", "3"], OK), (["host", "set"], ["--max-live-migrations", "x"], FAIL),
        (["host", "events"], [], OK), (["host", "events"], ["extra"], FAIL),
        (["host", "drain"], ["nosuchhost", "--to", "h9"], FAIL), (["host", "drain"], ["--no-wait"], EITHER),
        (["host", "resume"], [], EITHER), (["host", "resume"], ["a", "b", "c"], FAIL),
        (["peer", "add"], ["h9", "127.0.0.1:1"], FAIL),   # nothing there to verify
        (["peer", "add"], ["h9", "127.0.0.1:1", "--no-verify"], OK), (["peer", "add"], [], FAIL),
        (["peer", "list"], [], OK), (["peer", "list"], ["x"], FAIL),
        (["ui", "login"], [], FAIL), (["ui", "login"], ["extra"], FAIL),   # no --identity over the local socket
        (["host", "pair"], [], FAIL), (["host", "pair"], ["h9@127.0.0.1:1"], FAIL),   # nothing listens there
        (["peer", "remove"], ["h9"], EITHER), (["peer", "remove"], ["nosuchpeer"], FAIL),
        (["acl", "grant"], ["user:bob", "vm.read"], OK), (["acl", "grant"], ["user:bob", "no.such.right"], FAIL),
        (["acl", "list"], [], OK), (["acl", "list"], ["--bogus"], FAIL),
        (["acl", "group"], ["add", "ops", "user:bob"], OK), (["acl", "group"], ["frob", "ops", "user:bob"], FAIL),
        (["acl", "revoke"], ["user:bob", "vm.read"], OK), (["acl", "revoke"], [], FAIL),
        (["audit"], [], OK), (["audit"], ["--bogus"], FAIL),
        (["pki", "init"], [d("ca")], OK), (["pki", "init"], [d("ca")], FAIL),   # refuses to overwrite
        (["pki", "issue-host"], ["h9", "--ca", d("ca"), "--out", d("h9tls")], OK),
        (["pki", "issue-host"], ["h9", "--ca", d("noca"), "--out", d("x")], FAIL),
        (["pki", "issue-user"], ["bob", "--ca", d("ca"), "--out", d("bob")], OK),
        (["pki", "issue-user"], ["bob"], FAIL),
        (["token", "create"], ["vm1", "--from", "h2", "--to", "h3", "--via", "h1"], OK, ["--identity", d("bob")]),
        (["token", "create"], ["vm1", "--from", "h2", "--to", "h3", "--via", "h1"], FAIL),
        (["vm", "create"], ["j1", "--memory", "64", "--disk", "8M", "--disk", d("img", "j1b.qcow2") + ",size=4M"], OK),
        (["vm", "create"], ["j2", "--memory", "lots"], FAIL),
        (["vm", "list"], [], OK), (["vm", "list"], ["x"], FAIL),
        (["vm", "info"], ["j1"], OK), (["vm", "info"], ["nosuchvm"], FAIL),
        (["vm", "show"], ["j1"], OK), (["vm", "show"], ["nosuchvm"], FAIL),
        (["vm", "set"], ["j1", "--cpus", "2", "--add-nic", "sw0"], OK), (["vm", "set"], ["j1", "--cpus", "0"], FAIL),
        (["vm", "start"], ["nosuchvm"], FAIL), (["vm", "start"], [], FAIL),
        (["vm", "stop"], ["j1"], FAIL), (["vm", "stop"], ["nosuchvm"], FAIL),
        (["vm", "pause"], ["j1"], FAIL), (["vm", "resume"], ["j1"], FAIL),
        (["vm", "console"], ["j1"], OK), (["vm", "console"], ["nosuchvm"], FAIL),
        (["vm", "guest"], ["j1", "ping"], FAIL), (["vm", "guest"], ["j1"], FAIL),
        (["vm", "export"], ["j1", "--to", d("export")], EITHER), (["vm", "export"], ["j1"], FAIL),
        (["vm", "import"], [d("export"), "--check"], EITHER), (["vm", "import"], [d("nothing-here"), "--check"], FAIL),
        (["vm", "ha-clear"], ["j1"], FAIL), (["vm", "ha-clear"], [], FAIL),
        (["checkpoint", "list"], ["j1"], OK), (["checkpoint", "list"], ["nosuchvm"], FAIL),
        (["checkpoint", "create"], ["nosuchvm", "c1"], FAIL), (["checkpoint", "create"], ["j1"], FAIL),
        (["checkpoint", "apply"], ["j1", "nosuchck"], FAIL), (["checkpoint", "delete"], ["j1", "nosuchck"], FAIL),
        (["move"], ["j1", "--to", "nosuchhost"], FAIL), (["move"], ["j1", "--to", "h2", "--bandwidth", "fast"], FAIL),
        (["move-storage"], ["nosuchvm", "--to", d("img")], FAIL),
        (["move-storage"], ["j1", "--to", d("img"), "--bandwidth", "1Gbit"], FAIL),
        (["move"], ["j1", "--to", "nosuchhost", "--check"], FAIL),   # the check's list, ok false
        (["move"], ["j1", "--to", "h2", "--check", "--no-wait"], FAIL),   # usage
        (["move-storage"], ["j1", "--to", d("img"), "--check"], EITHER),
        (["move-storage"], ["nosuchvm", "--to", d("img"), "--check"], FAIL),
        (["cluster", "create"], ["c1", "--etcd", "http://127.0.0.1:1"], FAIL), (["cluster", "create"], ["c1"], FAIL),
        (["cluster", "join"], ["c1", "--etcd", "http://127.0.0.1:1"], FAIL),
        (["cluster", "leave"], [], FAIL), (["cluster", "show"], [], EITHER), (["cluster", "events"], [], EITHER),
        (["jobs", "list"], [], OK), (["jobs", "list"], ["--bogus"], FAIL),
        (["jobs", "show"], ["99999"], FAIL), (["jobs", "show"], ["x"], FAIL),
        (["jobs", "watch"], ["99999"], FAIL), (["jobs", "cancel"], ["99999"], FAIL),
        (["vm", "delete"], ["j1"], OK), (["vm", "delete"], ["j1"], FAIL),
        (["help"], [], OK), (["help"], ["vm", "info"], OK), (["help"], ["nosuch"], FAIL),
    ]


def test_every_command_keeps_the_contract(bed):
    agent, root = bed
    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    table = cases(root)
    listed = {tuple(c) for c in COMMANDS}
    covered = {tuple(c[0]) for c in table}
    assert listed and listed <= covered, f"commands without a JSON case: {sorted(listed - covered)}"
    seen = {}
    for words, args, want, *pre in table:
        pre = pre[0] if pre else []   # global options, before the command
        what = " ".join(pre + words + args)
        p = agent.run(*pre, *words, *args, check=False, json_out=True, timeout=120)
        final = final_of(p, what)
        if want is not EITHER:
            assert final["ok"] == want, f"{what}: expected ok={want}, got {final} / {p.stderr[-400:]}"
        if not final["ok"] and p.returncode == 2:   # or an import that is not possible as asked
            assert final["error"]["code"] in ("usage", "incompatible"), f"{what}: exit 2 is a usage error: {final}"
        seen.setdefault(tuple(words), set()).add(final["ok"])
    # Every command failed cleanly at least once (its JSON error), and most succeeded once.
    assert all(False in v for v in seen.values()), [k for k, v in seen.items() if False not in v]
    assert sum(True in v for v in seen.values()) >= 25


def test_help_and_usage_errors_are_json(bed):
    agent, _ = bed
    for argv in (["--help"], ["vm", "--help"], ["vm", "info", "--help"]):
        p = agent.run(*argv, check=False, json_out=True)
        final = final_of(p, " ".join(argv))
        assert final["ok"] and "usage: vmove" in final["help"]
    for argv in ([], ["nosuchcmd"], ["vm"], ["vm", "frob"], ["vm", "info"], ["--bogus", "vm", "list"]):
        p = agent.run(*argv, check=False, json_out=True)
        final = final_of(p, " ".join(argv) or "(nothing)")
        assert p.returncode == 2 and final["error"]["code"] == "usage", (argv, final)


def vm_json(root, name):
    with open(os.path.join(root, "h1", "state", "vms", name, "vm.json")) as f:
        return json.load(f)


def test_vm_set_and_info_on_a_stopped_vm(bed):
    agent, root = bed
    img = os.path.join(root, "img")
    os.makedirs(img, exist_ok=True)
    agent.vmove("vm", "create", "s1", "--memory", "1024", "--disk", "16M", "--nic", "sw0")
    info = agent.vmove("vm", "info", "s1")
    assert info["memory_mib"] == 1024 and info["host"] == "h1" and info["state"] == "stopped"
    (vda,) = info["disks"]
    assert vda["id"] == "vda" and vda["format"] == "qcow2" and vda["virtual_bytes"] == 16 << 20
    assert 0 < vda["allocated_bytes"] < vda["virtual_bytes"]
    (nic,) = info["nics"]
    assert nic["switch"] == "sw0" and re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", nic["mac"]) and nic["tap"]
    human = agent.run("vm", "info", "s1").stdout
    for needle in ("host:", "h1", "1024 MiB", "vda", "16.0 MiB", nic["mac"], nic["tap"], "sw0"):
        assert needle in human, (needle, human)

    # One request, every kind of change; the new disk at a path of our choosing.
    new = os.path.join(img, "s1-data.qcow2")
    r = agent.vmove("vm", "set", "s1", "--memory", "2G", "--cpus", "3", "--add-disk", f"{new},size=32M",
                    "--add-nic", "sw1", "--remove-nic", nic["mac"])
    assert len(r["changes"]) == 5, r
    cfg = vm_json(root, "s1")
    assert cfg["memory_mib"] == 2048 and cfg["cpus"] == 3
    assert [d["path"] for d in cfg["disks"]][-1] == new and os.path.exists(new)
    assert [n["switch"] for n in cfg["nics"]] == ["sw1"]
    sizes = {d["id"]: d["virtual_bytes"] for d in agent.vmove("vm", "info", "s1")["disks"]}
    assert sizes == {"vda": 16 << 20, "vdb": 32 << 20}

    # Bad requests change nothing, and say what is wrong.
    before = vm_json(root, "s1")
    for args, needle in ((["--add-disk", f"{new},size=8M"], "already exists"),
                         (["--add-disk", "8M", "--remove-disk", "vdz"], "no disk"),
                         (["--memory", "8"], "memory"),
                         (["--add-disk", "/nonexistent/dir/x.qcow2,size=8M"], "x.qcow2"),
                         (["--add-disk", "8M", "--add-nic", "not a switch!"], "nics")):
        p = agent.run("vm", "set", "s1", *args, check=False)
        assert p.returncode == 1 and needle in p.stderr, (args, p.stderr)
        assert vm_json(root, "s1") == before, args
    # No stray disk file from the refused requests:
    assert not [f for f in os.listdir(os.path.join(root, "h1", "state", "vms", "s1")) if f.startswith("vdc")]
    # Units are checked in the client: exit 2 naming the flag, nothing sent.
    for flag, value in (("--memory", "2X"), ("--add-disk", "lots")):
        p = agent.run("vm", "set", "s1", flag, value, check=False)
        assert p.returncode == 2 and flag in p.stderr, p.stderr
    # Detaching keeps the file.
    agent.vmove("vm", "set", "s1", "--remove-disk", "vdb")
    assert os.path.exists(new) and [d["id"] for d in vm_json(root, "s1")["disks"]] == ["vda"]
    # vm create refuses an existing file with size=, and leaves nothing behind.
    p = agent.run("vm", "create", "s2", "--disk", f"{new},size=8M", check=False)
    assert p.returncode == 1 and "already exists" in p.stderr and not os.path.exists(
        os.path.join(root, "h1", "state", "vms", "s2"))
    listing = agent.run("vm", "list").stdout.splitlines()
    assert re.match(r"NAME\s+HOST\s+STATE\s+MEMORY\s+CPUS\s+UPTIME", listing[0]), listing
    assert any(re.match(r"s1\s+h1\s+stopped\s+2048 MiB\s+3\s", l) for l in listing), listing
    agent.vmove("vm", "delete", "s1")


def test_running_vm_info_and_set_refused(bed):
    agent, root = bed
    agent.create_guest("r1", memory="128M", disks=("16M",))
    agent.vmove("vm", "start", "r1")
    info = agent.vmove("vm", "info", "r1")
    assert info["state"] == "running" and info["uptime_ms"] >= 0 and info["accel"] == "tcg"
    assert info["disks"][0]["format"] == "qcow2"   # qemu-img reads it beside the running QEMU (-U)
    p = agent.run("--json", "vm", "set", "r1", "--memory", "256M", check=False)
    final = final_of(p, "vm set on a running VM")
    assert p.returncode == 1 and final["error"]["code"] == "wrong_state" and "stopped" in final["error"]["message"]
    assert vm_json(root, "r1")["memory_mib"] == 128
    assert re.search(r"r1\s+h1\s+running", agent.run("vm", "list").stdout)
    agent.vmove("vm", "stop", "r1", "--force")

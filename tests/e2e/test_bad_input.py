"""Bad input gets a clear error and changes nothing."""
import json
import os

from vmovelib import Agent, KERNEL, INITRD, cleanup


def listing(agent):
    return sorted(os.listdir(os.path.join(agent.state_dir, "vms")))


def expect_error(agent, args, *fragments, rc=1):
    before = listing(agent)
    p = agent.run(*args, check=False)
    assert p.returncode == rc, (p.returncode, p.stdout, p.stderr)
    for f in fragments:
        assert f in p.stderr, (f, p.stderr)
    assert "Traceback" not in p.stderr and "AddressSanitizer" not in p.stderr
    assert listing(agent) == before, "a failed command left something behind"
    return p


def test_bad_create_inputs(agent):
    agent.create_guest("dup")
    # Sizes are checked in the client (common/units.c): exit 2 naming the flag.
    expect_error(agent, ["vm", "create", "x1", "--memory", "12X"], "--memory \"12X\": unknown unit", rc=2)
    expect_error(agent, ["vm", "create", "x1", "--memory", "lots"], "--memory \"lots\": expected a number", rc=2)
    expect_error(agent, ["vm", "create", "x1", "--memory", "8M"], "memory_mib")
    expect_error(agent, ["vm", "create", "x1", "--disk", "10Q"], "--disk \"10Q\"", rc=2)
    expect_error(agent, ["vm", "create", "x1", "--disk", "/nonexistent/x.qcow2"], "No such file")
    expect_error(agent, ["vm", "create", "x1", "--cpus", "two"], "--cpus", rc=2)
    expect_error(agent, ["vm", "create", "x1", "--cpus", "0"], "cpus")
    expect_error(agent, ["vm", "create", "dup"], "already exists")
    expect_error(agent, ["vm", "create", "x1", "--kernel", "/no/such/kernel"], "kernel /no/such/kernel", "No such file")
    expect_error(agent, ["vm", "create", "bad/name"], "invalid VM name")
    expect_error(agent, ["vm", "create", "x1", "--initrd", INITRD], "need --kernel")
    expect_error(agent, ["vm", "create", "x1", "--bogus"], "unknown option --bogus", rc=2)
    raw = os.path.join(agent.root, "raw.img")
    with open(raw, "wb") as f:
        f.truncate(1 << 20)
    expect_error(agent, ["vm", "create", "x1", "--disk", raw], "not a qcow2 image")


def test_unknown_commands(agent):
    expect_error(agent, ["frobnicate"], "unknown command \"frobnicate\"", rc=2)
    expect_error(agent, ["vm", "explode", "x"], "unknown vm command", rc=2)
    expect_error(agent, ["vm", "start", "nosuchvm"], "no VM named \"nosuchvm\"")
    expect_error(agent, ["jobs", "show", "abc"], "expected a job id", rc=2)
    expect_error(agent, ["host", "set", "--accel", "quantum"], "accel: expected auto, kvm or tcg")


def test_json_errors_are_machine_readable(agent):
    p = agent.run("--json", "vm", "show", "ghost", check=False)
    assert p.returncode == 1
    err = json.loads(p.stdout.strip().splitlines()[-1])["error"]
    assert err["code"] == "not_found" and "ghost" in err["message"]


def test_malformed_vm_json_is_reported_not_fatal(root):
    a = Agent(root, "h1").start()
    try:
        a.create_guest("good")
        a.create_guest("bad")
        a.stop()
        cfg = os.path.join(a.state_dir, "vms", "bad", "vm.json")
        with open(cfg, "w") as f:
            f.write('{"version": 1, "name": "bad", "memory_mib": "lots"')   # truncated JSON
        a.start()
        vms = {v["name"]: v for v in a.vmove("vm", "list")["vms"]}
        assert vms["good"]["state"] == "stopped"
        assert vms["bad"]["state"] == "broken"
        assert "vm.json" in vms["bad"]["error"]
        p = a.run("vm", "start", "bad", check=False)
        assert p.returncode == 1 and "broken" in p.stderr
        with open(cfg, "w") as f:
            json.dump({"version": 1, "name": "bad", "cpu": 2}, f)
        a.stop()
        a.start()
        bad = {v["name"]: v for v in a.vmove("vm", "list")["vms"]}["bad"]
        assert bad["state"] == "broken" and "cpu" in bad["error"]
        # The broken VM can be deleted; the good one is untouched.
        a.vmove("vm", "delete", "bad")
        assert [v["name"] for v in a.vmove("vm", "list")["vms"]] == ["good"]
        a.stop()
    finally:
        cleanup([a], root)


def test_bad_daemon_arguments(root):
    import subprocess
    from vmovelib import VMOVED
    # --state-dir and --socket have defaults now (docs/OPERATIONS.md); what is
    # still refused is a --config that is not there, and a bad config file.
    p = subprocess.run([VMOVED, "--config", root + "/missing.conf"], capture_output=True, text=True)
    assert p.returncode == 2 and f"cannot read {root}/missing.conf: No such file" in p.stderr
    bad = os.path.join(root, "bad.conf")
    with open(bad, "w") as f:
        f.write("# comment\nname = h1\nlsten = 127.0.0.1:7070\n")
    p = subprocess.run([VMOVED, "--config", bad, "--state-dir", root, "--socket", root + "/s"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and f'{bad}:3: unknown key "lsten"' in p.stderr, p.stderr
    assert not os.path.exists(root + "/s"), "vmoved must not start on a bad config file"
    p = subprocess.run([VMOVED, "--state-dir", root, "--socket", root + "/s", "--bogus"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "usage: vmoved" in p.stderr
    p = subprocess.run([VMOVED, "--state-dir", root, "--socket", root + "/s", "--listen", "127.0.0.1:1"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "--listen and --tls-dir go together" in p.stderr
    with open(os.path.join(root, "host.json"), "w") as f:
        f.write('{"accel": "warp"}')
    p = subprocess.run([VMOVED, "--state-dir", root, "--socket", root + "/s", "--foreground"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "accel" in p.stderr


def test_second_vmoved_on_same_socket_refused(agent):
    import subprocess
    from vmovelib import VMOVED
    p = subprocess.run([VMOVED, "--state-dir", agent.state_dir + "2", "--socket", agent.sock, "--foreground"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "already listening" in p.stderr
    assert agent.vmove("host", "show")["name"] == "h1"


def test_unsupported_qemu_refused(root):
    """vmoved refuses a QEMU older than 10 at start, and says how to get one."""
    import subprocess
    from vmovelib import VMOVED
    fake = os.path.join(root, "qemu-7")
    with open(fake, "w") as f:
        f.write('#!/bin/sh\necho "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)"\n')
    os.chmod(fake, 0o755)
    env = dict(os.environ, VMOVE_QEMU=fake)
    p = subprocess.run([VMOVED, "--state-dir", root, "--socket", root + "/s", "--foreground"],
                       capture_output=True, text=True, timeout=30, env=env)
    assert p.returncode == 1, p.stderr
    assert "is QEMU 7.2.22; vmoved needs QEMU 10.0 or newer" in p.stderr
    assert "bookworm-backports" in p.stderr
    assert not os.path.exists(root + "/s")

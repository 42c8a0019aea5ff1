"""VM lifecycle on one host, with the real guest."""
import os
import signal
import subprocess
import time

import pytest

from vmovelib import Agent, VmoveError, wait_for, cleanup


def test_create_start_pause_resume_verify_stop(agent):
    agent.create_guest("g1", append="vmove.mem=64 vmove.mem_rate=20 vmove.disk=vda vmove.disk_rate=256")
    vm = agent.vm("g1")
    assert vm["state"] == "stopped"
    assert os.path.exists(os.path.join(vm["dir"], "vm.json"))
    assert os.path.exists(os.path.join(vm["dir"], "vda.qcow2"))

    job = agent.vmove("vm", "start", "g1")
    assert job["state"] == "succeeded", job
    assert agent.vm("g1")["state"] == "running"
    agent.wait_guest_ready("g1")

    agent.vmove("vm", "pause", "g1")
    assert agent.vm("g1")["state"] == "paused"
    # Paused: the guest cannot answer; the memory writer stands still.
    s1 = agent.vm("g1")
    time.sleep(0.5)
    agent.vmove("vm", "resume", "g1")
    assert agent.vm("g1")["state"] == "running"

    time.sleep(2)   # let the workloads write across the pause
    assert agent.guest("g1", "verify").startswith("ok"), "guest data did not verify"
    status = agent.guest("g1", "status")
    assert '"pages_rewritten"' in status

    console = agent.run("vm", "console", "g1").stdout
    assert "vmove-guest: ready" in console

    job = agent.vmove("vm", "stop", "g1", "--force")
    assert job["state"] == "succeeded"
    assert agent.vm("g1")["state"] == "stopped"
    assert agent.qemu_pids() == []
    # Every transition is in the journal.
    events = agent.vmove("host", "events", "--vm", "g1")["events"]
    kinds = [(e["kind"], (e["detail"] or {}).get("to")) for e in events]
    for st in ("starting", "running", "paused", "stopping", "stopped"):
        assert ("vm.state", st) in kinds, kinds
    assert s1["state"] == "paused"


def test_graceful_stop_times_out_without_acpi_handling_and_keeps_vm(agent):
    """A guest that ignores the power button: stop fails clearly, VM keeps running."""
    agent.create_guest("g2", append="vmove.noacpi=1")
    agent.vmove("vm", "start", "g2")
    agent.wait_guest_ready("g2")
    p = agent.run("vm", "stop", "g2", "--timeout", "2", check=False)
    if p.returncode == 0:
        # The guest honoured ACPI after all: that is fine too, it stopped.
        assert agent.vm("g2")["state"] == "stopped"
        return
    assert "did not power off within 2 s" in p.stderr
    assert "--force" in p.stderr
    assert agent.vm("g2")["state"] == "running"
    assert agent.guest("g2", "ping") == "pong"


def test_vmoved_sigkill_and_restart_reattaches(agent):
    agent.create_guest("r1", append="vmove.mem=64 vmove.mem_rate=20 vmove.disk=vda")
    agent.vmove("vm", "start", "r1")
    agent.wait_guest_ready("r1")
    pid = agent.vm("r1")["pid"]

    agent.stop(sig=signal.SIGKILL)
    assert agent.qemu_pids() == [pid], "QEMU must survive vmoved"
    time.sleep(1)
    agent.start()
    vm = agent.vm("r1")
    assert vm["state"] == "running" and vm["pid"] == pid
    wait_for(lambda: agent.vm("r1")["qmp_connected"], 10, "QMP re-attach")
    assert agent.guest("r1", "verify").startswith("ok")
    # The re-attached VM is fully controllable.
    agent.vmove("vm", "pause", "r1")
    agent.vmove("vm", "resume", "r1")
    agent.vmove("vm", "stop", "r1", "--force")
    assert agent.vm("r1")["state"] == "stopped"


def test_qemu_killed_is_reported_crashed(agent):
    agent.create_guest("c1")
    agent.vmove("vm", "start", "c1")
    agent.wait_guest_ready("c1")
    os.kill(agent.vm("c1")["pid"], signal.SIGKILL)
    vm = wait_for(lambda: (v := agent.vm("c1"))["state"] == "crashed" and v, 15, "crashed state")
    assert "killed by signal 9" in vm["crash"]["description"]
    assert "qemu_log_tail" in vm["crash"] and "console_tail" in vm["crash"]
    assert "vmove-guest" in vm["crash"]["console_tail"]
    # A crashed VM can be started again.
    agent.vmove("vm", "start", "c1")
    agent.wait_guest_ready("c1")
    agent.vmove("vm", "stop", "c1", "--force")


def test_qemu_killed_while_vmoved_down_is_crashed_after_restart(agent):
    agent.create_guest("c2")
    agent.vmove("vm", "start", "c2")
    pid = agent.vm("c2")["pid"]
    agent.stop(sig=signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    agent.start()
    vm = agent.vm("c2")
    assert vm["state"] == "crashed"
    assert "killed by signal 9" in vm["crash"]["description"]


def test_jobs_list_show_watch_cancel(agent):
    agent.create_guest("j1")
    out = agent.vmove("vm", "start", "j1", "--no-wait")
    jid = out["job"]
    final = agent.vmove("jobs", "watch", str(jid))
    assert final["id"] == jid and final["state"] == "succeeded" and final["kind"] == "vm.start"
    assert agent.vmove("jobs", "show", str(jid))["state"] == "succeeded"
    assert any(j["id"] == jid for j in agent.vmove("jobs", "list", "--all")["jobs"])
    p = agent.run("jobs", "cancel", str(jid), check=False)
    assert p.returncode != 0 and "already finished" in p.stderr
    p = agent.run("jobs", "show", "999999", check=False)
    assert p.returncode != 0 and "no job 999999" in p.stderr

    # Cancel a graceful stop: the VM keeps running.
    agent.wait_guest_ready("j1")
    jid = agent.vmove("vm", "stop", "j1", "--timeout", "600", "--no-wait")["job"]
    agent.vmove("jobs", "cancel", str(jid))
    final = agent.vmove("jobs", "show", str(jid))
    assert final["state"] == "cancelled", final
    assert agent.vm("j1")["state"] == "running"
    assert agent.guest("j1", "ping") == "pong"
    agent.vmove("vm", "stop", "j1", "--force")


def test_delete(agent):
    agent.create_guest("d1")
    agent.create_guest("d2")
    d1 = agent.vm("d1")["dir"]
    d2 = agent.vm("d2")["dir"]
    agent.vmove("vm", "delete", "d1")
    assert not os.path.exists(d1)
    agent.vmove("vm", "delete", "d2", "--keep-disks")
    assert os.path.exists(os.path.join(d2, "vda.qcow2")) and not os.path.exists(os.path.join(d2, "vm.json"))
    assert agent.vmove("vm", "list")["vms"] == []


def test_delete_running_vm_refused(agent):
    agent.create_guest("d3")
    agent.vmove("vm", "start", "d3")
    p = agent.run("vm", "delete", "d3", check=False)
    assert p.returncode == 1 and "stop it first" in p.stderr
    assert agent.vm("d3")["state"] == "running"
    agent.vmove("vm", "stop", "d3", "--force")

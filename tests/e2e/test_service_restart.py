"""A running VM survives what `systemctl restart vmoved` does to vmoved's
processes under the unit's KillMode=process, and would not under the
default KillMode=control-group.

There is no running systemd here, so the test does what systemd does: it
starts vmoved in a cgroup of its own (a real one: processes forked by
vmoved, the shims and QEMUs, land in it whatever their session or parent,
as under vmoved.service) and in a new session, then stops it the way each
KillMode does: SIGTERM to the main PID only (process), or SIGTERM to every
process in the cgroup (control-group), and starts it again."""
import os
import signal
import subprocess
import time

import pytest

import vmovelib
from vmovelib import ENV, VMOVED, Agent, wait_for, cleanup

CGROUP_ROOTS = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def make_cgroup(name):
    for root in CGROUP_ROOTS:
        path = os.path.join(root, name)
        try:
            os.mkdir(path)
        except OSError:
            continue
        if os.path.exists(os.path.join(path, "cgroup.procs")):
            return path
        os.rmdir(path)
    pytest.fail("no writable cgroup hierarchy to emulate vmoved.service's cgroup")


def members(cgroup):
    with open(os.path.join(cgroup, "cgroup.procs")) as f:
        return [int(l) for l in f if l.strip()]


class ServiceAgent(Agent):
    """vmoved started as systemd starts vmoved.service: in the unit's cgroup,
    in a session of its own, in the foreground (Type=notify)."""

    def __init__(self, root, cgroup):
        super().__init__(root, "h1")
        self.cgroup = cgroup

    def start(self):
        procs = os.path.join(self.cgroup, "cgroup.procs")

        def enter_cgroup():
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

        cmd = [VMOVED, "--state-dir", self.state_dir, "--socket", self.sock, "--name", self.name,
               "--foreground"]
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=ENV,
                                     preexec_fn=enter_cgroup, start_new_session=True)
        wait_for(lambda: self.proc.poll() is not None or self.try_call("host", "show"), 30, "vmoved to answer")
        self.allow_test_dirs()
        assert self.proc.poll() is None, self.read_log()
        return self


def stop_kill_mode_process(agent):
    """KillMode=process: SIGTERM to the main PID alone."""
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=30) == 0, agent.read_log()[-3000:]


def stop_kill_mode_control_group(agent):
    """KillMode=control-group (the default): SIGTERM to every process of the
    cgroup, then (after TimeoutStopSec) SIGKILL to what is left."""
    for pid in members(agent.cgroup):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    agent.proc.wait(timeout=30)
    deadline = time.time() + 10
    while members(agent.cgroup) and time.time() < deadline:
        time.sleep(0.2)
    for pid in members(agent.cgroup):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def service(root):
    cgroup = make_cgroup(f"vmove-test-{os.getpid()}.service")
    a = ServiceAgent(root, cgroup)
    try:
        yield a.start()
    finally:
        for pid in members(cgroup):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        cleanup([a], root)
        wait_for(lambda: not members(cgroup), 10, "the test cgroup to empty")
        os.rmdir(cgroup)


def test_vm_survives_restart_with_kill_mode_process(service):
    service.create_guest("svc", append="vmove.mem=32 vmove.mem_rate=10 vmove.disk=vda")
    service.vmove("vm", "start", "svc")
    service.wait_guest_ready("svc")
    qemu = service.vm("svc")["pid"]
    # The set-up is real: QEMU (forked by the shim, in its own session) is in
    # vmoved's cgroup, as it is in vmoved.service's.
    assert qemu in members(service.cgroup)

    stop_kill_mode_process(service)
    assert service.qemu_pids() == [qemu], "QEMU must survive a restart"
    service.start()
    vm = service.vm("svc")
    assert vm["state"] == "running" and vm["pid"] == qemu
    wait_for(lambda: service.vm("svc")["qmp_connected"], 15, "QMP re-attach")
    assert service.guest("svc", "verify").startswith("ok")

    # The same VM under the default KillMode: the restart kills it.  This is
    # what the unit's KillMode=process prevents, and shows this test can fail.
    stop_kill_mode_control_group(service)
    assert service.qemu_pids() == [], "control-group semantics should have killed QEMU"
    service.start()
    vm = wait_for(lambda: (v := service.vm("svc"))["state"] != "running" and v, 15, "the VM's death")
    # "crashed" if vmoved learns of QEMU's death after the restart, "stopped"
    # if the dying vmoved saw QEMU's SIGTERM exit first: dead either way.
    assert vm["state"] in ("crashed", "stopped"), vm["state"]
    assert service.run("vm", "guest", "svc", "verify", check=False).returncode != 0

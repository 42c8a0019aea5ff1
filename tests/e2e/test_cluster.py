"""Failover clusters (docs/CLUSTER.md): 3 hosts, a 3-member etcd over TLS,
an HA guest with its memory and disk workloads.  Each fault ends with the
VM running on exactly one host, its disk data verified, and the RTO
printed; an oracle outside the hosts samples every 10 ms which hosts run a
QEMU for the VM and fails the test on any overlap.  QEMU's image locks are
off (VMOVE_TEST_NO_IMAGE_LOCKING), so they cannot hide a protocol bug."""
import json
import signal
import time

import pytest

from clusterlib import TTL, DoubleRunOracle, make_ha, rto_line
from vmovelib import wait_for


@pytest.fixture
def ha(request):
    h = make_ha(request)
    h.form()
    return h


def start_oracle(ha, name):
    o = DoubleRunOracle(ha, name)
    o.start()
    return o


def assert_no_double_run(oracle):
    oracle.stop()
    assert oracle.samples > 50, f"the oracle took only {oracle.samples} samples"
    assert not oracle.overlaps, f"the VM ran on two hosts at once: {oracle.overlaps[:5]}"


def wait_running_elsewhere(ha, name, not_on, timeout=60):
    def moved():
        o = ha.owner(name, skip=(not_on,))
        return o if o and o["host"] != ha.tb.host(not_on).name and o["state"] == "running" else None
    wait_for(moved, timeout, f"{name} running on a survivor")
    owner = moved()
    return owner, time.monotonic()


def host_index(ha, name):
    return next(i for i in range(1, ha.n + 1) if ha.tb.host(i).name == name)


def test_cluster_forms_and_refuses_bad_setups(ha):
    s = ha.show(2)
    assert s["cluster"] == "c1" and s["coordinator"] in {"h1", "h2", "h3"}, s
    assert [m["host"] for m in s["members"]] == ["h1", "h2", "h3"]
    assert all(m["state"] == "up" and m["lease_ttl_left_s"] > 0 for m in s["members"]), s
    assert s["unsafe_plain_http"] is False and "warning" not in s
    # A second create of the same name, a join of an unknown cluster, plain HTTP.
    p = ha.run(1, "cluster", "create", "c1", "--etcd", ha.tb.etcd_urls)
    assert p.returncode != 0 and "already a member" in p.stderr, p.stderr
    p = ha.run(1, "cluster", "join", "nope", "--etcd", "http://10.0.0.1:2379")
    assert p.returncode != 0 and "already a member" in p.stderr
    # A disk outside the shared storage cannot be HA.
    import os
    import subprocess
    local = os.path.join(ha.tb.root, "h1", "local.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", local, "16M"], check=True)
    from vmovelib import INITRD, KERNEL
    ha.v(1, "vm", "create", "loc", "--memory", "64M", "--disk", local, "--kernel", KERNEL, "--initrd", INITRD)
    p = ha.run(1, "vm", "set", "loc", "--ha", "on")
    assert p.returncode != 0 and "not on the cluster's shared storage" in p.stderr and "vda" in p.stderr, p.stderr
    # --isolation: only with --ha, only stop|keep; vm create's choice is kept by `vm set --ha on`.
    for bad in (["vm", "set", "loc", "--isolation", "keep"], ["vm", "set", "loc", "--ha", "on", "--isolation", "x"],
                ["vm", "set", "loc", "--ha", "off", "--isolation", "keep"],
                ["vm", "create", "k0", "--memory", "64M", "--isolation", "keep", "--kernel", KERNEL]):
        p = ha.run(1, *bad)
        assert p.returncode == 2 and "--isolation" in p.stderr, (bad, p.stderr)
    shared = os.path.join(ha.tb.shared_dir, "k1.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", shared, "16M"], check=True)
    r = ha.v(1, "vm", "create", "k1", "--memory", "64M", "--disk", shared, "--kernel", KERNEL, "--initrd", INITRD,
             "--ha", "--isolation", "keep")
    assert r["ha"] is True and r["isolation"] == "keep" and r["config"]["flags"]["isolation"] == "keep", r
    r = ha.v(1, "vm", "set", "k1", "--ha", "on")
    assert r["isolation"] == "keep", r
    o = ha.owner("k1")
    assert o["isolation"] == "keep" and o["state"] == "stopped" and o["restart_on_host_loss"] is False, o
    r = ha.v(1, "vm", "set", "k1", "--ha", "on", "--isolation", "stop")
    assert r["isolation"] == "stop" and ha.v(1, "vm", "show", "k1")["isolation"] == "stop", r
    assert ha.owner("k1")["restart_on_host_loss"] is True


def test_host_dies_vm_restarts_on_a_survivor(ha):
    ip = ha.create_ha_guest("ha1")
    ha.wait_echo(ip, 30)
    o = ha.owner("ha1")
    assert o["host"] == "h1" and o["state"] == "running", o
    oracle = start_oracle(ha, "ha1")
    t_fault = time.monotonic()
    ha.kill_namespace(1)
    owner, t_run = wait_running_elsewhere(ha, "ha1", 1, timeout=60)
    t_echo = ha.wait_echo(ip, 60)
    print(rto_line("h1 killed (every process of its namespace)", t_fault, t_run, t_echo))
    new = host_index(ha, owner["host"])
    assert ha.running_on("ha1") == [new]
    ha.wait_guest("ha1", new)
    ha.verify("ha1", new)
    ev = [e for e in ha.events(new) if e["vm"] == "ha1" and e.get("result") == "running"]
    assert ev and ev[-1]["from"] == "h1" and ev[-1]["to"] == owner["host"] and ev[-1]["proof_revision"] > 0, ev
    assert_no_double_run(oracle)


def test_vmoved_killed_the_shim_fences(ha):
    """vmoved SIGKILLed and not restarted: nothing renews the lease, so the
    shim kills QEMU at the kill deadline, before the lease expires."""
    ip = ha.create_ha_guest("ha2")
    oracle = start_oracle(ha, "ha2")
    t_fault = time.monotonic()
    ha.tb.stop_host(1, sig=signal.SIGKILL)
    owner, t_run = wait_running_elsewhere(ha, "ha2", 1)
    t_echo = ha.wait_echo(ip, 60)
    print(rto_line("h1's vmoved SIGKILLed", t_fault, t_run, t_echo))
    assert ha.qemu_of(1, "ha2") == [], "the shim did not kill h1's QEMU"
    new = host_index(ha, owner["host"])
    ha.wait_guest("ha2", new)
    ha.verify("ha2", new)
    assert_no_double_run(oracle)


def test_vmoved_restart_within_ttl_causes_no_failover(ha):
    ha.create_ha_guest("ha3")
    before = ha.owner("ha3")
    pid = ha.qemu_of(1, "ha3")
    oracle = start_oracle(ha, "ha3")
    ha.tb.stop_host(1, sig=signal.SIGKILL)
    ha.start(1)
    time.sleep(3 * TTL)
    after = ha.owner("ha3")
    assert ha.qemu_of(1, "ha3") == pid, "the guest's QEMU was replaced"
    assert after["host"] == "h1" and after["gen"] == before["gen"] and after["state"] == "running", after
    ha.verify("ha3", 1)
    assert_no_double_run(oracle)


def test_frozen_vmoved_does_not_act_on_stale_state(ha):
    """SIGSTOP for 2 TTL: the shim kills, the VM moves; the woken agent
    must not resume or restart its old copy."""
    ha.create_ha_guest("ha4")
    oracle = start_oracle(ha, "ha4")
    pid = ha.tb.host(1).proc.pid
    import os
    os.kill(pid, signal.SIGSTOP)
    t_fault = time.monotonic()
    try:
        owner, t_run = wait_running_elsewhere(ha, "ha4", 1)
        print(f"frozen vmoved: restarted elsewhere after {t_run - t_fault:.2f} s")
        time.sleep(max(0, 2 * TTL - (time.monotonic() - t_fault)))
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(2 * TTL)
    assert ha.running_on("ha4") == [host_index(ha, owner["host"])]
    o = ha.owner("ha4")
    assert o["host"] == owner["host"] and o["gen"] == owner["gen"], o
    # The woken agent re-registered with a new lease and is a member again.
    wait_for(lambda: any(m["host"] == "h1" and m["state"] == "up" for m in ha.show(2)["members"]), 20, "h1 up again")
    ha.verify("ha4", host_index(ha, owner["host"]))
    assert_no_double_run(oracle)


@pytest.fixture
def ha6(request):
    """TTL 6: the stall between pause and kill is 1.2 s (10 %-30 % of the
    TTL), room enough for a test to see the pause and lift the cut."""
    h = make_ha(request)
    h.form(ttl=6)
    return h


def test_link_blip_pauses_and_resumes_long_cut_fails_over(ha6):
    ha = ha6
    ip = ha.create_ha_guest("ha5")
    oracle = start_oracle(ha, "ha5")
    pid = ha.qemu_of(1, "ha5")
    # Well inside the pause margin: nothing at all.
    ha.tb.cut(1, "mgmt")
    time.sleep(2.0)
    ha.tb.restore(1, "mgmt")
    time.sleep(2)
    assert ha.qemu_of(1, "ha5") == pid and ha.owner("ha5")["host"] == "h1"
    # Past the pause deadline (4.2 s), not the kill deadline (5.4 s): paused, then resumed.
    gen = ha.owner("ha5")["gen"]
    ha.tb.cut(1, "mgmt")
    wait_for(lambda: ha.v(1, "vm", "show", "ha5")["state"] == "paused", 10, "paused by the fence",
             interval=0.02)
    ha.tb.restore(1, "mgmt")
    wait_for(lambda: ha.v(1, "vm", "show", "ha5")["state"] == "running", 10, "resumed after the blip")
    assert ha.qemu_of(1, "ha5") == pid, "a blip shorter than the kill margin killed the guest"
    o = ha.owner("ha5")
    assert o["host"] == "h1" and o["gen"] == gen, o
    log = open(ha.tb.host(1).log_path).read()
    assert "pausing the HA guests" in log and "resuming the HA guests" in log
    # 10 s: fenced on h1, restarted on a survivor.
    t_fault = time.monotonic()
    ha.tb.cut(1, "mgmt")
    owner, t_run = wait_running_elsewhere(ha, "ha5", 1)
    t_echo = ha.wait_echo(ip, 60)
    print(rto_line("h1's management link cut (TTL 6)", t_fault, t_run, t_echo))
    assert ha.qemu_of(1, "ha5") == []
    time.sleep(max(0, 10 - (time.monotonic() - t_fault)))
    ha.tb.restore(1, "mgmt")
    wait_for(lambda: any(m["host"] == "h1" and m["state"] == "up" for m in ha.show(2)["members"]), 20, "h1 back")
    time.sleep(1)
    new = host_index(ha, owner["host"])
    assert ha.running_on("ha5") == [new]
    ha.verify("ha5", new)
    assert_no_double_run(oracle)


def test_etcd_leader_loss_fences_nothing(ha):
    ha.create_ha_guest("ha6")
    pid = ha.qemu_of(1, "ha6")
    leader = ha.tb.etcd_leader()
    assert leader
    ha.tb.etcd_kill(leader)
    time.sleep(3 * TTL)
    assert ha.qemu_of(1, "ha6") == pid and ha.owner("ha6")["host"] == "h1"
    for i in range(1, 4):
        assert "pausing the HA guests" not in open(ha.tb.host(i).log_path).read()
    ha.tb.etcd_start(leader)
    ha.verify("ha6", 1)


def test_quorum_loss_fences_then_restarts_once(ha):
    """2 of 3 etcd members stopped for 10 s: nobody can tell "cut off" from
    "etcd down", so every HA guest is fenced; once quorum is back it is
    restarted exactly once."""
    ip = ha.create_ha_guest("ha7")
    oracle = start_oracle(ha, "ha7")
    gen = ha.owner("ha7")["gen"]
    ha.tb.etcd_stop(2)
    ha.tb.etcd_stop(3)
    t_fault = time.monotonic()
    wait_for(lambda: ha.running_on("ha7") == [], 10, "the guest fenced")
    time.sleep(max(0, 10 - (time.monotonic() - t_fault)))
    assert ha.running_on("ha7") == [], "an HA guest ran without quorum"
    ha.tb.etcd_cont(2)
    ha.tb.etcd_cont(3)
    wait_for(lambda: (ha.owner("ha7") or {}).get("state") == "running", 60, "restart after quorum")
    ha.wait_echo(ip, 60)
    time.sleep(2)
    o = ha.owner("ha7")
    assert len(ha.running_on("ha7")) == 1
    ev = [e for e in ha.events(1) if e["vm"] == "ha7" and e["gen"] > gen and e.get("decision") == "starting"]
    assert len(ev) == 1, f"expected exactly one restart, got {ev}"
    ha.verify("ha7", host_index(ha, o["host"]))
    assert_no_double_run(oracle)


def test_live_migration_moves_the_owner_record(ha):
    """The record moves to the destination in the move's commit step: the
    VM is never killed as a stray copy, and it fails over from its new
    home.  The hosts have no `peer add`: members know each other."""
    assert ha.v(1, "host", "show")["peers"] == {}
    # The members are peers "from the cluster", probed like any peer.  A
    # member reads the others' addresses every 2.5 s (docs/CLUSTER.md), so
    # a member that joined last may take that long to be listed.
    wait_for(lambda: sorted(ha.v(1, "peer", "list").get("cluster_peers", {})) == ["h2", "h3"], 10,
             "h2 and h3 listed as peers from the cluster")
    pl = ha.v(1, "peer", "list")
    assert pl["peers"] == {} and pl["cluster"] == "c1", pl
    assert sorted(pl["cluster_peers"]) == ["h2", "h3"], pl
    assert pl["cluster_peers"]["h2"] == f"{ha.tb.host(2).mgmt_ip}:{ha.tb.host(2).port}", pl
    assert all(pl["status"][h]["reachable"] for h in ("h2", "h3")), pl
    assert "(from cluster c1)" in ha.run(1, "peer", "list").stdout
    ip = ha.create_ha_guest("ha8")
    # The identity check is as strict as for a peer entry: a member record
    # whose address answers with another host's certificate is refused.
    h3 = ha.tb.host(3)
    ha.etcdctl("put", "/vmove/v1/c1/members/h9", json.dumps({"host": "h9", "addr": f"{h3.mgmt_ip}:{h3.port}"}))
    wait_for(lambda: "h9" in ha.v(1, "peer", "list").get("cluster_peers", {}), 20, "h9 read from the cluster")
    # (An unreachable destination is retried until --max-wait, as for a peer.)
    p, done, _ = ha.move("ha8", 1, 2, "--max-wait", "5", check=False, to_name="h9")
    assert p.returncode != 0 and "names h3, expected h9" in (p.stderr + json.dumps(done)), p.stderr
    ha.etcdctl("del", "/vmove/v1/c1/members/h9")
    assert ha.running_on("ha8") == [1] and ha.owner("ha8")["host"] == "h1"
    oracle = start_oracle(ha, "ha8")
    gen = ha.owner("ha8")["gen"]
    oracle.moving = True
    ha.move("ha8", 1, 2, probe_ip=ip)
    wait_for(lambda: ha.running_on("ha8") == [2], 10, "the source QEMU gone")
    oracle.moving = False
    o = ha.owner("ha8")
    assert o["host"] == "h2" and o["state"] == "running" and o["gen"] == gen + 1, o
    assert "moved here live from h1" in o["reason"], o
    time.sleep(2)     # several rounds of every member's reconcile
    assert ha.running_on("ha8") == [2]
    ha.verify("ha8", 2)
    ha.kill_namespace(2)
    owner, _ = wait_running_elsewhere(ha, "ha8", 2)
    assert owner["host"] in ("h1", "h3"), owner
    new = host_index(ha, owner["host"])
    ha.wait_guest("ha8", new)
    ha.verify("ha8", new)
    assert_no_double_run(oracle)


class KeepWatch:
    """From outside h1's vmoved: every ~0.1 s, the keep VM's state as h1's
    vmoved has it from QEMU (QMP STOP/RESUME events, i.e. what query-status
    says) and one UDP echo to the guest.  A fence that paused or killed it
    shows as a state other than running, or as a long silence."""

    def __init__(self, ha, name, ip):
        import threading
        self.ha, self.name, self.ip = ha, name, ip
        self.states, self.answers, self.asks = [], [], 0
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_ev.is_set():
            st = (self.ha.v(1, "vm", "show", self.name, check=False) or {}).get("state")
            self.states.append((time.monotonic(), st))
            self.asks += 1
            if self.ha.echo_ok(self.ip, timeout=0.5):
                self.answers.append(time.monotonic())
            time.sleep(0.1)

    def stop(self):
        self.stop_ev.set()
        self.thread.join(30)

    def longest_silence(self, t0, t1):
        ts = [t0] + [t for t in self.answers if t0 <= t <= t1] + [t1]
        return max(b - a for a, b in zip(ts, ts[1:]))


def test_isolation_keep_is_never_fenced_nor_restarted_and_is_readopted(ha):
    """h1 runs a `stop` VM and a `keep` VM; its management link is cut for
    12 s (4 TTL).  The stop VM is fenced on h1 and restarted on a survivor;
    the keep VM runs on h1 the whole time, never paused, and nowhere else;
    the cluster marks it isolated and says why; when the link returns h1
    re-adopts its record."""
    ip_s = ha.create_ha_guest("hs", k=0)
    ip_k = ha.create_ha_guest("hk", k=1, isolation="keep")
    assert ha.fence_deadline(1, "hk") == 0, "the keep VM's shim is armed"
    assert ha.fence_deadline(1, "hs") > 0, "the stop VM's shim is not armed"
    o = ha.owner("hk")
    assert o["host"] == "h1" and o["state"] == "running" and o["isolation"] == "keep", o
    assert o["restart_on_host_loss"] is False and "isolation keep" in o["no_restart_why"], o
    assert ha.owner("hs")["restart_on_host_loss"] is True
    assert ha.v(1, "vm", "show", "hk")["isolation"] == "keep"
    gen_k = o["gen"]
    pid_k = ha.qemu_of(1, "hk")
    assert len(pid_k) == 1
    ha.wait_echo(ip_k, 60)
    oracle_s, oracle_k = start_oracle(ha, "hs"), start_oracle(ha, "hk")
    watch = KeepWatch(ha, "hk", ip_k)
    t_fault = time.monotonic()
    ha.tb.cut(1, "mgmt")
    try:
        owner, t_run = wait_running_elsewhere(ha, "hs", 1)
        print(f"stop VM restarted on {owner['host']} {t_run - t_fault:.2f} s after the cut")
        wait_for(lambda: (ha.owner("hk", skip=(1,)) or {}).get("state") == "isolated", 30,
                 "the keep VM marked isolated")
        iso = ha.owner("hk", skip=(1,))
        assert iso["host"] == "h1" and "not restarted automatically" in iso["reason"], iso
        text = ha.run(2, "cluster", "show").stdout
        assert "hk is isolated and not restarted automatically" in text, text
        ev = [e for e in ha.events(2) if e["vm"] == "hk" and e.get("decision") == "isolated"]
        assert len(ev) == 1 and ev[0]["result"] == "not-restarted" and ev[0]["to"] is None, ev
        assert ev[0]["proof_revision"] > 0, ev
        time.sleep(max(0, 12 - (time.monotonic() - t_fault)))
        assert ha.qemu_of(1, "hs") == [], "the stop VM was not fenced on h1"
        assert ha.qemu_of(1, "hk") == pid_k, "the keep VM's QEMU on h1 was replaced or killed"
        assert ha.running_on("hk") == [1]
    finally:
        ha.tb.restore(1, "mgmt")
    t_back = time.monotonic()
    wait_for(lambda: (ha.owner("hk") or {}).get("state") == "running", 30, "the keep VM re-adopted")
    t_readopted = time.monotonic()
    watch.stop()
    o = ha.owner("hk")
    assert o["host"] == "h1" and "re-adopted" in o["reason"] and o["gen"] > gen_k, o
    print(f"keep VM re-adopted {t_readopted - t_back:.2f} s after the link returned")
    bad = [(round(t - t_fault, 2), st) for t, st in watch.states if st != "running"]
    assert not bad, f"the keep VM was not running on h1 at: {bad[:10]}"
    assert len(watch.states) > 30, f"only {len(watch.states)} samples of the keep VM"
    silence = watch.longest_silence(t_fault, t_back)
    print(f"keep VM: {len(watch.answers)} of {watch.asks} echoes answered; longest silence during the cut "
          f"{silence:.2f} s")
    assert silence < 4, f"the keep VM did not answer for {silence:.2f} s during the cut"
    ev = [e for e in ha.events(1) if e["vm"] == "hk" and e.get("decision") == "re-adopted"]
    assert len(ev) == 1 and ev[0]["from"] == "h1" and ev[0]["to"] == "h1", ev
    time.sleep(2)        # several reconcile rounds: nothing more happens
    assert ha.qemu_of(1, "hk") == pid_k and ha.owner("hk")["gen"] == o["gen"]
    new = host_index(ha, owner["host"])
    assert ha.running_on("hs") == [new] and ha.running_on("hk") == [1]
    assert "killing HA guest hk" not in open(ha.tb.host(1).log_path).read()
    ha.verify("hk", 1)
    ha.wait_guest("hs", new)
    ha.verify("hs", new)
    assert_no_double_run(oracle_s)
    assert_no_double_run(oracle_k)


# A longer variant of the isolation-keep case above: `make soak` runs it.
@pytest.mark.slow
def test_isolation_keep_rides_out_quorum_loss(ha):
    """2 of 3 etcd members stopped for 10 s: a keep VM is neither paused
    nor killed, and nothing restarts it; afterwards its record is normal."""
    ip = ha.create_ha_guest("hq", isolation="keep")
    ha.wait_echo(ip, 60)
    pid = ha.qemu_of(1, "hq")
    oracle = start_oracle(ha, "hq")
    watch = KeepWatch(ha, "hq", ip)
    ha.tb.etcd_stop(2)
    ha.tb.etcd_stop(3)
    t_fault = time.monotonic()
    try:
        time.sleep(10)
    finally:
        ha.tb.etcd_cont(2)
        ha.tb.etcd_cont(3)
    t_back = time.monotonic()
    wait_for(lambda: (ha.owner("hq") or {}).get("state") == "running"
             and ha.owner("hq")["host"] == "h1", 60, "the record normal again")
    time.sleep(3)
    watch.stop()
    assert ha.qemu_of(1, "hq") == pid, "the keep VM's QEMU was killed or replaced"
    assert ha.running_on("hq") == [1]
    bad = [(round(t - t_fault, 2), st) for t, st in watch.states if st != "running"]
    assert not bad, f"the keep VM was not running at: {bad[:10]}"
    silence = watch.longest_silence(t_fault, t_back)
    print(f"keep VM under quorum loss: longest silence {silence:.2f} s")
    assert silence < 4, f"the keep VM did not answer for {silence:.2f} s"
    log = open(ha.tb.host(1).log_path).read()
    assert "pausing the HA guests" in log, "the quorum loss did not reach the fence at all"
    assert "killing HA guest hq" not in log
    assert not [e for e in ha.events(1) if e["vm"] == "hq" and e.get("decision") == "starting"]
    ha.verify("hq", 1)
    assert_no_double_run(oracle)


# A longer variant of the isolation-keep case above: `make soak` runs it.
@pytest.mark.slow
def test_isolation_keep_host_dies_waits_for_ha_clear(ha):
    """h1 dies with a keep VM: the cluster cannot tell dead from cut off,
    so the VM stays isolated and nowhere runs it; a start by hand is
    refused; `vm ha-clear` (the admin's word that h1 is off) restarts it
    on a survivor, once."""
    ip = ha.create_ha_guest("hd", isolation="keep")
    oracle = start_oracle(ha, "hd")
    ha.kill_namespace(1)
    t_fault = time.monotonic()
    wait_for(lambda: (ha.owner("hd") or {}).get("state") == "isolated", 30, "marked isolated")
    time.sleep(max(0, 4 * TTL - (time.monotonic() - t_fault)))
    assert ha.running_on("hd") == [], "a keep VM was restarted without ha-clear"
    o = ha.owner("hd")
    assert o["state"] == "isolated" and o["host"] == "h1", o
    p = ha.run(2, "vm", "ha-clear", "nope")
    assert p.returncode != 0 and "no HA VM nope" in p.stderr, p.stderr
    r = ha.v(2, "vm", "ha-clear", "hd")
    assert r["state"] == "pending", r
    owner, _ = wait_running_elsewhere(ha, "hd", 1)
    new = host_index(ha, owner["host"])
    ha.wait_echo(ip, 60)
    assert ha.running_on("hd") == [new]
    ev = [e for e in ha.events(new) if e["vm"] == "hd"]
    assert [e["decision"] for e in ev][-2:] == ["isolated", "starting"], ev
    ha.wait_guest("hd", new)
    ha.verify("hd", new)
    assert_no_double_run(oracle)

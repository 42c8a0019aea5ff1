"""Live migration between two hosts in network namespaces, with the real
guest writing checksummed data to memory and disk throughout."""
import os
import signal
import time

import pytest

from migrationlib import make_cluster
from vmovelib import wait_for


@pytest.fixture
def cl(request):
    return make_cluster(request)


def start_move_no_wait(cl, name, src, dst, *extra):
    r = cl.v(src, "move", name, "--to", cl.tb.host(dst).name, "--no-wait", *extra)
    return r["job"]


def wait_transfer(cl, src, jid, min_percent=5):
    def in_transfer():
        j = cl.v(src, "jobs", "show", str(jid))
        p = j.get("progress") or {}
        return j["phase"] == "transfer" and p.get("percent", 0) >= min_percent and j
    return wait_for(in_transfer, 60, "the transfer phase")


def final_job(cl, i, jid, timeout=120):
    return wait_for(lambda: (j := cl.v(i, "jobs", "show", str(jid)))["state"] not in ("running", "queued") and j,
                    timeout, f"job {jid} to end")


def test_live_migration_there_and_back(cl):
    ip = cl.create_guest("lm1", mem=128, mem_rate=20, disk_rate=256)
    cl.boot("lm1")
    up_before = cl.v(1, "vm", "show", "lm1")["uptime_ms"]
    p, done, lines = cl.move("lm1", 1, 2, probe_ip=ip)
    assert done and done["job"]["state"] == "succeeded"
    # The guest did not boot again: its uptime carries on at the destination.
    assert cl.v(2, "vm", "show", "lm1")["uptime_ms"] >= up_before + done["job"]["result"]["total_ms"] * 0.9
    res = done["job"]["result"]
    assert res["bytes_sent"] > 128 << 20
    # QEMU 10 reports its downtime with "completed": never a 0 that a late
    # read would have to fix.
    assert res["qemu_downtime_ms"] > 0 and res["qemu_total_ms"] > 0
    print(f"\nh1->h2: total {res['total_ms']} ms, QEMU downtime {res['qemu_downtime_ms']} ms, "
          f"client downtime {done['probe']['max_gap_ms']:.1f} ms, {res['bytes_sent']} bytes")
    assert done["probe"]["received"] > 100
    # The destination's own record of the arrival, with the source's job id.
    arrivals = [j for j in cl.v(2, "jobs", "list", "--all")["jobs"] if j["kind"] == "migrate.incoming"]
    assert [(j["vm"], j["state"], j["params"]["source"], j["params"]["source_job"]) for j in arrivals] == \
        [("lm1", "succeeded", "h1", done["job"]["id"])], arrivals
    # The switch-over, step by step, in ms from the source QEMU's pause.
    sw = res["switchover"]
    steps = [(st["event"], st["host"]) for st in sw["steps"]]
    at = {st["event"]: st["at_ms"] for st in sw["steps"]}
    assert set(steps) == {("paused", "h1"), ("sent", "h1"), ("finish-sent", "h1"), ("loaded", "h2"),
                          ("committed", "h2"), ("resumed", "h2"), ("announced", "h2"), ("finish-answered", "h1")}, steps
    assert [st["at_ms"] for st in sw["steps"]] == sorted(at.values()), sw
    assert at["paused"] == 0 <= at["sent"] <= at["finish-sent"], sw
    assert at["loaded"] <= at["committed"] <= at["resumed"] <= at["announced"] <= at["finish-answered"], sw
    # Nothing runs the guest before the destination has the last of it and has committed.
    assert at["sent"] <= at["loaded"] + 2 and at["finish-sent"] <= at["committed"] + 2, sw
    # (The pause is counted back from QEMU's completion by QEMU's own
    # downtime, so "sent" equals qemu_downtime_ms by construction: not asserted.)
    # The client cannot hear the guest before it resumed (one machine, one clock).
    if "switchover_heard_ms" in done["probe"]:
        assert done["probe"]["switchover_heard_ms"] >= at["resumed"] - 2, (done["probe"], sw)
    print(f"switch-over: {sw['steps']}; client heard the guest at +{done['probe'].get('switchover_heard_ms')} ms")
    # Progress was streamed while it ran.
    progress = [l for l in lines if l.get("event") == "job" and (l["data"].get("progress") or {}).get("phase") == "transfer"]
    assert progress, "no progress events"
    for key in ("percent", "bytes_sent", "rate_Bps", "ram_remaining", "dirty_rate_Bps", "pass",
                "expected_downtime_ms", "eta_s"):
        assert key in progress[-1]["data"]["progress"], key
    cl.assert_only_on("lm1", 2)
    assert cl.verify("lm1", 2)

    # ... and back.
    p, done, _ = cl.move("lm1", 2, 1, probe_ip=ip)
    assert done["job"]["state"] == "succeeded"
    print(f"h2->h1: total {done['job']['result']['total_ms']} ms, client downtime {done['probe']['max_gap_ms']:.1f} ms")
    cl.assert_only_on("lm1", 1)
    assert cl.verify("lm1", 1)
    # Every phase is journaled on the source.
    kinds = [e["kind"] for e in cl.v(2, "host", "events", "--vm", "lm1")["events"]]
    assert "migration.succeeded" in kinds and "migration.incoming.finished" in kinds


def test_refusals(cl):
    cl.create_guest("rf1")
    cl.boot("rf1")
    # Outgoing disabled at the source.
    cl.v(1, "host", "set", "--migration-outgoing", "off")
    p = cl.run(1, "move", "rf1", "--to", "h2")
    assert p.returncode == 1 and "outgoing migration is disabled on host h1" in p.stderr
    cl.v(1, "host", "set", "--migration-outgoing", "on")
    # Incoming disabled at the destination.
    cl.v(2, "host", "set", "--migration-incoming", "off")
    p = cl.run(1, "move", "rf1", "--to", "h2")
    assert p.returncode == 1 and "incoming migration is disabled on host h2" in p.stderr, p.stderr
    cl.v(2, "host", "set", "--migration-incoming", "on")
    cl.assert_only_on("rf1", 1)

    # A network outside the allowed ones: h2 listens only on its mgmt subnet,
    # which h1 does not allow.
    cl.v(2, "host", "set", "--migration-network", cl.tb.subnet("mgmt"))
    p = cl.run(1, "move", "rf1", "--to", "h2")
    assert p.returncode == 1
    assert "outside h1's allowed migration networks" in p.stderr and cl.tb.subnet("mig") in p.stderr, p.stderr
    cl.v(2, "host", "set", "--migration-network", cl.tb.subnet("mig"))
    # A host with no address in its allowed networks says so, naming them.
    cl.v(2, "host", "set", "--migration-network", "192.0.2.0/24")
    p = cl.run(1, "move", "rf1", "--to", "h2")
    assert p.returncode == 1 and "no address in its allowed migration networks (192.0.2.0/24)" in p.stderr
    cl.v(2, "host", "set", "--migration-network", cl.tb.subnet("mig"))
    cl.assert_only_on("rf1", 1)
    assert cl.verify("rf1", 1)
    # Settings persist across a restart.
    cl.v(2, "host", "set", "--migration-network", "any")
    show = cl.v(2, "host", "show")
    assert show["migration"]["unsafe_any_network"] and "UNSAFE" in show["migration"]["warning"]
    cl.stop(2)
    cl.start(2)
    assert cl.v(2, "host", "show")["migration"]["networks"] == ["any"]


def test_refused_missing_switch_reports_all_problems(cl):
    cl.tb.run_in(1, "ip link add sw9 type bridge && ip link set sw9 up")
    cl.create_guest("sw1")
    # A second NIC on a switch only h1 has.
    cfg = cl.v(1, "vm", "show", "sw1")
    cl.v(1, "vm", "delete", "sw1", "--keep-disks")
    disk = cfg["config"]["disks"][0]["path"]
    from vmovelib import KERNEL, INITRD
    cl.v(1, "vm", "create", "sw1", "--memory", "64000M", "--disk", disk, "--nic", "switch0", "--nic", "sw9",
         "--kernel", KERNEL, "--initrd", INITRD, "--append", "console=ttyS0 quiet")
    # Too much memory for h2 as well: both problems are reported at once.
    cl.v(1, "vm", "start", "sw1", check=False)
    if cl.v(1, "vm", "show", "sw1")["state"] != "running":
        pytest.skip("this machine cannot start a 64000M guest on the source")
    p = cl.run(1, "move", "sw1", "--to", "h2")
    assert p.returncode == 1
    assert "switch sw9 does not exist on host h2" in p.stderr, p.stderr
    assert "not enough memory on host h2" in p.stderr, p.stderr
    cl.assert_only_on("sw1", 1)


def test_cancel_mid_transfer(cl):
    cl.create_guest("cx1", mem=128, mem_rate=20)
    cl.boot("cx1")
    cl.tb.shape(1, "mig", rate="100mbit")
    jid = start_move_no_wait(cl, "cx1", 1, 2)
    wait_transfer(cl, 1, jid)
    # The destination lists the arrival as its own job, naming the source's.
    (arr,) = [j for j in cl.v(2, "jobs", "list")["jobs"] if j["kind"] == "migrate.incoming" and j["vm"] == "cx1"]
    assert arr["state"] == "running" and arr["params"]["source"] == "h1" and arr["params"]["source_job"] == jid, arr
    p = cl.run(2, "jobs", "list")
    assert f"arriving from h1, its job {jid}" in p.stdout, p.stdout
    cl.v(1, "jobs", "cancel", str(jid))
    j = final_job(cl, 1, jid)
    assert j["state"] == "cancelled", j
    arr = final_job(cl, 2, arr["id"])
    assert arr["state"] == "failed" and arr["error"]["message"], arr
    cl.tb.unshape(1, "mig")
    wait_for(lambda: cl.qemus(2) == [], 20, "no QEMU left on h2")
    cl.assert_only_on("cx1", 1)
    assert "cx1" not in cl.vm_names(2)
    assert cl.verify("cx1", 1)


def test_destination_qemu_killed_mid_transfer(cl):
    cl.create_guest("dk1", mem=128)
    cl.boot("dk1")
    cl.tb.shape(1, "mig", rate="100mbit")
    src_qemu = cl.qemus(1)
    jid = start_move_no_wait(cl, "dk1", 1, 2)
    wait_transfer(cl, 1, jid)
    for pid in cl.qemus(2):
        os.kill(pid, signal.SIGKILL)
    j = final_job(cl, 1, jid)
    assert j["state"] == "failed", j
    msg = j["error"]["message"]
    cl.tb.unshape(1, "mig")
    if "the source QEMU exited during the migration" in msg:
        # QEMU 10.0's multifd TLS teardown can kill the source QEMU here
        # (docs/MIGRATION.md, "A source QEMU that dies in pre-copy"): the
        # guest was never run on h2, so vmoved boots it again on h1 from its
        # disks and says so.
        print(f"\nthe source QEMU died (QEMU 10.0 bug): {msg}")
        assert "vmoved restarted it on h1 from its disks" in msg and j["error"]["vm_restarted"] is True, j
        restart = final_job(cl, 1, j["error"]["restart_job"])
        assert restart["state"] == "succeeded", restart
        kinds = [e["kind"] for e in cl.v(1, "host", "events", "--vm", "dk1")["events"]]
        assert "migration.source.restarted" in kinds, kinds
        cl.wait_guest("dk1", 1)
    else:
        assert "migration to h2 failed" in msg, j
        assert cl.qemus(1) == src_qemu, "the source QEMU changed although the job did not say so"
    wait_for(lambda: "dk1" not in cl.vm_names(2), 20, "h2 to forget the VM")
    cl.assert_only_on("dk1", 1)
    assert cl.verify("dk1", 1)


def test_source_qemu_dies_mid_transfer(cl):
    """What QEMU 10.0 sometimes does by itself when the destination dies
    (test above), made certain: the source QEMU aborts in pre-copy.  The
    guest never ran on h2, so vmoved boots it again on h1 from its disks,
    and the job and the journal say so."""
    cl.create_guest("sq1", mem=128)
    cl.boot("sq1")
    cl.tb.shape(1, "mig", rate="100mbit")
    jid = start_move_no_wait(cl, "sq1", 1, 2)
    wait_transfer(cl, 1, jid)
    [pid] = cl.qemus(1)
    os.kill(pid, signal.SIGABRT)
    j = final_job(cl, 1, jid)
    cl.tb.unshape(1, "mig")
    assert j["state"] == "failed", j
    msg = j["error"]["message"]
    assert "the source QEMU exited during the migration (killed by signal 6" in msg, msg
    assert "vmoved restarted it on h1 from its disks" in msg and j["error"]["vm_restarted"] is True, msg
    restart = final_job(cl, 1, j["error"]["restart_job"])
    assert restart["state"] == "succeeded", restart
    cl.wait_guest("sq1", 1)
    wait_for(lambda: cl.qemus(2) == [] and "sq1" not in cl.vm_names(2), 30, "h2 to drop its incoming VM")
    cl.assert_only_on("sq1", 1)
    assert cl.qemus(1) != [pid]
    assert cl.verify("sq1", 1)
    kinds = [e["kind"] for e in cl.v(1, "host", "events", "--vm", "sq1")["events"]]
    assert "migration.failed" in kinds and "migration.source.restarted" in kinds, kinds


def test_migration_link_cut_mid_transfer(cl):
    cl.create_guest("lc1", mem=128)
    cl.boot("lc1")
    cl.tb.shape(1, "mig", rate="100mbit")
    jid = start_move_no_wait(cl, "lc1", 1, 2)
    wait_transfer(cl, 1, jid)
    cl.tb.cut(1, "mig")
    j = final_job(cl, 1, jid, timeout=90)
    assert j["state"] == "failed" and "link to h2 seems down" in j["error"]["message"], j
    cl.tb.restore(1, "mig")
    cl.tb.unshape(1, "mig")
    wait_for(lambda: cl.qemus(2) == [], 30, "no QEMU left on h2")
    cl.assert_only_on("lc1", 1)
    assert cl.verify("lc1", 1)


def test_source_vmoved_killed_mid_transfer(cl):
    cl.create_guest("sk1", mem=128)
    cl.boot("sk1")
    cl.tb.shape(1, "mig", rate="100mbit")
    jid = start_move_no_wait(cl, "sk1", 1, 2)
    wait_transfer(cl, 1, jid)
    cl.stop(1, sig=signal.SIGKILL)
    time.sleep(1)
    cl.tb.unshape(1, "mig")
    cl.start(1)
    j = final_job(cl, 1, jid)
    assert j["state"] in ("failed", "succeeded"), j
    host = 1 if j["state"] == "failed" else 2
    if j["state"] == "failed":
        assert "interrupted by a vmoved restart" in j["error"]["message"]
    wait_for(lambda: cl.where("sk1") == ([host], [host]), 30, f"sk1 only on h{host}")
    assert cl.verify("sk1", host)


def test_destination_vmoved_killed_mid_transfer(cl):
    cl.create_guest("dv1", mem=128)
    cl.boot("dv1")
    cl.tb.shape(1, "mig", rate="100mbit")
    jid = start_move_no_wait(cl, "dv1", 1, 2)
    wait_transfer(cl, 1, jid)
    cl.stop(2, sig=signal.SIGKILL)
    j = final_job(cl, 1, jid)
    assert j["state"] == "failed" and "h2" in j["error"]["message"], j
    cl.tb.unshape(1, "mig")
    cl.start(2)
    wait_for(lambda: cl.qemus(2) == [] and "dv1" not in cl.vm_names(2), 30, "h2 to abort its incoming VM")
    cl.assert_only_on("dv1", 1)
    assert cl.verify("dv1", 1)


@pytest.mark.slow  # make soak: 95 s; the convergence policy is unit-tested (test_policy.c) and the bench runs slow links
def test_not_converging_on_a_slow_link(cl):
    """The guest dirties memory much faster than a 50 Mbit/s link carries it."""
    cl.create_guest("nc1", mem=128, mem_rate=40)
    cl.boot("nc1")
    cl.tb.shape(1, "mig", rate="50mbit")
    p, done, lines = cl.move("nc1", 1, 2, "--max-duration", "90", "--max-downtime", "4000", check=False)
    job = done["job"] if done else None
    last = [l for l in lines if l.get("event") == "job" and l["data"].get("progress")]
    prog = last[-1]["data"]["progress"] if last else {}
    outcome = job["state"] if job else "?"
    print(f"\nnot-converging outcome: {outcome}; policy actions: {prog.get('policy_actions')}; "
          f"throttle {prog.get('throttle_pct')}%")
    cl.tb.unshape(1, "mig")
    # The policy acted (throttle, then downtime steps), and the VM is on exactly one host.
    assert prog.get("throttle_pct", 0) > 0 or prog.get("policy_actions")
    if outcome == "succeeded":
        cl.assert_only_on("nc1", 2)
        assert cl.verify("nc1", 2)
    else:
        assert "did not finish within 90 s" in job["error"]["message"], job
        cl.assert_only_on("nc1", 1)
        assert cl.verify("nc1", 1)


def test_compression_chosen_from_the_measured_link(cl):
    """Compression pays on a slow link, not on a fast one: vmove measures the
    link before preparing and says what it chose."""
    import re

    def decision(result):
        msg = next(a for a in result["policy_actions"] if "measured at" in a)
        rate = float(re.search(r"measured at ([0-9.]+) Gbit/s", msg).group(1))
        return rate, msg.rsplit("compression ", 1)[1]

    cl.create_guest("cz1", mem=32, mem_rate=0, extra="vmove.mem_pattern=compressible")
    cl.boot("cz1")
    p, done, _ = cl.move("cz1", 1, 2)
    fast_rate, fast_choice = decision(done["job"]["result"])
    cl.tb.shape(2, "mig", rate="500mbit")
    p, done, _ = cl.move("cz1", 2, 1)
    cl.tb.unshape(2, "mig")
    slow = done["job"]["result"]
    slow_rate, slow_choice = decision(slow)
    print(f"\nunshaped: {fast_rate} Gbit/s -> {fast_choice}; 500 Mbit/s: {slow_rate} Gbit/s -> {slow_choice}")
    # The rule: compress below 1.5 Gbit/s.  (On a CPU-starved machine the
    # probe may read the unshaped link as slow; the choice must follow it.)
    assert fast_choice == ("zstd" if fast_rate < 1.5 else "none")
    assert slow_rate < 0.6 and slow_choice == "zstd" and slow["tuning"]["compress"] == "zstd"
    assert cl.verify("cz1", 1)

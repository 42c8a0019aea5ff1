"""`make soak-cluster`: the cluster's faults in a loop (VMOVE_SOAK_ROUNDS,
default 200) on one HA guest, with the double-run oracle running all the
time.  Prints and writes (VMOVE_SOAK_OUT, default
bench/results/soak-cluster.json) a summary: faults injected, double runs
(must be 0), false fences (a pause or kill where the fault should cost
nothing), and the RTO p50/p99 of the faults that move the VM."""
import json
import os
import signal
import statistics
import time

import pytest

from clusterlib import TTL, DoubleRunOracle, make_ha
from vmovelib import wait_for

ROUNDS = int(os.environ.get("VMOVE_SOAK_ROUNDS", "200"))
OUT = os.environ.get("VMOVE_SOAK_OUT", os.path.join(os.path.dirname(__file__), "../../bench/results/soak-cluster.json"))

# (name, moves the VM?)
FAULTS = [("namespace-kill", True), ("vmoved-kill", True), ("vmoved-restart", False),
          ("mgmt-cut-10s", True), ("vmoved-freeze-2ttl", True), ("mgmt-blip-1s", False)]


@pytest.fixture
def ha(request):
    h = make_ha(request)
    h.form()
    return h


def owner_index(ha, name, skip=()):
    o = ha.owner(name, skip=skip)
    return next(i for i in range(1, ha.n + 1) if ha.tb.host(i).name == o["host"]), o


def fence_count(ha, i):
    with open(ha.tb.host(i).log_path, errors="replace") as f:
        text = f.read()
    return text.count("pausing the HA guests") + text.count("the HA guests are fenced")


def revive(ha, i):
    """Bring host i back as a member (its vmoved restarts and re-joins)."""
    h = ha.tb.host(i)
    if h.proc is None or h.proc.poll() is not None:
        ha.start(i)
    wait_for(lambda: any(m["host"] == h.name and m["state"] == "up" for m in ha.show(i).get("members", [])),
             30, f"{h.name} up again")


def inject(ha, fault, i):
    h = ha.tb.host(i)
    if fault == "namespace-kill":
        ha.kill_namespace(i)
    elif fault == "vmoved-kill":
        ha.tb.stop_host(i, sig=signal.SIGKILL)
    elif fault == "vmoved-restart":
        ha.tb.stop_host(i, sig=signal.SIGKILL)
        ha.start(i)
    elif fault == "mgmt-cut-10s":
        ha.tb.cut(i, "mgmt")
    elif fault == "vmoved-freeze-2ttl":
        os.kill(h.proc.pid, signal.SIGSTOP)
    elif fault == "mgmt-blip-1s":
        ha.tb.cut(i, "mgmt")
        time.sleep(1.0)
        ha.tb.restore(i, "mgmt")


def heal(ha, fault, i, t_fault):
    h = ha.tb.host(i)
    if fault == "mgmt-cut-10s":
        time.sleep(max(0, 10 - (time.monotonic() - t_fault)))
        ha.tb.restore(i, "mgmt")
    elif fault == "vmoved-freeze-2ttl":
        time.sleep(max(0, 2 * TTL - (time.monotonic() - t_fault)))
        os.kill(h.proc.pid, signal.SIGCONT)
    revive(ha, i)


def test_soak(ha):
    ip = ha.create_ha_guest("soak")
    ha.wait_echo(ip, 60)
    oracle = DoubleRunOracle(ha, "soak")
    oracle.start()
    rto_run, rto_echo, false_fences, verify_failures, rounds = [], [], 0, [], []
    try:
        for k in range(ROUNDS):
            fault, moves = FAULTS[k % len(FAULTS)]
            i, before = owner_index(ha, "soak")
            fences0 = {j: fence_count(ha, j) for j in range(1, ha.n + 1)}
            t_fault = time.monotonic()
            inject(ha, fault, i)
            if moves:
                def moved():
                    o = ha.owner("soak", skip=(i,))
                    return o if o and o["host"] != ha.tb.host(i).name and o["state"] == "running" else None
                wait_for(moved, 60, f"round {k}: {fault}: running elsewhere")
                t_run = time.monotonic()
                t_echo = ha.wait_echo(ip, 90)
                rto_run.append(t_run - t_fault)
                rto_echo.append(t_echo - t_fault)
                heal(ha, fault, i, t_fault)
            else:
                heal(ha, fault, i, t_fault)
                time.sleep(TTL)
                j, after = owner_index(ha, "soak")
                fences = sum(fence_count(ha, x) - fences0[x] for x in fences0)
                if j != i or after["gen"] != before["gen"] or fences:
                    false_fences += 1
            j, _ = owner_index(ha, "soak")
            ha.wait_guest("soak", j)
            r = ha.guest(j, "soak", "verify") or {}
            if not r.get("reply", "").startswith("ok"):
                verify_failures.append((k, fault, r))
            rounds.append({"round": k, "fault": fault, "from": ha.tb.host(i).name,
                           "to": ha.tb.host(j).name, "rto_running_s": rto_run[-1] if moves else None})
    finally:
        oracle.stop()

    def pct(xs, p):
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 2) if xs else None
    summary = {
        "rounds": len(rounds), "faults": {f: sum(r["fault"] == f for r in rounds) for f, _ in FAULTS},
        "double_runs": len(oracle.overlaps), "oracle_samples": oracle.samples,
        "false_fences": false_fences, "verify_failures": len(verify_failures),
        "rto_guest_running_s": {"p50": pct(rto_run, 0.5), "p99": pct(rto_run, 0.99), "n": len(rto_run)},
        "rto_first_echo_s": {"p50": pct(rto_echo, 0.5), "p99": pct(rto_echo, 0.99),
                             "mean": round(statistics.mean(rto_echo), 2) if rto_echo else None},
        "ttl_s": TTL,
    }
    print("\nsoak-cluster summary:", json.dumps(summary, indent=1))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(dict(summary, rounds_detail=rounds), f, indent=1)
    assert not oracle.overlaps, f"double runs: {oracle.overlaps[:5]}"
    assert not verify_failures, verify_failures[:3]
    assert false_fences == 0

"""Resource limits of the API (issue #17, item 4; docs/SECURITY.md,
"Resource limits"): the size of one request, the jobs and the job streams a
remote principal may hold, and a slow client that never finishes its
request.  Real vmoved on a real TLS port, real user certificates; the
quotas are lowered for the test with VMOVE_TEST_LIMITS so that a handful of
jobs and streams reach them."""
import json
import os
import socket
import threading
import time

import pytest

from vmovelib import cleanup, free_port, remote, send_request, start_tls_agent, tls_session, wait_for

MIB = 1 << 20


@pytest.fixture
def limited(root, request):
    """vmoved h1 on TLS with users alice and bob; request.param: VMOVE_TEST_LIMITS."""
    spec = getattr(request, "param", "")
    a = start_tls_agent(root, users=("alice", "bob"), env={"VMOVE_TEST_LIMITS": spec} if spec else None)
    a.ident = {u: os.path.join(root, u) for u in ("alice", "bob")}
    yield a
    try:
        a.stop()
    finally:
        cleanup([a], root)


def lines(s):
    """The replies and events of a raw session, one JSON object at a time."""
    f = s.makefile("rb")
    while True:
        line = f.readline()
        if not line:
            return
        yield json.loads(line)


def answer_time(fn):
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def test_request_over_16_mib_gets_an_error_naming_the_limit(limited):
    """One request is one line of at most 16 MiB: a line just under it is
    answered, 16 MiB and a byte without a newline gets an error that says
    so (then the connection closes), and root is answered meanwhile."""
    limited.vmove("acl", "grant", "user:alice", "vm.read")
    s = tls_session(limited, limited.ident["alice"], timeout=60)
    head = b'{"id": 2, "method": "vm.list", "params": {"pad": "'
    tail = b'"}}\n'
    s.sendall(head + b"a" * (16 * MIB - len(head) - len(tail) - 16) + tail)
    reply = next(lines(s))
    assert reply["id"] == 2 and reply["result"]["vms"] == [], reply
    s.close()

    s = tls_session(limited, limited.ident["alice"], timeout=60)
    slow = []
    sender = threading.Thread(target=lambda: s.sendall(b"x" * (16 * MIB + 1)))
    sender.start()
    while not slow or sender.is_alive():
        slow.append(answer_time(lambda: limited.vmove("host", "show")))
    sender.join()
    got = list(lines(s))      # the error, then the end of the connection
    s.close()
    assert len(got) == 1 and got[0]["error"]["code"] == "invalid_argument", got
    assert "request too large: over 16 MiB without a newline" in got[0]["error"]["message"]
    assert slow and max(slow) < 1.0, slow
    assert limited.vmove("host", "show")["name"] == "h1"


@pytest.mark.parametrize("limited", ["request_timeout_s=3"], indirect=True)
def test_slowloris_cannot_hold_the_loop_and_is_closed(limited):
    """32 TLS clients of one user (the per-principal cap) each send a
    request one byte a second and never a newline.  Another user's
    requests and root's are answered within a second throughout; the slow
    clients are told "request not complete" and closed after the request
    timeout (3 s here, 30 s by default), although every byte reset their
    idle time."""
    for u in ("alice", "bob"):
        limited.vmove("acl", "grant", f"user:{u}", "vm.read")
    slow = [tls_session(limited, limited.ident["alice"]) for _ in range(32)]
    bob = tls_session(limited, limited.ident["bob"])
    bob_replies = lines(bob)
    request = b'{"id": 1, "method": "vm.list", "params": {}}'
    stop = threading.Event()

    def dribble():
        for i in range(len(request) - 1):
            for s in slow:
                try:
                    s.sendall(request[i:i + 1])
                except OSError:
                    pass      # closed by vmoved: what the test waits for
            if stop.wait(1.0):
                return

    t0 = time.monotonic()
    sender = threading.Thread(target=dribble)
    sender.start()
    times = []
    try:
        rid = 10
        while time.monotonic() - t0 < 7:
            rid += 1
            t = time.monotonic()
            send_request(bob, "vm.list", rid=rid)
            assert next(bob_replies)["id"] == rid
            times.append(time.monotonic() - t)
            times.append(answer_time(lambda: limited.vmove("host", "show")))
            time.sleep(0.2)
        assert max(times) < 1.0, times
        for s in slow:
            s.settimeout(3)
            got = list(lines(s))
            assert len(got) == 1 and got[0]["error"]["code"] == "timeout", got
            assert "request not complete after 3 s" in got[0]["error"]["message"], got
    finally:
        stop.set()
        sender.join()
        for s in slow + [bob]:
            s.close()
    # The dribble was still going when they were closed (7 s of it, 3 s allowed).
    assert "an unfinished request for too long" in limited.read_log()


def start_idle_guests(agent, names):
    for n in names:
        agent.create_guest(n, memory="128M", disks=())
    for n in names[:-1]:
        agent.vmove("vm", "start", n)


@pytest.mark.parametrize("limited", ["max_jobs=3,max_jobs_per_principal=2"], indirect=True)
def test_jobs_bounded_per_principal_and_per_host(limited):
    """Moves to a host that does not answer stay queued.  A user holds at
    most max_jobs_per_principal jobs, the host at most max_jobs from remote
    principals; one more is refused with the limit and what to do, and no
    job is created for it.  Root's local socket is never refused, and a
    cancelled job frees its place."""
    a = limited
    a.vmove("host", "set", "--migration-outgoing", "on")
    a.vmove("peer", "add", "h9", f"127.0.0.1:{free_port()}", "--no-verify")   # nobody listens there
    for u in ("alice", "bob"):
        for right in ("vm.read", "vm.manage", "migrate.out"):
            a.vmove("acl", "grant", f"user:{u}", right)
    start_idle_guests(a, ["va", "vb", "vc", "vd"])

    def move(user, vm):
        p = remote(a, a.ident[user], "move", vm, "--to", "h9", "--no-wait")
        return p, (json.loads(p.stdout.splitlines()[-1]) if p.stdout.strip() else None)

    jobs = {}
    for user, vm in (("alice", "va"), ("alice", "vb")):
        p, doc = move(user, vm)
        assert p.returncode == 0, p.stderr
        jobs[vm] = doc["job"]
    p = remote(a, a.ident["alice"], "vm", "start", "vd")
    assert p.returncode == 1, p
    assert "user:alice has 2 jobs queued or running here, the most one principal may (2)" in p.stderr
    assert "vmove jobs cancel" in p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["error"]["code"] == "unavailable"
    p, doc = move("bob", "vc")
    assert p.returncode == 0, p.stderr
    jobs["vc"] = doc["job"]
    p = remote(a, a.ident["bob"], "vm", "start", "vd")
    assert p.returncode == 1 and "host h1 has 3 jobs queued or running, the most it takes (3)" in p.stderr, p
    assert a.vm("vd")["state"] == "stopped"
    live = a.vmove("jobs", "list")["jobs"]
    assert {j["id"]: (j["state"], j.get("owner")) for j in live} == {
        jobs["va"]: ("queued", "user:alice"), jobs["vb"]: ("queued", "user:alice"), jobs["vc"]: ("queued", "user:bob")}
    # Root is counted but never refused.
    a.vmove("vm", "start", "vd")
    # A job that ends gives its place back.
    a.vmove("jobs", "cancel", jobs["va"])
    wait_for(lambda: len(a.vmove("jobs", "list")["jobs"]) == 2, 10, "the cancelled move to end")
    p, doc = move("alice", "va")
    assert p.returncode == 0, p.stderr
    for j in a.vmove("jobs", "list")["jobs"]:
        a.vmove("jobs", "cancel", j["id"])
    wait_for(lambda: not a.vmove("jobs", "list")["jobs"], 10, "every move to end")
    for vm in ("va", "vb", "vc", "vd"):
        a.vmove("vm", "stop", vm, "--force")


def follow(agent, identity):
    """A raw session with a jobs.follow open on it, and whether vmoved took
    it: a follow never answers, so a request after it tells (its answer
    comes first, or the follow's refusal does)."""
    s = tls_session(agent, identity) if identity else socket.socket(socket.AF_UNIX)
    if not identity:
        s.connect(agent.sock)      # root's local socket
    send_request(s, "jobs.follow", rid=1)
    send_request(s, "vm.list", rid=2)
    msgs = lines(s)
    return s, msgs, next(msgs)


@pytest.mark.parametrize("limited", ["max_streams=3,max_streams_per_principal=2"], indirect=True)
def test_job_streams_bounded_per_principal_and_per_host(limited):
    """Streams (`jobs watch`, a command waiting for its job, the console's
    live pages: jobs.watch and jobs.follow) are bounded per principal and
    in all; the one over is refused with the limit and what to do.  A
    command that would wait for its job is refused before it starts one;
    with --no-wait it is not a stream.  Root is never refused."""
    a = limited
    for u in ("alice", "bob"):
        for right in ("vm.read", "vm.manage"):
            a.vmove("acl", "grant", f"user:{u}", right)
    a.create_guest("vd", memory="128M", disks=())
    held = []
    try:
        for _ in range(2):
            s, msgs, first = follow(a, a.ident["alice"])
            held.append(s)
            assert first["id"] == 2 and "result" in first, first
        alice_events = msgs
        s, _, first = follow(a, a.ident["alice"])
        s.close()
        assert first["id"] == 1 and first["error"]["code"] == "unavailable", first
        assert "user:alice has 2 job streams open here, the most one principal may (2)" in first["error"]["message"]
        assert "--no-wait" in first["error"]["hint"]
        # A request that would wait for its job is a stream too: refused, and nothing started.
        s = tls_session(a, a.ident["alice"])
        send_request(s, "vm.start", {"name": "vd"}, rid=3)
        first = next(lines(s))
        s.close()
        assert first["id"] == 3 and "user:alice has 2 job streams open" in first["error"]["message"], first
        assert a.vm("vd")["state"] == "stopped" and not a.vmove("jobs", "list")["jobs"]
        # The CLI starts the job, then watches it: the watch is refused, and says the job goes on.
        p = remote(a, a.ident["alice"], "vm", "start", "vd")
        assert p.returncode == 1 and "user:alice has 2 job streams open" in p.stderr, p
        job = a.vmove("jobs", "list", "--all")["jobs"][0]
        assert job["kind"] == "vm.start" and job["vm"] == "vd", job
        assert f"job {job['id']} (vm.start) goes on, unfollowed: `vmove jobs show {job['id']}`" in p.stderr, p.stderr
        wait_for(lambda: a.vm("vd")["state"] == "running", 30, "vd to start")
        a.vmove("vm", "stop", "vd", "--force")
        s, _, first = follow(a, a.ident["bob"])
        held.append(s)
        assert first["id"] == 2, first
        s, _, first = follow(a, a.ident["bob"])
        s.close()
        assert "host h1 has 3 job streams open, the most it serves (3)" in first["error"]["message"], first
        root_s, _, first = follow(a, None)         # root: counted, never refused
        assert first["id"] == 2, first
        # A job that does not wait holds no stream; the followers see it.
        p = remote(a, a.ident["bob"], "vm", "start", "vd", "--no-wait")
        assert p.returncode == 0, p.stderr
        bobs = json.loads(p.stdout.splitlines()[-1])["job"]
        ev = next(e for e in alice_events if e["data"]["id"] == bobs)
        assert ev["id"] == 1 and ev["event"] == "job" and ev["data"]["vm"] == "vd", ev
        wait_for(lambda: a.vm("vd")["state"] == "running", 30, "vd to start")
        root_s.close()
        # That a closed stream gives its place back: test_a_closed_stream_gives_its_place_back.
    finally:
        for s in held:
            s.close()
    a.vmove("vm", "stop", "vd", "--force")


def watch(agent, identity, job):
    """A raw session with a jobs.watch of job open on it, and its first
    message: the job's record as an event when vmoved took the watch, an
    error when it refused it."""
    s = tls_session(agent, identity)
    send_request(s, "jobs.watch", {"id": job}, rid=1)
    return s, next(lines(s))


def hang_up(s):
    """Close the connection now: a file from makefile() (follow's event
    reader) would otherwise keep the descriptor open past s.close()."""
    s.shutdown(socket.SHUT_RDWR)
    s.close()


def until_taken(open_stream, what):
    """Open a stream until vmoved takes it: a closed stream's place comes
    back once vmoved has seen the hang-up, which is not ordered with a new
    connection's request."""
    deadline = time.monotonic() + 5
    while True:
        s, first = open_stream()
        if "error" not in first:
            return s
        s.close()
        assert time.monotonic() < deadline, f"{what}: still refused 5 s after the others closed: {first}"
        time.sleep(0.1)


@pytest.mark.parametrize("limited", ["max_streams_per_principal=2"], indirect=True)
def test_a_closed_stream_gives_its_place_back(limited):
    """A client that opens a watch of a long job and hangs up gives its
    place back then, not when the job ends (the job here never ends: a move
    waiting for a host that does not answer).  The same for jobs.follow."""
    a = limited
    a.vmove("host", "set", "--migration-outgoing", "on")
    a.vmove("peer", "add", "h9", f"127.0.0.1:{free_port()}", "--no-verify")   # nobody listens there
    a.vmove("acl", "grant", "user:alice", "vm.read", "vm.manage")
    start_idle_guests(a, ["va", "vb"])
    job = a.vmove("move", "va", "--to", "h9", "--no-wait")["job"]
    ident = a.ident["alice"]
    try:
        for _ in range(3):          # three rounds: each needs the places of the last
            held = [watch(a, ident, job) for _ in range(2)]
            for s, first in held:
                assert first.get("event") == "job" and first["data"]["id"] == job, first
            s, first = watch(a, ident, job)
            s.close()
            assert "user:alice has 2 job streams open here" in first["error"]["message"], first
            for s, _ in held:
                s.close()
            until_taken(lambda: watch(a, ident, job), "a watch after two were closed").close()
        held = [follow(a, ident) for _ in range(2)]
        for s, _, first in held:
            assert first["id"] == 2 and "result" in first, first
        for s, _, _ in held:
            hang_up(s)
        until_taken(lambda: follow(a, ident)[::2], "a follow after two were closed").close()
        assert a.vmove("jobs", "show", str(job))["state"] == "queued"
    finally:
        a.vmove("jobs", "cancel", str(job))
    wait_for(lambda: not a.vmove("jobs", "list")["jobs"], 10, "the move to end")
    a.vmove("vm", "stop", "va", "--force")

"""The web console in real headless Chromium (docs/CONSOLE.md): login with a
signed one-time link, the move wizard (a refusal with every problem, then a
live migration followed to "migrated"), a read-only user who sees no move
button and whose forged POST is refused, and /metrics checked by promtool
against the moves just made.  One test bed, one browser, one test."""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

import migrationlib
from cdp import Browser
from migrationlib import Cluster, tbmod
from vmovelib import BIN, CACHE, ENV, KERNEL, INITRD, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
CONSOLE_DIR = os.path.abspath(os.path.join(HERE, "../../share/console"))
SHOTS = os.path.abspath(os.path.join(HERE, "../../docs/console"))
PORT = 7443

pytestmark = pytest.mark.skipif(not shutil.which("chromium") or not shutil.which("promtool"),
                                reason="needs Debian's chromium and prometheus (scripts/install-deps.sh test)")


@pytest.fixture
def cl(request):
    tb = tbmod.make_testbed(request, n_hosts=2, tls=True, vmoved=os.path.join(BIN, "vmoved"),
                            vmove=os.path.join(BIN, "vmove"))
    c = Cluster(tb, 2)
    for i in (1, 2):
        tb.start_host(i, env=ENV, extra_args=["--console-dir", CONSOLE_DIR])
    c.configure()

    def stop():
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for i in (1, 2):
                print(f"\n===== vmoved log of h{i} =====\n{tb.log_tail(i, 80)}")
        for i in (1, 2):
            h = tb.host(i)
            if h.proc is not None and h.proc.poll() is None:
                c.stop(i)
    request.addfinalizer(stop)
    return c


def spki_of(cert):
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"], check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, check=True,
                         capture_output=True).stdout
    dig = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der, check=True, capture_output=True).stdout
    return subprocess.run(["base64"], input=dig, check=True, capture_output=True).stdout.decode().strip()


def login_url(cl, ident):
    out = cl.tb.vmove_tcp(2, 1, "ui", "login", identity=ident, json=True)
    assert out["url"].startswith(f"https://{cl.h1.mgmt_ip}:{PORT}/login?t="), out
    return out["url"]


def log_in(b, url, user):
    b.goto(url)
    try:
        b.wait("document.body && document.body.dataset.ready === '1'", what="the console page")
    except Exception:
        print("page:", b.eval("location.href + ' | ' + (document.body ? document.body.innerText : '')"))
        raise
    assert f"user:{user} on h1" in b.eval("document.getElementById('who').textContent")


def curl(cl, path, ident=None):
    argv = ["curl", "-sS", "--cacert", os.path.join(cl.tb.ca_dir, "ca.crt"), "-w", "\n%{http_code}"]
    if ident:
        argv += ["--cert", os.path.join(ident, "user.crt"), "--key", os.path.join(ident, "user.key")]
    argv += ["--resolve", f"h1:{PORT}:{cl.h1.mgmt_ip}"]   # the certificate names h1
    res = cl.tb.run_in(2, argv + [f"https://h1:{PORT}{path}"], check=False)
    body, _, code = res.stdout.rpartition("\n")
    return int(code or 0), body


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)$"
    m = re.search(pat, text, re.M)
    assert m, f"{name}{{{want}}} missing from /metrics"
    return float(m.group(1))


def fill_wizard(b, vm, to):
    b.goto(b.eval("location.origin") + "/#move")
    b.wait(f"[...document.querySelectorAll('#w-vm option')].some(o => o.value === '{vm}')", what="the wizard's VMs")
    b.wait(f"[...document.querySelectorAll('#w-to option')].some(o => o.value === '{to}')", what="the wizard's hosts")
    b.eval(f"document.getElementById('w-vm').value = '{vm}'; "
           "document.querySelector('input[value=\"live\"]').checked = true; "
           f"document.getElementById('w-to').value = '{to}'; true")


# make soak, not make check: in about one run in three, a fetch() from the
# page fails in Chromium ("Failed to fetch") on a connection the console
# (libevent's evhttp over OpenSSL) has kept alive; the cause is not found yet
# (docs/CONSOLE.md, "Known problems").
@pytest.mark.slow
def test_console(cl):
    tb = cl.tb
    cl.v(1, "host", "set", "--console", "on", "--console-port", str(PORT))
    wait_for(lambda: curl(cl, "/metrics")[0] == 401, 10, "the console to listen")
    alice, bob = tb.issue_user("alice"), tb.issue_user("bob")
    for r in ("vm.read", "migrate.out"):
        cl.v(1, "acl", "grant", "user:alice", r)
    cl.v(2, "acl", "grant", "user:alice", "migrate.in")
    cl.v(1, "acl", "grant", "user:bob", "vm.read")
    cl.create_guest("web1", mem=48, mem_rate=40)
    cl.boot("web1")

    # Nothing without a session or certificate.
    assert curl(cl, "/")[0] == 401
    assert curl(cl, "/api/session")[0] == 401
    code, body = curl(cl, "/metrics")
    assert code == 401 and "needs a console session or a client certificate" in body, body

    spki = spki_of(os.path.join(tb.host(1).tls_dir, "host.crt"))
    b = Browser(argv_prefix=["ip", "netns", "exec", tb.host(2).ns], spki=spki)
    try:
        # bob may only read: no move button, no wizard, and forged writes fail.
        log_in(b, login_url(cl, bob), "bob")
        b.goto(b.eval("location.origin") + "/#vms")
        b.wait("document.getElementById('vm-table').textContent.includes('running')", what="bob's VM list")
        assert "web1" in b.eval("document.getElementById('vm-table').textContent")
        assert b.eval("document.querySelectorAll('.move-btn').length") == 0
        assert b.eval("document.getElementById('nav-move').hidden") is True
        forged = b.eval("fetch('/api/vm.move', {method: 'POST', headers: {'Content-Type': 'application/json'},"
                        " body: JSON.stringify({name: 'web1', to: 'h2', wait: false})})"
                        ".then(async r => [r.status, await r.text()])")
        assert forged[0] == 403 and "CSRF" in forged[1], forged
        with_token = b.eval("fetch('/api/session').then(r => r.json()).then(s => fetch('/api/vm.move', {method: "
                            "'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf}, body: "
                            "JSON.stringify({name: 'web1', to: 'h2', wait: false})})).then(async r => [r.status, "
                            "await r.text()])")
        assert with_token[0] == 403 and "user:bob lacks migrate.out" in with_token[1], with_token
        out = b.eval("fetch('/api/session').then(r => r.json()).then(s => fetch('/logout', {method: 'POST', "
                     "headers: {'X-CSRF-Token': s.csrf}})).then(r => r.status)")
        assert out == 200
        assert b.eval("fetch('/api/session').then(r => r.status)") == 401
        cl.assert_only_on("web1", 1)

        url = login_url(cl, alice)
        log_in(b, url, "alice")
        # The link works once.
        assert b.eval(f"fetch({json.dumps(url)}, {{redirect: 'manual'}}).then(r => r.status)") in (0, 401)
        assert b.eval("fetch('/login?t=' + 'x'.repeat(40)).then(r => r.status)") == 401
        # The cookie is out of JavaScript's reach (HttpOnly).
        assert "vmove" not in b.eval("document.cookie")
        hdr = b.eval("fetch('/').then(r => r.headers.get('content-security-policy'))")
        assert "script-src 'self'" in hdr and "unsafe-inline" not in hdr, hdr

        b.goto(b.eval("location.origin") + "/#vms")
        b.wait("!!document.querySelector('.move-btn[data-vm=\"web1\"]')", what="web1's move button")
        b.goto(b.eval("location.origin") + "/#hosts")
        b.wait("document.getElementById('host-table').textContent.includes('QEMU')", what="the host page")
        host_text = b.eval("document.getElementById('host-table').textContent")
        assert "accelerator" in host_text and "limits" in host_text and "live 0/" in host_text, host_text

        # A refused move: h2 already has a VM web1 and no migration network of the source's:
        # both problems at once, and the VM stays on h1.
        cl.v(2, "vm", "create", "web1", "--memory", "64M", "--disk", "8M", "--kernel", KERNEL, "--initrd", INITRD)
        cl.v(2, "host", "set", "--migration-network", "10.250.0.0/24")
        fill_wizard(b, "web1", "h2")
        b.eval("document.getElementById('w-start').click(); true")
        b.wait("document.getElementById('w-problems').children.length >= 2", 60, "the refusal's problems")
        problems = b.eval("[...document.querySelectorAll('#w-problems li')].map(l => l.textContent)")
        text = "\n".join(problems)
        assert "web1" in text and "already" in text, problems
        assert "network" in text, problems
        cl.assert_only_on("web1", 1)
        cl.v(2, "vm", "delete", "web1")
        cl.v(2, "host", "set", "--migration-network", tb.subnet("mig"))

        # The live migration, followed to the end.
        fill_wizard(b, "web1", "h2")
        b.screenshot(os.path.join(SHOTS, "wizard.png"))
        b.eval("document.getElementById('w-start').click(); true")
        seen, shot = set(), False
        deadline = time.time() + 120
        while time.time() < deadline:
            st = b.eval("({t: document.getElementById('w-title').textContent, v: document.getElementById('w-bar').value,"
                        " u: document.getElementById('w-updates').textContent, l: document.getElementById('w-line').textContent})")
            if "transfer" in st["l"] and 0 < st["v"] < 100:
                seen.add(round(st["v"], 1))
                if not shot:
                    b.screenshot(os.path.join(SHOTS, "move-progress.png"))
                    shot = True
            if st["t"].startswith("migrated") or st["t"].startswith("refused"):
                break
            time.sleep(0.05)
        assert st["t"] == "migrated web1", st
        updates = int(st["u"].split()[0])
        assert updates >= 3, st
        assert seen, "no progress seen between 0 and 100 % during the transfer"
        summary = b.eval("document.getElementById('w-summary').textContent")
        assert "total time" in summary and "downtime (QEMU)" in summary and "bytes sent" in summary, summary
        b.screenshot(os.path.join(SHOTS, "move-done.png"))
        cl.assert_only_on("web1", 2)
        assert cl.verify("web1", 2)
        job = [j for j in cl.v(1, "jobs", "list", "--all")["jobs"] if j["kind"] == "migrate" and j["state"] == "succeeded"][0]

        # Metrics on h1, scraped with alice's certificate, parsed by promtool.
        code, text = curl(cl, "/metrics", ident=alice)
        assert code == 200, text
        chk = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        assert metric(text, "vmove_migrations_started_total", type="live") == 2
        assert metric(text, "vmove_migrations_total", type="live", result="succeeded") == 1
        assert metric(text, "vmove_migrations_total", type="live", result="failed") == 1
        assert metric(text, "vmove_migration_duration_seconds_count", type="live") == 1
        assert metric(text, "vmove_migration_duration_seconds_sum", type="live") == pytest.approx(
            job["result"]["total_ms"] / 1000, abs=0.002)
        assert metric(text, "vmove_migration_downtime_seconds_sum", type="live") == pytest.approx(
            job["result"]["qemu_downtime_ms"] / 1000, abs=0.002)
        assert metric(text, "vmove_migration_sent_bytes_total", type="live") == job["result"]["bytes_sent"]
        assert metric(text, "vmove_vms", state="running") == 0
        assert metric(text, "vmove_moves_running", kind="live") == 0
        code, body = curl(cl, "/metrics", ident=tb.issue_user("nobody"))
        assert code == 403, body

        audit = cl.v(1, "audit", "--limit", "300")["records"]
        assert any(r["who"] == "user:bob" and r["action"] == "vm.move" and r["verdict"] == "denied" for r in audit)
        assert any(r["who"] == "user:alice" and r["action"] == "console.login" and r["verdict"] == "allowed"
                   for r in audit)
    finally:
        b.close()

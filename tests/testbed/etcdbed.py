"""etcd members for a test bed: each in its own namespace on the bed's
management network, data on tmpfs, TLS with the bed's CA (client
certificates required), started and stopped with the bed.

    tb = Testbed(n_hosts=3, etcd=3)
    tb.etcd_urls            # "https://10.N.1.2:2379,https://10.N.1.3:2379,..."
    tb.etcd_kill(k) / tb.etcd_start(k) / tb.etcd_stop(k) / tb.etcd_cont(k)
    tb.etcd_leader()        # 1-based index of the leader, or None
"""
import contextlib
import json as jsonlib
import os
import shutil
import signal
import subprocess
import time

ETCD_FIRST_OCTET = 2
CLIENT_PORT = 2379
PEER_PORT = 2380


class EtcdMember:
    def __init__(self, tb, k):
        self.k = k
        self.name = f"e{k}"
        self.ns = f"vtb-{tb.id}-e{k}"
        self.ip = f"10.{tb.net}.1.{ETCD_FIRST_OCTET + k - 1}"
        self.data = f"/dev/shm/vtb-{tb.id}-etcd/{self.name}"
        self.tls = os.path.join(tb.root, "etcd-tls", self.name)
        self.log = os.path.join(tb.logs_dir, f"etcd-{self.name}.log")
        self.proc = None

    @property
    def url(self):
        return f"https://{self.ip}:{CLIENT_PORT}"


def build(tb, n, _ip_batch):
    """Namespaces, links and certificates for n members, then start them.
    _ip_batch: the bed's `ip -batch` helper."""
    tb.etcd_members = [EtcdMember(tb, k) for k in range(1, n + 1)]
    for m in tb.etcd_members:
        _ip_batch(None, [f"netns add {m.ns}"])
        tb._quiet_sysctls(m.ns)
        hub = f"e{m.k}-mgmt"
        _ip_batch(tb.hub_ns, [f"link add {hub} type veth peer name mgmt0 netns {m.ns}",
                              f"link set {hub} master br-mgmt", f"link set {hub} up"])
        _ip_batch(m.ns, ["link set lo up", f"addr add {m.ip}/24 dev mgmt0", "link set mgmt0 up"])
        os.makedirs(m.tls, exist_ok=True)
        res = tb._run_vmove(["pki", "issue-host", f"etcd{m.k}", "--ca", tb.ca_dir, "--out", m.tls])
        if res.returncode != 0:
            raise RuntimeError(f"etcd certificate: {res.stderr.strip()}")
    for m in tb.etcd_members:
        start(tb, m.k)
    wait_healthy(tb)


def _argv(tb, m):
    cluster = ",".join(f"{x.name}=http://{x.ip}:{PEER_PORT}" for x in tb.etcd_members)
    return ["etcd", "--name", m.name, "--data-dir", m.data,
            "--listen-client-urls", m.url, "--advertise-client-urls", m.url,
            "--listen-peer-urls", f"http://{m.ip}:{PEER_PORT}",
            "--initial-advertise-peer-urls", f"http://{m.ip}:{PEER_PORT}",
            "--initial-cluster", cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", f"vtb-{tb.id}",
            "--cert-file", os.path.join(m.tls, "host.crt"),
            "--key-file", os.path.join(m.tls, "host.key"),
            "--trusted-ca-file", os.path.join(m.tls, "ca.crt"), "--client-cert-auth",
            "--unsafe-no-fsync", "--logger", "zap", "--log-level", "warn"]


def start(tb, k):
    m = tb.etcd_members[k - 1]
    os.makedirs(m.data, exist_ok=True)
    with open(m.log, "ab") as log:
        m.proc = subprocess.Popen(["ip", "netns", "exec", m.ns] + _argv(tb, m),
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)


def kill(tb, k, sig=signal.SIGKILL):
    m = tb.etcd_members[k - 1]
    if m.proc and m.proc.poll() is None:
        m.proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.proc.wait(timeout=10)


def etcdctl(tb, k, *args, timeout=5):
    m = tb.etcd_members[k - 1]
    argv = ["ip", "netns", "exec", m.ns, "etcdctl", "--endpoints", m.url,
            "--cacert", os.path.join(m.tls, "ca.crt"), "--cert", os.path.join(m.tls, "host.crt"),
            "--key", os.path.join(m.tls, "host.key"), "--command-timeout=2s",
            # The member certificates name etcdK, not the IP etcdctl dials;
            # vmoved checks the CA and the etcd* name instead.
            "--insecure-skip-tls-verify", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, ETCDCTL_API="3"))


def leader(tb):
    """1-based index of the member that says it leads, or None."""
    for m in tb.etcd_members:
        if not m.proc or m.proc.poll() is not None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError, KeyError, IndexError):
            res = etcdctl(tb, m.k, "endpoint", "status", "-w", "json")
            st = jsonlib.loads(res.stdout)[0]["Status"]
            if st["leader"] == st["header"]["member_id"]:
                return m.k
    return None


def wait_healthy(tb, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if leader(tb) is not None:
            return
        time.sleep(0.2)
    logs = "".join(open(m.log, errors="replace").read()[-1500:] for m in tb.etcd_members)
    raise RuntimeError(f"etcd did not elect a leader in {timeout}s:\n{logs}")


def teardown(tb):
    for m in getattr(tb, "etcd_members", []):
        with contextlib.suppress(ProcessLookupError, OSError):
            if m.proc and m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait(timeout=5)
    if tb.id is not None:
        shutil.rmtree(f"/dev/shm/vtb-{tb.id}-etcd", ignore_errors=True)

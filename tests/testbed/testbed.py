#!/usr/bin/python3
"""Multi-host test bed for vmove: several "hosts" on one machine, built from
network namespaces, veth pairs and bridges.  See docs/TESTBED.md.

Use as a module (``from testbed import Testbed``) or as a CLI
(``/usr/bin/python3 tests/testbed/testbed.py up --hosts 2``).

Stdlib only; needs root, iproute2 (ip, tc) and, for measurements, iperf3.
Traffic only ever flows inside namespaces this module created.
"""

import argparse
import atexit
import contextlib
import fcntl
import json as jsonlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etcdbed  # noqa: E402  (next to this file)

# Debian's interpreter; the python3 on PATH may be a different build.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

REGISTRY_DIR = "/run/vmove-testbed"
NS_PREFIX = "vtb-"
# Second octet of every test bed's subnets: 10.<net>.{1,2,3}.0/24 with
# NET_FIRST <= net < NET_FIRST + NET_COUNT.  Namespaces isolate test beds
# anyway; distinct subnets just keep captures and logs unambiguous.
NET_FIRST = 100
NET_COUNT = 100
VMOVED_PORT = 7070
CLIENT_HOST_OCTET = 2
GUEST_FIRST_OCTET = 100
UNIX_PATH_MAX = 108

# link kind -> (device in the host namespace, hub bridge, subnet octet)
LINKS = {
    "mgmt": ("mgmt0", "br-mgmt", 1),
    "mig": ("mig0", "br-mig", 2),
    "vm": ("vmup0", "br-vm", 3),
}
CLIENT_DEV = "eth0"
CLIENT_HUB_DEV = "cl-vm"

_ID_RE = re.compile(r"^[0-9a-z]{1,8}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,15}$")
_NS_RE = re.compile(r"^vtb-([0-9a-z]{1,8})-")


class TestbedError(RuntimeError):
    """A test bed operation failed; the message carries the failing command."""
    __test__ = False   # not a pytest test class despite the name


# ---------------------------------------------------------------- helpers

def _run(argv, check=True, input=None, timeout=60):
    res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise TestbedError(f"{' '.join(map(str, argv))} -> exit {res.returncode}: "
                           f"{(res.stderr or res.stdout).strip()}")
    return res


def _ip_batch(ns, lines, force=False):
    """Run many `ip` commands in one process (fast, and atomic enough)."""
    argv = ["ip"] + (["-n", ns] if ns else []) + (["-force"] if force else []) + ["-batch", "-"]
    return _run(argv, check=not force, input="\n".join(lines) + "\n")


def list_namespaces():
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _ns_pids(ns):
    res = _run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in res.stdout.split()] if res.returncode == 0 else []


def _proc_start_time(pid):
    """Kernel start time of pid (guards against pid reuse), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _owner_alive(pid, start):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return start is None or _proc_start_time(pid) == start


def kill_namespace_processes(namespaces, grace=3.0):
    """SIGTERM everything inside the namespaces, SIGKILL what is left.

    Must happen before `ip netns del`: a namespace with a live process
    survives its name and keeps its interfaces (and the hub's bridges) alive.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = {p for ns in namespaces for p in _ns_pids(ns)}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            # `ip netns pids` skips zombies, so this ends even on processes
            # whose parent has not reaped them yet.
            if not any(_ns_pids(ns) for ns in namespaces):
                return
            time.sleep(0.05)


def destroy_namespaces(namespaces):
    namespaces = list(namespaces)
    if not namespaces:
        return
    kill_namespace_processes(namespaces)
    _ip_batch(None, [f"netns del {ns}" for ns in namespaces], force=True)


@contextlib.contextmanager
def _registry_lock():
    os.makedirs(REGISTRY_DIR, exist_ok=True)
    with open(os.path.join(REGISTRY_DIR, ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _registry_path(tb_id):
    return os.path.join(REGISTRY_DIR, f"{tb_id}.json")


def _read_registry():
    entries = {}
    with contextlib.suppress(FileNotFoundError):
        for fn in os.listdir(REGISTRY_DIR):
            if fn.endswith(".json"):
                with contextlib.suppress(OSError, ValueError):
                    with open(os.path.join(REGISTRY_DIR, fn)) as f:
                        entries[fn[:-5]] = jsonlib.load(f)
    return entries


def _write_json(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        jsonlib.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def parse_rate(rate):
    """'1gbit' / '500mbit' / '64kbit' / 1e9 -> bits per second."""
    if isinstance(rate, (int, float)):
        return int(rate)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(bit|bps)?\s*", str(rate).lower())
    if not m:
        raise ValueError(f"bad rate {rate!r}")
    mult = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[m.group(2)]
    bits = float(m.group(1)) * mult * (8 if m.group(3) == "bps" else 1)
    return int(bits)


_netem_ok = None


def netem_available():
    """netem (delay) is a separate kernel module that minimal kernels omit."""
    global _netem_ok
    if _netem_ok is None:
        ns = f"vtb-probe{os.getpid()}"
        _run(["ip", "netns", "add", ns])
        try:
            _ip_batch(ns, ["link add p0 type veth peer name p1"])
            _netem_ok = _run(["tc", "-n", ns, "qdisc", "add", "dev", "p0", "root", "netem",
                              "delay", "1ms"], check=False).returncode == 0
        finally:
            _run(["ip", "netns", "del", ns], check=False)
    return _netem_ok


# A tiny ICMP echo client, run inside a namespace (no dependency on iputils).
_PING_SRC = r"""
import os, socket, struct, sys, time
dst, dev, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
if dev:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
ident = os.getpid() & 0xffff
deadline = time.monotonic() + timeout
seq = 0
while time.monotonic() < deadline:
    seq += 1
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"vtbping!"
    pkt = hdr[:2] + struct.pack("!H", csum(hdr)) + hdr[4:]
    try:
        s.sendto(pkt, (dst, 0))
    except OSError as e:
        print(e); sys.exit(2)
    resend = min(deadline, time.monotonic() + 0.5)
    while (left := resend - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            break
        ihl = (data[0] & 15) * 4
        typ, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if typ == 0 and rid == ident and addr[0] == dst:
            sys.exit(0)
sys.exit(1)
"""


# ------------------------------------------------- process-exit teardown

_live = weakref.WeakSet()     # beds this process must tear down on exit
_handlers_installed = False
_handler_lock = threading.Lock()


def _down_all():
    for tb in list(_live):
        if tb._owner_pid == os.getpid():      # never from a forked child
            with contextlib.suppress(Exception):
                tb.down()


def _on_signal(prev, signum, frame):
    _down_all()
    if callable(prev):
        prev(signum, frame)                   # e.g. default_int_handler -> KeyboardInterrupt
    else:
        signal.signal(signum, signal.SIG_DFL)  # die the way the sender intended
        os.kill(os.getpid(), signum)


def _install_exit_handlers():
    global _handlers_installed
    with _handler_lock:
        if _handlers_installed:
            return
        _handlers_installed = True
        atexit.register(_down_all)
        if threading.current_thread() is not threading.main_thread():
            return                            # signal.signal only works there
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            prev = signal.getsignal(sig)
            if prev == signal.SIG_IGN:
                continue                      # e.g. nohup / background job: respect it
            signal.signal(sig, lambda s, f, prev=prev: _on_signal(prev, s, f))


# ------------------------------------------------------------- the bed

@dataclass
class Host:
    index: int
    name: str
    ns: str
    mgmt_ip: str
    mig_ip: str
    dir: str
    sock: str
    state_dir: str
    tls_dir: str
    log_path: str
    port: int = VMOVED_PORT
    proc: subprocess.Popen = field(default=None, repr=False, compare=False)

    @property
    def pid_path(self):
        return os.path.join(self.dir, "vmoved.pid")

    def describe(self):
        return {k: getattr(self, k) for k in
                ("index", "name", "ns", "mgmt_ip", "mig_ip", "dir", "sock", "state_dir",
                 "tls_dir", "log_path", "port")}


def _default_binary(name):
    env = os.environ.get(f"VMOVE_{name.upper().replace('-', '_')}")
    if env:
        return env
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(repo, "build", "release", "bin", name)


def _argv_prefix(cmd):
    """A binary may be given as a path or as an argv prefix (e.g. an interpreter + script)."""
    return [cmd] if isinstance(cmd, str) else list(cmd)


class Testbed:
    """N vmove hosts + a client on private L2/L3 segments.  See docs/TESTBED.md."""
    __test__ = False

    def __init__(self, n_hosts=2, root=None, vmoved=None, vmove=None, host_names=None,
                 tls=True, keep=False, tb_id=None, vmoved_cmd=None, net=None, etcd=0):
        if host_names is not None:
            host_names = list(host_names)
            n_hosts = len(host_names)
        else:
            host_names = [f"h{i}" for i in range(1, n_hosts + 1)]
        if not 1 <= n_hosts <= 99:
            raise ValueError("n_hosts must be 1..99")
        for name in host_names:
            if not _NAME_RE.match(name) or name in ("hub", "cl", "client", "shared", "logs", "ca",
                                                    "users"):
                raise ValueError(f"bad host name {name!r}")
        if len(set(host_names)) != len(host_names):
            raise ValueError("host names must be unique")
        if tb_id is not None and not _ID_RE.match(tb_id):
            raise ValueError("test bed id must match [0-9a-z]{1,8}")
        self.id = tb_id
        self.host_names = host_names
        self.root = os.path.abspath(root) if root else None
        self.vmoved = vmoved or _default_binary("vmoved")
        self.vmove_bin = vmove or _default_binary("vmove")
        self.vmoved_cmd = vmoved_cmd
        self.tls = tls
        self.keep = keep
        self.net = net
        self.hosts = []
        self._owner_pid = os.getpid()
        self._root_created = False
        self._is_up = False
        self._procs = []          # Popens from run_in(popen=True), reaped in down()
        self.n_etcd = etcd        # etcd members (tests/testbed/etcdbed.py); needs tls
        self.etcd_members = []

    # ---- naming / addressing

    @property
    def hub_ns(self):
        return f"vtb-{self.id}-hub"

    @property
    def client_ns(self):
        return f"vtb-{self.id}-cl"

    @property
    def client_ip(self):
        return f"10.{self.net}.3.{CLIENT_HOST_OCTET}"

    @property
    def shared_dir(self):
        return os.path.join(self.root, "shared")

    @property
    def logs_dir(self):
        return os.path.join(self.root, "logs")

    @property
    def ca_dir(self):
        return os.path.join(self.root, "ca")

    def subnet(self, kind):
        octet = {"mgmt": 1, "mig": 2, "vm": 3, "client": 3}[kind]
        return f"10.{self.net}.{octet}.0/24"

    def guest_ip(self, k):
        if not 0 <= k <= 154:
            raise ValueError("guest index k must be 0..154")
        return f"10.{self.net}.3.{GUEST_FIRST_OCTET + k}"

    def fake_vm_ns(self, k):
        return f"vtb-{self.id}-vm{k}"

    def host(self, i):
        """Host by 1-based index, name, Host object or namespace name."""
        if isinstance(i, Host):
            return i
        for h in self.hosts:
            if i in (h.index, h.name, h.ns):
                return h
        raise KeyError(f"no host {i!r} in test bed {self.id}")

    def _make_hosts(self):
        self.hosts = []
        for i, name in enumerate(self.host_names, start=1):
            d = os.path.join(self.root, name)
            self.hosts.append(Host(
                index=i, name=name, ns=f"vtb-{self.id}-h{i}",
                mgmt_ip=f"10.{self.net}.1.{10 + i}", mig_ip=f"10.{self.net}.2.{10 + i}",
                dir=d, sock=os.path.join(d, "vmoved.sock"),
                state_dir=os.path.join(d, "state"), tls_dir=os.path.join(d, "tls"),
                log_path=os.path.join(self.root, "logs", f"{name}.vmoved.log")))
            if len(self.hosts[-1].sock.encode()) >= UNIX_PATH_MAX:
                raise TestbedError(f"socket path too long for AF_UNIX: {self.hosts[-1].sock}")

    def namespaces(self):
        """Every namespace of this bed that exists now (includes fake VMs)."""
        prefix = f"vtb-{self.id}-"
        return [ns for ns in list_namespaces() if ns.startswith(prefix)]

    # ---- lifecycle

    def __enter__(self):
        if not self._is_up:
            self.up()
        return self

    def __exit__(self, *exc):
        self.down()
        return False

    def up(self):
        if os.geteuid() != 0:
            raise TestbedError("the test bed needs root (network namespaces)")
        _install_exit_handlers()
        _live.add(self)
        try:
            self._claim()
            self._make_dirs()
            self._build_network()
            if self.tls:
                self._make_pki()
            if self.n_etcd:
                etcdbed.build(self, self.n_etcd, _ip_batch)
            _write_json(os.path.join(self.root, "testbed.json"), self.describe())
            self._is_up = True
        except BaseException:
            self.down()
            raise
        return self

    def _claim(self):
        """Pick an id and subnet and register ownership *before* creating
        anything, so sweep_stale() can always attribute what exists."""
        with _registry_lock():
            reg = _read_registry()
            taken_ids = set(reg) | {m.group(1) for ns in list_namespaces()
                                    if (m := _NS_RE.match(ns))}
            if self.id is None:
                self.id = next(i for i in iter(lambda: secrets.token_hex(3), None)
                               if i not in taken_ids)
            elif self.id in taken_ids:
                raise TestbedError(f"test bed id {self.id} already in use")
            if self.net is None:
                used = {e.get("net") for e in reg.values()}
                start = int(self.id, 36) % NET_COUNT
                free = [NET_FIRST + (start + k) % NET_COUNT for k in range(NET_COUNT)]
                # All taken only if 100 beds run at once; sharing is still safe.
                self.net = next((n for n in free if n not in used), free[0])
            if self.root is None:
                self.root = tempfile.mkdtemp(prefix=f"vtb-{self.id}-", dir="/tmp")
                self._root_created = True
            elif not os.path.exists(self.root):
                os.makedirs(self.root)
                self._root_created = True
            self._write_registry(self._owner_pid)

    def _write_registry(self, pid):
        _write_json(_registry_path(self.id), {
            "id": self.id, "pid": pid, "pid_start": _proc_start_time(pid),
            "root": self.root, "net": self.net, "keep": self.keep,
            "root_created": self._root_created})

    def _make_dirs(self):
        self._make_hosts()
        for d in (self.shared_dir, self.logs_dir):
            os.makedirs(d, exist_ok=True)
        for h in self.hosts:
            for d in (h.state_dir, h.tls_dir):
                os.makedirs(d, exist_ok=True)

    def _build_network(self):
        all_ns = [self.hub_ns, self.client_ns] + [h.ns for h in self.hosts]
        _ip_batch(None, [f"netns add {ns}" for ns in all_ns])
        for ns in all_ns:
            self._quiet_sysctls(ns)
        _ip_batch(self.hub_ns, self._hub_commands())
        for h in self.hosts:
            _ip_batch(h.ns, self._host_commands(h))
        _ip_batch(self.client_ns, [
            "link set lo up",
            f"addr add {self.client_ip}/24 dev {CLIENT_DEV}",
            f"link set {CLIENT_DEV} up"])

    def _quiet_sysctls(self, ns):
        """Per-namespace sysctls, set before any interface exists.

        - no IPv6: avoids DAD delays and router/MLD chatter in captures;
        - no forwarding: nothing may route between the subnets;
        - strict per-interface ARP and reverse-path filtering: Linux' weak
          host model would otherwise answer for h2's mgmt IP on its mig0, so
          code that sends to the wrong address "works" until that link is
          cut.  With these, each subnet is only reachable over its own link.
        """
        sysctls = {"ipv6/conf/all/disable_ipv6": 1, "ipv6/conf/default/disable_ipv6": 1,
                   "ipv4/ip_forward": 0, "ipv4/conf/all/arp_ignore": 1,
                   "ipv4/conf/all/arp_announce": 2, "ipv4/conf/all/rp_filter": 1}
        self.run_in(ns, ";".join(f"echo {v} > /proc/sys/net/{k}" for k, v in sysctls.items()))

    def _hub_commands(self):
        # Veths are created inside the hub with the peer placed straight into
        # the host namespace: nothing ever appears in the root namespace.
        cmds = ["link set lo up"]
        for _, bridge, _ in LINKS.values():
            cmds += [f"link add {bridge} type bridge stp_state 0", f"link set {bridge} up"]
        for h in self.hosts:
            for kind, (dev, bridge, _) in LINKS.items():
                hub_dev = self._hub_dev(h, kind)
                cmds += [f"link add {hub_dev} type veth peer name {dev} netns {h.ns}",
                         f"link set {hub_dev} master {bridge}", f"link set {hub_dev} up"]
        cmds += [f"link add {CLIENT_HUB_DEV} type veth peer name {CLIENT_DEV} netns {self.client_ns}",
                 f"link set {CLIENT_HUB_DEV} master br-vm", f"link set {CLIENT_HUB_DEV} up"]
        return cmds

    def _host_commands(self, h):
        return ["link set lo up",
                f"addr add {h.mgmt_ip}/24 dev mgmt0", "link set mgmt0 up",
                f"addr add {h.mig_ip}/24 dev mig0", "link set mig0 up",
                "link add switch0 type bridge stp_state 0",
                "link set vmup0 master switch0", "link set vmup0 up", "link set switch0 up"]

    @staticmethod
    def _hub_dev(h, kind):
        return f"h{h.index}-{kind}"

    def _make_pki(self):
        os.makedirs(self.ca_dir, exist_ok=True)
        try:
            self._run_vmove(["pki", "init", self.ca_dir])
            for h in self.hosts:
                self._run_vmove(["pki", "issue-host", h.name, "--ca", self.ca_dir,
                                 "--out", h.tls_dir])
        except (OSError, TestbedError) as e:
            raise TestbedError(f"TLS setup via `vmove pki` failed ({e}); "
                               f"use Testbed(tls=False) if vmove has no pki command") from e

    def issue_user(self, name):
        """A user identity (`vmove pki issue-user`) for CLI calls over TCP;
        returns its directory (for `vmove --identity DIR`)."""
        out = os.path.join(self.root, "users", name)
        os.makedirs(out, exist_ok=True)
        res = self._run_vmove(["pki", "issue-user", name, "--ca", self.ca_dir, "--out", out])
        if res.returncode != 0:
            raise TestbedError(f"vmove pki issue-user {name}: {res.stderr.strip()}")
        return out

    def down(self):
        """Tear everything down; safe to call repeatedly and on half-built beds."""
        _live.discard(self)
        etcdbed.teardown(self)
        if self.id is not None:
            # Every process we started runs inside one of the namespaces
            # (`ip netns exec` execs the command), so this stops them all:
            # SIGTERM first, so vmoved can shut down its VMs.
            destroy_namespaces(self.namespaces())
        for p in [h.proc for h in self.hosts] + self._procs:
            if p is not None:   # reap our children so no zombies linger
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)
        self._procs = []
        if self.root and not self.keep:
            _remove_root(self.root, self.id, self._root_created, [h.name for h in self.hosts])
        if self.id is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_registry_path(self.id))
        self._is_up = False

    # ---- attaching from another process (CLI)

    @classmethod
    def attach(cls, root=None, tb_id=None):
        """Rebuild a handle on a bed created by another process."""
        try:
            if root is None:
                with open(_registry_path(tb_id)) as f:
                    root = jsonlib.load(f)["root"]
            with open(os.path.join(root, "testbed.json")) as f:
                d = jsonlib.load(f)
        except (OSError, ValueError, KeyError) as e:
            raise TestbedError(f"no test bed at {root or tb_id}: {e}") from e
        tb = cls(host_names=[h["name"] for h in d["hosts"]], root=d["root"],
                 vmoved=d["vmoved"], vmove=d["vmove"], tls=d["tls"], tb_id=d["id"],
                 net=d["net"], keep=d.get("keep", False))
        tb._root_created = d.get("root_created", False)
        tb._make_hosts()
        tb._is_up = True
        return tb

    def detach(self, owner_pid):
        """Hand ownership to another process (the CLI's calling shell): this
        process will no longer tear the bed down when it exits."""
        _live.discard(self)
        self._write_registry(owner_pid)

    def describe(self):
        return {
            "id": self.id, "net": self.net, "root": self.root, "root_created": self._root_created,
            "keep": self.keep, "tls": self.tls, "vmoved": self.vmoved, "vmove": self.vmove_bin,
            "hub_ns": self.hub_ns, "client_ns": self.client_ns, "client_ip": self.client_ip,
            "shared_dir": self.shared_dir, "ca_dir": self.ca_dir if self.tls else None,
            "subnets": {k: self.subnet(k) for k in ("mgmt", "mig", "vm")},
            "guest_ip_first": self.guest_ip(0),
            "hosts": [h.describe() for h in self.hosts],
        }

    # ---- running things

    def run_in(self, target, cmd, check=True, timeout=60, popen=False, input=None, **kw):
        """Run cmd (argv list, or str for sh -c) inside a namespace.

        target: host index/name/Host, "hub", "client"/"cl", or one of this
        bed's namespace names.  popen=True returns a Popen (text, piped stdio).
        """
        argv = ["ip", "netns", "exec", self._resolve_ns(target)]
        argv += ["sh", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd]
        if popen:
            kw.setdefault("stdout", subprocess.PIPE)
            kw.setdefault("stderr", subprocess.PIPE)
            kw.setdefault("stdin", subprocess.PIPE)
            proc = subprocess.Popen(argv, text=True, **kw)
            self._procs.append(proc)
            return proc
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, **kw)
        if check and res.returncode != 0:
            raise TestbedError(f"in {argv[3]}: {argv[4:]} -> exit {res.returncode}: "
                               f"{(res.stderr or res.stdout).strip()}")
        return res

    def _resolve_ns(self, target):
        if target == "hub":
            return self.hub_ns
        if target in ("client", "cl"):
            return self.client_ns
        if isinstance(target, str) and target.startswith(f"vtb-{self.id}-"):
            return target
        return self.host(target).ns

    def _vmoved_argv(self, h):
        if callable(self.vmoved_cmd):
            return list(self.vmoved_cmd(h))
        if self.vmoved_cmd is not None:   # template list with {placeholders}
            fields = dict(h.describe(), vmoved=self.vmoved, root=self.root,
                          shared=self.shared_dir, listen=f"{h.mgmt_ip}:{h.port}")
            return [str(a).format(**fields) for a in self.vmoved_cmd]
        argv = _argv_prefix(self.vmoved) + [
            "--state-dir", h.state_dir, "--socket", h.sock, "--name", h.name]
        if self.tls:
            # vmoved only speaks TLS on the network: without certificates it
            # gets no TCP listener and is reachable through its socket only.
            argv += ["--listen", f"{h.mgmt_ip}:{h.port}", "--tls-dir", h.tls_dir]
        # VMOVE_TESTBED_DEBUG=1: the agents log every QMP command (for debugging a test).
        if os.environ.get("VMOVE_TESTBED_DEBUG"):
            argv.append("--debug")
        return argv + ["--foreground"]

    def allowed_dirs(self):
        """The directories a vmoved of this test bed must allow requests to
        name (its path policy, `vmove host set --allow-dir KIND=DIR`): the
        test bed's own tree, which holds the shared directory and each
        host's files."""
        return [self.root]

    def start_host(self, i, extra_args=(), timeout=15.0, env=None):
        """Start vmoved for host i inside its namespace; return once its unix
        socket accepts connections."""
        h = self.host(i)
        if h.proc is not None and h.proc.poll() is None:
            raise TestbedError(f"{h.name}: vmoved already running (pid {h.proc.pid})")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(h.sock)   # a stale socket from a killed run would fool the wait
        argv = ["ip", "netns", "exec", h.ns] + self._vmoved_argv(h) + list(extra_args)
        with open(h.log_path, "ab") as log:
            log.write(f"==== {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
            log.flush()
            # Own session: a terminal ^C reaches the test, which then tears down
            # in order, instead of killing daemons behind its back.
            h.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      env=env)
        with open(h.pid_path, "w") as f:
            f.write(f"{h.proc.pid}\n")
        self._wait_socket(h, timeout)
        return h.proc

    def _wait_socket(self, h, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if h.proc.poll() is not None:
                raise TestbedError(f"{h.name}: vmoved exited with {h.proc.returncode} "
                                   f"before its socket came up:\n{self.log_tail(h)}")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                with contextlib.suppress(OSError):
                    s.connect(h.sock)
                    return
            if time.monotonic() > deadline:
                raise TestbedError(f"{h.name}: socket {h.sock} not accepting after "
                                   f"{timeout}s:\n{self.log_tail(h)}")
            time.sleep(0.05)

    def log_tail(self, i, lines=30):
        with contextlib.suppress(OSError):
            with open(self.host(i).log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        return ""

    def stop_host(self, i, sig=signal.SIGTERM, timeout=10.0):
        """Signal vmoved and wait for it to exit (SIGKILL after timeout).
        Only vmoved itself: QEMU processes it left behind keep running, which
        is what daemon-restart tests need.  Returns the exit status."""
        h = self.host(i)
        pid = h.proc.pid if h.proc is not None else _read_pid(h.pid_path)
        if pid is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        rc = self._wait_pid(h, pid, timeout)
        if rc is None and sig != signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            rc = self._wait_pid(h, pid, 5.0)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(h.pid_path)
        return rc

    @staticmethod
    def _wait_pid(h, pid, timeout):
        if h.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return h.proc.wait(timeout=timeout)
            return None
        deadline = time.monotonic() + timeout     # not our child: poll
        while time.monotonic() < deadline:
            if not _owner_alive(pid, None):
                return 0
            time.sleep(0.05)
        return None

    def _run_vmove(self, args, timeout=120, input=None):
        argv = _argv_prefix(self.vmove_bin) + [str(a) for a in args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)

    def vmove(self, i, *args, json=False, check=True, timeout=120, input=None):
        """Run `vmove -H unix:SOCK [--json] ARGS...` against host i.

        Unix sockets work across network namespaces, so the CLI runs in the
        root namespace.  Returns the CompletedProcess, or parsed stdout when
        json=True."""
        h = self.host(i)
        res = self._run_vmove(["-H", f"unix:{h.sock}"] + (["--json"] if json else []) + list(args),
                              timeout=timeout, input=input)
        return self._vmove_result(h, args, res, json, check)

    def vmove_tcp(self, src, i, *args, identity=None, json=False, check=True, timeout=120):
        """Run vmove inside src's namespace against host i's TLS port on
        the mgmt network, the way a remote user or a peer host would.
        identity defaults to a user certificate issued once for "tester"."""
        if identity is None:
            identity = self._tester_identity = getattr(self, "_tester_identity", None) or \
                self.issue_user("tester")
        h = self.host(i)
        argv = _argv_prefix(self.vmove_bin) + ["-H", f"{h.name}@{h.mgmt_ip}:{h.port}", "--identity",
                                                identity] + (["--json"] if json else [])
        res = self.run_in(src, argv + [str(a) for a in args], check=False, timeout=timeout)
        return self._vmove_result(h, args, res, json, check)

    @staticmethod
    def _vmove_result(h, args, res, json, check):
        if check and res.returncode != 0:
            raise TestbedError(f"vmove {' '.join(map(str, args))} on {h.name} -> exit "
                               f"{res.returncode}: {res.stderr.strip()}")
        if not json:
            return res
        try:
            return jsonlib.loads(res.stdout)
        except ValueError as e:
            raise TestbedError(f"vmove {' '.join(map(str, args))}: bad JSON ({e}): "
                               f"{res.stdout[:500]!r} stderr={res.stderr[:500]!r}") from e

    # ---- link control

    def _link_ends(self, i, link):
        """(namespace, device) for both ends of a host's (or the client's) veth."""
        if i in ("client", "cl"):
            if link != "vm":
                raise ValueError("the client only has a vm link")
            return [(self.client_ns, CLIENT_DEV), (self.hub_ns, CLIENT_HUB_DEV)]
        if link not in LINKS:
            raise ValueError(f"link must be one of {sorted(LINKS)}")
        h = self.host(i)
        return [(h.ns, LINKS[link][0]), (self.hub_ns, self._hub_dev(h, link))]

    def shape(self, i, link="mig", rate="1gbit", delay_ms=0):
        """Limit a link to `rate` in each direction, optionally adding
        `delay_ms` one-way delay per direction (RTT grows by 2*delay_ms).
        rate=None with delay_ms shapes delay only."""
        if delay_ms and not netem_available():
            raise TestbedError("delay_ms needs the netem qdisc (CONFIG_NET_SCH_NETEM), "
                               "which this kernel lacks")
        for ns, dev in self._link_ends(i, link):
            self._unshape_dev(ns, dev)
            parent = ["root"]
            if delay_ms:
                # Big limit: netem's default 1000 packets would cap throughput
                # on high bandwidth-delay links before tbf does.
                _run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:",
                      "netem", "delay", f"{delay_ms}ms", "limit", "100000"])
                parent = ["parent", "1:1"]
            if rate is not None:
                _run(["tc", "-n", ns, "qdisc", "add", "dev", dev, *parent, "handle", "10:",
                      *_tbf_args(parse_rate(rate))])

    def unshape(self, i, link="mig"):
        for ns, dev in self._link_ends(i, link):
            self._unshape_dev(ns, dev)

    @staticmethod
    def _unshape_dev(ns, dev):
        # Fails harmlessly when only the default qdisc is there.
        _run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=False)

    def cut(self, i, link="mig"):
        """Pull the cable at the switch: the hub end goes down, so the host
        end loses carrier but keeps its address and routes.  Packets in
        either direction vanish silently; TCP retransmits and stalls, and
        sessions survive if restore() comes before their timeouts."""
        for ns, dev in self._link_ends(i, link)[1:]:
            _ip_batch(ns, [f"link set {dev} down"])

    def restore(self, i, link="mig"):
        for ns, dev in self._link_ends(i, link)[1:]:
            _ip_batch(ns, [f"link set {dev} up"])

    # ---- helpers for tests

    # ---- etcd (tests/testbed/etcdbed.py)

    @property
    def etcd_urls(self):
        return ",".join(m.url for m in self.etcd_members)

    def etcd_kill(self, k):
        etcdbed.kill(self, k)

    def etcd_start(self, k):
        etcdbed.start(self, k)

    def etcd_stop(self, k):
        etcdbed.kill(self, k, signal.SIGSTOP)

    def etcd_cont(self, k):
        etcdbed.kill(self, k, signal.SIGCONT)

    def etcd_leader(self):
        return etcdbed.leader(self)

    def ping(self, src, dst_ip, dev=None, timeout=2.0):
        """ICMP echo from a namespace; True if answered.  dev binds the
        socket to an interface (SO_BINDTODEVICE)."""
        res = self.run_in(src, [PYTHON, "-c", _PING_SRC, dst_ip, dev or "", str(timeout)],
                          check=False, timeout=timeout + 10)
        return res.returncode == 0

    def add_fake_vm(self, host, k, mac=None):
        """A namespace standing in for VM k: a veth on host's switch0 with
        guest_ip(k).  Returns its namespace name."""
        h = self.host(host)
        ns = self.fake_vm_ns(k)
        tap = f"fvm{k}"
        _ip_batch(None, [f"netns add {ns}"])
        self._quiet_sysctls(ns)
        _ip_batch(h.ns, [f"link add {tap} type veth peer name eth0 netns {ns}",
                         f"link set {tap} master switch0", f"link set {tap} up"])
        _ip_batch(ns, ["link set lo up"] + ([f"link set eth0 address {mac}"] if mac else []) +
                  [f"addr add {self.guest_ip(k)}/24 dev eth0", "link set eth0 up"])
        return ns

    def iperf3(self, src, dst, link="mig", seconds=3, port=5201, extra=()):
        """TCP throughput src -> dst (hosts) over `link`, in bits/s received."""
        dst_ip = self._link_ip(dst, link)
        server = self.run_in(dst, ["iperf3", "-s", "-1", "-B", dst_ip, "-p", str(port)],
                             popen=True)
        try:
            deadline = time.monotonic() + 5
            while True:   # retry until the server listens
                res = self.run_in(src, ["iperf3", "-c", dst_ip, "-p", str(port), "-t",
                                        str(seconds), "-J", *extra],
                                  check=False, timeout=seconds + 30)
                with contextlib.suppress(ValueError, KeyError):
                    return jsonlib.loads(res.stdout)["end"]["sum_received"]["bits_per_second"]
                if time.monotonic() > deadline:
                    raise TestbedError(f"iperf3 failed: {res.stdout[-800:]} {res.stderr[-500:]}")
                time.sleep(0.1)
        finally:
            if server.poll() is None:
                server.kill()
            server.communicate()

    def _link_ip(self, target, link):
        if target in ("client", "cl"):
            return self.client_ip
        h = self.host(target)
        return {"mgmt": h.mgmt_ip, "mig": h.mig_ip}[link]


def _tbf_args(bps):
    # Burst must cover a timer tick's worth of data or tbf undershoots;
    # 4 ms worth (>= 64 KiB) keeps 1gbit accurate while GSO segments up to
    # 64 KiB still fit.  20 ms of queue bounds the added latency.
    burst = max(65536, bps // 8 * 4 // 1000)
    return ["tbf", "rate", str(bps), "burst", str(burst), "latency", "20ms"]


def _read_pid(path):
    with contextlib.suppress(OSError, ValueError):
        with open(path) as f:
            return int(f.read().strip())
    return None


def _remove_root(root, tb_id, created, host_names):
    """Remove the root dir if we made it; in a caller-supplied dir remove
    only what the bed put there."""
    if not os.path.isdir(root):
        return
    if created:
        shutil.rmtree(root, ignore_errors=True)
        return
    for name in ["shared", "logs", "ca", "users", "testbed.json"] + list(host_names):
        p = os.path.join(root, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)


def sweep_stale(include_live=False):
    """Delete test beds whose owner process is gone (or all, with
    include_live).  Returns the swept ids."""
    by_id = {}
    for ns in list_namespaces():
        if m := _NS_RE.match(ns):
            by_id.setdefault(m.group(1), []).append(ns)
    with _registry_lock():
        reg = _read_registry()
        stale = [i for i in set(reg) | set(by_id)
                 if include_live or not (i in reg and _owner_alive(reg[i].get("pid"),
                                                                   reg[i].get("pid_start")))]
    for tb_id in sorted(stale):
        destroy_namespaces(by_id.get(tb_id, []))
        e = reg.get(tb_id)
        if e and not e.get("keep") and e.get("root"):
            names = _host_names_from_root(e["root"], tb_id)
            if names is not None:   # only if the root really is this bed's
                _remove_root(e["root"], tb_id, e.get("root_created"), names)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_registry_path(tb_id))
    return sorted(stale)


def _host_names_from_root(root, tb_id):
    with contextlib.suppress(OSError, ValueError, KeyError):
        with open(os.path.join(root, "testbed.json")) as f:
            d = jsonlib.load(f)
        if d["id"] == tb_id:
            return [h["name"] for h in d["hosts"]]
    return None


def make_testbed(request, **kw):
    """pytest helper: an up test bed that is torn down after the requesting
    test (or module/session, per the fixture's scope).  Set
    VMOVE_TESTBED_KEEP=1 to keep the root dir (logs, state) for inspection."""
    kw.setdefault("keep", os.environ.get("VMOVE_TESTBED_KEEP") == "1")
    tb = Testbed(**kw)
    request.addfinalizer(tb.down)
    return tb.up()


Testbed.sweep_stale = staticmethod(sweep_stale)
Testbed.netem_available = staticmethod(netem_available)


# ------------------------------------------------------------------- CLI

def _cli_target(s):
    return int(s) if s.isdigit() else s


def main(argv=None):
    p = argparse.ArgumentParser(prog="tb", description="vmove multi-host test bed")
    sub = p.add_subparsers(dest="cmd", required=True)

    def bed_args(sp):
        sp.add_argument("--root", help="test bed root dir")
        sp.add_argument("--id", dest="tb_id", help="test bed id (instead of --root)")

    up = sub.add_parser("up", help="create a test bed, print its JSON description")
    up.add_argument("--hosts", type=int, default=2)
    up.add_argument("--names", help="comma-separated host names (overrides --hosts)")
    up.add_argument("--root")
    up.add_argument("--id", dest="tb_id")
    up.add_argument("--vmoved")
    up.add_argument("--vmove")
    up.add_argument("--no-tls", action="store_true")
    up.add_argument("--owner-pid", type=int, default=os.getppid(),
                    help="bed counts as stale once this process dies (default: the calling shell)")

    down = sub.add_parser("down", help="tear a test bed down")
    bed_args(down)
    down.add_argument("--keep", action="store_true", help="keep the root dir")

    sw = sub.add_parser("sweep", help="delete test beds whose owner died")
    sw.add_argument("--all", action="store_true", help="also live ones")

    desc = sub.add_parser("describe")
    bed_args(desc)

    for name in ("shape", "unshape", "cut", "restore"):
        sp = sub.add_parser(name)
        bed_args(sp)
        sp.add_argument("host", help="host index or name, or 'client'")
        sp.add_argument("--link", default="mig", choices=sorted(LINKS))
        if name == "shape":
            sp.add_argument("--rate", default="1gbit")
            sp.add_argument("--delay-ms", type=float, default=0)

    ex = sub.add_parser("exec", help="run a command in a namespace")
    bed_args(ex)
    ex.add_argument("target", help="host index/name, hub, client, or namespace")
    ex.add_argument("command", nargs=argparse.REMAINDER)

    st = sub.add_parser("start", help="start vmoved on a host (left running)")
    bed_args(st)
    st.add_argument("host")
    st.add_argument("extra", nargs=argparse.REMAINDER)
    so = sub.add_parser("stop", help="stop vmoved on a host")
    bed_args(so)
    so.add_argument("host")
    so.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM")

    a = p.parse_args(argv)
    if a.cmd == "up":
        names = a.names.split(",") if a.names else None
        tb = Testbed(n_hosts=a.hosts, host_names=names, root=a.root, vmoved=a.vmoved,
                     vmove=a.vmove, tls=not a.no_tls, tb_id=a.tb_id)
        tb.up()
        tb.detach(a.owner_pid)
        print(jsonlib.dumps(tb.describe(), indent=2))
        return 0
    if a.cmd == "sweep":
        print(jsonlib.dumps({"swept": sweep_stale(include_live=a.all)}))
        return 0
    if not (a.root or a.tb_id):
        p.error("--root or --id is required")
    tb = Testbed.attach(root=a.root, tb_id=a.tb_id)
    if a.cmd == "down":
        tb.keep = tb.keep or a.keep
        tb.down()
    elif a.cmd == "describe":
        print(jsonlib.dumps(tb.describe(), indent=2))
    elif a.cmd in ("shape", "unshape", "cut", "restore"):
        target = "client" if a.host in ("client", "cl") else _cli_target(a.host)
        if a.cmd == "shape":
            tb.shape(target, link=a.link, rate=a.rate, delay_ms=a.delay_ms)
        else:
            getattr(tb, a.cmd)(target, link=a.link)
    elif a.cmd == "exec":
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        res = tb.run_in(_cli_target(a.target), cmd, check=False, timeout=None)
        sys.stdout.write(res.stdout)
        sys.stderr.write(res.stderr)
        return res.returncode
    elif a.cmd == "start":
        extra = a.extra[1:] if a.extra[:1] == ["--"] else a.extra
        proc = tb.start_host(_cli_target(a.host), extra_args=extra)
        print(jsonlib.dumps({"host": tb.host(_cli_target(a.host)).name, "pid": proc.pid}))
    elif a.cmd == "stop":
        rc = tb.stop_host(_cli_target(a.host), sig=signal.SIGKILL if a.kill else signal.SIGTERM)
        print(jsonlib.dumps({"exit": rc}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TestbedError as e:
        print(f"tb: {e}", file=sys.stderr)
        sys.exit(1)

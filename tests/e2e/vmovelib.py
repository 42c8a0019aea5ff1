"""Helpers for vmove's end-to-end tests: run a real vmoved, drive it with the
real vmove CLI, boot the real test guest under QEMU (TCG)."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

BIN = os.environ.get("VMOVE_BIN", os.path.join(os.path.dirname(__file__), "../../build/asan/bin"))
VMOVED = os.path.join(BIN, "vmoved")
VMOVE = os.path.join(BIN, "vmove")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "vmove/guest")
KERNEL = os.path.join(CACHE, "vmlinuz")
INITRD = os.path.join(CACHE, "initrd.img")

# ASan: a leak or error makes vmoved exit non-zero, which the fixtures check.
ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=66",
           UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")


class VmoveError(Exception):
    def __init__(self, proc):
        self.proc = proc
        super().__init__(f"vmove {' '.join(proc.args[3:])} -> rc={proc.returncode}\n"
                         f"stdout: {proc.stdout}\nstderr: {proc.stderr}")


def wait_for(pred, timeout, what, interval=0.2):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # keep polling: the condition may throw while not ready
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Agent:
    """One vmoved with its own state dir and socket."""

    def __init__(self, root, name="h1", extra=None, netns=None, env=None):
        self.root = root
        self.env = dict(ENV, **(env or {}))
        self.name = name
        self.state_dir = os.path.join(root, name, "state")
        self.sock = os.path.join(root, name, "vmoved.sock")
        self.log_path = os.path.join(root, name, "vmoved.log")
        self.extra = extra or []
        self.netns = netns
        self.proc = None
        os.makedirs(os.path.dirname(self.sock), exist_ok=True)

    def start(self):
        cmd = [VMOVED, "--state-dir", self.state_dir, "--socket", self.sock, "--name", self.name,
               "--foreground"] + self.extra
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        wait_for(lambda: self.proc.poll() is not None or self.try_call("host", "show"), 30,
                 f"vmoved {self.name} to answer")
        if self.proc.poll() is not None:
            raise AssertionError(f"vmoved {self.name} exited with {self.proc.returncode}:\n{self.read_log()}")
        self.allow_test_dirs()
        return self

    def allow_test_dirs(self):
        """The host's path policy (docs/SECURITY.md) lets requests name only
        files in directories the admin allows: the tests' own directory and
        the test guest's kernel, for every kind."""
        self.vmove("host", "set", *allow_dir_args([self.root, CACHE]))

    def try_call(self, *args):
        try:
            self.vmove(*args)
            return True
        except VmoveError:
            return False

    def stop(self, sig=signal.SIGTERM, check=True):
        """Stops vmoved (VMs keep running).  With SIGTERM it must exit 0:
        ASan/LSan findings make it exit non-zero."""
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self.log.close()
        if check and sig == signal.SIGTERM:
            assert rc == 0, f"vmoved {self.name} exited with {rc}:\n{self.read_log()[-4000:]}"

    def read_log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def run(self, *args, check=True, json_out=False, timeout=300, input=None):
        cmd = [VMOVE, "-H", "unix:" + self.sock] + (["--json"] if json_out else []) + [str(a) for a in args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV, input=input)
        if check and p.returncode != 0:
            raise VmoveError(p)
        return p

    def vmove(self, *args, **kw):
        p = self.run(*args, json_out=True, **kw)
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        return json.loads(lines[-1]) if lines else None

    # ---- VM helpers ------------------------------------------------------
    def create_guest(self, name, memory="256M", disks=("64M",), nics=(), append="", extra=()):
        args = ["vm", "create", name, "--memory", memory, "--kernel", KERNEL, "--initrd", INITRD,
                "--append", f"console=ttyS0 quiet panic=-1 {append}".strip()]
        for d in disks:
            args += ["--disk", d]
        for n in nics:
            args += ["--nic", n]
        return self.vmove(*args, *extra)

    def guest(self, name, *cmd, timeout=120):
        return self.vmove("vm", "guest", name, *cmd, timeout=timeout)["reply"]

    def wait_guest_ready(self, name, timeout=120):
        return wait_for(lambda: self.guest(name, "ping", timeout=10) == "pong", timeout,
                        f"guest {name} to answer ping")

    def vm(self, name):
        return self.vmove("vm", "show", name)

    def qemu_pids(self):
        """QEMU processes whose command line mentions this agent's state dir."""
        pids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"qemu-system-x86_64") and any(self.state_dir.encode() in c for c in cmd):
                pids.append(int(pid))
        return pids

    def kill_qemus(self):
        for pid in self.qemu_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---- TLS: a vmoved on a TLS port, and raw mutual-TLS sessions with it ------

def pki(*args):
    subprocess.run([VMOVE, "pki", *args], check=True, capture_output=True, text=True)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_tls_agent(root, users=("alice",), env=None):
    """vmoved h1 on a TLS port of 127.0.0.1 (agent.port), with a CA in
    ROOT/ca and a user identity ROOT/NAME for each of users."""
    ca = os.path.join(root, "ca")
    pki("init", ca)
    pki("issue-host", "h1", "--ca", ca, "--out", os.path.join(root, "h1tls"))
    for u in users:
        pki("issue-user", u, "--ca", ca, "--out", os.path.join(root, u))
    port = free_port()
    a = Agent(root, "h1", extra=["--listen", f"127.0.0.1:{port}", "--tls-dir", os.path.join(root, "h1tls")],
              env=env).start()
    a.port = port
    return a


def remote(agent, identity, *args, timeout=30):
    """The vmove CLI against agent's TLS port as the user in identity."""
    cmd = [VMOVE, "-H", f"h1@127.0.0.1:{agent.port}", "--identity", identity, "--json", *[str(x) for x in args]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)


def tls_session(agent, identity, timeout=10):
    """A raw mutual-TLS connection to agent as the user in identity (the
    wire protocol by hand: attacks and limits the CLI would not make)."""
    import socket
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(os.path.join(identity, "ca.crt"))
    ctx.load_cert_chain(os.path.join(identity, "user.crt"), os.path.join(identity, "user.key"))
    raw = socket.create_connection(("127.0.0.1", agent.port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="h1")


def send_request(s, method, params=None, rid=1):
    s.sendall((json.dumps({"id": rid, "method": method, "params": params or {}}) + "\n").encode())


def call(s, method, params=None, rid=1):
    """One request on a raw session and its reply (the first line read)."""
    send_request(s, method, params, rid)
    return json.loads(s.makefile().readline())


PATH_KINDS = ("images", "kernels", "storage", "state")


def allow_dir_args(dirs, kinds=PATH_KINDS):
    """--allow-dir KIND=DIR for each kind and each (canonical) directory."""
    args = []
    for d in dirs:
        real = os.path.realpath(d)
        if os.path.isdir(real):
            args += [a for k in kinds for a in ("--allow-dir", f"{k}={real}")]
    return args


def make_root(prefix="vmove-e2e-"):
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def cleanup(agents, root):
    for a in agents:
        try:
            a.stop(check=False)
        except Exception:
            if a.proc:
                a.proc.kill()
        a.kill_qemus()
    shutil.rmtree(root, ignore_errors=True)


def qemu_img_check(path):
    """qemu-img check of an image that nothing is writing: any error or
    leak fails.  -U lets it read an image that a paused QEMU holds."""
    p = subprocess.run(["qemu-img", "check", "-U", path], capture_output=True, text=True)
    assert p.returncode == 0 and "ERROR" not in p.stdout + p.stderr, \
        f"qemu-img check {path}: exit {p.returncode}\n{p.stdout}{p.stderr}"


def check_images_paused(vmove, name, paths):
    """Checks the images of running VM `name` with the guest paused.  A
    check of an image that QEMU is writing races with QEMU's metadata
    updates: in one CI run it saw a refcount for a cluster past the end of
    the file, whose data write had not landed yet, and reported corruption
    that was not there.  QEMU drains and flushes every disk when it pauses,
    so a paused image is consistent and the check can be strict.  `vmove`
    runs one vmove command on the VM's host (e.g. agent.vmove)."""
    vmove("vm", "pause", name)
    try:
        for p in paths:
            qemu_img_check(p)
    finally:
        vmove("vm", "resume", name)

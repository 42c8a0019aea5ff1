"""The Debian package: built with `make deb`, checked with dpkg-deb, lintian
and systemd-analyze, installed on this machine with dpkg -i, and purged,
leaving nothing behind.  The tests run as root; the package is purged in
the fixture whatever happens."""
import os
import re
import stat
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))

# path in the package -> mode (d: directory)
EXPECTED = {
    "./usr/sbin/vmoved": "-rwxr-xr-x",
    "./usr/bin/vmove": "-rwxr-xr-x",
    "./etc/vmove/": "drwxr-xr-x",
    "./etc/vmove/vmoved.conf": "-rw-r--r--",
    "./var/lib/vmove/": "drwx------",
    "./lib/systemd/system/vmoved.service": "-rw-r--r--",
    "./usr/lib/tmpfiles.d/vmove.conf": "-rw-r--r--",
    "./usr/share/bash-completion/completions/vmove": "-rw-r--r--",
    "./usr/share/man/man1/vmove.1.gz": "-rw-r--r--",
    "./usr/share/man/man8/vmoved.8.gz": "-rw-r--r--",
    "./usr/share/man/man5/vm.json.5.gz": "-rw-r--r--",
    "./usr/share/doc/vmove/OPERATIONS.md.gz": "-rw-r--r--",   # dh_compress
    "./usr/share/doc/vmove/copyright": "-rw-r--r--",
}


def run(*cmd, **kw):
    return subprocess.run(list(cmd), capture_output=True, text=True, **kw)


def version():
    with open(os.path.join(REPO, "debian/changelog")) as f:
        return re.match(r"\S+ \(([^)]+)\)", f.readline()).group(1)


def installed():
    return "install ok installed" in run("dpkg-query", "-W", "-f=${Status}", "vmove").stdout


@pytest.fixture(scope="module")
def deb():
    assert not installed(), "vmove is already installed on this machine: purge it first"
    p = run("make", "-C", REPO, "deb", timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    path = os.path.join(REPO, "build/deb", f"vmove_{version()}_amd64.deb")
    assert os.path.exists(path)
    return path


@pytest.fixture
def installed_pkg(deb):
    try:
        p = run("dpkg", "-i", deb, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        yield deb
    finally:
        run("dpkg", "--purge", "vmove", timeout=120)


def test_file_list_and_modes(deb):
    listing = run("dpkg-deb", "-c", deb).stdout
    modes = {}
    for line in listing.splitlines():
        f = line.split()
        modes[f[5]] = (f[0], f[1])
    for path, mode in EXPECTED.items():
        assert path in modes, f"{path} missing from the package:\n{listing}"
        assert modes[path] == (mode, "root/root"), (path, modes[path])
    # /run is a tmpfs: the package must not ship it (tmpfiles.d makes it).
    assert not any(p.startswith("./run") for p in modes)
    info = run("dpkg-deb", "-f", deb, "Depends").stdout
    for dep in ("qemu-system-x86 (>= 1:10.0)", "qemu-utils (>= 1:10.0)", "iproute2", "libsystemd0", "libc6"):
        assert dep in info, info


def test_lintian_no_errors(deb):
    changes = deb.replace(".deb", ".changes")
    p = run("lintian", "--allow-root", changes, timeout=300)
    errors = [l for l in p.stdout.splitlines() if l.startswith("E:")]
    assert errors == [], p.stdout
    # The known warnings are overridden with a reason (debian/vmove.lintian-overrides).
    assert [l for l in p.stdout.splitlines() if l.startswith("W:")] == [], p.stdout


def test_install_verify_purge(installed_pkg):
    assert installed()
    assert run("/usr/sbin/vmoved", "--version").stdout.strip() == f"vmoved {version()}"
    assert run("/usr/bin/vmove", "--version").stdout.strip() == f"vmove {version()}"
    # Directories with owners and modes: the package (/var/lib/vmove) and
    # tmpfiles.d (/run/vmove, applied by the postinst).
    for path, mode in (("/var/lib/vmove", 0o700), ("/run/vmove", 0o755), ("/etc/vmove", 0o755)):
        st = os.stat(path)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == mode and st.st_uid == 0, path
    assert "state-dir" in open("/etc/vmove/vmoved.conf").read()
    # The unit, as systemd reads it (no running systemd here: `verify` loads
    # the unit offline; it needs the ExecStart binary installed, so it runs now).
    p = run("systemd-analyze", "verify", "--man=no", "/lib/systemd/system/vmoved.service", timeout=60)
    assert p.returncode == 0 and p.stdout + p.stderr == "", p.stdout + p.stderr
    show = run("systemd-analyze", "cat-config", "systemd/system/vmoved.service").stdout
    assert "KillMode=process" in show and "Type=notify" in show and "ExecStart=/usr/sbin/vmoved" in show
    # Enabled by the postinst (a running systemd would also start it).
    assert os.path.islink("/etc/systemd/system/multi-user.target.wants/vmoved.service")
    assert run("man", "-w", "vmoved").stdout.strip().endswith("vmoved.8.gz")

    files = [l for l in run("dpkg", "-L", "vmove").stdout.splitlines() if l.strip()]
    p = run("dpkg", "--purge", "vmove", timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not installed()
    left = [f for f in files if os.path.lexists(f) and not os.path.isdir(f)]
    assert left == [], left
    for path in ("/etc/vmove", "/var/lib/vmove", "/run/vmove", "/usr/share/doc/vmove",
                 "/etc/systemd/system/multi-user.target.wants/vmoved.service"):
        assert not os.path.lexists(path), f"{path} left after purge"

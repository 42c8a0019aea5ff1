"""Migration and NBD streams are encrypted: a capture on the migration
network does not contain a marker the guest keeps in memory and on disk,
while the same capture with insecure transport (allowed on both hosts) does,
which proves that the test can see it."""
import os
import secrets
import signal
import subprocess
import time

import pytest

from migrationlib import make_cluster
from vmovelib import wait_for

MARKER = secrets.token_bytes(32)
# No compression: a compressed plaintext stream would hide the marker too,
# and the insecure runs must show it.
RAW = ("--compress", "none")


@pytest.fixture
def cl(request):
    return make_cluster(request)


class Capture:
    def __init__(self, cl, host, path):
        self.cl, self.path = cl, path
        self.p = cl.tb.run_in(host, ["tcpdump", "-q", "-n", "-i", "mig0", "-s", "0", "-U", "-w", path, "tcp"],
                              popen=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: os.path.exists(path), 10, "tcpdump to start")
        time.sleep(0.5)

    def stop(self):
        time.sleep(0.5)
        self.p.send_signal(signal.SIGINT)
        self.p.wait(timeout=20)
        with open(self.path, "rb") as f:
            data = f.read()
        os.unlink(self.path)
        return data


def guest_with_marker(cl, name, disk_dir=None):
    extra = f"vmove.marker={MARKER.hex()}"
    if disk_dir is None:
        cl.create_guest(name, mem=32, mem_rate=0, disk_rate=256, extra=extra)
        return
    from test_shared_nothing import create_private_guest   # noqa: F401  (same layout, private disk)
    from vmovelib import KERNEL, INITRD
    disk = os.path.join(disk_dir, f"{name}.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"], check=True)
    cl.v(1, "vm", "create", name, "--memory", "256M", "--disk", disk, "--nic", "switch0", "--kernel", KERNEL,
         "--initrd", INITRD, "--append", f"console=ttyS0 quiet vmove.mem=32 vmove.disk=vda vmove.disk_rate=512 {extra}")


def test_live_migration_stream_is_encrypted(cl):
    guest_with_marker(cl, "enc1")
    cl.boot("enc1")
    time.sleep(1)
    cap = Capture(cl, 2, os.path.join(cl.tb.root, "enc1.pcap"))
    cl.move("enc1", 1, 2, *RAW)
    data = cap.stop()
    assert len(data) > 32 << 20, f"the capture saw too little traffic ({len(data)} bytes)"
    assert MARKER not in data, "the guest's marker crossed the migration network in clear text"
    assert cl.verify("enc1", 2)

    # Insecure transport needs both hosts' consent; then the marker is visible.
    cl.v(1, "host", "set", "--allow-insecure-migration", "on")
    assert "UNSAFE" in cl.v(1, "host", "show")["migration"]["insecure_warning"]
    cap = Capture(cl, 1, os.path.join(cl.tb.root, "enc1b.pcap"))
    cl.move("enc1", 2, 1, *RAW)     # h2 does not allow it: still encrypted
    assert MARKER not in cap.stop()
    cl.v(2, "host", "set", "--allow-insecure-migration", "on")
    cap = Capture(cl, 2, os.path.join(cl.tb.root, "enc1c.pcap"))
    cl.move("enc1", 1, 2, *RAW)
    assert MARKER in cap.stop(), "with insecure transport the capture must show the marker (test sanity)"
    assert cl.verify("enc1", 2)


def test_shared_nothing_streams_are_encrypted(cl):
    d1 = os.path.join(cl.tb.root, "h1", "disks")
    d2 = os.path.join(cl.tb.root, "h2", "disks")
    os.makedirs(d1)
    os.makedirs(d2)
    guest_with_marker(cl, "enc2", disk_dir=d1)
    cl.boot("enc2")
    time.sleep(2)   # let the disk writer put marker blocks on the disk
    cap = Capture(cl, 2, os.path.join(cl.tb.root, "enc2.pcap"))
    cl.move("enc2", 1, 2, "--with-storage", d2, *RAW)
    data = cap.stop()
    assert MARKER not in data, "the marker crossed the network in clear text (NBD or migration)"
    assert cl.verify("enc2", 2)
    for i in (1, 2):
        cl.v(i, "host", "set", "--allow-insecure-migration", "on")
    cap = Capture(cl, 1, os.path.join(cl.tb.root, "enc2b.pcap"))
    cl.move("enc2", 2, 1, "--with-storage", d1, *RAW)
    assert MARKER in cap.stop(), "with insecure transport the capture must show the marker (test sanity)"
    assert cl.verify("enc2", 1)

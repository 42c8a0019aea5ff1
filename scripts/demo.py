#!/usr/bin/python3
"""The main job: two vmove hosts in network namespaces, a guest with its
memory, disk and network workloads, a live migration there and back with
progress, QEMU's downtime and the downtime a client sees."""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../tests/testbed"))
import testbed as tbmod  # noqa: E402

BIN = os.environ.get("VMOVE_BIN", os.path.join(HERE, "../build/release/bin"))
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "vmove/guest")


def say(msg):
    print(f"\n\033[1m== {msg}\033[0m" if sys.stdout.isatty() else f"\n== {msg}", flush=True)


def vmove(tb, i, *args, check=True):
    """Run the CLI against host i, showing the command and its output."""
    h = tb.host(i)
    argv = [os.path.join(BIN, "vmove"), "-H", f"unix:{h.sock}"] + [str(a) for a in args]
    print(f"$ vmove -H {h.name} {' '.join(str(a) for a in args)}", flush=True)
    p = subprocess.run(argv, text=True, capture_output=True)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    if check and p.returncode:
        raise SystemExit(f"demo: command failed ({p.returncode})")
    return p


def move(tb, src, dst, ip):
    h = tb.host(src)
    argv = ["ip", "netns", "exec", tb.client_ns, os.path.join(BIN, "vmove"), "-H", f"unix:{h.sock}",
            "move", "demo", "--to", tb.host(dst).name, "--probe", f"{ip}:7777"]
    print(f"$ vmove -H {h.name} move demo --to {tb.host(dst).name} --probe {ip}:7777   "
          f"(run in the client namespace)", flush=True)
    if subprocess.run(argv).returncode:
        raise SystemExit("demo: migration failed")


def main():
    for f in ("vmlinuz", "initrd.img"):
        if not os.path.exists(os.path.join(CACHE, f)):
            raise SystemExit(f"demo: {CACHE}/{f} is missing: run `make guest`")
    with tbmod.Testbed(n_hosts=2, tls=True, keep=os.environ.get("VMOVE_TESTBED_KEEP") == "1", vmoved=os.path.join(BIN, "vmoved"),
                       vmove=os.path.join(BIN, "vmove")) as tb:
        say("Two hosts, h1 and h2, each in its own network namespace (management, migration and VM networks)")
        for i in (1, 2):
            tb.start_host(i)
        h1, h2 = tb.host(1), tb.host(2)
        print(f"h1: mgmt {h1.mgmt_ip}, migration {h1.mig_ip};  h2: mgmt {h2.mgmt_ip}, migration {h2.mig_ip}")
        say("Migration is off by default: enable it on the migration network only, and authorise both hosts")
        for i, other in ((1, h2), (2, h1)):
            vmove(tb, i, "peer", "add", other.name, f"{other.mgmt_ip}:{other.port}")
            vmove(tb, i, "acl", "grant", f"host:{other.name}", "migrate.in", "migrate.out")
            # The path policy: requests may name files only where the admin allows.
            dirs = [a for k in ("images", "kernels", "storage", "state") for d in (tb.shared_dir, CACHE)
                    for a in ("--allow-dir", f"{k}={os.path.realpath(d)}")]
            vmove(tb, i, "host", "set", "--migration-incoming", "on", "--migration-outgoing", "on",
                  "--migration-network", tb.subnet("mig"), *dirs)
        vmove(tb, 1, "host", "show")

        say("A guest on shared storage, writing checksummed data to memory and disk, answering UDP echo")
        disk = os.path.join(tb.shared_dir, "demo.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "256M"], check=True)
        ip = tb.guest_ip(0)
        vmove(tb, 1, "vm", "create", "demo", "--memory", "512M", "--disk", disk, "--nic", "switch0",
              "--kernel", f"{CACHE}/vmlinuz", "--initrd", f"{CACHE}/initrd.img", "--append",
              f"console=ttyS0 quiet vmove.mem=256 vmove.mem_rate=32 vmove.disk=vda vmove.disk_rate=512 "
              f"vmove.echo=7777 vmove.ip={ip}/24")
        vmove(tb, 1, "vm", "start", "demo")
        for _ in range(200):
            p = subprocess.run([os.path.join(BIN, "vmove"), "-H", f"unix:{h1.sock}", "vm", "guest", "demo", "ping"],
                               capture_output=True, text=True)
            if "pong" in p.stdout:
                break
            time.sleep(0.3)
        vmove(tb, 1, "vm", "list")
        vmove(tb, 1, "vm", "guest", "demo", "status")

        say("Live migration h1 -> h2, while a client pings the guest's UDP echo every millisecond")
        move(tb, 1, 2, ip)
        vmove(tb, 1, "vm", "list")
        vmove(tb, 2, "vm", "list")
        vmove(tb, 2, "vm", "guest", "demo", "verify")

        say("And back, h2 -> h1")
        move(tb, 2, 1, ip)
        vmove(tb, 1, "vm", "guest", "demo", "verify")
        vmove(tb, 1, "vm", "list")
        vmove(tb, 2, "vm", "list")
        say("Done: the guest's memory and disk data verified after both moves")
        vmove(tb, 1, "vm", "stop", "demo", "--force")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Stand-ins for vmoved and vmove, so the test bed can be tested before
(and independently of) the real daemon.

  fakes.py vmoved --state-dir D --socket S --name N [--listen IP:PORT --tls-dir T] [--foreground]
  fakes.py vmove -H unix:SOCK [--json] ARGS...      (also: pki init / pki issue-host)

The fake daemon answers every connection, on its unix socket and on its
TCP listen address, with one JSON line describing itself; binding the TCP
address proves it runs inside the host's namespace (the address exists
nowhere else).
"""

import argparse
import json
import os
import signal
import socket
import socketserver
import sys
import threading


def fake_vmoved(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--state-dir", required=True)
    p.add_argument("--socket", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--listen")
    p.add_argument("--tls-dir")
    p.add_argument("--foreground", action="store_true")
    a, extra = p.parse_known_args(argv)
    info = {"name": a.name, "netns": os.readlink("/proc/self/ns/net"), "pid": os.getpid(),
            "tls_dir": a.tls_dir, "extra": extra, "listen": a.listen}

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            req = self.rfile.readline().decode().strip()
            self.wfile.write((json.dumps(dict(info, request=req)) + "\n").encode())

    class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True

    servers = [UnixServer(a.socket, Handler)]
    if a.listen:
        host, port = a.listen.rsplit(":", 1)
        servers.append(TCPServer((host, int(port)), Handler))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    with open(os.path.join(a.state_dir, "started"), "w") as f:
        f.write(json.dumps(info))
    print(f"fake vmoved {a.name} up: {info}", flush=True)

    def stop(signum, frame):
        os.unlink(a.socket)
        print(f"fake vmoved {a.name} got signal {signum}", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    while True:
        signal.pause()


def fake_vmove(argv):
    if argv[:2] == ["pki", "init"]:
        for fn in ("ca.crt", "ca.key"):
            with open(os.path.join(argv[2], fn), "w") as f:
                f.write("fake\n")
        return 0
    if argv[:2] == ["pki", "issue-host"]:
        name, out = argv[2], argv[argv.index("--out") + 1]
        for fn in ("host.crt", "host.key"):
            with open(os.path.join(out, fn), "w") as f:
                f.write(f"fake cert for {name}\n")
        return 0
    assert argv[0] == "-H" and argv[1].startswith("unix:"), argv
    rest = argv[2:]
    as_json = rest[:1] == ["--json"]
    rest = rest[1:] if as_json else rest
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(argv[1][5:])
        s.sendall((" ".join(rest) + "\n").encode())
        reply = json.loads(s.makefile().readline())
    print(json.dumps(reply) if as_json else f"{reply['name']}: {reply['request']}")
    return 0


if __name__ == "__main__":
    tool, args = sys.argv[1], sys.argv[2:]
    sys.exit(fake_vmoved(args) if tool == "vmoved" else fake_vmove(args))

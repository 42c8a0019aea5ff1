#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ (seed-*).  Crash
inputs are kept by hand as crash-*/regress-* and never rewritten here."""
import json, os, itertools

HERE = os.path.dirname(os.path.abspath(__file__))

def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# fuzz_api: a selector byte (who asks) then the request.
METHODS = {
    "host.show": {}, "host.set": {"max_live_migrations": 3, "accel": "tcg", "migration_incoming": True,
                                  "migration_networks": ["10.0.0.0/8"], "allow_delegation_from": ["host:peer1"]},
    "host.events": {"limit": 10, "vm": "fz"}, "peer.add": {"name": "h2", "addr": "10.0.0.2:7000"},
    "peer.remove": {"name": "h2"}, "peer.list": {},
    "vm.create": {"name": "new1", "memory": "128M", "cpus": 2, "nics": [], "disks": []},
    "vm.list": {}, "vm.show": {"name": "fz"}, "vm.stop": {"name": "fz", "timeout": 5},
    "vm.pause": {"name": "fz"}, "vm.resume": {"name": "fz"}, "vm.delete": {"name": "fz", "keep_disks": True},
    "vm.console": {"name": "fz", "offset": -100, "max": 4096}, "vm.guest": {"name": "fz", "command": "ping"},
    "jobs.list": {"limit": 5, "all": True}, "jobs.show": {"id": 1}, "jobs.watch": {"id": 1},
    "jobs.cancel": {"id": 1},
    "migrate.finish": {"name": "fz"}, "migrate.resolve": {"name": "fz"},
    "migrate.reserve": {"job": 7, "vm": "fz", "user": "user:admin"},
    "migrate.unreserve": {"job": 7, "user": "user:admin"}, "migrate.capacity": {"user": "user:admin"},
    "host.resume": {"host": "h1"},
    "acl.grant": {"principal": "user:bob", "rights": ["vm.read"]},
    "acl.revoke": {"principal": "user:reader", "rights": ["vm.read"]}, "acl.list": {},
    "acl.group-add": {"group": "ops", "member": "user:bob"},
    "acl.group-remove": {"group": "ops", "member": "user:admin"},
    "audit.list": {"limit": 20},
    "vm.export": {"name": "fz", "to": "/tmp/vmove-fuzz-export", "wait": False, "memory": False, "bandwidth": 1},
}
MISTYPED = ["5", "-1", "\"x\"", "[1]", "{\"a\": 1}", "9223372036854775807", "-9223372036854775808", "1e300",
            "null", "true", "\"\""]

def api_seeds():
    for (m, p), sel in itertools.product(METHODS.items(), "01234"):
        put("fuzz_api", f"{m}-{sel}", sel + json.dumps({"id": 1, "method": m, "params": p}))
    # Each parameter of each method mistyped, as root (all rights).
    for m, p in METHODS.items():
        for k in p:
            for i, bad in enumerate(MISTYPED):
                rest = {kk: vv for kk, vv in p.items() if kk != k}
                body = json.dumps(rest)[:-1] + (", " if rest else "") + f"\"{k}\": {bad}}}"
                put("fuzz_api", f"{m}-{k}-bad{i}", "0" + f"{{\"id\": 2, \"method\": \"{m}\", \"params\": {body}}}")
    put("fuzz_api", "dup-keys", '0{"id": 1, "method": "vm.show", "params": {"name": "fz", "name": 5}}')
    put("fuzz_api", "delegation", '3{"id": 1, "method": "vm.show", "params": {"name": "fz", "delegation": '
        '{"payload": "{}", "sig": "AA==", "cert": "x"}}}')
    put("fuzz_api", "unknown", '2{"id": 1, "method": "nope", "params": {}}')

def wire_seeds():
    msgs = {
        "prepare_req": {"config": {"name": "fz"}, "tuning": {}, "accel": "kvm", "via": "10.0.0.1", "job": 3,
                        "quick": False, "storage": {"dir": "/v", "sizes": {"vda": 1}}, "user": "user:a",
                        "insecure_ok": False},
        "prepare_reply": {"quick": False, "ip": "10.0.0.2", "port": 4444, "tls": True, "host": "h2",
                          "nbd_port": 10809, "disks": {"vda": "/v/vda.qcow2"}},
        "name_req": {"name": "fz"}, "finish_reply": {"host": "h2"},
        "resolve_reply": {"state": "committed", "host": "h2"},
        "reserve_req": {"job": 4, "vm": "fz", "user": "user:a"},
        "reserve_reply": {"granted": True, "position": 1, "in_use": 1, "max": 2, "host": "h2"},
        "load_req": {"name": "fz", "path": "/v/state"},
    }
    for i, (k, v) in enumerate(msgs.items()):
        put("fuzz_wire", k, bytes([i]) + json.dumps(v).encode())
        put("fuzz_wire", k + "-long-host", bytes([i]) + json.dumps({**v, "host": "h" * 300}).encode())
        put("fuzz_wire", k + "-neg", bytes([i]) + json.dumps({kk: -1 for kk in v}).encode())

VM = {"version": 1, "name": "fz", "uuid": "0d6ff6d4-8fa0-4b7b-9f0e-4d2b9a43c001", "memory_mib": 512, "cpus": 2,
      "machine": "pc-q35-10.0", "cpu_model": "host",
      "disks": [{"id": "vda", "path": "/v/vda.qcow2", "bus": "virtio"}],
      "nics": [{"switch": "br0", "mac": "52:54:00:12:34:56"}],
      "boot": {"kind": "kernel", "kernel": "/boot/k", "initrd": "/boot/i", "append": "console=ttyS0"},
      "flags": {"ha": False}}

def vm_config_seeds():
    put("fuzz_vm_config", "full", json.dumps(VM))
    put("fuzz_vm_config", "disk-boot", json.dumps({**VM, "boot": {"kind": "disk"}, "nics": []}))
    put("fuzz_vm_config", "mistyped", json.dumps({**VM, "memory_mib": "512", "cpus": -1, "disks": "vda"}))
    put("fuzz_vm_config", "huge", json.dumps({**VM, "memory_mib": 2**63 - 1, "cpus": 2**40}))

HOST = {"version": 1, "accel": "auto", "migration_incoming": True, "migration_outgoing": False,
        "migration_networks": ["10.0.0.0/8", "192.168.1.0/24"], "peers": {"h2": "10.0.0.2:7000"},
        "max_live_migrations": 2, "max_storage_migrations": 2, "drained": False, "allow_insecure_migration": False,
        "allow_delegation_from": ["host:h2", "group:ops"]}

def settings_seeds():
    put("fuzz_settings", "full", json.dumps(HOST))
    put("fuzz_settings", "any", json.dumps({**HOST, "migration_networks": ["any"]}))
    put("fuzz_settings", "many-peers", json.dumps({**HOST, "peers": {f"h{i}": "10.0.0.2:7000"
                                                                     for i in range(70)}}))
    put("fuzz_settings", "many-nets", json.dumps({**HOST, "migration_networks": ["10.0.0.0/8"] * 20}))
    put("fuzz_settings", "many-deleg", json.dumps({**HOST, "allow_delegation_from": ["host:h2"] * 70}))
    put("fuzz_settings", "mistyped", json.dumps({**HOST, "max_live_migrations": "2", "peers": {"h2": 1}}))

def token_seeds():
    p = {"op": "migrate", "vm": "fz", "src": "h1", "dst": "h2", "via": "h1", "user": "alice", "iat": 1000,
         "exp": 1200, "nonce": "0123456789abcdef0123456789abcdef"}
    put("fuzz_token", "valid", json.dumps(p))
    put("fuzz_token", "long-life", json.dumps({**p, "exp": 2**62}))
    put("fuzz_token", "mistyped", json.dumps({**p, "iat": "1000", "nonce": 5}))
    put("fuzz_token", "token-shape", json.dumps({"payload": json.dumps(p), "sig": "AA==", "cert": "x"}))

def qmp_seeds():
    put("fuzz_qmp_reply", "migrate", "m" + json.dumps({"status": "active", "total-time": 100, "ram": {
        "transferred": 1, "remaining": 2, "total": 3, "mbps": 1.5, "dirty-pages-rate": 4, "page-size": 4096}}))
    put("fuzz_qmp_reply", "migrate-lies", "m" + json.dumps({"status": 5, "ram": {"transferred": -1, "remaining": "x"}}))
    put("fuzz_qmp_reply", "jobs", "j" + json.dumps([{"device": "m1", "type": "mirror", "status": "ready", "len": 10,
                                                    "offset": 10, "speed": 0, "ready": True, "busy": False}]))
    put("fuzz_qmp_reply", "jobs-lies", "j" + json.dumps([{"device": 1, "len": -5, "ready": "yes"}, 7]))
    put("fuzz_qmp_reply", "block", "b" + json.dumps([{"device": "", "qdev": "/machine/peripheral/vda-dev/virtio-backend",
                                                     "inserted": {"node-name": "vda", "file": "/v/a", "drv": "qcow2",
                                                                  "ro": False}}]))
    put("fuzz_qmp_reply", "block-lies", "b" + json.dumps({"device": "x"}))

def acl_seeds():
    base = {"version": 1, "grants": {"user:alice": ["vm.read"], "group:ops": ["host.admin"]},
            "groups": {"ops": ["user:alice", "host:h2"]}}
    put("fuzz_acl", "valid", json.dumps(base))
    put("fuzz_acl", "empty", "{}")
    put("fuzz_acl", "bad-right", json.dumps({**base, "grants": {"user:alice": ["vm.fly", 5]}}))
    put("fuzz_acl", "grants-array", json.dumps({**base, "grants": []}))

if __name__ == "__main__":
    acl_seeds(); api_seeds(); wire_seeds(); vm_config_seeds(); settings_seeds(); token_seeds(); qmp_seeds()

#!/bin/sh
# Self-test of tools/vmove-probe against a UDP echo server on 127.0.0.1.
#
#   tests/unit/probe_selftest.sh PATH/TO/vmove-probe
#
# Builds nothing.  Starts a /usr/bin/python3 UDP echo server on a random
# loopback port, runs the probe for 3 s and, 1 s in, freezes the echo server
# for ~250 ms (SIGSTOP ... SIGCONT).  Asserts 200 <= max_gap_ms <= 600,
# received > 1000, and that "gaps" lists that pause.  Exits non-zero with a message on failure.
set -eu

PY=/usr/bin/python3
probe=${1:-}
if [ -z "$probe" ] || [ ! -x "$probe" ]; then
    echo "probe_selftest: usage: $0 PATH/TO/vmove-probe (got '${probe}': not an executable)" >&2
    exit 2
fi

work=$(mktemp -d /tmp/probe-selftest.XXXXXX)
echo_pid=
cleanup() {
    if [ -n "$echo_pid" ]; then
        kill -CONT "$echo_pid" 2>/dev/null || true
        kill "$echo_pid" 2>/dev/null || true
        wait "$echo_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

fail() {
    echo "probe_selftest: FAIL: $*" >&2
    if [ -s "$work/probe.err" ]; then
        echo "--- probe stderr:" >&2
        cat "$work/probe.err" >&2
    fi
    exit 1
}

# Echo server: binds port 0 on 127.0.0.1, writes the port it got, echoes.
"$PY" -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    data, addr = s.recvfrom(65535)
    s.sendto(data, addr)
' "$work/port" &
echo_pid=$!

i=0
while [ ! -s "$work/port" ]; do
    i=$((i + 1))
    [ $i -le 100 ] || fail "echo server did not start within 5 s"
    kill -0 "$echo_pid" 2>/dev/null || fail "echo server exited at start"
    sleep 0.05
done
port=$(cat "$work/port")

"$probe" --target "127.0.0.1:$port" --duration 3 --wait-first 5 \
    --ready-file "$work/ready" >"$work/probe.json" 2>"$work/probe.err" &
probe_pid=$!

# Pause the echo server 1 s after the first reply arrived.
i=0
while [ ! -e "$work/ready" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$probe_pid" 2>/dev/null; then
        wait "$probe_pid" || true
        fail "probe did not report a first reply (no ready file within 5 s)"
    fi
    sleep 0.05
done
sleep 1
kill -STOP "$echo_pid"
sleep 0.25
kill -CONT "$echo_pid"

rc=0
wait "$probe_pid" || rc=$?
[ "$rc" -eq 0 ] || fail "probe exited with status $rc"
[ -s "$work/probe.json" ] || fail "probe printed nothing on stdout"

# Check the JSON with Python; prints the values on success.
"$PY" - "$work/probe.json" <<'EOF' || fail "assertions on the probe output failed (see above)"
import json, sys
text = open(sys.argv[1]).read()
try:
    r = json.loads(text)
except ValueError as e:
    sys.exit(f"probe output is not one JSON object ({e}): {text!r}")
errors = []
for key in ("sent", "received", "lost", "max_gap_ms", "max_gap_start_ms", "rtt_ms", "duration_ms"):
    if key not in r:
        errors.append(f"missing field {key!r}")
if not errors:
    if not (200 <= r["max_gap_ms"] <= 600):
        errors.append(f"max_gap_ms = {r['max_gap_ms']}, expected 200..600 (echo server paused ~250 ms)")
    if not r["received"] > 1000:
        errors.append(f"received = {r['received']}, expected > 1000")
    if r["lost"] != r["sent"] - r["received"]:
        errors.append(f"lost = {r['lost']} != sent - received")
    for k in ("min", "avg", "p99", "max"):
        if not isinstance(r["rtt_ms"].get(k), (int, float)):
            errors.append(f"rtt_ms.{k} is not a number")
    gaps = r.get("gaps")
    if not isinstance(gaps, list) or not gaps:
        errors.append(f"gaps = {gaps!r}, expected at least the pause")
    elif max(g["ms"] for g in gaps) != r["max_gap_ms"] or \
            not any(g["start_ms"] == r["max_gap_start_ms"] for g in gaps):
        errors.append("the longest of gaps is not max_gap_ms at max_gap_start_ms")
    elif [g["start_ms"] for g in gaps] != sorted(g["start_ms"] for g in gaps) or min(g["ms"] for g in gaps) < 20:
        errors.append("gaps not in time order, or one below 20 ms")
    if not (2500 <= r["duration_ms"] <= 3500):
        errors.append(f"duration_ms = {r['duration_ms']}, expected about 3000")
if errors:
    print("probe_selftest: " + "; ".join(errors) + "\n  output: " + text.strip(), file=sys.stderr)
    sys.exit(1)
print("probe_selftest: OK " + text.strip())
EOF

"""vmove's help and usage errors, all generated from its command table.
Needs no vmoved: nothing here may connect anywhere."""
import json
import os
import re
import subprocess

import pytest

BIN = os.environ.get("VMOVE_BIN", os.path.join(os.path.dirname(__file__), "../../build/asan/bin"))
VMOVE = os.environ.get("VMOVE_VMOVE", os.path.join(BIN, "vmove"))
# A socket that does not exist: help must not need a daemon.
ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=66",
           UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1", VMOVE_HOST="unix:/nonexistent/vmoved.sock")

# Every flag `vmove move` accepts (the e2e tests, scripts and bench use them).
MOVE_FLAGS = ["--to", "--from", "--quick", "--state-dir", "--with-storage", "--keep-source", "--downtime",
              "--max-downtime", "--max-duration", "--parallel", "--compress", "--bandwidth", "--probe",
              "--converge", "--no-wait", "--token-file"]


def vmove(*args):
    p = subprocess.run([VMOVE, *args], capture_output=True, text=True, env=ENV, timeout=30)
    assert "AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
    return p


def overview():
    p = vmove("--help")
    assert p.returncode == 0 and p.stderr == "", p
    return p.stdout


def commands():
    """[["host", "show"], ["move"], ...] from the command lines of `vmove --help`."""
    found = []
    for line in overview().splitlines():
        m = re.match(r"^  vmove (.*)", line)
        if m:
            words = []
            for w in m.group(1).split():
                if not re.fullmatch(r"[a-z][a-z-]*", w):
                    break
                words.append(w)
            found.append(words)
    return found


COMMANDS = commands() if os.path.exists(VMOVE) else []


def options_section(help_text):
    """The flags listed under "Options:" (not the global ones)."""
    section = help_text.split("\nOptions:\n", 1)[1].split("\nGlobal options", 1)[0]
    return set(re.findall(r"^  (?:-\w, )?    ?(--[a-z][a-z-]*)", section, re.M)) | \
        set(re.findall(r"^  -\w, (--[a-z][a-z-]*)", section, re.M))


def test_overview_lists_every_family():
    nouns = {c[0] for c in COMMANDS}
    assert {"host", "peer", "acl", "audit", "token", "move", "move-storage", "vm", "jobs", "pki", "help"} <= nouns
    assert ["host", "drain"] in COMMANDS and ["host", "resume"] in COMMANDS
    assert len(COMMANDS) == len({tuple(c) for c in COMMANDS}), "a command is listed twice"


def test_every_command_has_a_summary():
    """Under each command's synopsis (and its continuation lines) comes its
    summary, indented by 6."""
    lines = overview().split("\nGlobal options", 1)[0].splitlines()
    starts = [i for i, l in enumerate(lines) if l.startswith("  vmove ")]
    for n, i in enumerate(starts):
        block = lines[i + 1:starts[n + 1] if n + 1 < len(starts) else len(lines)]
        summary = [l for l in block if re.match(r"^ {6}\S", l)]
        assert summary and summary[0].strip(), f"no summary for {lines[i]!r}"


@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_command_help(cmd):
    p = vmove(*cmd, "--help")
    assert p.returncode == 0 and p.stderr == "", p
    out = p.stdout
    assert out.startswith("usage: vmove " + " ".join(cmd)), out
    summary = out.split("\n\n")[1].strip()
    assert summary and not summary.startswith("Options"), out
    listed = options_section(out)
    assert "--help" in listed
    # Every flag of the synopsis has its line under Options.
    synopsis = out.split("\n\n")[0]
    assert set(re.findall(r"(--[a-z][a-z-]*)", synopsis)) <= listed, (synopsis, listed)
    # `vmove help CMD` is the same text.
    assert vmove("help", *cmd).stdout == out


@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_unknown_flag_is_a_usage_error(cmd):
    p = vmove(*cmd, "--no-such-flag")
    assert p.returncode == 2, p
    assert "unknown option --no-such-flag" in p.stderr
    assert "usage: vmove " + " ".join(cmd) in p.stderr
    assert f"run 'vmove {' '.join(cmd)} --help'" in p.stderr
    assert p.stdout == ""


def test_move_help_lists_every_flag_with_defaults():
    out = vmove("move", "--help").stdout
    assert out == vmove("help", "move").stdout
    listed = options_section(out)
    missing = [f for f in MOVE_FLAGS if f not in listed]
    assert not missing, missing
    options = out.split("\nOptions:\n", 1)[1]
    compress = re.search(r"--compress .*?(?=\n  \S|\n      --)", options, re.S).group(0)
    assert "auto|none|zstd|zlib" in compress and "default: auto" in compress, compress
    downtime = re.search(r"--downtime .*?(?=\n      --)", options, re.S).group(0)
    assert "unit: ms" in downtime and "default: 50" in downtime, downtime
    assert "--to HOST" in out.split("\n")[0]


def test_family_help_lists_its_verbs():
    p = vmove("vm", "--help")
    assert p.returncode == 0
    for verb in ("create", "list", "show", "start", "stop", "pause", "resume", "delete", "console", "guest"):
        assert f"  vmove vm {verb}" in p.stdout
    assert vmove("help", "vm").stdout == p.stdout


@pytest.mark.parametrize("args,fragment", [
    (["move", "x", "--bogus"], "unknown option --bogus"),
    (["move", "x"], "missing --to"),
    (["move", "x", "--to"], "option --to needs a value"),
    (["move", "x", "y", "--to", "h2"], 'unexpected argument "y"'),
    (["move", "x", "--to", "h2", "--downtime", "soon"], '--downtime "soon"'),
    (["vm", "start", "--no-wait=1", "x"], "option --no-wait takes no value"),
    (["vm", "explode", "x"], 'unknown vm command "explode"'),
    (["frobnicate"], 'unknown command "frobnicate"'),
    (["--bogus", "vm", "list"], "unknown option --bogus"),
    (["jobs", "show", "abc"], "expected a job id"),
])
def test_usage_errors(args, fragment):
    p = vmove(*args)
    assert p.returncode == 2, p
    assert fragment in p.stderr, p.stderr
    assert "run 'vmove " in p.stderr
    # The same as one JSON document with --json, before or after the command.
    for argv in (["--json", *args], [*args, "--json"]):
        p = vmove(*argv)
        assert p.returncode == 2, p
        err = json.loads(p.stdout)["error"]
        assert err["code"] == "usage" and fragment in err["message"], err
        assert err["hint"].startswith("run 'vmove "), err


def test_no_command():
    p = vmove()
    assert p.returncode == 2 and "usage: vmove" in p.stderr


def test_help_is_not_an_option_of_the_guest():
    """After `vm guest NAME` the words belong to the guest, --help too: the
    CLI then wants a daemon, and says it cannot reach one."""
    p = vmove("vm", "guest", "g1", "--help")
    assert p.returncode == 3, p
    assert "cannot connect" in p.stderr

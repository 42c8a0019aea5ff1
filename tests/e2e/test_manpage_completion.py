"""The manual pages built by `make` (build/MODE/man) and the bash
completion script (dist/vmove.bash-completion), against a real vmoved."""
import os
import re
import subprocess

from vmovelib import BIN, ENV, VMOVE, VMOVED

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
MAN = os.path.join(BIN, "../man")
COMPLETION = os.path.join(REPO, "dist/vmove.bash-completion")


def render(page):
    p = subprocess.run(["man", "-l", os.path.join(MAN, page)], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="200", MAN_KEEP_FORMATTING="0"))
    assert p.returncode == 0, p.stderr
    return re.sub(r".\x08", "", p.stdout)   # no bold/underline overstrikes


def table_commands():
    """Every command of the CLI's table, from `vmove --help` (which prints
    the table): the lowercase words of each synopsis line."""
    out = subprocess.run([VMOVE, "--help"], capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        if line.startswith("  vmove "):
            words = []
            for w in line.split()[1:]:
                if not re.fullmatch(r"[a-z][a-z-]*", w):
                    break
                words.append(w)
            names.append(" ".join(words))
    assert len(names) > 25, out
    return names


def test_vmove_1_lists_every_command_of_the_table():
    text = render("vmove.1")
    headings = {l.strip() for l in text.splitlines() if l.startswith("   ") and not l.startswith("    ")}
    for name in table_commands():
        assert name in headings, f"vmove(1) has no section for \"{name}\""
        assert f"vmove {name}" in text
    assert "--identity DIR" in text and "VMOVE_HOST" in text


def test_vmoved_8_documents_every_flag_and_vmove_qemu():
    text = render("vmoved.8")
    usage = subprocess.run([VMOVED, "--help"], capture_output=True, text=True).stdout
    flags = set(re.findall(r"--[a-z-]+", usage))
    assert len(flags) >= 10, usage
    for flag in flags:
        assert flag in text, f"vmoved(8) does not mention {flag}"
    assert "VMOVE_QEMU" in text and "/etc/vmove/vmoved.conf" in text


def test_vm_json_5_is_docs_vm_json():
    text = render("vm.json.5")
    for field in ("memory_mib", "cpu_model", "Canonical form".upper(), "version: N+1 is newer"):
        assert field in text, field


def complete(words, cword, with_bash_completion=False, line=None):
    """COMPREPLY after calling _vmove with COMP_WORDS/COMP_CWORD (and
    COMP_LINE: the words as typed) set, as bash does on TAB."""
    quoted = " ".join("'" + w + "'" for w in words)
    line = line or " ".join(words)
    script = ""
    if with_bash_completion:
        script += "source /usr/share/bash-completion/bash_completion\n"
    script += f"""source {COMPLETION}
COMP_WORDS=({quoted})
COMP_CWORD={cword}
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
_vmove
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    p = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True, env=ENV, timeout=30)
    assert p.returncode == 0, p.stderr
    return [l for l in p.stdout.splitlines() if l]


def test_completion_of_commands_and_flags():
    assert "vm" in complete([VMOVE, ""], 1) and "move-storage" in complete([VMOVE, "mo"], 1)
    assert complete([VMOVE, "vm", "st"], 2) == ["start", "stop"]
    assert complete([VMOVE, "host", "set", "--acc"], 3) == ["--accel"]
    assert complete([VMOVE, "host", "set", "--accel", ""], 4) == ["auto", "kvm", "tcg"]
    assert "--version" in complete([VMOVE, "--"], 1)


def test_completion_of_vm_and_host_names(agent):
    agent.create_guest("compl-web")
    agent.create_guest("compl-db")
    agent.vmove("peer", "add", "h7", "10.9.9.7:7070", "--no-verify")
    sock = "unix:" + agent.sock
    got = complete([VMOVE, "-H", sock, "vm", "start", "compl-w"], 5)
    assert got == ["compl-web"], got
    assert sorted(complete([VMOVE, "-H", sock, "vm", "show", ""], 5)) == ["compl-db", "compl-web"]
    assert complete([VMOVE, "-H", sock, "move", "compl-db", "--to", ""], 6) == ["h7"]
    # With bash-completion loaded, its word splitting
    # (which rejoins "unix" ":" "/path") gives the same.
    got = complete([VMOVE, "-H", "unix", ":", agent.sock, "vm", "start", "compl-w"], 7, with_bash_completion=True,
                   line=f"{VMOVE} -H {sock} vm start compl-w")
    assert got == ["compl-web"], got


def test_completion_is_silent_without_vmoved(root):
    got = complete([VMOVE, "-H", f"unix:{root}/none.sock", "vm", "start", ""], 5)
    # No VM names; the script falls back to file names (none here that are
    # interesting), and nothing is printed on stderr.
    assert not any(g.startswith("compl") for g in got)

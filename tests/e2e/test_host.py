"""Host settings: the accelerator choice and its persistence."""
import os

from vmovelib import Agent, cleanup


def pvm_here():
    return os.path.exists("/sys/module/kvm_pvm")


def test_accel_auto_explains_choice(agent):
    accel = agent.vmove("host", "show")["accel"]
    assert accel["setting"] == "auto"
    if pvm_here():
        assert accel["effective"] == "tcg"
        assert "kvm_pvm" in accel["reason"]
    assert accel["reason"].startswith("auto:")


def test_accel_setting_persists(root):
    a = Agent(root, "h1").start()
    try:
        r = a.vmove("host", "set", "--accel", "tcg")
        assert r["accel"]["setting"] == "tcg" and r["accel"]["effective"] == "tcg"
        a.stop()
        a.start()
        assert a.vmove("host", "show")["accel"]["setting"] == "tcg"
        a.vmove("host", "set", "--accel", "auto")
        a.stop()
    finally:
        cleanup([a], root)


def test_human_output(agent):
    out = agent.run("host", "show").stdout
    assert "accel:" in out and "qemu:" in out

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import vmovelib  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: a long test that repeats what faster ones show; run by `make soak`, "
        "not by `make check` (which must stay under 20 minutes on a 2-core machine)")
    config.addinivalue_line(
        "markers", "valgrind: runs the daemons under Valgrind; needs a build without ASan "
        "(`make valgrind-check`, part of `make check`), so the ASan e2e run leaves it out")


@pytest.fixture
def root():
    r = vmovelib.make_root()
    yield r


@pytest.fixture
def agent(root, request):
    """A running vmoved; stopped (and checked for a clean exit) afterwards."""
    a = vmovelib.Agent(root, "h1").start()
    yield a
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        import glob
        print("\n===== vmoved log (last 60 lines) =====\n" + "".join(a.read_log().splitlines(True)[-60:]))
        for log in glob.glob(os.path.join(a.state_dir, "vms", "*", "qemu.log")):
            with open(log, errors="replace") as f:
                print(f"===== {log} =====\n" + "".join(f.readlines()[-20:]))
    try:
        a.stop()
    finally:
        vmovelib.cleanup([a], root)


@pytest.fixture(scope="session", autouse=True)
def guest_built():
    assert os.path.exists(vmovelib.KERNEL) and os.path.exists(vmovelib.INITRD), \
        "the test guest is missing: run `make guest`"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's outcome on the item, so fixtures can tell
    whether the test failed (and then show the daemons' logs)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)

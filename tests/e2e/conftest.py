import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import vmovelib  # noqa: E402


@pytest.fixture
def root():
    r = vmovelib.make_root()
    yield r


@pytest.fixture
def agent(root):
    """A running vmoved; stopped (and checked for a clean exit) afterwards."""
    a = vmovelib.Agent(root, "h1").start()
    yield a
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

"""Fixtures for tests that need a multi-host test bed.

Other test directories can reuse them from their own conftest.py:

    sys.path.insert(0, str(Path(__file__).parents[1] / "testbed"))
    from conftest import testbed_factory  # noqa: F401  (re-exported fixture)
"""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed as tbmod  # noqa: E402


def _usable():
    return os.geteuid() == 0 and shutil.which("ip") and shutil.which("tc")


@pytest.fixture
def testbed_factory(request):
    """testbed_factory(n_hosts=2, tls=False, ...) -> an up Testbed, torn down after the test."""
    if not _usable():
        pytest.skip("test bed needs root and iproute2")
    return lambda **kw: tbmod.make_testbed(request, **kw)

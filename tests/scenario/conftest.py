import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fakegmail"))

from harness import Daemon  # noqa: E402


@pytest.fixture
def daemon(tmp_path):
    """A started smartrelayd with defaults; stopped after the test."""
    d = Daemon(tmp_path)
    d.start()
    yield d
    d.stop()


@pytest.fixture
def make_daemon(tmp_path):
    """A factory for daemons with extra config; all stopped afterwards."""
    made = []

    def make(extra="", **kw):
        sub = tmp_path / ("d%d" % len(made))
        sub.mkdir()
        d = Daemon(sub, extra=extra, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()

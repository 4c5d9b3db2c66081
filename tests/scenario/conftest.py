"""Fixtures shared by the scenario tests; helpers live in harness.py.

daemon        a started smartrelayd with the default config, stopped after
make_daemon   make(extra="", **Daemon kwargs) -> a Daemon in its own
              directory (not started); all are stopped after the test
relay         make(fg=None, fake=None, debug=True, **upstream_conf args)
              -> (daemon, fake Gmail), started, relaying to the fake
fakegmail_certs, fakegmail_factory, fakegmail
              the fake Gmail upstream's fixtures, from
              tests/fakegmail/fakegmail_fixtures.py (loaded as a plugin, see there)
"""
import os
import sys

import pytest

from harness import Daemon, upstream_conf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakegmail"))
pytest_plugins = ["fakegmail_fixtures"]


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


@pytest.fixture
def relay(tmp_path, fakegmail_factory):
    """relay(fg=None, fake=None, debug=True, extra="", **upstream_conf
    args) -> (daemon, fake) started; extra goes into the configuration."""
    made = []

    def make(fg=None, fake=None, debug=True, extra="", **kw):
        fg = fg or fakegmail_factory(**(fake or {}))
        sub = tmp_path / ("d%d" % len(made))
        sub.mkdir()
        d = Daemon(sub, upstream=upstream_conf(sub, fg, **kw), debug=debug,
                   extra=extra)
        made.append(d)
        d.start()
        return d, fg

    yield make
    for d in made:
        d.stop()

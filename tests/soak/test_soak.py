"""The short version of the long-run fault harness (tests/soak/soak.py).

A bounded number of kill -9 rounds over every phase (accepting, relaying,
maildrop pickup, reload, shutdown) with upstream faults drawn at random,
then a drain; every invariant of soak.py is checked after each round and at
the end.  SOAK_ROUNDS and SOAK_SECONDS change the size (the long run is
`tests/soak/soak.py --rounds 1000`, figures in docs/reliability.md).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import soak  # noqa: E402

ROUNDS = int(os.environ.get("SOAK_ROUNDS", "60"))
SECONDS = float(os.environ.get("SOAK_SECONDS", "90"))


def test_kill9_rounds_lose_and_resend_nothing(tmp_path):
    out = soak.run(str(tmp_path), ROUNDS, os.environ.get("SOAK_SEED", "ci"),
                   max_seconds=SECONDS)
    print(json.dumps(out, indent=1, sort_keys=True))
    assert out["violations"] == []
    assert out["lost"] == 0
    # Every phase ran, faults fired, and mail went through.
    assert set(out["rounds_by_phase"]) == set(soak.PHASES), out
    assert out["rounds"] >= 15
    assert out["acked_messages"] >= 50
    assert sum(out["faults_fired"].values()) > out["refused_recipients_bounced"]
    assert out["refused_recipients_bounced"] >= 1
    assert out["rss_kb_max"] < soak.RSS_LIMIT_KB
    assert out["fds_max"] < soak.FD_LIMIT

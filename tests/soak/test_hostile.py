"""The correctness part of the hostile-load benchmark (tests/soak/hostile.py).

A smaller hostile crowd (every kind: slow-drip, endless lines, garbage, NUL
bytes, smuggling, commands before the greeting, a client outside `allow`)
while a well-behaved client sends: the daemon survives, the good client
gets a 250 for every message, and every hostile connection gets the reply
docs/smtp.md documents.  Latencies are reported, not asserted (the
benchmark's figures are in docs/reliability.md).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hostile  # noqa: E402

CONNECTIONS = int(os.environ.get("HOSTILE_CONNECTIONS", "140"))


def test_hostile_crowd_does_not_hurt_the_good_client(tmp_path):
    out = hostile.run(str(tmp_path), CONNECTIONS, 40)
    print(json.dumps(out, indent=1, sort_keys=True))
    assert out["daemon_alive"]
    assert out["baseline"]["ok"] == 40
    assert out["under_load"]["ok"] == 40
    assert out["hostile_errors"] == []
    for kind in hostile.KINDS:
        assert out["hostile"].get(kind + ":ok", 0) > 0, kind
        assert out["hostile"].get(kind + ":bad", 0) == 0, kind

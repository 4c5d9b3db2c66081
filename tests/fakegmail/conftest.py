"""pytest glue for the fake Gmail's own tests: the fixtures live in fixtures.py."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures import fakegmail, fakegmail_certs, fakegmail_factory  # noqa: E402,F401

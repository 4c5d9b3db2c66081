"""pytest glue for the fake Gmail's own tests: the fixtures live in fakegmail_fixtures.py."""

pytest_plugins = ["fakegmail_fixtures"]

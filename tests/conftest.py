"""Shared fixtures: a real PostgreSQL (tests/fixtures/postgres.py) and real servers on
loopback (tests/fixtures/server.py)."""

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.server"]

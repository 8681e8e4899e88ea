"""Shared fixtures: a real PostgreSQL (tests/fixtures/postgres.py), real servers on
loopback (tests/fixtures/server.py), and every HTTP response checked against the OpenAPI
document (tests/fixtures/contract.py)."""

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.server", "tests.fixtures.contract"]

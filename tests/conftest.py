"""Shared fixtures: a real PostgreSQL (tests/fixtures/postgres.py), real servers on
loopback (tests/fixtures/server.py), and every HTTP response checked against the OpenAPI
document (tests/fixtures/contract.py)."""

# trio-asyncio patches asyncio's loop lookup: imported before any test module imports
# asyncpg or httpx (the server's entry points do the same; ``import server`` does not).
import trio_asyncio  # noqa: F401

pytest_plugins = [
    "tests.fixtures.leaks",
    "tests.fixtures.postgres",
    "tests.fixtures.server",
    "tests.fixtures.contract",
]

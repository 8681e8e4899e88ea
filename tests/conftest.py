"""Shared fixtures: a real PostgreSQL (tests/fixtures/postgres.py) and real servers on
loopback (tests/fixtures/server.py)."""

# trio-asyncio patches asyncio's loop lookup: imported before any test module imports
# asyncpg or httpx (the server's entry points do the same; ``import server`` does not).
import trio_asyncio  # noqa: F401

pytest_plugins = ["tests.fixtures.leaks", "tests.fixtures.postgres", "tests.fixtures.server"]

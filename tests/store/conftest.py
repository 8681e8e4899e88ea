"""The store contract suite runs every test on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.fixtures.postgres import open_migrated_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from server.store.models import Project, User
    from server.store.protocol import Store
    from tests.fixtures.postgres import BackendConfig


@pytest.fixture
async def store(backend: BackendConfig) -> AsyncIterator[Store]:
    """An open, migrated store on the test's backend (inside a trio-asyncio loop)."""
    async with open_migrated_store(backend) as opened:
        yield opened


@pytest.fixture
async def user(store: Store) -> User:
    return await store.create_user("Owner@Example.com", "hash", "Owner")


@pytest.fixture
async def other(store: Store) -> User:
    return await store.create_user("other@example.com", None, None)


@pytest.fixture
async def project(store: Store, user: User) -> Project:
    return await store.create_project(user.id, "demo", "a project")

"""A database that cannot be reached surfaces as ``StoreUnavailable``."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest
import trio_asyncio

from server.config import Settings
from server.errors import StoreUnavailable
from server.store.factory import open_store

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fixtures.postgres import BackendConfig


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_postgres(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/nothing"
    settings = Settings(data_dir=tmp_path, database_url=url)
    async with trio_asyncio.open_loop():
        with pytest.raises(StoreUnavailable):
            async with open_store(settings):
                pass  # pragma: no cover


async def test_unopenable_sqlite(tmp_path: Path) -> None:
    (tmp_path / "stretto.sqlite3").mkdir()  # a directory where the database file should be
    with pytest.raises(StoreUnavailable):
        async with open_store(Settings(data_dir=tmp_path)):
            pass  # pragma: no cover


async def test_closed_store_is_unavailable(backend: BackendConfig) -> None:
    async with trio_asyncio.open_loop():
        async with open_store(backend.settings()) as store:
            await store.migrate()
        with pytest.raises(StoreUnavailable):
            await store.ping()

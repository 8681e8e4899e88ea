"""``stretto backup DEST``: SQLite's online backup, its refusals, and PostgreSQL's pointer
to pg_dump; ``stretto check`` refuses a schema newer than the binary."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import trio

from server.cli.backup import EXIT_DATABASE, EXIT_OK, EXIT_USAGE, EXIT_USE_PG_DUMP
from server.cli.main import main
from server.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


async def _store_with_a_user(data_dir: Path) -> None:
    store = await SqliteStore.open(data_dir / "stretto.sqlite3")
    try:
        await store.migrate()
        await store.create_user("kept@example.com", None, None)
    finally:
        await store.aclose()


def test_backup_copies_the_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    trio.run(_store_with_a_user, data_dir)
    dest = tmp_path / "copy.sqlite3"
    assert main(["backup", str(dest), "--data-dir", str(data_dir)]) == EXIT_OK
    conn = sqlite3.connect(dest)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT email FROM users").fetchall() == [("kept@example.com",)]
    finally:
        conn.close()
    capsys.readouterr()
    assert (
        main(["backup", str(dest), "--data-dir", str(data_dir)]) == EXIT_USAGE
    )  # never overwrites
    assert "exists" in capsys.readouterr().err


def test_backup_without_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "copy.sqlite3"
    assert main(["backup", str(dest), "--data-dir", str(tmp_path / "none")]) == EXIT_DATABASE
    assert "no database" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()  # nothing created as a side effect
    assert not dest.exists()


def test_backup_on_postgres_points_to_pg_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://postgres@127.0.0.1:1/none"
    code = main(["backup", str(tmp_path / "x"), "--database-url", url])
    assert code == EXIT_USE_PG_DUMP
    assert "pg_dump" in capsys.readouterr().err


def test_check_refuses_a_newer_schema(tmp_path: Path) -> None:
    trio.run(_store_with_a_user, tmp_path)
    conn = sqlite3.connect(tmp_path / "stretto.sqlite3")
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', '2099-01-01')")
    conn.commit()
    conn.close()
    # The message is the CLI's to print (it currently shows the nursery group's text).
    assert main(["check", "--data-dir", str(tmp_path)]) == EXIT_DATABASE


async def test_online_backup_while_the_store_writes(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "stretto.sqlite3")
    try:
        await store.migrate()
        await store.create_user("first@example.com", None, None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.create_user, "second@example.com", None, None)
            await store.backup(tmp_path / "copy.sqlite3")
    finally:
        await store.aclose()
    conn = sqlite3.connect(tmp_path / "copy.sqlite3")
    try:
        emails = {row[0] for row in conn.execute("SELECT email FROM users")}
    finally:
        conn.close()
    assert "first@example.com" in emails  # a consistent copy, with or without the second

"""Bad starts on a damaged or too-new database (slow; issue 11 items 5-7).

``stretto serve``, ``check`` and ``migrate`` on a database file with bytes overwritten
(in its header, in a page in the middle) or migrated by a newer stretto: one line on stderr
naming the cause (never ``Exceptions from Trio nursery``), exit code 3, and the file left
byte-identical (nothing repaired, migrated or truncated behind the user's back). A
PostgreSQL schema newer than the binary: the same. The
other bad starts (port in use, data dir a file, unreadable, invalid host, PostgreSQL
unreachable) are in ``tests/cli/test_bad_starts.py``.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from server.runtime.preflight import ExitCode
from tests.cli.test_bad_starts import one_line, stretto
from tests.fixtures.postgres import _admin_execute

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

COMMANDS = ["serve", "check", "migrate"]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a freshly migrated database with a few thousand events in it."""
    data = tmp_path_factory.mktemp("migrated")
    result = stretto("migrate", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    path = data / "stretto.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA foreign_keys = OFF")
        db.executemany(
            "INSERT INTO events VALUES ('p', ?, 'file.deleted', ?, 't')",
            [(seq, '{"path": "' + "x" * 300 + '"}') for seq in range(1, 3001)],
        )
    db.close()
    return path.read_bytes()


def damaged_copy(migrated: bytes, tmp_path: Path, where: float) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    raw = bytearray(migrated)
    offset = int(len(raw) * where)
    raw[offset : offset + 4096] = b"\xde\xad\xbe\xef" * 1024
    (data / "stretto.sqlite3").write_bytes(bytes(raw))
    return data


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("where", "cause"), [(0.0, "file is not a database"), (0.5, "is damaged")], ids=["head", "mid"]
)
def test_a_damaged_sqlite_file_is_refused_in_one_line(
    migrated: bytes, tmp_path: Path, command: str, where: float, cause: str
) -> None:
    data = damaged_copy(migrated, tmp_path, where)
    before = (data / "stretto.sqlite3").read_bytes()
    result = stretto(command, "--port", "0", "--data-dir", str(data))
    line = one_line(result)
    assert line.startswith("stretto: "), line
    assert str(data / "stretto.sqlite3") in line
    assert cause in line
    assert "Trio nursery" not in line
    assert result.returncode == ExitCode.DATABASE_UNREACHABLE
    assert (data / "stretto.sqlite3").read_bytes() == before


@pytest.mark.parametrize("command", COMMANDS)
def test_a_newer_schema_is_refused_in_one_line(
    migrated: bytes, tmp_path: Path, command: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = data / "stretto.sqlite3"
    path.write_bytes(migrated)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 'x')")
    db.close()
    before = path.read_bytes()
    result = stretto(command, "--port", "0", "--data-dir", str(data))
    line = one_line(result)
    assert "schema is at migration 99, newer than this stretto knows" in line, line
    assert result.returncode == ExitCode.DATABASE_UNREACHABLE
    assert path.read_bytes() == before


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["serve", "check"])
def test_a_newer_postgres_schema_is_refused_in_one_line(
    postgres_url: str, tmp_path: Path, command: str
) -> None:
    data = tmp_path / "data"
    migrated = stretto("migrate", "--data-dir", str(data), "--database-url", postgres_url)
    assert migrated.returncode == 0, migrated.stderr
    _admin_execute(
        postgres_url, "INSERT INTO schema_migrations VALUES (99, 'from the future', now())"
    )
    result = stretto(
        command, "--port", "0", "--data-dir", str(data), "--database-url", postgres_url
    )
    line = one_line(result)
    assert "schema is at migration 99, newer than this stretto knows" in line, line
    assert result.returncode == ExitCode.DATABASE_UNREACHABLE

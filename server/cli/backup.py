"""``stretto backup DEST``: a consistent copy of the SQLite database, taken while it runs.

Uses SQLite's online backup API (``SqliteStore.backup``), so a running server keeps
serving. Take one before upgrading: rolling back is "stop, put the copy back, start the
older binary". On PostgreSQL the tool is ``pg_dump``: the command says so and exits
``EXIT_USE_PG_DUMP``.

Exit codes: 0 copied; 2 bad settings or DEST exists; 3 no database, or it is damaged or
unreachable; 5 PostgreSQL (use ``pg_dump``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from server.config import SettingsError, add_arguments, load_settings
from server.errors import AppError

if TYPE_CHECKING:
    import argparse

    from server.config import Settings

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_DATABASE = 3
EXIT_USE_PG_DUMP = 5


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser(
        "backup",
        help="Copy the SQLite database to DEST while the server runs "
        "(exit 0 ok, 2 DEST exists, 3 no or damaged database, 5 PostgreSQL: use pg_dump).",
    )
    backup.add_argument("dest", type=Path, help="File to write (must not exist).")
    add_arguments(backup)


async def _backup(settings: Settings, dest: Path) -> None:
    from server.store.sqlite import SqliteStore

    store = await SqliteStore.open(settings.sqlite_path, readers=1, timeout_s=settings.db_timeout_s)
    try:
        await store.backup(dest)
    finally:
        await store.aclose()


def main(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args)
    except SettingsError as exc:
        print(f"stretto: invalid setting: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if settings.uses_postgres:
        print(
            "stretto backup: the database is PostgreSQL; back it up with pg_dump "
            '(pg_dump --format=custom --file=stretto.dump "$DATABASE_URL")',
            file=sys.stderr,
        )
        return EXIT_USE_PG_DUMP
    dest: Path = args.dest
    if dest.exists():
        print(f"stretto backup: {dest} exists; choose a new file", file=sys.stderr)
        return EXIT_USAGE
    if not settings.sqlite_path.is_file():
        print(f"stretto backup: no database at {settings.sqlite_path}", file=sys.stderr)
        return EXIT_DATABASE
    try:
        trio.run(_backup, settings, dest)
    except AppError as exc:
        dest.unlink(missing_ok=True)
        print(f"stretto backup: {exc.message}", file=sys.stderr)
        return EXIT_DATABASE
    print(f"backed up {settings.sqlite_path} to {dest}")
    return EXIT_OK

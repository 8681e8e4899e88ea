"""``stretto import SOURCE --owner USER [--project NAME]``: bring a project's files over (from
the legacy server, or from ``GET /api/projects/{id}/export``).

SOURCE is a directory, a tar, tar.gz or zip archive. The files go into a new project of the
user (``--owner``: an email or a user id), named ``--project`` or after SOURCE, in one
transaction with the same rules as ``POST /api/projects/{id}/import``: all files or none,
path rules and quotas, links, devices and ``..`` refused. The database must be migrated
(``stretto migrate``). Events land in the project's log; a running server's streams pick
them up from there.

Exit codes: 0 imported; 1 refused (each problem printed); 2 bad settings or arguments;
3 database unreachable; 4 no such user or migrations pending.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from server.config import SettingsError, add_arguments, load_settings
from server.errors import AppError, StoreUnavailable
from server.runtime.preflight import only_error
from server.store.models import FileLimits
from server.vfs.transfer import ProjectTransfer

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence

    from server.config import Settings
    from server.events.model import StoredEvent

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_DATABASE, EXIT_NO_USER = 0, 1, 2, 3, 4


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "import",
        help="Import a directory, tar, tar.gz or zip as a new project of a user "
        "(all files or none; exit 0 ok, 1 refused, 2 usage, 3 database, 4 no such user).",
    )
    command.add_argument("source", type=Path, help="A directory, .tar, .tar.gz/.tgz or .zip.")
    command.add_argument("--owner", required=True, help="The user: an email or a user id.")
    command.add_argument("--project", default=None, help="Project name [default: SOURCE's].")
    add_arguments(command)


class _LogOnly:
    """The CLI has no hub: the events are committed to the log, which streams replay."""

    def publish(self, events: Sequence[StoredEvent]) -> None:
        return None

    def publish_transient(self, project_id: str, data: Mapping[str, Any]) -> None:
        return None


def _name_for(source: Path) -> str:
    name = source.name
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        name = name.removesuffix(suffix)
    return name or "imported"


async def _import(settings: Settings, source: Path, owner: str, name: str) -> int:
    import trio_asyncio

    from server.store.factory import open_store

    async with trio_asyncio.open_loop(), open_store(settings) as store:
        if await store.pending_migrations():
            print("stretto import: migrations are pending; run `stretto migrate`", file=sys.stderr)
            return EXIT_NO_USER
        user = await store.get_user_by_email(owner.strip().lower()) or await store.get_user(owner)
        if user is None:
            print(f"stretto import: no user {owner!r}", file=sys.stderr)
            return EXIT_NO_USER
        limits = FileLimits(
            settings.max_file_bytes, settings.max_files_per_project, settings.max_project_bytes
        )
        transfer = ProjectTransfer(store, _LogOnly(), limits)
        project = await store.create_project(user.id, name, None)
        try:
            if await trio.Path(source).is_dir():
                written = await transfer.import_directory(project.id, source)
            else:
                data = await trio.Path(source).read_bytes()
                written = await transfer.import_archive(project.id, data)
        except AppError:
            await store.delete_project(user.id, project.id)  # all or nothing
            raise
    total = sum(meta.size for meta in written)
    print(f"imported {len(written)} files ({total} bytes) into project {project.id} ({name!r})")
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args)
    except SettingsError as exc:
        print(f"stretto: invalid setting: {exc}", file=sys.stderr)
        return EXIT_USAGE
    source: Path = args.source
    if not source.exists():
        print(f"stretto import: {source} does not exist", file=sys.stderr)
        return EXIT_USAGE
    name = args.project or _name_for(source)
    try:
        return trio.run(_import, settings, source, args.owner, name)
    except (AppError, BaseExceptionGroup) as exc:
        error = only_error(exc, AppError)  # unwrapped from the trio-asyncio loop's nursery
        if error is None:
            raise
    if isinstance(error, StoreUnavailable):
        print(f"stretto import: {error}", file=sys.stderr)
        return EXIT_DATABASE
    print(f"stretto import: refused: {error.message}", file=sys.stderr)
    for member, problem in (error.details or {}).items():
        print(f"  {member}: {problem}", file=sys.stderr)
    return EXIT_REFUSED

"""Importing and exporting a whole project: the migration path from the legacy server, and a
backup of one project.

``ProjectTransfer.import_archive`` reads a tar, tar.gz or zip (or, from the CLI, a
directory) in a worker thread with the archive rules of ``server.vfs.archive``, then writes
every file in ONE store transaction (``Store.put_files``): all or nothing, with the
project's quotas, one ``file.changed`` event per file. ``export_tar_gz`` streams the
project's files as a tar.gz, one file in memory at a time; importing that archive into
another project gives the same bytes at the same paths.

Raises (import): ``ValidationFailed`` (400, ``details`` maps each refused member to its
problem), ``TooLarge`` (413: a member, the total or the file count), ``NotFound``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import trio

from server.errors import TooLarge, ValidationFailed
from server.vfs.archive import (
    ArchiveLimits,
    ArchiveRejected,
    TarGzWriter,
    read_archive,
    read_directory,
)
from server.vfs.content_types import content_type_for
from server.vfs.writes import FileWrite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from server.events.publisher import Publisher
    from server.store.models import FileLimits, FileMeta
    from server.store.protocol import Store
    from server.vfs.archive import ArchiveFile

EXPORT_PAGE = 200
_limiter = trio.CapacityLimiter(2)  # archive work in flight: CPU-bound, off the event loop


def _archive_limits(limits: FileLimits) -> ArchiveLimits:
    return ArchiveLimits(limits.max_file_bytes, limits.max_total_bytes, limits.max_files)


def _writes(files: list[ArchiveFile]) -> list[FileWrite]:
    return [
        FileWrite(
            f.path, f.content, content_type_for(f.path), hashlib.sha256(f.content).hexdigest()
        )
        for f in files
    ]


def _refused(exc: ArchiveRejected) -> ValidationFailed | TooLarge:
    details = dict(list(exc.problems.items())[:100])  # a report, not a second archive
    if exc.too_large:
        return TooLarge("The archive is over the project's limits.", details)
    return ValidationFailed(f"The archive has {len(exc.problems)} refused member(s).", details)


class ProjectTransfer:
    def __init__(self, store: Store, publisher: Publisher, limits: FileLimits) -> None:
        self._store = store
        self._publisher = publisher
        self.limits = limits

    async def import_archive(self, project_id: str, data: bytes) -> list[FileMeta]:
        """Every file of the archive ``data``, written at once; see the module docstring."""
        return await self._import(project_id, lambda limits: read_archive(data, limits))

    async def import_directory(self, project_id: str, root: Path) -> list[FileMeta]:
        """Every file below ``root`` (links and special files refused), written at once."""
        return await self._import(project_id, lambda limits: read_directory(root, limits))

    async def _import(
        self, project_id: str, read: Callable[[ArchiveLimits], list[ArchiveFile]]
    ) -> list[FileMeta]:
        limits = _archive_limits(self.limits)

        def prepare() -> list[FileWrite]:
            return _writes(read(limits))

        try:
            writes = await trio.to_thread.run_sync(prepare, limiter=_limiter)
        except ArchiveRejected as exc:
            raise _refused(exc) from None
        results = await self._store.put_files(project_id, writes, limits=self.limits)
        self._publisher.publish([event for _, _, event in results])
        return [meta for meta, _, _ in results]

    async def export_tar_gz(self, project_id: str) -> AsyncIterator[bytes]:
        """The project's files as tar.gz chunks, in path order. A file changed during the
        export is taken as it is when its turn comes."""
        writer = TarGzWriter()
        cursor: str | None = None
        while True:
            page = await self._store.list_files(project_id, "", EXPORT_PAGE, cursor)
            for meta in page.items:
                data = await self._store.get_file(project_id, meta.path)
                if data is None:  # deleted since the listing
                    continue
                stamp = data.meta.updated_at.timestamp()
                chunk = await trio.to_thread.run_sync(
                    writer.add, data.meta.path, data.content, stamp, limiter=_limiter
                )
                if chunk:
                    yield chunk
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        yield writer.close()

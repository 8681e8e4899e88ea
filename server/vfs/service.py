"""FileService: every change to a project's files goes through here.

It validates paths, computes the content hash and type, enforces quotas through the store
(inside the write transaction), and publishes the committed event after commit. The HTTP
routes and the workflow's vfs tools share it, so both behave identically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.errors import NotFound
from server.timeutil import rfc3339
from server.vfs.content_types import content_type_for
from server.vfs.hashing import content_sha256
from server.vfs.history import FileHistory
from server.vfs.paths import validate_path, validate_prefix
from server.vfs.quota import check_file_size
from server.vfs.review import Review
from server.vfs.transfer import ProjectTransfer

if TYPE_CHECKING:
    from server.events.publisher import Publisher
    from server.store.models import FileData, FileLimits, FileMeta, Page
    from server.store.protocol import Store


def file_json(meta: FileMeta) -> dict[str, Any]:
    """The contract's file object (API.md "Files"), for responses and tool outputs alike."""
    return {
        "path": meta.path,
        "size": meta.size,
        "version": meta.version,
        "sha256": meta.sha256,
        "content_type": meta.content_type,
        "updated_at": rfc3339(meta.updated_at),
    }


class FileService:
    def __init__(self, store: Store, publisher: Publisher, limits: FileLimits) -> None:
        self._store = store
        self._publisher = publisher
        self.limits = limits

    def review(self) -> Review:
        """A review run's changeset: list with diffs, apply, discard."""
        return Review(self._store, self._publisher, self.limits)

    def history(self) -> FileHistory:
        """Versions of files, restores and run reverts, with these limits and publisher."""
        return FileHistory(self._store, self._publisher, self.limits)

    def transfer(self) -> ProjectTransfer:
        """Whole-project import and export, with these limits and this publisher."""
        return ProjectTransfer(self._store, self._publisher, self.limits)

    async def read(self, project_id: str, path: str) -> FileData:
        validate_path(path)
        data = await self._store.get_file(project_id, path)
        if data is None:
            raise NotFound(f"No file at {path!r}.")
        return data

    async def stat(self, project_id: str, path: str) -> FileMeta:
        validate_path(path)
        meta = await self._store.get_file_meta(project_id, path)
        if meta is None:
            raise NotFound(f"No file at {path!r}.")
        return meta

    async def write(
        self,
        project_id: str,
        path: str,
        content: bytes,
        *,
        if_match: int | None = None,
        if_none_match_any: bool = False,
        run_id: str | None = None,
    ) -> tuple[FileMeta, bool]:
        """Create or replace; ``run_id`` names the workflow run writing (file history)."""
        validate_path(path)
        check_file_size(self.limits, len(content))
        meta, created, event = await self._store.put_file(
            project_id,
            path,
            content,
            content_type=content_type_for(path),
            sha256=await content_sha256(content),
            limits=self.limits,
            if_match=if_match,
            if_none_match_any=if_none_match_any,
            run_id=run_id,
        )
        self._publisher.publish([event])
        return meta, created

    async def move(
        self,
        project_id: str,
        src: str,
        dst: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
    ) -> FileMeta:
        validate_path(src)
        validate_path(dst, "to")
        meta, event = await self._store.move_file(
            project_id, src, dst, if_match=if_match, run_id=run_id, limits=self.limits
        )
        self._publisher.publish([event])
        return meta

    async def delete(
        self,
        project_id: str,
        path: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
    ) -> None:
        validate_path(path)
        event = await self._store.delete_file(
            project_id, path, if_match=if_match, run_id=run_id, limits=self.limits
        )
        self._publisher.publish([event])

    async def list(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        validate_prefix(prefix)
        return await self._store.list_files(project_id, prefix, limit, cursor)

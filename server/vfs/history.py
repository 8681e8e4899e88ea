"""FileHistory: the kept versions of a project's files, restores, and a run's revert.

Owns no state: it reads the history the store keeps on every write (``file_versions``),
and changes files through ``Store.apply_file_ops`` so that a restore or a revert is one
transaction with its conflict check, and publishes the committed events after commit.
Raises ``NotFound`` (no such version, or a version at which the path was deleted) and
``Conflict`` (a revert whose files changed since the run: ``details.paths``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from server.errors import Conflict, NotFound
from server.timeutil import rfc3339
from server.vfs.paths import validate_path
from server.vfs.writes import FileOp, FileWrite

if TYPE_CHECKING:
    from server.events.model import StoredEvent
    from server.events.publisher import Publisher
    from server.store.models import FileLimits, FileVersion, Page, RunFileSpan
    from server.store.protocol import Store


def version_json(v: FileVersion) -> dict[str, Any]:
    """A version in the contract's shape (``GET .../files/{path}?versions``)."""
    return {
        "version": v.version,
        "size": v.size,
        "sha256": v.sha256,
        "content_type": v.content_type,
        "deleted": v.deleted,
        "run_id": v.run_id,
        "created_at": rfc3339(v.created_at),
    }


def changed_paths(events: list[StoredEvent]) -> list[str]:
    """The paths named by committed ``file.*`` events, in order (for a response body)."""
    return [str(json.loads(e.data)["path"]) for e in events]


class FileHistory:
    def __init__(self, store: Store, publisher: Publisher, limits: FileLimits) -> None:
        self._store = store
        self._publisher = publisher
        self._limits = limits

    async def versions(
        self, project_id: str, path: str, limit: int, cursor: str | None
    ) -> Page[FileVersion]:
        """Newest first; a path that never existed has an empty list."""
        validate_path(path)
        return await self._store.list_file_versions(project_id, path, limit, cursor)

    async def read(self, project_id: str, path: str, version: int) -> tuple[FileVersion, bytes]:
        validate_path(path)
        found = await self._store.get_file_version(project_id, path, version)
        if found is None or found[1] is None:
            raise NotFound(f"No version {version} of {path!r}.", {"version": version})
        return found[0], found[1]

    async def restore(self, project_id: str, path: str, version: int) -> StoredEvent:
        """Write version ``version``'s bytes as the path's newest version (``file.changed``)."""
        meta, content = await self.read(project_id, path, version)
        latest = await self._store.latest_file_versions(project_id, [path])
        write = FileWrite(path, content, meta.content_type or "", meta.sha256 or "")
        [event] = await self._store.apply_file_ops(
            project_id, [FileOp(path, write)], expected=latest, limits=self._limits, run_id=None
        )
        self._publisher.publish([event])
        return event

    async def revert_run(self, project_id: str, run_id: str) -> list[StoredEvent]:
        """Put every path the run wrote back to its state before the run, in one transaction.

        Raises ``Conflict`` listing the paths changed since the run's last write to them (or
        whose state before the run is no longer kept): nothing is changed then."""
        spans = await self._store.run_file_spans(project_id, run_id)
        ops: list[FileOp] = []
        gone: list[str] = []
        for span in spans:
            kept, op = await self._undo(project_id, span)
            if not kept:
                gone.append(span.path)
            elif op is not None:
                ops.append(op)
        if gone:
            raise Conflict(
                "The state before the run is no longer kept for some files.", {"paths": gone}
            )
        expected = {s.path: s.last_version for s in spans}
        events = await self._store.apply_file_ops(
            project_id, ops, expected=expected, limits=self._limits, run_id=None
        )
        self._publisher.publish(events)
        return events

    async def _undo(self, project_id: str, span: RunFileSpan) -> tuple[bool, FileOp | None]:
        """(whether the state before ``span`` is still kept, the change that restores it or
        None when none is needed)."""
        before = None
        if span.first_version > 1:  # versions of a path are numbered without gaps
            before = await self._store.get_file_version(
                project_id, span.path, span.first_version - 1
            )
            if before is None:
                return False, None
        last = await self._store.get_file_version(project_id, span.path, span.last_version)
        exists_now = last is not None and last[1] is not None
        if before is None or before[1] is None:  # the path did not exist before the run
            return True, (FileOp(span.path, None) if exists_now else None)
        meta, content = before[0], before[1]
        write = FileWrite(span.path, content, meta.content_type or "", meta.sha256 or "")
        return True, FileOp(span.path, write)

"""``FileStore``: the file, file-history and review-changeset operations of the ``Store``,
written once for both backends (mixed into ``SqliteStore`` and ``PostgresStore``).

Each method is one unit of work: a program (``server.store.program``) that the backend runs
with ``_unit`` in the way ``Access`` asks. The write steps live in ``file_writes``; the
statements in ``server.store.sql``. What each method raises is in ``server.store.protocol``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.errors import Conflict
from server.store import codec, file_writes
from server.store import sql as s
from server.store.codec import decode_cursor, page_cursor
from server.store.file_writes import DEC, new_events
from server.store.models import FileData, FileMeta, FileVersion, Page, RunFileSpan, StagedChange
from server.store.program import Access, Append, Reserve, UnitRunner, execute, row, rows, value
from server.timeutil import utc_now
from server.vfs.quota import check_staged_totals
from server.vfs.writes import FileWrite

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from server.events.model import NewEvent, StoredEvent
    from server.store.models import FileLimits
    from server.store.program import Program
    from server.vfs.writes import FileOp


def _locks_owner(limits: FileLimits) -> bool:
    return limits.max_user_bytes is not None


class FileStore(UnitRunner):
    """File operations of the ``Store`` protocol; the backend provides ``_unit``."""

    async def list_files(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        after = decode_cursor(cursor) or ""

        def program() -> Program[Page[FileMeta]]:
            found = yield rows(s.FILE_LIST, project_id, after, prefix, limit + 1)
            items = [DEC.file_meta(r) for r in found[:limit]]
            return Page(items, page_cursor([r["path"] for r in found], limit))

        return await self._unit(program, Access.READ)

    async def get_file(self, project_id: str, path: str) -> FileData | None:
        def program() -> Program[FileData | None]:
            found = yield row(s.FILE_GET, project_id, path)
            if found is None:
                return None
            return FileData(DEC.file_meta(found), bytes(found["content"]))

        return await self._unit(program, Access.READ)

    async def get_file_meta(self, project_id: str, path: str) -> FileMeta | None:
        def program() -> Program[FileMeta | None]:
            found = yield row(s.FILE_META, project_id, path)
            return None if found is None else DEC.file_meta(found)

        return await self._unit(program, Access.READ)

    async def put_file(
        self,
        project_id: str,
        path: str,
        content: bytes,
        *,
        content_type: str,
        sha256: str,
        limits: FileLimits,
        if_match: int | None = None,
        if_none_match_any: bool = False,
        run_id: str | None = None,
    ) -> tuple[FileMeta, bool, StoredEvent]:
        one = FileWrite(path, content, content_type, sha256)

        def program() -> Program[tuple[FileMeta, bool, StoredEvent]]:
            now = utc_now()
            yield Reserve(project_id, 1, _locks_owner(limits))
            meta, created, data = yield from file_writes.write(
                project_id, one, limits=limits, run_id=run_id, now=now, if_match=if_match,
                if_none_match_any=if_none_match_any,
            )  # fmt: skip
            yield from file_writes.check_total(project_id, limits, now)
            [event] = yield Append(new_events(project_id, [data]), now)
            return meta, created, event

        return await self._unit(program, Access.WRITE)

    async def put_files(
        self,
        project_id: str,
        files: Sequence[FileWrite],
        *,
        limits: FileLimits,
        run_id: str | None = None,
    ) -> list[tuple[FileMeta, bool, StoredEvent]]:
        if not files:
            return []

        def program() -> Program[list[tuple[FileMeta, bool, StoredEvent]]]:
            now = utc_now()
            yield Reserve(project_id, len(files), _locks_owner(limits))
            written = []  # each quota read sees the writes before it: checked cumulatively
            for f in files:
                done = yield from file_writes.write(project_id, f, limits=limits, run_id=run_id,
                                                    now=now)  # fmt: skip
                written.append(done)
            yield from file_writes.check_total(project_id, limits, now)
            events = yield Append(new_events(project_id, [d for *_, d in written]), now)
            return [(m, c, e) for (m, c, _), e in zip(written, events, strict=True)]

        return await self._unit(program, Access.WRITE)

    async def move_file(
        self,
        project_id: str,
        src: str,
        dst: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
        limits: FileLimits | None = None,
    ) -> tuple[FileMeta, StoredEvent]:
        def program() -> Program[tuple[FileMeta, StoredEvent]]:
            now = utc_now()
            yield Reserve(project_id, 1)
            meta, data = yield from file_writes.move(
                project_id, src, dst, limits=limits, run_id=run_id, now=now, if_match=if_match
            )
            [event] = yield Append(new_events(project_id, [data]), now)
            return meta, event

        return await self._unit(program, Access.WRITE)

    async def delete_file(
        self,
        project_id: str,
        path: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
        limits: FileLimits | None = None,
    ) -> StoredEvent:
        def program() -> Program[StoredEvent]:
            now = utc_now()
            yield Reserve(project_id, 1)
            data = yield from file_writes.delete(
                project_id, path, limits=limits, run_id=run_id, now=now, if_match=if_match
            )
            events: list[StoredEvent] = yield Append(new_events(project_id, [data]), now)
            return events[0]

        return await self._unit(program, Access.WRITE)

    # -- history -----------------------------------------------------------------------------
    async def list_file_versions(
        self, project_id: str, path: str, limit: int, cursor: str | None
    ) -> Page[FileVersion]:
        before = codec.int_cursor(cursor)

        def program() -> Program[Page[FileVersion]]:
            found = yield rows(s.FV_LIST, project_id, path, before, limit + 1)
            items = [DEC.file_version(r) for r in found[:limit]]
            return Page(items, page_cursor([str(r["version"]) for r in found], limit))

        return await self._unit(program, Access.READ)

    async def get_file_version(
        self, project_id: str, path: str, version: int
    ) -> tuple[FileVersion, bytes | None] | None:
        def program() -> Program[tuple[FileVersion, bytes | None] | None]:
            found = yield row(s.FV_GET, project_id, path, version)
            return None if found is None else (DEC.file_version(found), codec.opt_bytes(found))

        return await self._unit(program, Access.READ)

    async def run_file_spans(self, project_id: str, run_id: str) -> list[RunFileSpan]:
        def program() -> Program[list[RunFileSpan]]:
            found = yield rows(s.FV_OF_RUN, project_id, run_id)
            return [RunFileSpan(r["path"], int(r["first_version"]), int(r["last_version"]))
                    for r in found]  # fmt: skip

        return await self._unit(program, Access.READ)

    async def latest_file_versions(
        self, project_id: str, paths: Sequence[str]
    ) -> dict[str, int | None]:
        def program() -> Program[dict[str, int | None]]:
            found: dict[str, int | None] = {}
            for path in paths:
                found[path] = yield from file_writes.latest(project_id, path)
            return found

        return await self._unit(program, Access.SNAPSHOT)

    async def apply_file_ops(
        self,
        project_id: str,
        ops: Sequence[FileOp],
        *,
        expected: Mapping[str, int | None],
        limits: FileLimits,
        run_id: str | None,
        staged_run: str | None = None,
        staged_paths: Sequence[str] = (),
    ) -> list[StoredEvent]:
        def program() -> Program[list[StoredEvent]]:
            now = utc_now()
            yield Reserve(project_id, len(ops), _locks_owner(limits))
            stale = []
            for path, version in expected.items():
                if (yield from file_writes.latest(project_id, path)) != version:
                    stale.append(path)
            if stale:
                stale.sort()
                raise Conflict("Files changed since: nothing was applied.", {"paths": stale})
            datas: list[dict[str, Any]] = []
            for change in ops:
                if change.write is None:
                    data = yield from file_writes.delete(
                        project_id, change.path, limits=limits, run_id=run_id, now=now
                    )
                    datas.append(data)
                else:
                    *_, data = yield from file_writes.write(
                        project_id, change.write, limits=limits, run_id=run_id, now=now
                    )
                    datas.append(data)
            yield from file_writes.check_total(project_id, limits, now)
            for path in staged_paths:
                yield execute(s.RC_DELETE, staged_run, path)
            events: list[StoredEvent] = yield Append(new_events(project_id, datas), now)
            return events

        return await self._unit(program, Access.WRITE)

    # -- review changesets ---------------------------------------------------------------------
    async def stage_change(
        self, run_id: str, project_id: str, change: StagedChange, *, limits: FileLimits
    ) -> None:
        def program() -> Program[None]:
            yield execute(s.RC_STAGE, run_id, project_id, change.path, change.content,
                          change.size, change.sha256, change.content_type, change.moved_from,
                          change.staged_at)  # fmt: skip
            count, total = yield row(s.RC_TOTALS, run_id)
            check_staged_totals(limits, int(count), int(total))  # raising rolls back

        await self._unit(program, Access.WRITE)

    async def get_staged(self, run_id: str, path: str) -> StagedChange | None:
        def program() -> Program[StagedChange | None]:
            found = yield row(s.RC_GET, run_id, path)
            return None if found is None else DEC.staged(found)

        return await self._unit(program, Access.READ)

    async def list_staged(self, run_id: str) -> list[StagedChange]:
        def program() -> Program[list[StagedChange]]:
            return [DEC.staged(r) for r in (yield rows(s.RC_LIST, run_id))]

        return await self._unit(program, Access.READ)

    async def end_review(
        self, run_id: str, status: str, events: Sequence[NewEvent]
    ) -> list[StoredEvent] | None:
        def program() -> Program[list[StoredEvent] | None]:
            if (yield value(s.RUN_END_REVIEW, run_id, status)) is None:
                return None
            yield execute(s.RC_CLEAR, run_id)
            stored: list[StoredEvent] = yield Append(events, utc_now())
            return stored

        return await self._unit(program, Access.WRITE)

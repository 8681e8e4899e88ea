"""The SQLite side of project files and their history (part of ``SqliteStore``).

Every write keeps a row per version in ``file_versions`` (migration 4), the current state
included, a NULL content marking a path that stopped existing. Retention (count and age,
``FileLimits.history_*``) runs in the same transaction as the write, and the project's
quota counts every kept version. Statements come from ``server.store.sql``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from server.errors import Conflict, NotFound
from server.events.model import NewEvent, StoredEvent
from server.store import codec, sql
from server.store.codec import decode_cursor, page_cursor, time_text
from server.store.models import (
    FileData,
    FileMeta,
    FileVersion,
    Page,
    RunFileSpan,
    StagedChange,
)
from server.store.sqlite_runs import DEC, Conn, append_in, q
from server.timeutil import utc_now
from server.vfs.quota import check_quota, check_staged_totals, check_stored_total
from server.vfs.writes import FileWrite

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime
    from typing import Any

    from server.store.models import FileLimits
    from server.store.sqlite_db import SqliteDatabase
    from server.vfs.writes import FileOp


def _cutoff(limits: FileLimits, now: datetime) -> str | None:
    return time_text(now - timedelta(days=limits.history_days))


def _next_version(conn: Conn, project_id: str, path: str) -> int:
    return int(q(conn, sql.FV_NEXT, project_id, path).fetchone()[0])


def _retain(conn: Conn, project_id: str, path: str, limits: FileLimits, now: datetime) -> None:
    q(conn, sql.FV_PRUNE, project_id, path, limits.history_versions, _cutoff(limits, now))


def _check_total(conn: Conn, project_id: str, limits: FileLimits, now: datetime) -> None:
    total = int(q(conn, sql.FV_TOTAL, project_id).fetchone()[0])
    if total > limits.max_total_bytes:  # short: drop every aged version first, then decide
        q(conn, sql.FV_PRUNE_AGED, project_id, _cutoff(limits, now))
        total = int(q(conn, sql.FV_TOTAL, project_id).fetchone()[0])
    check_stored_total(limits, total)


def _write(
    conn: Conn,
    project_id: str,
    w: FileWrite,
    *,
    limits: FileLimits,
    run_id: str | None,
    now: datetime,
    if_match: int | None = None,
    if_none_match_any: bool = False,
) -> tuple[FileMeta, bool, dict[str, Any]]:
    user_bytes = 0
    if limits.max_user_bytes is not None:  # one writer: no lock needed on SQLite
        owner = q(conn, sql.PROJECT_OWNER, project_id).fetchone()
        if owner is None:
            raise NotFound("Project not found.")
        user_bytes = int(q(conn, sql.USER_FILE_BYTES, owner[0]).fetchone()[0])
    row = q(conn, sql.FILE_QUOTA_STATE, project_id, w.path).fetchone()
    old_version = None if row["version"] is None else int(row["version"])
    old_size = None if row["size"] is None else int(row["size"])
    codec.check_preconditions(old_version, if_match, if_none_match_any)
    check_quota(limits, len(w.content), old_size=old_size, file_count=int(row["count"]),
                total_bytes=int(row["total"]), user_bytes=user_bytes)  # fmt: skip
    version = _next_version(conn, project_id, w.path)
    q(conn, sql.FILE_UPSERT, project_id, w.path, w.content, len(w.content), version, w.sha256,
      w.content_type, time_text(now))  # fmt: skip
    q(conn, sql.FV_INSERT, project_id, w.path, version, w.content, len(w.content), w.sha256,
      w.content_type, run_id, time_text(now))  # fmt: skip
    _retain(conn, project_id, w.path, limits, now)
    meta = FileMeta(project_id, w.path, len(w.content), version, w.sha256, w.content_type, now)
    created = old_version is None
    return meta, created, codec.file_changed_data(meta, created, now, run_id)


def _delete(
    conn: Conn,
    project_id: str,
    path: str,
    *,
    limits: FileLimits | None,
    run_id: str | None,
    now: datetime,
    if_match: int | None = None,
) -> dict[str, Any]:
    row = q(conn, sql.FILE_DELETE, project_id, path).fetchone()
    if row is None:
        raise NotFound("File not found.", {"path": path})
    codec.check_preconditions(int(row[0]), if_match, False)  # raising rolls back
    q(conn, sql.FV_TOMBSTONE, project_id, path, _next_version(conn, project_id, path), run_id,
      time_text(now))  # fmt: skip
    if limits is not None:
        _retain(conn, project_id, path, limits, now)
    return codec.file_deleted_data(project_id, path, now, run_id)


def _one_event(conn: Conn, project_id: str, data: dict[str, Any], now: datetime) -> StoredEvent:
    [event] = append_in(conn, [NewEvent(project_id, data["type"], data)], now)
    return event


class SqliteFiles:
    """File operations of the ``Store`` protocol on SQLite (mixed into ``SqliteStore``)."""

    _db: SqliteDatabase

    async def list_files(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        after = decode_cursor(cursor) or ""

        def op(conn: Conn) -> Page[FileMeta]:
            rows = q(conn, sql.FILE_LIST, project_id, after, prefix, limit + 1).fetchall()
            items = [DEC.file_meta(r) for r in rows[:limit]]
            return Page(items, page_cursor([r["path"] for r in rows], limit))

        return await self._db.read(op)

    async def get_file(self, project_id: str, path: str) -> FileData | None:
        def op(conn: Conn) -> FileData | None:
            row = q(conn, sql.FILE_GET, project_id, path).fetchone()
            return None if row is None else FileData(DEC.file_meta(row), bytes(row["content"]))

        return await self._db.read(op)

    async def get_file_meta(self, project_id: str, path: str) -> FileMeta | None:
        def op(conn: Conn) -> FileMeta | None:
            row = q(conn, sql.FILE_META, project_id, path).fetchone()
            return None if row is None else DEC.file_meta(row)

        return await self._db.read(op)

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
        def op(conn: Conn) -> tuple[FileMeta, bool, StoredEvent]:
            now = utc_now()
            if q(conn, sql.PROJECT_OWNER, project_id).fetchone() is None:
                raise NotFound("Project not found.")
            meta, created, data = _write(
                conn, project_id, FileWrite(path, content, content_type, sha256), limits=limits,
                run_id=run_id, now=now, if_match=if_match, if_none_match_any=if_none_match_any,
            )  # fmt: skip
            _check_total(conn, project_id, limits, now)
            return meta, created, _one_event(conn, project_id, data, now)

        return await self._db.write(op)

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

        def op(conn: Conn) -> list[tuple[FileMeta, bool, StoredEvent]]:
            now = utc_now()
            if q(conn, sql.PROJECT_OWNER, project_id).fetchone() is None:
                raise NotFound("Project not found.")
            written = [  # each quota read sees the writes before it: checked cumulatively
                _write(conn, project_id, f, limits=limits, run_id=run_id, now=now) for f in files
            ]
            _check_total(conn, project_id, limits, now)
            events = append_in(conn, [NewEvent(project_id, d["type"], d) for *_, d in written], now)
            return [(m, c, e) for (m, c, _), e in zip(written, events, strict=True)]

        return await self._db.write(op)

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
        def op(conn: Conn) -> tuple[FileMeta, StoredEvent]:
            now = utc_now()
            row = q(conn, sql.FILE_META, project_id, src).fetchone()
            if row is None:
                raise NotFound("File not found.", {"path": src})
            codec.check_preconditions(int(row["version"]), if_match, False)
            if q(conn, sql.FILE_EXISTS, project_id, dst).fetchone():
                raise Conflict("A file exists at the target path.", {"path": dst})
            src_next, dst_next = (
                _next_version(conn, project_id, src),
                _next_version(conn, project_id, dst),
            )
            version = max(int(row["version"]) + 1, dst_next)
            if version > dst_next:  # keep a path's versions gapless: "did not exist" before
                q(conn, sql.FV_TOMBSTONE, project_id, dst, version - 1, None, time_text(now))
            meta = DEC.file_meta(q(conn, sql.FILE_SET_VERSION, project_id, src, dst, version,
                                   time_text(now)).fetchone())  # fmt: skip
            q(conn, sql.FV_TOMBSTONE, project_id, src, src_next, run_id, time_text(now))
            q(conn, sql.FV_INSERT_FROM_FILE, project_id, dst, run_id)
            if limits is not None:
                _retain(conn, project_id, src, limits, now)
                _retain(conn, project_id, dst, limits, now)
                _check_total(conn, project_id, limits, now)
            data = codec.file_moved_data(meta, src, now, run_id)
            return meta, _one_event(conn, project_id, data, now)

        return await self._db.write(op)

    async def delete_file(
        self,
        project_id: str,
        path: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
        limits: FileLimits | None = None,
    ) -> StoredEvent:
        def op(conn: Conn) -> StoredEvent:
            now = utc_now()
            data = _delete(
                conn, project_id, path, limits=limits, run_id=run_id, now=now, if_match=if_match
            )
            return _one_event(conn, project_id, data, now)

        return await self._db.write(op)

    # -- history -----------------------------------------------------------------------------
    async def list_file_versions(
        self, project_id: str, path: str, limit: int, cursor: str | None
    ) -> Page[FileVersion]:
        before = codec.int_cursor(cursor)

        def op(conn: Conn) -> Page[FileVersion]:
            rows = q(conn, sql.FV_LIST, project_id, path, before, limit + 1).fetchall()
            items = [DEC.file_version(r) for r in rows[:limit]]
            return Page(items, page_cursor([str(r["version"]) for r in rows], limit))

        return await self._db.read(op)

    async def get_file_version(
        self, project_id: str, path: str, version: int
    ) -> tuple[FileVersion, bytes | None] | None:
        def op(conn: Conn) -> tuple[FileVersion, bytes | None] | None:
            row = q(conn, sql.FV_GET, project_id, path, version).fetchone()
            return None if row is None else (DEC.file_version(row), codec.opt_bytes(row))

        return await self._db.read(op)

    async def run_file_spans(self, project_id: str, run_id: str) -> list[RunFileSpan]:
        def op(conn: Conn) -> list[RunFileSpan]:
            rows = q(conn, sql.FV_OF_RUN, project_id, run_id).fetchall()
            return [RunFileSpan(r["path"], int(r["first_version"]), int(r["last_version"]))
                    for r in rows]  # fmt: skip

        return await self._db.read(op)

    async def latest_file_versions(
        self, project_id: str, paths: Sequence[str]
    ) -> dict[str, int | None]:
        def op(conn: Conn) -> dict[str, int | None]:
            return {p: _latest(conn, project_id, p) for p in paths}

        return await self._db.read(op)

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
        def op(conn: Conn) -> list[StoredEvent]:
            now = utc_now()
            if q(conn, sql.PROJECT_OWNER, project_id).fetchone() is None:
                raise NotFound("Project not found.")
            stale = sorted(p for p, v in expected.items() if _latest(conn, project_id, p) != v)
            if stale:
                raise Conflict("Files changed since: nothing was applied.", {"paths": stale})
            datas: list[dict[str, Any]] = []
            for change in ops:
                if change.write is None:
                    datas.append(_delete(conn, project_id, change.path, limits=limits,
                                         run_id=run_id, now=now))  # fmt: skip
                else:
                    *_, data = _write(conn, project_id, change.write, limits=limits,
                                      run_id=run_id, now=now)  # fmt: skip
                    datas.append(data)
            _check_total(conn, project_id, limits, now)
            for path in staged_paths:
                q(conn, sql.RC_DELETE, staged_run, path)
            return append_in(conn, [NewEvent(project_id, d["type"], d) for d in datas], now)

        return await self._db.write(op)

    # -- review changesets ---------------------------------------------------------------------
    async def stage_change(
        self, run_id: str, project_id: str, change: StagedChange, *, limits: FileLimits
    ) -> None:
        def op(conn: Conn) -> None:
            q(conn, sql.RC_STAGE, run_id, project_id, change.path, change.content, change.size,
              change.sha256, change.content_type, change.moved_from,
              time_text(change.staged_at))  # fmt: skip
            count, total = q(conn, sql.RC_TOTALS, run_id).fetchone()
            check_staged_totals(limits, int(count), int(total))  # raising rolls back

        await self._db.write(op)

    async def get_staged(self, run_id: str, path: str) -> StagedChange | None:
        def op(conn: Conn) -> StagedChange | None:
            row = q(conn, sql.RC_GET, run_id, path).fetchone()
            return None if row is None else DEC.staged(row)

        return await self._db.read(op)

    async def list_staged(self, run_id: str) -> list[StagedChange]:
        def op(conn: Conn) -> list[StagedChange]:
            return [DEC.staged(r) for r in q(conn, sql.RC_LIST, run_id).fetchall()]

        return await self._db.read(op)

    async def end_review(
        self, run_id: str, status: str, events: Sequence[NewEvent]
    ) -> list[StoredEvent] | None:
        def op(conn: Conn) -> list[StoredEvent] | None:
            if q(conn, sql.RUN_END_REVIEW, run_id, status).fetchone() is None:
                return None
            q(conn, sql.RC_CLEAR, run_id)
            return append_in(conn, events, utc_now())

        return await self._db.write(op)


def _latest(conn: Conn, project_id: str, path: str) -> int | None:
    value = q(conn, sql.FV_LATEST, project_id, path).fetchone()[0]
    return None if value is None else int(value)

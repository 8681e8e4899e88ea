"""``AccountStore``: the user, refresh-token, project and event-log operations of the
``Store`` that are the same on both backends (mixed into ``SqliteStore`` and
``PostgresStore``), written once as programs (``server.store.program``).

What stays in each backend is dialect-specific: creating users (the unique-violation error
class; PostgreSQL's ``ensure_user`` is one CTE), deleting a project (PostgreSQL notifies
other instances), trimming the event log, migrations. What each method raises is in
``server.store.protocol``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.errors import NotFound
from server.events.model import NewEvent
from server.store import codec, sql
from server.store.codec import decode_cursor, page_cursor
from server.store.file_writes import DEC
from server.store.limits import check_project_count
from server.store.models import Page, Project, RefreshOutcome, RefreshUse
from server.store.program import Access, Append, LockUser, UnitRunner, execute, row, rows, value
from server.timeutil import new_id, utc_now

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from server.events.model import StoredEvent
    from server.store.models import User
    from server.store.program import Program


class AccountStore(UnitRunner):
    """Users, refresh tokens, projects and the event log; the backend provides ``_unit``."""

    # -- users and refresh tokens ------------------------------------------------------------
    async def get_user(self, user_id: str) -> User | None:
        def program() -> Program[User | None]:
            found = yield row(sql.USER_BY_ID, user_id)
            return None if found is None else DEC.user(found)

        return await self._unit(program, Access.READ)

    async def get_user_by_email(self, email: str) -> User | None:
        def program() -> Program[User | None]:
            found = yield row(sql.USER_BY_EMAIL, codec.normalize_email(email))
            return None if found is None else DEC.user(found)

        return await self._unit(program, Access.READ)

    async def create_refresh_token(
        self, token_id: str, user_id: str, family_id: str, expires_at: datetime
    ) -> None:
        def program() -> Program[None]:
            yield execute(sql.REFRESH_INSERT, token_id, user_id, family_id, expires_at)

        await self._unit(program, Access.WRITE_ONE)

    async def use_refresh_token(self, token_id: str, now: datetime) -> RefreshUse:
        def program() -> Program[RefreshUse]:
            found = yield row(sql.REFRESH_USE, token_id, now)
            if found is not None:
                return RefreshUse(RefreshOutcome.OK, found["user_id"], found["family_id"])
            found = yield row(sql.REFRESH_GET, token_id)
            if found is None:
                return RefreshUse(RefreshOutcome.INVALID)
            if found["used_at"] is not None:
                yield execute(sql.REFRESH_REVOKE_FAMILY, found["family_id"], now)
                return RefreshUse(RefreshOutcome.REUSED, found["user_id"], found["family_id"])
            return RefreshUse(RefreshOutcome.INVALID, found["user_id"], found["family_id"])

        return await self._unit(program, Access.WRITE)

    async def revoke_refresh_family(self, family_id: str) -> None:
        def program() -> Program[None]:
            yield execute(sql.REFRESH_REVOKE_FAMILY, family_id, utc_now())

        await self._unit(program, Access.WRITE_ONE)

    async def revoke_refresh_token_family_of(self, token_id: str, user_id: str) -> None:
        def program() -> Program[None]:
            yield execute(sql.REFRESH_REVOKE_FAMILY_OF, token_id, user_id, utc_now())

        await self._unit(program, Access.WRITE_ONE)

    async def refresh_family_active(self, family_id: str, user_id: str, now: datetime) -> bool:
        def program() -> Program[bool]:
            return (yield value(sql.REFRESH_FAMILY_ACTIVE, family_id, user_id, now)) is not None

        return await self._unit(program, Access.READ)

    # -- projects ----------------------------------------------------------------------------
    async def create_project(
        self, owner_id: str, name: str, description: str | None, *, max_projects: int | None = None
    ) -> Project:
        now = utc_now()
        project = Project(new_id(), owner_id, name, description, now, now)

        def program() -> Program[Project]:
            if max_projects is not None:  # counted in the inserting transaction
                yield LockUser(owner_id)
                count = yield value(sql.PROJECT_COUNT, owner_id)
                check_project_count(int(count), max_projects)
            values = (project.id, owner_id, name, description, now)
            yield execute(sql.PROJECT_INSERT, *values, missing="User not found.")
            return project

        limited = max_projects is not None
        return await self._unit(program, Access.WRITE if limited else Access.WRITE_ONE)

    async def get_project(self, owner_id: str, project_id: str) -> Project | None:
        def program() -> Program[Project | None]:
            found = yield row(sql.PROJECT_GET, project_id, owner_id)
            return None if found is None else DEC.project(found)

        return await self._unit(program, Access.READ)

    async def list_projects(self, owner_id: str, limit: int, cursor: str | None) -> Page[Project]:
        after = decode_cursor(cursor)

        def program() -> Program[Page[Project]]:
            found = yield rows(sql.PROJECT_LIST, owner_id, after, limit + 1)
            items = [DEC.project(r) for r in found[:limit]]
            return Page(items, page_cursor([r["id"] for r in found], limit))

        return await self._unit(program, Access.READ)

    async def update_project(
        self,
        owner_id: str,
        project_id: str,
        *,
        name: str | None,
        description: str | None,
        set_description: bool,
    ) -> tuple[Project, StoredEvent]:
        def program() -> Program[tuple[Project, StoredEvent]]:
            now = utc_now()
            found = yield row(
                sql.PROJECT_UPDATE, project_id, owner_id, name, set_description, description, now
            )
            if found is None:
                raise NotFound("Project not found.")
            project = DEC.project(found)
            data = codec.project_updated_data(project, now)
            [event] = yield Append([NewEvent(project_id, data["type"], data)], now)
            return project, event

        return await self._unit(program, Access.WRITE)

    async def project_owner(self, project_id: str) -> str | None:
        def program() -> Program[str | None]:
            owner = yield value(sql.PROJECT_OWNER, project_id)
            return None if owner is None else str(owner)

        return await self._unit(program, Access.READ)

    # -- event log ---------------------------------------------------------------------------
    async def append_events(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        if not events:
            return []

        def program() -> Program[list[StoredEvent]]:
            stored: list[StoredEvent] = yield Append(events, utc_now())
            return stored

        return await self._unit(program, Access.WRITE)

    async def events_after(self, project_id: str, after_seq: int, limit: int) -> list[StoredEvent]:
        def program() -> Program[list[StoredEvent]]:
            found = yield rows(sql.EVENTS_AFTER, project_id, after_seq, limit)
            return [DEC.event(r) for r in found]

        return await self._unit(program, Access.READ)

    async def event_bounds(self, project_id: str) -> tuple[int, int]:
        def program() -> Program[tuple[int, int]]:
            found = yield row(sql.EVENT_BOUNDS, project_id)
            last = 0 if found is None else int(found["last_event_seq"])
            no_first = found is None or found["first_seq"] is None
            return (last + 1 if no_first else int(found["first_seq"])), last

        return await self._unit(program, Access.READ)

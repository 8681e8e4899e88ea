"""``PostgresRunControl``: cross-instance cancel on PostgreSQL (the ``RunControl`` capability).

``request_cancel`` marks a run another instance executes (``error`` ``{"code":
"cancel_requested"}``, overwritten by the run's final state) and sends a ``Cancel``
notification (``server.events.pgchannel``) in the same transaction; the owner's event bus
hands it to ``deliver_cancel_request``, which calls the listener its supervisor
registered. The owner's lease maintenance reads ``cancel_requests`` as the fallback for a
lost notification.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.events.pgchannel import EVENTS_CHANNEL, Cancel, encode
from server.store.sql import NOT_FINISHED

if TYPE_CHECKING:
    from collections.abc import Callable

    from server.store.postgres_db import Conn, PostgresDatabase

CANCEL_REQUESTED = "cancel_requested"  # runs.error code of a run whose cancel was requested


class PostgresRunControl:
    """Cancel requests between instances sharing one PostgreSQL database."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._listener: Callable[[str], object] | None = None

    def on_cancel_request(self, listener: Callable[[str], object] | None) -> None:
        self._listener = listener

    def deliver_cancel_request(self, run_id: str) -> None:
        if self._listener is not None:
            self._listener(run_id)

    async def request_cancel(self, run_id: str) -> bool:
        async def op(conn: Conn) -> bool:
            project_id = await conn.fetchval(
                "UPDATE runs SET error = jsonb_build_object('code', $2::text, 'message', "
                f"'Cancel requested.') WHERE id = $1 AND {NOT_FINISHED} "
                "AND id IN (SELECT run_id FROM run_leases) RETURNING project_id",
                run_id, CANCEL_REQUESTED,
            )  # fmt: skip
            if project_id is None:
                return False
            payload = encode(Cancel(str(project_id), run_id))
            await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, payload)
            return True

        return await self._db.run(op)

    async def cancel_requests(self, owner: str) -> list[str]:
        async def op(conn: Conn) -> list[str]:
            rows = await conn.fetch(
                "SELECT id FROM runs WHERE id IN (SELECT run_id FROM run_leases WHERE owner = $1) "
                f"AND {NOT_FINISHED} AND error->>'code' = $2",
                owner, CANCEL_REQUESTED,
            )  # fmt: skip
            return [str(r["id"]) for r in rows]

        return await self._db.run(op, transaction=False)

"""Run leases live in their own rows (migration 5): a renewal or a claim never rewrites the
run's row (with its prompt, plan and metrics), and migrating keeps the leases held."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import trio_asyncio

from server.errors import StoreFailure
from server.store import codec, migrations, sql
from server.store.factory import open_store
from server.store.models import RunChange, RunStatus
from server.timeutil import utc_now
from tests.store.test_runs import make_run

if TYPE_CHECKING:
    from server.store.models import Project
    from server.store.protocol import Store
    from tests.fixtures.postgres import BackendConfig

# A trigger that refuses every UPDATE of a run's row, in each dialect.
_FREEZE_SQLITE = (
    "CREATE TRIGGER runs_frozen BEFORE UPDATE ON runs "
    "BEGIN SELECT RAISE(ABORT, 'a run row was rewritten'); END"
)
_FREEZE_POSTGRES = """
CREATE FUNCTION runs_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE check_violation USING MESSAGE = 'a run row was rewritten'; END $$;
CREATE TRIGGER runs_frozen BEFORE UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION runs_frozen();
"""


async def _raw(store: Store, sqlite_sql: str, postgres_sql: str, *args: Any) -> None:
    """Run one statement (or, on PostgreSQL without arguments, a script) behind the store."""
    db: Any = store._db  # type: ignore[attr-defined]  # the test reaches under the protocol
    if store.backend == "sqlite":
        await db.write(lambda conn: conn.execute(sqlite_sql, args))
        return

    async def op(conn: Any) -> None:
        await conn.execute(postgres_sql, *args)

    await db.run(op)


async def test_claims_and_renewals_leave_the_run_row_alone(store: Store, project: Project) -> None:
    now = utc_now()
    run = make_run(project)
    await store.create_run(run, [])
    await _raw(store, _FREEZE_SQLITE, _FREEZE_POSTGRES)

    assert await store.claim_run(run.id, "a", now + timedelta(seconds=30))
    await store.renew_leases("a", now + timedelta(seconds=90))
    got = await store.get_run(run.id)
    assert got is not None
    assert (got.lease_owner, got.lease_expires_at) == ("a", now + timedelta(seconds=90))
    assert not await store.claim_run(run.id, "b", now + timedelta(seconds=30))

    with pytest.raises(StoreFailure):  # the trigger works: a change of the run is refused
        await store.write_run_state(run=RunChange(run.id, {"status": RunStatus.RUNNING}))


async def test_run_changes_set_and_drop_the_lease(store: Store, project: Project) -> None:
    now = utc_now()
    run = make_run(project)
    await store.create_run(run, [])
    await store.write_run_state(
        run=RunChange(run.id, {"lease_owner": "a", "lease_expires_at": now}),
        if_status=RunStatus.PENDING,
    )
    got = await store.get_run(run.id)
    assert got is not None
    assert (got.lease_owner, got.lease_expires_at) == ("a", now)
    assert [r.id for r in await store.unfinished_runs(now + timedelta(seconds=1))] == [run.id]

    await store.write_run_state(
        run=RunChange(run.id, {"status": RunStatus.FAILED, "lease_owner": None,
                               "lease_expires_at": None})
    )  # fmt: skip
    got = await store.get_run(run.id)
    assert got is not None
    assert (got.status, got.lease_owner, got.lease_expires_at) == (RunStatus.FAILED, None, None)


async def test_migration_5_keeps_the_leases_held(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    expires = utc_now() + timedelta(seconds=30)
    async with trio_asyncio.open_loop(), open_store(backend.settings()) as store:
        with monkeypatch.context() as before_5:
            before_5.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:4])
            assert await store.migrate() == [1, 2, 3, 4]
        user = await store.create_user("lease@example.com", None, None)
        project = await store.create_project(user.id, "p", None)
        held, free = make_run(project), make_run(project)
        statement = (  # the runs table of migration 4, with its lease columns
            "INSERT INTO runs (id, project_id, owner_id, status, created_at, lease_owner, "
            "lease_expires_at) VALUES ($1, $2, $3, 'pending', $4, $5, $6)"
        )
        sqlite = backend.name == "sqlite"
        now: Any = codec.time_text(utc_now()) if sqlite else utc_now()
        moment: Any = codec.time_text(expires) if sqlite else expires
        for run, owner in ((held, "old-instance"), (free, None)):
            values = (run.id, project.id, user.id, now, owner, moment if owner else None)
            await _raw(store, sql.sqlite(statement), statement, *values)

        assert await store.migrate() == [5]
        got = await store.get_run(held.id)
        assert got is not None
        assert (got.lease_owner, got.lease_expires_at) == ("old-instance", expires)
        assert [r.id for r in await store.unfinished_runs(utc_now())] == [free.id]

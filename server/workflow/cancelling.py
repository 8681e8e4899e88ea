"""Cancelling a run wherever it executes: here, on another live instance, or nowhere.

``cancel`` is ``RunSupervisor.cancel``: a run this process executes is cancelled in place
(every running step together) and waited for, bounded by ``CANCEL_WAIT_S``; a run another
live instance holds the lease of is asked of that instance (``RunControl.request_cancel``: a
mark on the run plus a notification its event bus delivers to ``cancel_local``) and waited
for; a run nobody executes (not started, or a dead process's) is ended here from what the
store holds (``cancel_orphan``: the end-of-run rules of ``transitions``). A run awaiting
approval is ended through ``hitl.end_awaiting``. The owner of an executing run records its
end, so every step gets exactly one terminal event.

Raises ``NotFound`` (missing or another user's run), ``RunFinished``, and the store's errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from server.errors import NotFound, RunFinished
from server.store.models import RunStatus
from server.timeutil import utc_now
from server.workflow import hitl
from server.workflow.endings import USER_CANCELLED
from server.workflow.transitions import end_stored
from server.workflow.writer import record_end

if TYPE_CHECKING:
    from server.events.publisher import Publisher
    from server.store.models import Run
    from server.store.protocol import Store
    from server.workflow.supervisor import RunSupervisor

CANCEL_WAIT_S = 5.0
REMOTE_CANCEL_POLL_S = 0.1


def held_elsewhere(run: Run, instance_id: str) -> bool:
    """Another instance than ``instance_id`` holds a live lease on the run."""
    return (
        run.lease_owner is not None
        and run.lease_owner != instance_id
        and run.lease_expires_at is not None
        and run.lease_expires_at > utc_now()
    )


async def cancel(sup: RunSupervisor, run_id: str, owner_id: str) -> Run:
    """Cancel a run of ``owner_id``: every running step together; waits until it ended."""
    run = await sup.store.get_run(run_id, owner_id)
    if run is None:
        raise NotFound("No such run.")
    if run.status.finished:
        raise RunFinished()
    if run.status is RunStatus.AWAITING_APPROVAL:
        if await hitl.end_awaiting(sup, run, USER_CANCELLED):
            return await fetch(sup.store, run_id, owner_id)
        return await cancel(sup, run_id, owner_id)  # it moved on meanwhile: cancel that
    if sup.cancel_local(run_id):
        await sup.wait_finished(run_id, CANCEL_WAIT_S)
    elif not await cancel_remote(sup, run):
        await cancel_orphan(sup.store, sup.publisher, run)
    return await fetch(sup.store, run_id, owner_id)


async def fetch(store: Store, run_id: str, owner_id: str) -> Run:
    """The run as stored now. Raises ``NotFound``."""
    fresh = await store.get_run(run_id, owner_id)
    if fresh is None:
        raise NotFound("No such run.")
    return fresh


async def cancel_remote(sup: RunSupervisor, run: Run) -> bool:
    """Ask the live instance holding the run's lease to cancel it, and wait (bounded) until
    it recorded the end. False when no other live instance holds it (cancel it here)."""
    remote = sup.remote
    if remote is None or not held_elsewhere(run, sup.instance_id):
        return False
    if not await remote.request_cancel(run.id):
        fresh = await sup.store.get_run(run.id)
        return fresh is None or fresh.status.finished or fresh.lease_owner is not None
    with trio.move_on_after(CANCEL_WAIT_S):
        while True:
            fresh = await sup.store.get_run(run.id)
            if fresh is None or fresh.status.finished:
                break
            await trio.sleep(REMOTE_CANCEL_POLL_S)
    return True


async def cancel_orphan(store: Store, publisher: Publisher, run: Run) -> None:
    """Cancel a run no executor of this process holds (not started, or another process's):
    the end-of-run rules of ``transitions`` applied to the stored run."""
    records, _status = end_stored(run, USER_CANCELLED, utc_now())
    await record_end(store, publisher, records, run.id, run.project_id)

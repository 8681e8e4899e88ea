"""What a workflow run does to a project's files: review a run's changeset (``changes:
"review"``: list with diffs, apply all or some, discard) and undo a finished run (revert).

Thin: authorize (another user's run is 404, as a missing one), check the run's status
(409 ``conflict`` with ``details.status`` when the action does not fit it), and let
``server.vfs.review.Review`` / ``server.vfs.history.FileHistory`` do the one-transaction
work with its conflict check (409 ``conflict``, ``details.paths``: the files changed since).
Ending a review (everything applied, or discarded) is conditional on the run still
waiting, so of two racing requests one wins and the other gets 409.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, Response, request

from server.api.deps import json_response, read_json, require_user, services
from server.api.validation import object_schema
from server.errors import Conflict, NotFound
from server.events.model import EventType
from server.store.codec import FINISHED_RUN_STATUSES
from server.store.models import RunStatus
from server.timeutil import utc_now
from server.vfs.history import changed_paths
from server.workflow.events import run_event, run_json

if TYPE_CHECKING:
    from server.store.models import Run

blueprint = Blueprint("changes", __name__)

APPLY_SCHEMA = object_schema(
    {
        "paths": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 1,
            "maxItems": 10_000,
        }
    },
    (),
)


async def _owned_run(run_id: str) -> Run:
    user = await require_user()
    run = await services().store.get_run(run_id, user.user_id)
    if run is None:
        raise NotFound("No such run.")
    return run


def _require_review(run: Run) -> None:
    if run.status is not RunStatus.AWAITING_REVIEW:
        raise Conflict("The run is not awaiting review.", {"status": str(run.status)})


async def _end_review(run: Run, status: RunStatus, **fields: object) -> Run:
    kind = EventType.RUN_SUCCEEDED if status is RunStatus.SUCCEEDED else EventType.RUN_CANCELLED
    event = run_event(kind, run.project_id, run.id, utc_now(), **fields)
    svc = services()
    stored = await svc.store.end_review(run.id, status.value, [event])
    if stored is None:
        raise Conflict("The run is no longer awaiting review.", {"status": "changed"})
    svc.hub.publish(stored)
    ended = await svc.store.get_run(run.id)
    assert ended is not None  # it was just updated
    return ended


@blueprint.get("/api/workflow/runs/<run_id>/changes")
async def list_changes(run_id: str) -> Response:
    run = await _owned_run(run_id)
    items = await services().files.review().changes(run.project_id, run.id)
    return json_response({"items": items, "next_cursor": None})


@blueprint.post("/api/workflow/runs/<run_id>/apply")
async def apply_changes(run_id: str) -> Response:
    run = await _owned_run(run_id)
    body = await read_json(APPLY_SCHEMA) if request.content_length else {}
    _require_review(run)
    events, remaining = (
        await services().files.review().apply(run.project_id, run.id, body.get("paths"))
    )
    if remaining == 0:
        run = await _end_review(run, RunStatus.SUCCEEDED)
    return json_response(
        {"run": run_json(run), "applied": changed_paths(events), "remaining": remaining}
    )


@blueprint.post("/api/workflow/runs/<run_id>/discard")
async def discard_changes(run_id: str) -> Response:
    run = await _owned_run(run_id)
    _require_review(run)
    ended = await _end_review(run, RunStatus.CANCELLED, reason="discarded", error=None)
    return json_response(run_json(ended))


@blueprint.post("/api/workflow/runs/<run_id>/revert")
async def revert_run(run_id: str) -> Response:
    run = await _owned_run(run_id)
    if run.status not in FINISHED_RUN_STATUSES or run.status is RunStatus.AWAITING_REVIEW:
        raise Conflict("The run has not finished.", {"status": str(run.status)})
    events = await services().files.history().revert_run(run.project_id, run.id)
    return json_response({"run_id": run.id, "paths": changed_paths(events)})

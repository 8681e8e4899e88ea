"""What a workflow run did to a project's files: undo it (``POST .../revert``).

Thin: authorize (another user's run is 404, as a missing one), refuse a run that has not
finished (409 ``conflict``), and let ``FileHistory.revert_run`` do the one-transaction undo
with its conflict check (409 ``conflict``, ``details.paths``: the files changed since).
"""

from __future__ import annotations

from quart import Blueprint, Response

from server.api.deps import json_response, require_user, services
from server.errors import Conflict, NotFound
from server.store.codec import FINISHED_RUN_STATUSES
from server.vfs.history import changed_paths

blueprint = Blueprint("changes", __name__)


@blueprint.post("/api/workflow/runs/<run_id>/revert")
async def revert_run(run_id: str) -> Response:
    user = await require_user()
    svc = services()
    run = await svc.store.get_run(run_id, user.user_id)
    if run is None:
        raise NotFound("No such run.")
    if run.status not in FINISHED_RUN_STATUSES:
        raise Conflict("The run has not finished.", {"status": str(run.status)})
    events = await svc.files.history().revert_run(run.project_id, run.id)
    return json_response({"run_id": run.id, "paths": changed_paths(events)})

"""Workflow routes: submit, plan, list, get, cancel, approve, reject and retry runs; the
tool catalog.

Thin: parse and authorize here, the ``RunSupervisor`` does the work. Another user's run is
404 (existence is not leaked), exactly as a missing one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, request

from server.api.deps import (
    current_call,
    json_response,
    page_params,
    read_body,
    read_json,
    require_user,
    services,
    to_response,
)
from server.api.exchange import authenticate_call, json_answer
from server.api.validation import object_schema
from server.errors import NotFound, UnsupportedMediaType, ValidationFailed
from server.fairness import acting_as
from server.store.models import RunStatus
from server.workflow.events import run_json

if TYPE_CHECKING:
    from server.api.exchange import Answer, Call

blueprint = Blueprint("workflow", __name__)

MAX_IDEMPOTENCY_KEY = 200
_ID = {"type": "string", "minLength": 1, "maxLength": 100}
RUN_SCHEMA = object_schema(
    {
        "project_id": _ID,
        "prompt": {"type": "string"},
        "plan": {"type": "object"},
        "options": {"type": "object"},
    },
    ("project_id",),
)
PLAN_SCHEMA = object_schema(
    {"project_id": _ID, "prompt": {"type": "string"}}, ("project_id", "prompt")
)


def _check_prompt(prompt: str | None) -> None:
    if prompt is None:
        return
    limit = services().settings.ai_max_prompt_chars
    if not prompt.strip():
        raise ValidationFailed("The prompt is empty.", {"prompt": "must not be empty"})
    if len(prompt) > limit:
        raise ValidationFailed(
            f"The prompt is longer than {limit} characters.",
            {"prompt": f"at most {limit} characters"},
        )


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise ValidationFailed(
            "The Idempotency-Key header is not valid.",
            {"Idempotency-Key": f"1..{MAX_IDEMPOTENCY_KEY} characters"},
        )
    return key


@blueprint.post("/api/workflow/runs")
async def create_run() -> Response:
    user = await require_user()
    body = await read_json(RUN_SCHEMA)
    _check_prompt(body.get("prompt"))
    key = _idempotency_key()
    run, _created = await services().supervisor.submit(
        owner_id=user.user_id,
        project_id=body["project_id"],
        prompt=body.get("prompt"),
        plan=body.get("plan"),
        options=body.get("options") or {},
        idempotency_key=key,
    )
    return json_response(run_json(run), 202)


@blueprint.post("/api/workflow/plan")
async def plan_only() -> Response:
    user = await require_user()
    body = await read_json(PLAN_SCHEMA)
    _check_prompt(body["prompt"])
    with acting_as(user.user_id):  # model slots are shared fairly between users
        intent, plan = await services().supervisor.plan_only(
            user.user_id, body["project_id"], body["prompt"]
        )
    return json_response({"intent": intent, "plan": plan})


@blueprint.get("/api/workflow/runs")
async def list_runs() -> Response:
    user = await require_user()
    limit, cursor = page_params()
    raw_status = request.args.get("status") or None
    status: RunStatus | None = None
    if raw_status is not None:
        try:
            status = RunStatus(raw_status)
        except ValueError:
            allowed = ", ".join(s.value for s in RunStatus)
            raise ValidationFailed(details={"status": f"must be one of {allowed}"}) from None
    project_id = request.args.get("project_id") or None
    page = await services().store.list_runs(user.user_id, project_id, status, limit, cursor)
    return json_response(
        {"items": [run_json(r) for r in page.items], "next_cursor": page.next_cursor}
    )


@blueprint.get("/api/workflow/runs/<run_id>")
async def get_run(run_id: str) -> Response:
    return to_response(await run_answer(current_call(), run_id))


async def run_answer(call: Call, run_id: str) -> Answer:
    """``GET /api/workflow/runs/{id}``, for both layers (``server.api.edge``)."""
    user = await authenticate_call(call)
    run = await call.services.store.get_run(run_id, user.user_id)
    if run is None:
        raise NotFound("No such run.")
    return json_answer(run_json(run))


@blueprint.post("/api/workflow/runs/<run_id>/cancel")
async def cancel_run(run_id: str) -> Response:
    user = await require_user()
    run = await services().supervisor.cancel(run_id, user.user_id)
    return json_response(run_json(run), 202)


APPROVE_SCHEMA = object_schema({"plan": {"type": "object"}}, ())
EMPTY_SCHEMA = object_schema({}, ())


async def _optional_json(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON object body, or ``{}`` when the request has none."""
    if not request.mimetype and request.content_length in (None, 0):
        raw = await read_body(services().settings.max_body_bytes)
        if not raw.strip():
            return {}
        raise UnsupportedMediaType("The request body must be application/json.")
    return await read_json(schema)


@blueprint.post("/api/workflow/runs/<run_id>/approve")
async def approve_run(run_id: str) -> Response:
    user = await require_user()
    body = await _optional_json(APPROVE_SCHEMA)
    run = await services().supervisor.approve(run_id, user.user_id, body.get("plan"))
    return json_response(run_json(run), 202)


@blueprint.post("/api/workflow/runs/<run_id>/reject")
async def reject_run(run_id: str) -> Response:
    user = await require_user()
    await _optional_json(EMPTY_SCHEMA)
    run = await services().supervisor.reject(run_id, user.user_id)
    return json_response(run_json(run))


@blueprint.post("/api/workflow/runs/<run_id>/retry")
async def retry_run(run_id: str) -> Response:
    user = await require_user()
    raw_force = request.args.get("force", "false")
    if raw_force not in ("true", "false", "1", "0"):
        raise ValidationFailed(details={"force": "must be true or false"})
    await _optional_json(EMPTY_SCHEMA)
    force = raw_force in ("true", "1")
    run = await services().supervisor.retry(run_id, user.user_id, force=force)
    return json_response(run_json(run), 202)


@blueprint.get("/api/workflow/tools")
async def list_tools() -> Response:
    await require_user()
    return json_response({"items": services().tools.catalog(), "next_cursor": None})

"""The run, change and stream paths of the OpenAPI document (``openapi_paths``): workflow
runs and their human-in-the-loop routes, the tool catalog, tickets and the SSE stream. Pure.
"""

from __future__ import annotations

import copy

from server.api import changes, sse, workflow
from server.api.openapi_parts import JSON, header_refs, json_body, operation, param, query
from server.api.schemas import Schema, event_component_name, ref
from server.events.model import EventType
from server.store.models import RunStatus


def _run_body() -> Schema:
    body = copy.deepcopy(workflow.RUN_SCHEMA)
    body["properties"]["plan"] = ref("PlanRequest")
    body["properties"]["options"] = {
        "type": "object",
        "properties": {
            "concurrency": {"type": "integer", "minimum": 1},
            "timeout_s": {"type": "number", "exclusiveMinimum": 0},
            "approval": {"const": "plan"},
            "changes": {"enum": ["direct", "review"]},
        },
        "additionalProperties": False,
    }
    body["description"] = "Exactly one of `prompt` and `plan`."
    return body


def optional_body(op: Schema) -> Schema:
    """``op`` whose JSON body may be left out (an empty body counts as ``{}``)."""
    op["requestBody"]["required"] = False
    return op


def run_operations() -> dict[str, Schema]:
    page = [param("Limit"), param("Cursor")]
    pid = param("ProjectId")
    return {
        "/api/workflow/runs": {
            "get": operation(
                "listRuns",
                "The caller's runs.",
                {200: json_body(ref("RunPage"), "A page.")},
                tag="workflow",
                params=[
                    query("project_id", {"type": "string"}),
                    query("status", {"enum": [s.value for s in RunStatus]}),
                    *page,
                ],
                errors={400: ["validation_failed"]},
            ),
            "post": operation(
                "createRun",
                "Submit a run (prompt or plan); it starts at once.",
                {202: json_body(ref("Run"), "Accepted.")},
                tag="workflow",
                body=_run_body(),
                params=[param("IdempotencyKey")],
                errors={
                    400: ["invalid_plan"],
                    404: ["not_found"],
                    429: ["rate_limited"],  # runs per user, daily token budget
                    503: ["shutting_down", "model_unavailable"],
                    502: ["model_error"],
                },
            ),
        },
        "/api/workflow/plan": {
            "post": operation(
                "planOnly",
                "Plan a prompt; nothing runs.",
                {200: json_body(ref("PlanResult"), "The intent and the plan.")},
                tag="workflow",
                body=workflow.PLAN_SCHEMA,
                errors={
                    400: ["invalid_plan"],
                    404: ["not_found"],
                    422: ["model_required"],  # the offline provider cannot do it exactly
                    429: ["rate_limited"],  # daily token budget
                    502: ["model_error"],
                    503: ["model_unavailable"],
                },
            ),
        },
        "/api/workflow/runs/{run_id}": {
            "parameters": [param("RunId")],
            "get": operation(
                "getRun",
                "A run with its steps.",
                {200: json_body(ref("Run"), "The run.")},
                tag="workflow",
                errors={404: ["not_found"]},
            ),
        },
        "/api/workflow/runs/{run_id}/cancel": {
            "parameters": [param("RunId")],
            "post": operation(
                "cancelRun",
                "Cancel a run: every running step together.",
                {202: json_body(ref("Run"), "Cancelling.")},
                tag="workflow",
                errors={404: ["not_found"], 409: ["run_finished"]},
            ),
        },
        "/api/workflow/runs/{run_id}/approve": {
            "parameters": [param("RunId")],
            "post": optional_body(
                operation(
                    "approveRun",
                    "Start a run awaiting approval, with its plan or an edited one "
                    "(`run.approved`).",
                    {202: json_body(ref("Run"), "Approved: the run starts.")},
                    tag="workflow",
                    body=workflow.APPROVE_SCHEMA,
                    errors={
                        400: ["invalid_plan"],
                        404: ["not_found"],
                        409: ["not_awaiting_approval", "conflict"],
                        503: ["shutting_down"],
                    },
                )
            ),
        },
        "/api/workflow/runs/{run_id}/reject": {
            "parameters": [param("RunId")],
            "post": optional_body(
                operation(
                    "rejectRun",
                    "End a run awaiting approval: `cancelled`, reason `rejected`.",
                    {200: json_body(ref("Run"), "Rejected.")},
                    tag="workflow",
                    body=workflow.EMPTY_SCHEMA,
                    errors={404: ["not_found"], 409: ["not_awaiting_approval", "conflict"]},
                )
            ),
        },
        "/api/workflow/runs/{run_id}/retry": {
            "parameters": [param("RunId")],
            "post": optional_body(
                operation(
                    "retryRun",
                    "A new run from a failed or cancelled one: succeeded steps reused, the "
                    "rest run again. 409 when a file a reused step read has changed, unless "
                    "`force`.",
                    {202: json_body(ref("Run"), "The new run.")},
                    tag="workflow",
                    body=workflow.EMPTY_SCHEMA,
                    params=[query("force", {"enum": ["true", "false", "1", "0"]})],
                    errors={
                        400: ["validation_failed"],
                        404: ["not_found"],
                        409: ["not_retryable", "conflict"],
                        429: ["rate_limited"],
                        503: ["shutting_down"],
                    },
                )
            ),
        },
        "/api/workflow/runs/{run_id}/changes": {
            "parameters": [param("RunId")],
            "get": operation(
                "listRunChanges",
                "A review run's changeset: each change with its unified diff.",
                {200: json_body(ref("RunChangePage"), "The changes.")},
                tag="workflow",
                errors={404: ["not_found"]},
            ),
        },
        "/api/workflow/runs/{run_id}/apply": {
            "parameters": [param("RunId")],
            "post": operation(
                "applyRunChanges",
                "Apply all (no body) or some of a run's changes, in one transaction "
                "(`file.*` with the run id); 409 `conflict` with `details.paths` when one of "
                "those files changed since the run first touched it.",
                {200: json_body(ref("ApplyResult"), "Applied.")},
                tag="workflow",
                body=changes.APPLY_SCHEMA,
                errors={404: ["not_found"], 409: ["conflict"], 413: ["too_large"]},
            ),
        },
        "/api/workflow/runs/{run_id}/discard": {
            "parameters": [param("RunId")],
            "post": operation(
                "discardRunChanges",
                "Drop a run's changeset; the run ends `cancelled` (reason `discarded`).",
                {200: json_body(ref("Run"), "Discarded.")},
                tag="workflow",
                errors={404: ["not_found"], 409: ["conflict"]},
            ),
        },
        "/api/workflow/runs/{run_id}/revert": {
            "parameters": [param("RunId")],
            "post": operation(
                "revertRun",
                "Undo every file change a finished run made, in one transaction "
                "(`file.changed` / `file.deleted`); 409 `conflict` with `details.paths` when "
                "one of those files changed since.",
                {200: json_body(ref("RevertResult"), "Reverted.")},
                tag="workflow",
                errors={404: ["not_found"], 409: ["conflict"], 413: ["too_large"]},
            ),
        },
        "/api/workflow/tools": {
            "get": operation(
                "listTools",
                "The tool catalog.",
                {200: json_body(ref("ToolPage"), "Every tool.")},
                tag="workflow",
            ),
        },
        "/api/sse/tickets": {
            "post": operation(
                "createTicket",
                "A stream ticket for one project (EventSource cannot send headers).",
                {201: json_body(ref("Ticket"), "The ticket.")},
                tag="sse",
                body=sse.TICKET_SCHEMA,
                errors={404: ["not_found"]},
            ),
        },
        "/api/sse/projects/{project_id}": {
            "parameters": [pid],
            "get": operation(
                "streamProject",
                "The project's event stream (Server-Sent Events).",
                {200: _stream_response()},
                tag="sse",
                auth_="stream",
                params=[
                    query("run_id", {"type": "string"}, "Only this run's run.* and step.*."),
                    query("last_event_id", {"type": "string"}, "As `Last-Event-ID`."),
                    param("LastEventId"),
                ],
                errors={
                    400: ["validation_failed"],
                    404: ["not_found"],
                    429: ["rate_limited"],  # STRETTO_MAX_STREAMS_PER_USER
                    503: ["shutting_down"],
                },
            ),
        },
    }


def _stream_response() -> Schema:
    return {
        "description": (
            "`retry: 3000` first, then frames `id: <seq>`, `event: <type>`, `data: <json>`, "
            "and `: ping` comments when idle. The schema describes one frame: its `data` is "
            "the JSON of the event type's component (`StepSucceededEvent`...; `Event` is "
            "their union, by `type`)."
        ),
        "headers": header_refs(),
        "content": {"text/event-stream": {"schema": ref("SseFrame")}},
    }


def sse_frame_schema() -> Schema:
    """One SSE frame as schemathesis and OpenAPI 3.1 read a stream: ``{id, event, data}``,
    ``data`` a JSON string whose content is the event type's component."""
    frames = []
    for t in EventType:
        data = {
            "type": "string",
            "contentMediaType": JSON,
            "contentSchema": ref(event_component_name(t.value)),
        }
        frames.append(
            {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": "^[0-9]+$"},
                    "event": {"const": t.value},
                    "data": data,
                },
                "required": ["event", "data"],
            }
        )
    return {"oneOf": frames}

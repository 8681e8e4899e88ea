"""The paths of the OpenAPI document: every route with its parameters, headers, request
body (the very schemas the route validates with), responses and error codes.

Pure. When a route is added to a blueprint, add it here: ``tests/api/test_openapi.py``
fails until the app's routes and the document's paths are the same set.
"""

from __future__ import annotations

import copy

from server.api import auth, changes, files, projects, sse, transfer, workflow
from server.api.openapi_links import add_links
from server.api.openapi_parts import (
    JSON,
    OPENAPI_PATH,
    empty,
    header_refs,
    json_body,
    operation,
    param,
    query,
)
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


def paths() -> dict[str, Schema]:
    out = _operations()
    add_links(out)
    return out


def _operations() -> dict[str, Schema]:
    page = [param("Limit"), param("Cursor")]
    pid, fpath = param("ProjectId"), param("FilePath")
    external = {404: ["not_found"]}  # register/login/refresh under external auth
    return {
        "/api/health": {
            "get": operation(
                "health",
                "Liveness (no I/O).",
                {200: json_body(ref("Health"), "Alive.")},
                tag="health",
                auth_="none",
                store=False,
            )
        },
        "/api/ready": {
            "get": operation(
                "ready",
                "Readiness: database reachable, migrations applied, not draining.",
                {200: json_body(ref("Ready"), "Ready.")},
                tag="health",
                auth_="none",
            )
        },
        "/metrics": {
            "get": operation(
                "metrics",
                "Prometheus text exposition.",
                {
                    200: {
                        "description": "Metrics.",
                        "headers": header_refs(),
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                tag="health",
                auth_="none",
                store=False,
            )
        },
        "/": {
            "get": operation(
                "console",
                "The web console's page (HTML; 404 when `STRETTO_CONSOLE=0`).",
                {
                    200: {
                        "description": "The console.",
                        "headers": header_refs(),
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    304: {"description": "Not modified.", "headers": header_refs()},
                },
                tag="health",
                auth_="none",
                store=False,
                errors={404: ["not_found"]},
            )
        },
        "/console/{name}": {
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": operation(
                "consoleAsset",
                "A file of the web console (JavaScript module, CSS, image).",
                {
                    200: {
                        "description": "The file.",
                        "headers": header_refs(),
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    304: {"description": "Not modified.", "headers": header_refs()},
                },
                tag="health",
                auth_="none",
                store=False,
                errors={404: ["not_found"]},
            ),
        },
        "/client/stretto.js": {
            "get": operation(
                "clientScript",
                "The browser client, an ES module (ETag; If-None-Match answers 304).",
                {
                    200: {
                        "description": "stretto.js.",
                        "headers": header_refs(),
                        "content": {"text/javascript": {"schema": {"type": "string"}}},
                    },
                    304: {"description": "Not modified.", "headers": header_refs()},
                },
                tag="health",
                auth_="none",
                store=False,
            )
        },
        OPENAPI_PATH: {
            "get": operation(
                "openapi",
                "This document.",
                {200: json_body({"type": "object"}, "The OpenAPI 3.1 document.")},
                tag="health",
                auth_="none",
                store=False,
            )
        },
        "/api/auth/register": {
            "post": operation(
                "register",
                "Create an account and a session.",
                {201: json_body(ref("Session"), "Registered.")},
                tag="auth",
                auth_="none",
                body=auth.REGISTER_SCHEMA,
                errors={**external, 409: ["email_taken"]},
            )
        },
        "/api/auth/login": {
            "post": operation(
                "login",
                "Open a session.",
                {200: json_body(ref("Session"), "Logged in.")},
                tag="auth",
                auth_="none",
                body=auth.LOGIN_SCHEMA,
                errors={**external, 401: ["invalid_credentials"], 429: ["rate_limited"]},
            )
        },
        "/api/auth/refresh": {
            "post": operation(
                "refresh",
                "Rotate a refresh token (reuse revokes the family).",
                {200: json_body(ref("Session"), "A new pair.")},
                tag="auth",
                auth_="none",
                body=auth.REFRESH_SCHEMA,
                errors={**external, 401: ["unauthorized"]},
            )
        },
        "/api/auth/logout": {
            "post": operation(
                "logout",
                "Revoke the session (refresh-token family).",
                {204: empty("Logged out.")},
                tag="auth",
                body=auth.LOGOUT_SCHEMA,
            )
        },
        "/api/auth/me": {
            "get": operation(
                "me", "The caller.", {200: json_body(ref("Me"), "The user.")}, tag="auth"
            )
        },
        "/api/projects": {
            "get": operation(
                "listProjects",
                "The caller's projects.",
                {200: json_body(ref("ProjectPage"), "A page.")},
                tag="projects",
                params=page,
            ),
            "post": operation(
                "createProject",
                "Create a project.",
                {201: json_body(ref("Project"), "Created.")},
                tag="projects",
                body=projects.CREATE_SCHEMA,
                errors={429: ["rate_limited"]},  # STRETTO_MAX_PROJECTS_PER_USER
            ),
        },
        "/api/projects/{project_id}": {
            "parameters": [pid],
            "get": operation(
                "getProject",
                "A project.",
                {200: json_body(ref("Project"), "The project.")},
                tag="projects",
                errors={404: ["not_found"]},
            ),
            "patch": operation(
                "updateProject",
                "Rename or describe a project (`project.updated`).",
                {200: json_body(ref("Project"), "Updated.")},
                tag="projects",
                body=projects.UPDATE_SCHEMA,
                errors={404: ["not_found"]},
            ),
            "delete": operation(
                "deleteProject",
                "Cancel its runs, delete it, end its streams.",
                {204: empty("Deleted.")},
                tag="projects",
                errors={404: ["not_found"]},
            ),
        },
        "/api/projects/{project_id}/files": {
            "parameters": [pid],
            "get": operation(
                "listFiles",
                "Files under a prefix.",
                {200: json_body(ref("FilePage"), "A page.")},
                tag="files",
                params=[query("prefix", {"type": "string"}), *page],
                errors={404: ["not_found"], 400: ["invalid_path"]},
            ),
        },
        "/api/projects/{project_id}/files/{path}/restore": {
            "parameters": [pid, fpath],
            "post": operation(
                "restoreFile",
                "Write a kept version back as the newest version (`file.changed`).",
                {200: json_body(ref("File"), "Restored.", "ETag")},
                tag="files",
                body=files.RESTORE_SCHEMA,
                errors={
                    400: ["invalid_path"],
                    404: ["not_found"],
                    409: ["conflict"],
                    413: ["too_large"],
                },
            ),
        },
        "/api/projects/{project_id}/files/{path}": {
            "parameters": [pid, fpath],
            "get": operation(
                "readFile",
                "The raw bytes, `Content-Type` by extension. With `?versions`: the kept "
                "versions (a `FileVersionPage`, newest first); with `?version=n`: that "
                "version's bytes.",
                {
                    200: {
                        "description": "The content, or with `?versions` the versions.",
                        "headers": header_refs("ETag"),
                        "content": {
                            "*/*": {"schema": {"type": "string", "format": "binary"}},
                            "application/json": {"schema": ref("FileVersionPage")},
                        },
                    },
                    304: empty("Not modified.", "ETag"),
                },
                tag="files",
                params=[
                    param("IfNoneMatchGet"),
                    query("versions", {"type": "string"}),
                    query("version", {"type": "integer", "minimum": 1, "maximum": 10**15}),
                    *page,
                ],
                errors={400: ["invalid_path", "validation_failed"], 404: ["not_found"]},
            ),
            "put": {
                **operation(
                    "writeFile",
                    "Create or replace a file (raw body; `file.changed`).",
                    {
                        200: json_body(ref("File"), "Replaced.", "ETag"),
                        201: json_body(ref("File"), "Created.", "ETag"),
                    },
                    tag="files",
                    params=[param("IfMatch"), param("IfNoneMatchPut")],
                    errors={
                        400: ["invalid_path", "validation_failed"],
                        404: ["not_found"],
                        412: ["version_mismatch"],
                        413: ["too_large"],
                    },
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
            },
            "patch": operation(
                "moveFile",
                "Move or rename a file (`file.moved`).",
                {200: json_body(ref("File"), "Moved.", "ETag")},
                tag="files",
                params=[param("IfMatch")],
                body=files.MOVE_SCHEMA,
                errors={
                    400: ["invalid_path"],
                    404: ["not_found"],
                    409: ["conflict"],
                    412: ["version_mismatch"],
                    413: ["too_large"],
                },
            ),
            "delete": operation(
                "deleteFile",
                "Delete a file (`file.deleted`).",
                {204: empty("Deleted.")},
                tag="files",
                params=[param("IfMatch")],
                errors={
                    400: ["invalid_path", "validation_failed"],
                    404: ["not_found"],
                    412: ["version_mismatch"],
                },
            ),
        },
        "/api/projects/{project_id}/import": {
            "parameters": [pid],
            "post": {
                **operation(
                    "importProject",
                    "Write every file of a tar, tar.gz or zip archive, all or none "
                    "(`file.changed` each).",
                    {200: json_body(ref("ImportResult"), "Imported.")},
                    tag="files",
                    errors={
                        400: ["validation_failed"],
                        404: ["not_found"],
                        413: ["too_large"],
                        415: ["unsupported_media_type"],
                    },
                ),
                "requestBody": {
                    "required": True,
                    "description": "The archive's bytes. Also accepted as Content-Type: "
                    + ", ".join(sorted(transfer.ARCHIVE_TYPES - {"application/octet-stream"})),
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
            },
        },
        "/api/projects/{project_id}/export": {
            "parameters": [pid],
            "get": operation(
                "exportProject",
                "The project's files as a streamed tar.gz.",
                {
                    200: {
                        "description": "A tar.gz archive.",
                        "headers": header_refs(),
                        "content": {
                            "application/gzip": {"schema": {"type": "string", "format": "binary"}}
                        },
                    }
                },
                tag="files",
                errors={404: ["not_found"]},
            ),
        },
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

"""Response and event schemas of the contract (API.md), as JSON Schema 2020-12 components.

Pure data. ``server.api.openapi`` puts them in the OpenAPI document next to the request
schemas the routes validate with (``REGISTER_SCHEMA``, ``RUN_SCHEMA``...), the plan schema
and every tool's args/output schema. The test suite validates every response it receives
against that document (``tests/fixtures/contract.py``), so these schemas are enforced.
"""

from __future__ import annotations

from typing import Any

from server.events.model import EventType
from server.store.models import RunStatus, StepStatus
from server.workflow.plan import MAX_STEP_RETRIES, MAX_STEP_TIMEOUT_S, STEP_ID_RE

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def closed(properties: dict[str, Any], required: list[str] | None = None) -> Schema:
    """An object with exactly these properties (all required unless ``required`` is given)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def page_of(item: str) -> Schema:
    return closed({"items": {"type": "array", "items": ref(item)}, "next_cursor": _NULLABLE_STR})


_STR: Schema = {"type": "string"}
_NULLABLE_STR: Schema = {"type": ["string", "null"]}
_TIME: Schema = {"type": "string", "format": "date-time"}
_NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
_INT: Schema = {"type": "integer"}
_NULLABLE_NUM: Schema = {"type": ["number", "null"]}
_OBJ: Schema = {"type": "object"}
_NULLABLE_OBJ: Schema = {"type": ["object", "null"]}

ERROR = closed(
    {
        "error": closed(
            {
                "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                "message": _STR,
                "details": _OBJ,
            }
        )
    }
)

USER = closed({"id": _STR, "email": _STR, "name": _NULLABLE_STR, "created_at": _TIME})
SESSION = closed(
    {
        "user": ref("User"),
        "access_token": _STR,
        "refresh_token": _STR,
        "token_type": {"const": "Bearer"},
        "expires_in": _INT,
    }
)
PROJECT = closed(
    {
        "id": _STR,
        "name": _STR,
        "description": _NULLABLE_STR,
        "created_at": _TIME,
        "updated_at": _TIME,
    }
)
FILE = closed(
    {
        "path": _STR,
        "size": {"type": "integer", "minimum": 0},
        "version": {"type": "integer", "minimum": 1},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "content_type": _STR,
        "updated_at": _TIME,
    }
)
STEP_ERROR = {
    "type": "object",
    "properties": {"code": _STR, "message": _STR, "retryable": {"type": "boolean"}},
    "required": ["code", "message"],
}
STEP = closed(
    {
        "id": _STR,
        "tool": _STR,
        "args": _OBJ,
        "needs": {"type": "array", "items": _STR},
        "status": {"enum": [s.value for s in StepStatus]},
        "attempts": {"type": "integer", "minimum": 0},
        "output": {},
        "error": {"oneOf": [{"type": "null"}, STEP_ERROR]},
        "started_at": _NULLABLE_TIME,
        "finished_at": _NULLABLE_TIME,
        "duration_ms": _NULLABLE_NUM,
        "reused": {"type": "boolean", "description": "Succeeded in the run it was retried from."},
    }
)
RUN_METRICS = {
    "type": "object",
    "properties": {
        "wall_ms": _NULLABLE_NUM,
        "critical_path_ms": _NULLABLE_NUM,
        "steps_total": _INT,
        "steps_succeeded": _INT,
        "max_parallelism": _INT,
        "usage": {"type": "object", "description": "Model tokens spent by the run."},
    },
    "required": ["wall_ms", "critical_path_ms", "steps_total", "steps_succeeded"],
}
RUN = closed(
    {
        "id": _STR,
        "project_id": _STR,
        "status": {"enum": [s.value for s in RunStatus]},
        "prompt": _NULLABLE_STR,
        "intent": _NULLABLE_OBJ,
        "plan": {"oneOf": [{"type": "null"}, ref("Plan")]},
        "steps": {"type": "array", "items": ref("Step")},
        "error": {"oneOf": [{"type": "null"}, STEP_ERROR]},
        "created_at": _TIME,
        "started_at": _NULLABLE_TIME,
        "finished_at": _NULLABLE_TIME,
        "metrics": ref("RunMetrics"),
        "retry_of": {**_NULLABLE_STR, "description": "The run this one retries."},
        "approval": {
            "oneOf": [
                {"type": "null"},
                closed(
                    {
                        "mode": {"const": "plan"},
                        "expires_at": _NULLABLE_TIME,
                        "approved_at": _NULLABLE_TIME,
                    }
                ),
            ]
        },
    }
)
PLAN_STEP = closed(
    {
        "id": {"type": "string", "pattern": f"^{STEP_ID_RE.pattern}$"},
        "tool": {"type": "string", "description": "A tool of the catalog (components ToolArgs.*)"},
        "args": {"type": "object", "description": "Valid against the tool's args schema."},
        "needs": {"type": "array", "items": _STR},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_STEP_TIMEOUT_S},
        "retries": {"type": "integer", "minimum": 0, "maximum": MAX_STEP_RETRIES},
        "continue_on_error": {"type": "boolean"},
        "for_each": {
            "type": "string",
            "description": "Fan-out: `{{steps.<id>.output[.<field>]}}`, a list; the step runs "
            "once per item as `<id>[<n>]`, with `{{item}}` / `{{item.<field>}}` in its args.",
        },
    },
    ["id", "tool", "args"],
)
PLAN = closed({"steps": {"type": "array", "items": ref("PlanStep")}})
TOOL = closed(
    {
        "name": _STR,
        "description": _STR,
        "args_schema": _OBJ,
        "output_schema": _OBJ,
        "timeout_s": {"type": "number"},
        "retries": _INT,
        "transient_errors": {"type": "boolean"},
        "max_concurrency": {"type": ["integer", "null"]},
    }
)
TICKET = closed({"ticket": _STR, "expires_in": _INT})
HEALTH = closed({"status": {"const": "ok"}, "version": _STR})
READY = closed({"status": {"const": "ready"}, "database": {"const": "ok"}})
PLAN_RESULT = closed({"intent": _OBJ, "plan": ref("Plan")})

RESPONSE_SCHEMAS: dict[str, Schema] = {
    "Error": ERROR,
    "User": USER,
    "Session": SESSION,
    "Me": closed({"user": ref("User")}),
    "Project": PROJECT,
    "ProjectPage": page_of("Project"),
    "File": FILE,
    "FilePage": page_of("File"),
    "FileVersion": closed(
        {
            "version": {"type": "integer", "minimum": 1},
            "size": {"type": "integer", "minimum": 0},
            "sha256": _NULLABLE_STR,
            "content_type": _NULLABLE_STR,
            "deleted": {"type": "boolean"},
            "run_id": _NULLABLE_STR,
            "created_at": _TIME,
        }
    ),
    "FileVersionPage": page_of("FileVersion"),
    "RunChange": closed(
        {
            "path": _STR,
            "kind": {"enum": ["create", "modify", "delete", "move"]},
            "from": _NULLABLE_STR,
            "base_version": {"type": ["integer", "null"]},
            "size_before": {"type": ["integer", "null"]},
            "size_after": {"type": ["integer", "null"]},
            "diff": _NULLABLE_STR,
            "binary": {"type": "boolean"},
            "diff_truncated": {"type": "boolean"},
        }
    ),
    "RunChangePage": page_of("RunChange"),
    "ApplyResult": closed(
        {
            "run": ref("Run"),
            "applied": {"type": "array", "items": _STR},
            "remaining": {"type": "integer", "minimum": 0},
        }
    ),
    "RevertResult": closed({"run_id": _STR, "paths": {"type": "array", "items": _STR}}),
    "ImportResult": closed(
        {"imported": {"type": "integer", "minimum": 0}, "bytes": {"type": "integer", "minimum": 0}}
    ),
    "Step": STEP,
    "StepError": STEP_ERROR,
    "RunMetrics": RUN_METRICS,
    "Run": RUN,
    "RunPage": page_of("Run"),
    "Plan": PLAN,
    "PlanStep": PLAN_STEP,
    "PlanResult": PLAN_RESULT,
    "Tool": TOOL,
    "ToolPage": page_of("Tool"),
    "Ticket": TICKET,
    "Health": HEALTH,
    "Ready": READY,
}


# -- events: the ``data`` object of each SSE event type ------------------------------------
def _event(event_type: str, extra: dict[str, Any], required: list[str]) -> Schema:
    base: dict[str, Any] = {"type": {"const": event_type}, "project_id": _STR, "at": _TIME}
    if event_type.startswith(("run.", "step.")):
        base["run_id"] = _STR
    if event_type.startswith("step."):
        base["step_id"] = _STR
        base["attempt"] = {"type": "integer", "minimum": 0}
    return {
        "type": "object",
        "description": f"The data of `event: {event_type}`.",
        "properties": {**base, **extra},
        "required": [*base, *required],
    }


_METRICS_FIELD = {"metrics": _OBJ}
USAGE: Schema = {
    "type": "object",
    "description": "Model tokens: prompt_tokens, candidate_tokens, thought_tokens, "
    "total_tokens, model_calls, and the same by model under `models`.",
}
_USAGE_FIELD = {"usage": USAGE}
_EVENT_FIELDS: dict[EventType, tuple[dict[str, Any], list[str]]] = {
    EventType.RUN_CREATED: (
        {
            "status": _STR,
            "prompt": _NULLABLE_STR,
            "retry_of": _STR,
            "reused_steps": {"type": "array", "items": _STR},
            "forced": {"type": "boolean"},
        },
        [],
    ),
    EventType.RUN_AWAITING_APPROVAL: (
        {"plan": ref("Plan"), "intent": _NULLABLE_OBJ, "expires_at": _NULLABLE_TIME},
        ["plan"],
    ),
    EventType.RUN_APPROVED: ({"plan": ref("Plan"), "edited": {"type": "boolean"}}, ["plan"]),
    EventType.RUN_PLANNING: ({"prompt": _NULLABLE_STR}, []),
    EventType.RUN_PLANNED: ({"intent": _OBJ, "plan": ref("Plan"), **_USAGE_FIELD}, ["plan"]),
    EventType.RUN_STARTED: ({"steps_total": _INT}, []),
    EventType.STEP_STARTED: (
        {
            "tool": _STR,
            "parent": {**_STR, "description": "A fan-out item: its step's id."},
            "index": {"type": "integer", "minimum": 0},
            "items": {"type": "integer", "minimum": 0, "description": "A fan-out step."},
        },
        [],
    ),
    EventType.STEP_DELTA: ({"text": _STR}, ["text"]),
    EventType.STEP_RETRYING: (
        {"error": STEP_ERROR, "next_attempt": _INT, "delay_ms": {"type": "number"}},
        ["error"],
    ),
    EventType.STEP_SUCCEEDED: (
        {
            "duration_ms": _NULLABLE_NUM,
            "output": {},
            "reused": {"type": "boolean"},
            "reused_from": _STR,
            **_USAGE_FIELD,
        },
        [],
    ),
    EventType.STEP_FAILED: (
        {"error": STEP_ERROR, "duration_ms": _NULLABLE_NUM, **_USAGE_FIELD},
        ["error"],
    ),
    EventType.STEP_CANCELLED: (
        {"reason": {"enum": ["sibling_failed", "user", "timeout", "shutdown"]}},
        ["reason"],
    ),
    EventType.STEP_SKIPPED: (
        {"reason": {"enum": ["dependency_failed", "run_failed"]}, "failed_step": _STR},
        ["reason"],
    ),
    EventType.RUN_SUCCEEDED: ({**_METRICS_FIELD, "wall_ms": _NULLABLE_NUM}, []),
    EventType.RUN_AWAITING_REVIEW: ({**_METRICS_FIELD, "changes": _INT}, []),
    EventType.RUN_FAILED: ({"error": {"oneOf": [{"type": "null"}, STEP_ERROR]}}, []),
    EventType.RUN_CANCELLED: (
        {"reason": _STR, "error": {"oneOf": [{"type": "null"}, STEP_ERROR]}, **_METRICS_FIELD},
        [],
    ),
    EventType.FILE_CHANGED: (
        {
            "path": _STR,
            "size": _INT,
            "version": _INT,
            "sha256": _STR,
            "content_type": _STR,
            "created": {"type": "boolean"},
            "run_id": _STR,
        },
        ["path", "version"],
    ),
    EventType.FILE_MOVED: (
        {"from": _STR, "to": _STR, "version": _INT, "run_id": _STR},
        ["from", "to"],
    ),
    EventType.FILE_DELETED: ({"path": _STR, "run_id": _STR}, ["path"]),
    EventType.PROJECT_UPDATED: ({"project": ref("Project")}, ["project"]),
    EventType.PROJECT_DELETED: ({}, []),
    EventType.RESET: ({"reason": _STR, "last_event_id": _INT}, ["reason"]),
}


def event_component_name(event_type: str) -> str:
    """``step.succeeded`` -> ``StepSucceededEvent``."""
    return "".join(part.capitalize() for part in event_type.split(".")) + "Event"


def event_schemas() -> dict[str, Schema]:
    """One named component per event type (every ``EventType`` has one)."""
    return {event_component_name(t.value): _event(t.value, *_EVENT_FIELDS[t]) for t in EventType}

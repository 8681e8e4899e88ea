"""Building blocks of the OpenAPI document: shared parameters and headers, response
objects, and ``operation`` (one operation plus the errors every such route can give).

Pure data helpers for ``server.api.openapi_paths``.
"""

from __future__ import annotations

from server.api import workflow
from server.api.deps import MAX_LIMIT
from server.api.schemas import Schema, ref

OPENAPI_PATH = "/api/openapi.json"
JSON = "application/json"

# -- parameters and headers ------------------------------------------------------------------
PARAMETERS: dict[str, Schema] = {
    "ProjectId": {
        "name": "project_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    },
    "RunId": {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}},
    "FilePath": {
        "name": "path",
        "in": "path",
        "required": True,
        "description": "Relative POSIX path; its `/` separators are part of the URL path.",
        "schema": {"type": "string"},
    },
    "Limit": {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50},
    },
    "Cursor": {"name": "cursor", "in": "query", "schema": {"type": "string"}},
    "XRequestId": {
        "name": "X-Request-ID",
        "in": "header",
        "description": "Echoed in the response when it is 1..128 of `[A-Za-z0-9._:-]`.",
        "schema": {"type": "string"},
    },
    "IfMatch": {
        "name": "If-Match",
        "in": "header",
        "description": 'The file\'s current `"<version>"`; 412 `version_mismatch` when stale.',
        "schema": {"type": "string", "pattern": '^(W/)?"?[0-9]+"?$'},
    },
    "IfNoneMatchGet": {
        "name": "If-None-Match",
        "in": "header",
        "description": "ETags (or `*`): 304 when one matches the current version.",
        "schema": {"type": "string"},
    },
    "IfNoneMatchPut": {
        "name": "If-None-Match",
        "in": "header",
        "description": "`*`: create only; 412 `version_mismatch` when the file exists.",
        "schema": {"type": "string", "enum": ["*"]},
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "A retried POST with the same key returns the same run.",
        "schema": {"type": "string", "minLength": 1, "maxLength": workflow.MAX_IDEMPOTENCY_KEY},
    },
    "LastEventId": {
        "name": "Last-Event-ID",
        "in": "header",
        "description": "Resume after this event id (sent by EventSource on reconnect).",
        "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
    },
}

RESPONSE_HEADERS: dict[str, Schema] = {
    "XRequestId": {"description": "The request's id.", "schema": {"type": "string"}},
    "ETag": {"description": '`"<version>"` of the file.', "schema": {"type": "string"}},
    "RetryAfter": {"description": "Seconds to wait.", "schema": {"type": "string"}},
}


def param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def query(name: str, schema: Schema, description: str = "") -> Schema:
    out: Schema = {"name": name, "in": "query", "schema": schema}
    if description:
        out["description"] = description
    return out


def header_refs(*names: str) -> Schema:
    return {n: {"$ref": f"#/components/headers/{n}"} for n in ("XRequestId", *names)}


def json_body(schema: Schema, description: str, *names: str) -> Schema:
    return {
        "description": description,
        "headers": header_refs(*names),
        "content": {JSON: {"schema": schema}},
    }


def empty(description: str, *names: str) -> Schema:
    return {"description": description, "headers": header_refs(*names)}


def error_response(codes: list[str]) -> Schema:
    """An error response whose ``error.code`` is one of ``codes``."""
    narrowed = {
        "allOf": [
            ref("Error"),
            {"properties": {"error": {"properties": {"code": {"enum": sorted(set(codes))}}}}},
        ]
    }
    retry = any(c in {"rate_limited", "shutting_down", "model_unavailable"} for c in codes)
    listed = ", ".join(f"`{c}`" for c in sorted(set(codes)))
    return json_body(narrowed, f"Error: {listed}", *(("RetryAfter",) if retry else ()))


# -- operations ----------------------------------------------------------------------------
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def operation(
    op_id: str,
    summary: str,
    ok: dict[int, Schema],
    *,
    tag: str,
    auth_: str = "bearer",
    body: Schema | None = None,
    params: list[Schema] | None = None,
    errors: dict[int, list[str]] | None = None,
    store: bool = True,
) -> Schema:
    """One operation; the errors every such route can give are added here.

    ``auth_``: ``bearer``, ``stream`` (bearer or ``?ticket=``) or ``none``.
    """
    found: dict[int, list[str]] = {400: ["bad_request"]}
    for status, codes in (errors or {}).items():
        found.setdefault(status, []).extend(codes)
    if param("Limit") in (params or []):
        found[400].append("validation_failed")  # limit and cursor
    if auth_ != "none":
        found.setdefault(401, []).append("unauthorized")
    if body is not None:
        found[400] += ["invalid_json", "validation_failed"]
        found.setdefault(413, []).append("too_large")
        found.setdefault(415, []).append("unsupported_media_type")
    if store:
        found.setdefault(503, []).append("not_ready")
    responses: Schema = {str(s): r for s, r in ok.items()}
    for status in sorted(found):
        responses[str(status)] = error_response(found[status])
    op: Schema = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "parameters": [*(params or []), param("XRequestId")],
        "responses": responses,
    }
    if auth_ == "bearer":
        op["security"] = BEARER
    elif auth_ == "stream":
        op["security"] = [{"bearerAuth": []}, {"streamTicket": []}]
    else:
        op["security"] = []
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    return op

"""The OpenAPI 3.1 document of the HTTP/SSE contract, generated; ``GET /api/openapi.json``.

Built from the schemas the routes validate requests with (``server.api.auth``,
``projects``, ``files``, ``workflow``, ``sse``), the response and event schemas of
``server.api.schemas``, the plan schema, and every registered tool's args and output
schema. Nothing is written twice: change a route's schema and the document follows.
``build_document`` is pure; ``stretto openapi`` prints it (``server.cli.openapi``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response

from server import __version__
from server.api.deps import json_response, services
from server.api.openapi_parts import OPENAPI_PATH, PARAMETERS, RESPONSE_HEADERS
from server.api.openapi_paths import paths
from server.api.openapi_paths_runs import sse_frame_schema
from server.api.schemas import RESPONSE_SCHEMAS, Schema, event_component_name, event_schemas, ref
from server.events.model import EventType

if TYPE_CHECKING:
    from server.workflow.tools.registry import ToolRegistry


blueprint = Blueprint("openapi", __name__)


def _tool_schemas(tools: ToolRegistry) -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for name in tools.names():
        tool = tools.get(name)
        assert tool is not None
        out[f"ToolArgs.{name}"] = tool.args_schema
        out[f"ToolOutput.{name}"] = tool.output_schema
    return out


def _plan_request(tools: ToolRegistry) -> Schema:
    """A plan as submitted: like ``Plan``, each step's ``args`` valid for its ``tool``."""
    generic = RESPONSE_SCHEMAS["PlanStep"]
    variants = []
    for name in tools.names():
        properties = {
            **generic["properties"],
            "tool": {"const": name},
            "args": ref(f"ToolArgs.{name}"),
        }
        variants.append({**generic, "properties": properties})
    return {
        "type": "object",
        "description": "`needs` name other steps; the graph must be acyclic.",
        "properties": {"steps": {"type": "array", "items": {"anyOf": variants}}},
        "required": ["steps"],
        "additionalProperties": False,
    }


def build_document(tools: ToolRegistry) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (a fresh dict each call)."""
    schemas: dict[str, Schema] = {
        **copy.deepcopy(RESPONSE_SCHEMAS),
        **event_schemas(),
        **copy.deepcopy(_tool_schemas(tools)),
    }
    schemas["PlanRequest"] = _plan_request(tools)
    schemas["SseFrame"] = sse_frame_schema()
    schemas["Event"] = {
        "description": "The data of any event; dispatch on `type`.",
        "oneOf": [ref(event_component_name(t.value)) for t in EventType],
    }
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "stretto",
            "version": __version__,
            "description": "Workflow-and-streaming server: see server/api/README.md.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in ("health", "auth", "projects", "files", "workflow", "sse")],
        "paths": paths(),
        "components": {
            "schemas": schemas,
            "parameters": copy.deepcopy(PARAMETERS),
            "headers": copy.deepcopy(RESPONSE_HEADERS),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "streamTicket": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "ticket",
                    "description": "From POST /api/sse/tickets; only for the SSE stream.",
                },
            },
        },
    }


@blueprint.get(OPENAPI_PATH)
async def openapi_json() -> Response:
    return json_response(build_document(services().tools))

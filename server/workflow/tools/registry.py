"""The tool registry: what a step can call, and the contract between tools and the executor.

A tool is a plain async function ``run(ctx, args) -> dict`` plus its metadata (JSON Schemas of
args and output, default timeout and retries, an optional per-tool concurrency limit). Tools
raise ``ToolError`` (``server.errors``) for failures they understand; ``retryable=True``
marks a transient error (AI 429/503, provider timeouts) that the executor retries with
backoff. Any other exception is a permanent ``tool_crashed`` failure. Tools must let
``trio.Cancelled`` propagate.

This module is I/O free: it imports neither trio nor a driver, so ``plan.py`` can use it.
The built-in set of tools is assembled in ``server.workflow.tools.defaults``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from server.timeutil import rfc3339, utc_now

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

    from server.config import Settings
    from server.events.publisher import Publisher
    from server.store.models import FileData, FileLimits, FileMeta, Page


class FileAccess(Protocol):
    """What tools may do with a project's files: the surface of ``server.vfs.service.FileService``.

    Declared here as a Protocol so tools and tests depend on the behaviour, not the class.
    """

    limits: FileLimits

    async def read(self, project_id: str, path: str) -> FileData: ...

    async def write(
        self,
        project_id: str,
        path: str,
        content: bytes,
        *,
        if_match: int | None = None,
        if_none_match_any: bool = False,
        run_id: str | None = None,
    ) -> tuple[FileMeta, bool]: ...

    async def move(
        self,
        project_id: str,
        src: str,
        dst: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
    ) -> FileMeta: ...

    async def delete(
        self, project_id: str, path: str, *, if_match: int | None = None, run_id: str | None = None
    ) -> None: ...

    async def list(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]: ...


@dataclass(frozen=True)
class ToolContext:
    """Everything a tool call may use. One per attempt of a step."""

    project_id: str
    run_id: str
    step_id: str
    attempt: int
    files: FileAccess
    publisher: Publisher
    provider: Any  # server.ai.provider.ModelProvider | None (typed loosely: optional subsystem)
    settings: Settings

    def emit_delta(self, text: str) -> None:
        """Publish a transient ``step.delta`` (live only, never retained). Never blocks."""
        self.publisher.publish_transient(
            self.project_id,
            {
                "type": "step.delta",
                "project_id": self.project_id,
                "at": rfc3339(utc_now()),
                "run_id": self.run_id,
                "step_id": self.step_id,
                "attempt": self.attempt,
                "text": text,
            },
        )


ToolFn = Callable[[ToolContext, Mapping[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Tool:
    """A callable step kind. ``timeout_s``/``retries`` are defaults a plan step may override.

    ``max_concurrency`` bounds calls of this tool in flight across the process (None: no
    per-tool bound). ``transient_errors`` tells the catalog whether the tool may raise
    retryable errors. ``check_args`` adds plan-time checks JSON Schema cannot express.
    """

    name: str
    description: str
    args_schema: dict[str, Any]
    output_schema: dict[str, Any]
    timeout_s: float
    retries: int
    run: ToolFn = field(compare=False, repr=False)
    max_concurrency: int | None = None
    transient_errors: bool = False
    check_args: Callable[[Mapping[str, Any]], dict[str, str]] | None = field(
        default=None, compare=False, repr=False
    )
    """Plan-time checks beyond the schema (arg -> problem); args holding templates are
    checked by the tool when it runs."""

    def describe(self) -> dict[str, Any]:
        """The catalog entry of ``GET /api/workflow/tools``."""
        return {
            "name": self.name,
            "description": self.description,
            "args_schema": self.args_schema,
            "output_schema": self.output_schema,
            "timeout_s": self.timeout_s,
            "retries": self.retries,
            "transient_errors": self.transient_errors,
            "max_concurrency": self.max_concurrency,
        }


_validators: dict[int, tuple[Tool, Draft202012Validator]] = {}


def args_validator(tool: Tool) -> Draft202012Validator:
    """The (cached) JSON Schema validator of a tool's args."""
    cached = _validators.get(id(tool))
    if cached is None or cached[0] is not tool:
        from jsonschema import Draft202012Validator  # on first use: idle never loads it

        cached = _validators[id(tool)] = (tool, Draft202012Validator(tool.args_schema))
    return cached[1]


class ToolRegistry:
    """Tools by name. Registration happens at start-up; lookups are read-only afterwards."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        """Add a tool; raises ``ValueError`` if the name is taken."""
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def catalog(self) -> list[dict[str, Any]]:
        """Every tool's description, sorted by name."""
        return [self._tools[name].describe() for name in self.names()]

"""The AI tools: ``ai.generate`` and ``ai.edit``, over the context's ``ModelProvider``.

Both stream: every chunk is published as a transient ``step.delta`` the moment it arrives
(``ToolContext.emit_delta``) and the stream is closed with ``aclosing`` in this task, so a
cancelled step closes the model's HTTP request at once. Model failures become ``ToolError``
with the provider's ``retryable``/``retry_after`` (the executor retries 429/503/timeouts).

``ai.edit`` reads a file, asks for its new content and writes it back with
``if_match=<version read>``: a change made meanwhile fails the step (``version_mismatch``)
instead of being overwritten.
"""

from __future__ import annotations

import re
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from server.ai.budget import load_context
from server.ai.prompts import EDIT_SYSTEM, edit_prompt, generate_prompt
from server.errors import AppError, NotFound, ToolError, VersionMismatch
from server.workflow.tools.registry import Tool

if TYPE_CHECKING:
    from collections.abc import Mapping

    from server.ai.provider import Hints, ModelProvider
    from server.workflow.tools.registry import ToolContext

AI_TOOL_TIMEOUT_S = 180.0
AI_TOOL_RETRIES = 2
MAX_CONTEXT_PATHS = 50
_FENCE_RE = re.compile(r"\A\s*```[^\n]*\n(?P<body>.*?)\n?```\s*\Z", re.S)


def _provider(ctx: ToolContext) -> ModelProvider:
    if ctx.provider is None:
        raise ToolError("ai_unavailable", "No model provider is configured on this server.")
    provider: ModelProvider = ctx.provider
    return provider


def _tool_error(exc: AppError) -> ToolError:
    return ToolError(exc.code, exc.message)


async def stream_to_deltas(
    ctx: ToolContext, *, system: str | None, prompt: str, hints: Hints, max_chars: int
) -> str:
    """Stream a generation, publishing each chunk as a ``step.delta``; the whole text."""
    provider = _provider(ctx)
    parts: list[str] = []
    size = 0
    async with aclosing(provider.stream_text(system=system, prompt=prompt, hints=hints)) as chunks:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_chars:
                raise ToolError(
                    "output_too_large", f"The model's answer exceeds {max_chars} characters."
                )
            parts.append(chunk)
            ctx.emit_delta(chunk)
    return "".join(parts)


async def _generate(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
    settings = ctx.settings
    prompt: str = args["prompt"]
    if len(prompt) > settings.ai_max_prompt_chars:
        raise ToolError(
            "prompt_too_large",
            f"The prompt is longer than {settings.ai_max_prompt_chars} characters.",
        )
    paths: list[str] = list(args.get("context_paths", []))
    try:
        context = await load_context(
            ctx.files, ctx.project_id, paths, settings.ai_max_context_bytes
        )
    except AppError as exc:
        raise _tool_error(exc) from exc
    system = args.get("system")
    text = await stream_to_deltas(
        ctx,
        system=system,
        prompt=generate_prompt(prompt, context.texts, context.omitted),
        hints={"task": "generate", "prompt": prompt, "system": system, "context": context.texts},
        max_chars=settings.max_file_bytes,
    )
    return {"text": text, "context_omitted": context.omitted}


def strip_fences(text: str) -> str:
    """The body of a reply wrapped in one Markdown code fence; other text unchanged."""
    match = _FENCE_RE.match(text)
    return match.group("body") + "\n" if match else text


async def _edit(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
    settings = ctx.settings
    path: str = args["path"]
    instruction: str = args["instruction"]
    try:
        data = await ctx.files.read(ctx.project_id, path)
    except NotFound:
        raise ToolError(
            "not_found", f"{path} does not exist: ai.edit changes existing files."
        ) from None
    except AppError as exc:
        raise _tool_error(exc) from exc
    if len(data.content) > settings.ai_max_context_bytes:
        raise ToolError(
            "file_too_large",
            f"{path} is larger than the AI context budget ({settings.ai_max_context_bytes} bytes).",
        )
    try:
        content = data.content.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError("binary_file", f"{path} is not UTF-8 text.") from None
    reply = await stream_to_deltas(
        ctx,
        system=EDIT_SYSTEM,
        prompt=edit_prompt(path, content, instruction),
        hints={"task": "edit", "path": path, "content": content, "instruction": instruction},
        max_chars=settings.max_file_bytes,
    )
    new = strip_fences(reply)
    if content.endswith("\n") and new and not new.endswith("\n"):
        new += "\n"
    version = data.meta.version
    if new == content:
        return {"path": path, "version": version, "size": data.meta.size, "changed": False}
    try:
        meta, _ = await ctx.files.write(
            ctx.project_id, path, new.encode(), if_match=version, run_id=ctx.run_id
        )
    except (VersionMismatch, NotFound):
        raise ToolError(
            "version_mismatch",
            f"{path} changed while it was being edited (version {version} was read); "
            "the edit was not written.",
        ) from None
    except AppError as exc:
        raise _tool_error(exc) from exc
    return {"path": path, "version": meta.version, "size": meta.size, "changed": True}


def ai_tools() -> list[Tool]:
    """``ai.generate`` and ``ai.edit`` (API.md, Built-in tools)."""
    return [
        Tool(
            name="ai.generate",
            description=(
                "Ask the model for text. context_paths loads project files as context "
                "(bounded). Streams step.delta events; output {text}."
            ),
            args_schema={
                "type": "object",
                "properties": {
                    "prompt": {"type": "string", "minLength": 1},
                    "system": {"type": "string"},
                    "context_paths": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1, "maxLength": 1024},
                        "maxItems": MAX_CONTEXT_PATHS,
                    },
                },
                "required": ["prompt"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "context_omitted": {"type": "array", "items": {"type": "string"}},
                },
            },
            timeout_s=AI_TOOL_TIMEOUT_S,
            retries=AI_TOOL_RETRIES,
            run=_generate,
            transient_errors=True,
        ),
        Tool(
            name="ai.edit",
            description=(
                "Rewrite an existing text file following an instruction. Writes only if the "
                "file did not change meanwhile (If-Match). Streams step.delta events."
            ),
            args_schema={
                "type": "object",
                "properties": {
                    "path": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "instruction": {"type": "string", "minLength": 1},
                },
                "required": ["path", "instruction"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "version": {"type": "integer"},
                    "size": {"type": "integer"},
                    "changed": {"type": "boolean"},
                },
            },
            timeout_s=AI_TOOL_TIMEOUT_S,
            retries=AI_TOOL_RETRIES,
            run=_edit,
            transient_errors=True,
        ),
    ]

"""Built-in tools over the project's virtual file system, through ``FileService``.

``FileService`` validates paths, enforces quotas and publishes ``file.*`` events; these tools
only adapt arguments and outputs. ``AppError``s it raises (``not_found``, ``invalid_path``...)
become permanent step failures in the executor. ``vfs.search`` is bounded: the pattern
length, files, bytes, line length and matches scanned are capped. Patterns are compiled by
RE2 (``google-re2``), whose matching time is linear in the input: a pattern such as
``(a+)+$`` cannot backtrack. Python ``re`` syntax RE2 lacks (backreferences, lookaround) is
refused (``pattern_problem``: at plan validation when the pattern is literal, else the step
fails with ``invalid_pattern``). Decoding and matching run in a worker thread under a
limiter, abandoned when the step is cancelled or times out.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import trio

from server.errors import NotFound, ToolError
from server.vfs.service import file_json
from server.workflow.tools.registry import Tool

if TYPE_CHECKING:
    from collections.abc import Mapping

    from server.store.models import FileMeta
    from server.workflow.tools.registry import ToolContext

SEARCH_MAX_PATTERN = 256
SEARCH_MAX_FILES = 500
SEARCH_MAX_BYTES = 8 * 1024 * 1024
SEARCH_MAX_MATCHES = 200
SEARCH_MAX_LINE = 4096
LIST_MAX_FILES = 1000
_PAGE = 200
SEARCH_MAX_REGEX_MEMORY = 8 * 1024 * 1024
_search_limiter = trio.CapacityLimiter(2)

_PATH = {"type": "string", "minLength": 1, "maxLength": 1024}


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


_META_PROPS: dict[str, Any] = {
    "path": {"type": "string"},
    "size": {"type": "integer"},
    "version": {"type": "integer"},
    "sha256": {"type": "string"},
    "content_type": {"type": "string"},
    "updated_at": {"type": "string"},
}
_META: dict[str, Any] = {"type": "object", "properties": _META_PROPS}


async def _read(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
    data = await ctx.files.read(ctx.project_id, args["path"])
    try:
        text = data.content.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError("binary_file", f"{args['path']} is not UTF-8 text") from None
    return {**file_json(data.meta), "content": text}


async def _write(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
    meta, created = await ctx.files.write(
        ctx.project_id, args["path"], args["content"].encode(), run_id=ctx.run_id
    )
    return {**file_json(meta), "created": created}


async def _list_metas(ctx: ToolContext, prefix: str, cap: int) -> tuple[list[FileMeta], bool]:
    metas: list[FileMeta] = []
    cursor: str | None = None
    while True:
        page = await ctx.files.list(ctx.project_id, prefix, _PAGE, cursor)
        metas.extend(page.items)
        cursor = page.next_cursor
        if len(metas) >= cap:
            return metas[:cap], cursor is not None or len(metas) > cap
        if cursor is None:
            return metas, False


async def _list(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
    metas, truncated = await _list_metas(ctx, args.get("prefix", ""), LIST_MAX_FILES)
    return {"files": [file_json(m) for m in metas], "truncated": truncated}


async def _delete(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
    await ctx.files.delete(ctx.project_id, args["path"], run_id=ctx.run_id)
    return {"path": args["path"], "deleted": True}


async def _move(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
    meta = await ctx.files.move(ctx.project_id, args["from"], args["to"], run_id=ctx.run_id)
    return {"from": args["from"], **file_json(meta)}


@functools.cache
def _re2() -> tuple[Any, Any]:
    """The ``re2`` module and the options every pattern is compiled with, on first use: an
    idle server never loads RE2 (~2.4 MB)."""
    import re2

    return re2, _re2_options(re2)


def _re2_options(re2: Any) -> Any:
    options = re2.Options()
    options.log_errors = False  # a bad user pattern is not a server error
    options.never_capture = True
    options.max_mem = SEARCH_MAX_REGEX_MEMORY
    return options


def compile_pattern(pattern: str) -> Any:
    """The RE2 program of ``pattern``; raises ``ToolError("invalid_pattern")``."""
    problem = pattern_problem(pattern)
    if problem is not None:
        raise ToolError("invalid_pattern", f"not a valid regular expression: {problem}")
    re2, options = _re2()
    return re2.compile(pattern, options=options)


def pattern_problem(pattern: str) -> str | None:
    """Why RE2 refuses ``pattern`` (e.g. a backreference or lookaround), or None. Pure."""
    if len(pattern) > SEARCH_MAX_PATTERN:
        return f"longer than {SEARCH_MAX_PATTERN} characters"
    re2, options = _re2()
    try:
        re2.compile(pattern, options=options)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else "invalid pattern"
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return f"{text} (RE2 syntax: no backreferences or lookaround)"
    return None


def _check_search_args(args: Mapping[str, Any]) -> dict[str, str]:
    """Plan-time: a literal pattern must compile under RE2 (templated ones fail at run time)."""
    pattern = args.get("pattern")
    if not isinstance(pattern, str) or "{{" in pattern:
        return {}
    problem = pattern_problem(pattern)
    return {} if problem is None else {"pattern": problem}


def _search_text(regex: Any, content: bytes, limit: int) -> list[tuple[int, str]]:
    """Matching lines of ``content`` (worker thread: decoding and matching are CPU work)."""
    text = content.decode("utf-8", errors="replace")
    hits: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if regex.search(line[:SEARCH_MAX_LINE]):
            hits.append((number, line[:200]))
            if len(hits) >= limit:
                break
    return hits


async def _search(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
    regex = compile_pattern(args["pattern"])
    metas, truncated = await _list_metas(ctx, args.get("prefix", ""), SEARCH_MAX_FILES)
    matches: list[dict[str, Any]] = []
    scanned_files = scanned_bytes = 0
    for meta in metas:
        if len(matches) >= SEARCH_MAX_MATCHES or scanned_bytes + meta.size > SEARCH_MAX_BYTES:
            truncated = True
            break
        try:
            data = await ctx.files.read(ctx.project_id, meta.path)
        except NotFound:  # deleted meanwhile: skip it
            continue
        scanned_files += 1
        scanned_bytes += len(data.content)
        hits = await trio.to_thread.run_sync(
            _search_text,
            regex,
            data.content,
            SEARCH_MAX_MATCHES - len(matches),
            limiter=_search_limiter,
            abandon_on_cancel=True,
        )
        matches.extend({"path": meta.path, "line": n, "text": line} for n, line in hits)
    return {
        "matches": matches,
        "files": list(dict.fromkeys(m["path"] for m in matches)),  # for_each over files
        "files_scanned": scanned_files,
        "bytes_scanned": scanned_bytes,
        "truncated": truncated,
    }


def vfs_tools() -> list[Tool]:
    """The built-in tools of API.md: vfs.read, write, list, delete, move, search."""
    meta_out = _META
    return [
        Tool(
            name="vfs.read",
            description="Read a UTF-8 text file of the project.",
            args_schema=_obj({"path": _PATH}, ["path"]),
            output_schema={
                **meta_out,
                "properties": {**_META_PROPS, "content": {"type": "string"}},
            },
            timeout_s=30.0,
            retries=0,
            run=_read,
        ),
        Tool(
            name="vfs.write",
            description="Create or replace a text file of the project.",
            args_schema=_obj({"path": _PATH, "content": {"type": "string"}}, ["path", "content"]),
            output_schema={
                **meta_out,
                "properties": {**_META_PROPS, "created": {"type": "boolean"}},
            },
            timeout_s=30.0,
            retries=0,
            run=_write,
        ),
        Tool(
            name="vfs.list",
            description=f"List the project's files under a prefix (at most {LIST_MAX_FILES}).",
            args_schema=_obj({"prefix": {"type": "string", "maxLength": 1024}}, []),
            output_schema={
                "type": "object",
                "properties": {
                    "files": {"type": "array", "items": meta_out},
                    "truncated": {"type": "boolean"},
                },
            },
            timeout_s=30.0,
            retries=0,
            run=_list,
        ),
        Tool(
            name="vfs.delete",
            description="Delete a file of the project.",
            args_schema=_obj({"path": _PATH}, ["path"]),
            output_schema={
                "type": "object",
                "properties": {"path": {"type": "string"}, "deleted": {"type": "boolean"}},
            },
            timeout_s=30.0,
            retries=0,
            run=_delete,
        ),
        Tool(
            name="vfs.move",
            description="Move or rename a file of the project (fails if the target exists).",
            args_schema=_obj({"from": _PATH, "to": _PATH}, ["from", "to"]),
            output_schema={
                **meta_out,
                "properties": {**_META_PROPS, "from": {"type": "string"}},
            },
            timeout_s=30.0,
            retries=0,
            run=_move,
        ),
        Tool(
            name="vfs.search",
            description=(
                "Search file contents with an RE2 regular expression (no backreferences or "
                "lookaround), line by line. Bounded: "
                f"{SEARCH_MAX_FILES} files, {SEARCH_MAX_BYTES} bytes, {SEARCH_MAX_MATCHES} "
                "matches; `truncated` tells when a bound was hit. `files` lists the matching "
                "paths once each (fan out over it to change every matching file)."
            ),
            args_schema=_obj(
                {
                    "pattern": {"type": "string", "minLength": 1, "maxLength": SEARCH_MAX_PATTERN},
                    "prefix": {"type": "string", "maxLength": 1024},
                },
                ["pattern"],
            ),
            output_schema={
                "type": "object",
                "properties": {
                    "matches": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "path": {"type": "string"},
                                "line": {"type": "integer"},
                                "text": {"type": "string"},
                            },
                        },
                    },
                    "files": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "the paths with a match, each once, in order",
                    },
                    "files_scanned": {"type": "integer"},
                    "bytes_scanned": {"type": "integer"},
                    "truncated": {"type": "boolean"},
                },
            },
            timeout_s=30.0,
            retries=0,
            run=_search,
            check_args=_check_search_args,
        ),
    ]

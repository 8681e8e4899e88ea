"""Exact edits: ``text.replace`` (literal text) and ``code.rename`` (an identifier in code).

Both work on one file (``path``) or every file under ``prefix`` (the whole project when
neither is given), compute every new content first, then write the changed files back
conditionally (``text_files.write_back``). Both report per-file counts. Files that are not
UTF-8 are skipped (``text.replace`` fails on a named binary ``path``); ``code.rename`` renames
only in the languages ``code_scan`` knows and lists the other files as skipped.

Raises ``ToolError``: ``not_found``, ``binary_file``, ``too_many_files``, ``too_large``,
``version_mismatch``, ``invalid_identifier``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.errors import ToolError
from server.workflow.tools.code_scan import family_of, rename_identifier
from server.workflow.tools.registry import Tool
from server.workflow.tools.text_files import (
    PATH_SCHEMA,
    PREFIX_SCHEMA,
    TextFile,
    exactly_one_scope,
    run_cpu,
    targets,
    write_back,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from server.workflow.tools.registry import ToolContext

IDENTIFIER_PATTERN = r"^[A-Za-z_$][A-Za-z0-9_$]*$"
_TEXT = {"type": "string", "minLength": 1, "maxLength": 65536}
_COUNTS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "replacements": {"type": "integer"},
            "version": {"type": "integer"},
        },
    },
}


def _replace_all(files: list[TextFile], old: str, new: str) -> list[tuple[TextFile, str, int]]:
    out = []
    for file in files:
        if file.text is not None and old in file.text:
            out.append((file, file.text.replace(old, new), file.text.count(old)))
    return out


async def _text_replace(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
    files = await targets(ctx, args)
    if "path" in args and files[0].text is None:
        raise ToolError("binary_file", f"{args['path']} is not UTF-8 text.")
    changes = await run_cpu(_replace_all, files, args["old"], args["new"])
    results = []
    for file, text, count in changes:
        version = await write_back(ctx, file, text)
        results.append({"path": file.path, "replacements": count, "version": version})
    return {
        "files": results,
        "replacements": sum(r["replacements"] for r in results),
        "files_scanned": len(files),
    }


def _rename_all(
    files: list[TextFile], old: str, new: str
) -> tuple[list[tuple[TextFile, str, int]], list[str]]:
    changes, skipped = [], []
    for file in files:
        family = family_of(file.path)
        if file.text is None or family is None:
            skipped.append(file.path)
            continue
        text, count = rename_identifier(file.text, family, old, new)
        if count:
            changes.append((file, text, count))
    return changes, skipped


async def _code_rename(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
    files = await targets(ctx, args)
    changes, skipped = await run_cpu(_rename_all, files, args["old"], args["new"])
    results = []
    for file, text, count in changes:
        version = await write_back(ctx, file, text)
        results.append({"path": file.path, "replacements": count, "version": version})
    return {
        "files": results,
        "replacements": sum(r["replacements"] for r in results),
        "files_scanned": len(files) - len(skipped),
        "skipped": skipped,
    }


def _check_rename(args: Mapping[str, Any]) -> dict[str, str]:
    problems = exactly_one_scope(args)
    if args.get("old") == args.get("new"):
        problems["new"] = "must differ from old"
    return problems


def _scope_props() -> dict[str, Any]:
    return {"path": PATH_SCHEMA, "prefix": PREFIX_SCHEMA}


def text_tools() -> list[Tool]:
    """``text.replace`` and ``code.rename``."""
    return [
        Tool(
            name="text.replace",
            description=(
                "Replace every occurrence of the literal text old with new (no regex, case "
                "sensitive) in one file (path) or every UTF-8 file under prefix (default: the "
                "whole project). Reports per-file counts; unchanged files are not written."
            ),
            args_schema={
                "type": "object",
                "properties": {
                    "old": _TEXT,
                    "new": {"type": "string", "maxLength": 65536},
                    **_scope_props(),
                },
                "required": ["old", "new"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {
                    "files": _COUNTS,
                    "replacements": {"type": "integer"},
                    "files_scanned": {"type": "integer"},
                },
            },
            timeout_s=60.0,
            retries=0,
            run=_text_replace,
            check_args=exactly_one_scope,
        ),
        Tool(
            name="code.rename",
            description=(
                "Rename the identifier old to new in source code (JS/TS, Python, Go, Rust, "
                "Java/C/C++/C#/Kotlin/Swift): whole identifier tokens only, never inside "
                "string literals or comments, nor after a dot (obj.old); object keys are renamed. "
                "One file (path) or every file under prefix (default: the whole project). "
                "Other files are listed as skipped."
            ),
            args_schema={
                "type": "object",
                "properties": {
                    "old": {"type": "string", "pattern": IDENTIFIER_PATTERN, "maxLength": 256},
                    "new": {"type": "string", "pattern": IDENTIFIER_PATTERN, "maxLength": 256},
                    **_scope_props(),
                },
                "required": ["old", "new"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {
                    "files": _COUNTS,
                    "replacements": {"type": "integer"},
                    "files_scanned": {"type": "integer"},
                    "skipped": {"type": "array", "items": {"type": "string"}},
                },
            },
            timeout_s=60.0,
            retries=0,
            run=_code_rename,
            check_args=_check_rename,
        ),
    ]

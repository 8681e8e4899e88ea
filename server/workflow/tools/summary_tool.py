"""``project.summary``: a structural summary computed from the files, no model.

Files, sizes, line counts, languages (by extension), and the symbols declarations define
(functions, classes, types; Express-style routes in JS/TS), found with per-language regular
expressions in a worker thread. ``text`` renders it for people. Bounded like every exact
tool (``text_files``); binary files count with their size only.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from server.workflow.tools.registry import Tool
from server.workflow.tools.text_files import (
    PATH_SCHEMA,
    PREFIX_SCHEMA,
    TextFile,
    exactly_one_scope,
    run_cpu,
    targets,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from server.workflow.tools.registry import ToolContext

MAX_SYMBOLS = 50
LANGUAGES: dict[str, str] = {
    **dict.fromkeys((".js", ".mjs", ".cjs", ".jsx"), "JavaScript"),
    **dict.fromkeys((".ts", ".tsx", ".mts", ".cts"), "TypeScript"),
    **dict.fromkeys((".py", ".pyi"), "Python"),
    ".go": "Go",
    ".rs": "Rust",
    ".java": "Java",
    **dict.fromkeys((".c", ".h"), "C"),
    **dict.fromkeys((".cc", ".cpp", ".cxx", ".hpp"), "C++"),
    ".cs": "C#",
    **dict.fromkeys((".kt", ".kts"), "Kotlin"),
    ".swift": "Swift",
    **dict.fromkeys((".md", ".markdown"), "Markdown"),
    ".json": "JSON",
    **dict.fromkeys((".yaml", ".yml"), "YAML"),
    ".toml": "TOML",
    **dict.fromkeys((".html", ".htm"), "HTML"),
    ".css": "CSS",
    ".sh": "Shell",
    ".sql": "SQL",
    ".txt": "Text",
}
_ID = r"[A-Za-z_$][\w$]*"
_JS = [
    re.compile(rf"^\s*(?:export\s+)?(?:default\s+)?(?:async\s+)?function\*?\s+({_ID})", re.M),
    re.compile(rf"^\s*(?:export\s+)?(?:default\s+)?(?:abstract\s+)?class\s+({_ID})", re.M),
    re.compile(rf"^\s*(?:export\s+)?(?:interface|type|enum)\s+({_ID})", re.M),
    re.compile(
        rf"^\s*(?:export\s+)?(?:const|let|var)\s+({_ID})\s*=\s*(?:async\s+)?"
        rf"(?:function\b|\([^)]*\)\s*=>|{_ID}\s*=>)",
        re.M,
    ),
]
_ROUTE = re.compile(
    r"\b(?:app|router|api|server)\.(get|post|put|patch|delete|all|use)\(\s*['\"`]([^'\"`]+)"
)
_SYMBOLS: dict[str, list[re.Pattern[str]]] = {
    "JavaScript": _JS,
    "TypeScript": _JS,
    "Python": [re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)", re.M)],
    "Go": [re.compile(r"^func\s+(?:\([^)]*\)\s*)?(\w+)", re.M), re.compile(r"^type\s+(\w+)", re.M)],
    "Rust": [
        re.compile(
            r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:fn|struct|enum|trait)\s+(\w+)", re.M
        )
    ],
    **{
        name: [re.compile(r"\b(?:class|interface|struct|enum|object|record)\s+(\w+)")]
        for name in ("Java", "C#", "Kotlin", "Swift", "C++")
    },
}


def language_of(path: str) -> str:
    return LANGUAGES.get(PurePosixPath(path).suffix.lower(), "Other")


def symbols_of(language: str, text: str) -> list[str]:
    """Declared names (in order of appearance, deduplicated), then ``METHOD /route`` entries."""
    found: list[tuple[int, str]] = []
    for pattern in _SYMBOLS.get(language, []):
        found.extend((m.start(), m.group(1)) for m in pattern.finditer(text))
    if language in ("JavaScript", "TypeScript"):
        found.extend(
            (m.start(), f"{m.group(1).upper()} {m.group(2)}") for m in _ROUTE.finditer(text)
        )
    names = list(dict.fromkeys(name for _, name in sorted(found)))
    return names[:MAX_SYMBOLS]


def summarize(files: list[TextFile]) -> dict[str, Any]:
    """The summary of ``files`` (pure; worker thread)."""
    entries: list[dict[str, Any]] = []
    by_language: Counter[str] = Counter()
    bytes_by_language: Counter[str] = Counter()
    for file in sorted(files, key=lambda f: f.path):
        language = language_of(file.path) if file.text is not None else "Binary"
        lines = len(file.text.splitlines()) if file.text is not None else 0
        symbols = symbols_of(language, file.text) if file.text is not None else []
        entries.append(
            {
                "path": file.path,
                "size": file.size,
                "lines": lines,
                "language": language,
                "symbols": symbols,
            }
        )
        by_language[language] += 1
        bytes_by_language[language] += file.size
    languages = [
        {"language": name, "files": count, "bytes": bytes_by_language[name]}
        for name, count in sorted(by_language.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    summary = {
        "total_files": len(entries),
        "total_bytes": sum(e["size"] for e in entries),
        "total_lines": sum(e["lines"] for e in entries),
        "languages": languages,
        "files": entries,
    }
    return {**summary, "text": render(summary)}


def render(summary: Mapping[str, Any]) -> str:
    """The summary as plain text."""
    lines = [
        f"{summary['total_files']} files, {summary['total_bytes']} bytes, "
        f"{summary['total_lines']} lines.",
        "Languages: "
        + (", ".join(f"{x['language']} ({x['files']})" for x in summary["languages"]) or "none"),
    ]
    for entry in summary["files"]:
        facts = f"{entry['language']}, {entry['lines']} lines, {entry['size']} bytes"
        line = f"- {entry['path']} ({facts})"
        if entry["symbols"]:
            line += ": " + ", ".join(entry["symbols"])
        lines.append(line)
    return "\n".join(lines) + "\n"


async def _summary(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
    files = await targets(ctx, args)
    return await run_cpu(summarize, files)


def summary_tools() -> list[Tool]:
    """``project.summary``."""
    return [
        Tool(
            name="project.summary",
            description=(
                "A structural summary computed from the files (no model): file count, sizes, "
                "lines, languages by extension, and declared symbols (functions, classes, "
                "types, Express-style routes) per file. One file (path) or every file under "
                "prefix (default: the whole project). text renders it."
            ),
            args_schema={
                "type": "object",
                "properties": {"path": PATH_SCHEMA, "prefix": PREFIX_SCHEMA},
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {
                    "total_files": {"type": "integer"},
                    "total_bytes": {"type": "integer"},
                    "total_lines": {"type": "integer"},
                    "languages": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "language": {"type": "string"},
                                "files": {"type": "integer"},
                                "bytes": {"type": "integer"},
                            },
                        },
                    },
                    "files": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "path": {"type": "string"},
                                "size": {"type": "integer"},
                                "lines": {"type": "integer"},
                                "language": {"type": "string"},
                                "symbols": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    },
                    "text": {"type": "string"},
                },
            },
            timeout_s=60.0,
            retries=0,
            run=_summary,
            check_args=exactly_one_scope,
        )
    ]

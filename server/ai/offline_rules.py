"""The offline provider's intent rules and plan templates. Pure and deterministic.

Conventions of a request the rules understand:
- paths are bare or in backticks (``src/app.py``, `` `notes/todo.md` ``); a token ending in
  ``/`` is a folder prefix;
- text in double quotes (or single quotes around words) is literal text, never a path:
  a pattern to search for, content to write, text to replace.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from server.ai.prompts import EXPLAIN_SYSTEM, file_content_system
from server.errors import InvalidPath
from server.vfs.paths import validate_path

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

MAX_TARGETS = 20

_LITERAL_RE = re.compile(r"\"([^\"\n]+)\"|“([^”\n]+)”|(?<!\w)'([^'\n]+)'(?!\w)")
_TOKEN_RE = re.compile(r"`([^`\n]+)`|([A-Za-z0-9_][A-Za-z0-9_./-]*)")
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
_EXT_RE = re.compile(r"\.[A-Za-z0-9]{1,10}$")

_KEYWORDS: dict[str, tuple[str, ...]] = {
    "create": ("create", "new file", "add a file", "add file", "make a file", "scaffold"),
    "explain": (
        "explain",
        "summarize",
        "summarise",
        "summary",
        "describe",
        "what does",
        "how does",
        "overview",
        "walk me through",
    ),
    "search": (
        "search",
        "find",
        "grep",
        "look for",
        "where is",
        "where are",
        "occurrences",
        "locate",
    ),
    "edit": (
        "edit",
        "change",
        "modify",
        "update",
        "fix",
        "refactor",
        "replace",
        "rewrite",
        "add",
        "append",
        "prepend",
        "insert",
        "remove",
        "convert",
        "uppercase",
        "lowercase",
        "improve",
        "rename",
    ),
    "write": ("write", "generate", "draft", "compose", "produce"),
}


def literals(prompt: str) -> list[str]:
    """Quoted texts of the request, in order."""
    return [next(g for g in m.groups() if g is not None) for m in _LITERAL_RE.finditer(prompt)]


def _has(text: str, kind: str) -> bool:
    return any(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) for word in _KEYWORDS[kind])


def path_tokens(prompt: str) -> list[str]:
    """Path-like tokens outside quoted literals: they contain a '/' or end in an extension."""
    unquoted = _URL_RE.sub(" ", _LITERAL_RE.sub(" ", prompt))
    found: list[str] = []
    for match in _TOKEN_RE.finditer(unquoted):
        token = (match.group(1) or match.group(2)).strip().rstrip(".,:;!?)")
        if not token:
            continue
        is_dir = token.endswith("/")
        if not is_dir and "/" not in token and _EXT_RE.search(token) is None:
            continue
        if _valid_path(token.removesuffix("/")) and token not in found:
            found.append(token)
    return found


def _valid_path(path: str) -> bool:
    try:
        validate_path(path)
    except InvalidPath:
        return False
    return True


def resolve_targets(prompt: str, files: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """(existing files, new file paths, folder prefixes) named by the request."""
    existing: list[str] = []
    new: list[str] = []
    prefixes: list[str] = []
    known = set(files)
    for token in path_tokens(prompt):
        folder = token if token.endswith("/") else token + "/"
        if token in known:
            existing.append(token)
        elif token.endswith("/") or any(f.startswith(folder) for f in files):
            prefixes.append(folder)
            existing.extend(f for f in files if f.startswith(folder) and f not in existing)
        else:
            new.append(token)
    return existing[:MAX_TARGETS], new[:MAX_TARGETS], prefixes


def search_pattern(prompt: str) -> str | None:
    quoted = literals(prompt)
    if quoted:
        return re.escape(quoted[0])
    match = re.search(r"(?:for|of)\s+([A-Za-z0-9_]+)", prompt)
    return re.escape(match.group(1)) if match else None


def classify(prompt: str, files: Sequence[str]) -> dict[str, Any]:
    """The intent of ``prompt``: ``{intent, confidence, summary, targets}``."""
    text = prompt.lower()
    existing, new, prefixes = resolve_targets(prompt, files)
    if _has(text, "create") and new:
        return _intent("create_file", 0.9, f"Create {', '.join(new)}", new)
    if _has(text, "explain"):
        targets = existing or list(files[:MAX_TARGETS])
        about = ", ".join(existing) if existing else "the project"
        return _intent("explain", 0.8 if existing else 0.6, f"Explain {about}", targets)
    if _has(text, "search") and "replace" not in text:
        pattern = search_pattern(prompt)
        where = f" in {prefixes[0]}" if prefixes else ""
        summary = f"Search for {pattern!r}{where}" if pattern else "Search the project"
        return _intent("search", 0.85 if pattern else 0.4, summary, prefixes[:1])
    if _has(text, "edit") and existing:
        return _intent("edit_files", 0.85, f"Edit {', '.join(existing)}", existing)
    if (_has(text, "write") or _has(text, "edit")) and new:
        return _intent("create_file", 0.7, f"Create {', '.join(new)}", new)
    if _has(text, "write"):
        return _intent("generate", 0.6, "Write text in answer to the request", [])
    return _intent("unknown", 0.2, "Unclear request: answer it as text", [])


def _intent(kind: str, confidence: float, summary: str, targets: list[str]) -> dict[str, Any]:
    return {"intent": kind, "confidence": confidence, "summary": summary, "targets": targets}


def _numbered(base: str, index: int, count: int) -> str:
    return base if count == 1 else f"{base}_{index + 1}"


def plan_for(intent: Mapping[str, Any], prompt: str, files: Sequence[str]) -> dict[str, Any]:
    """A plan template for the intent, using the built-in tools."""
    kind = intent.get("intent")
    targets = [t for t in intent.get("targets", []) if isinstance(t, str)]
    known = set(files)
    steps: list[dict[str, Any]] = []
    if kind == "create_file" and targets:
        new = [t for t in targets if not t.endswith("/")]
        for i, path in enumerate(new):
            gen, write = _numbered("generate", i, len(new)), _numbered("write", i, len(new))
            steps.append(
                _step(
                    gen,
                    "ai.generate",
                    {
                        "prompt": prompt,
                        "system": file_content_system(path),
                    },
                )
            )
            steps.append(
                _step(
                    write,
                    "vfs.write",
                    {
                        "path": path,
                        "content": f"{{{{steps.{gen}.output.text}}}}",
                    },
                    [gen],
                )
            )
    elif kind == "edit_files" and targets:
        existing = [t for t in targets if t in known] or targets
        for i, path in enumerate(existing):
            steps.append(
                _step(
                    _numbered("edit", i, len(existing)),
                    "ai.edit",
                    {
                        "path": path,
                        "instruction": prompt,
                    },
                )
            )
    elif kind == "explain":
        args: dict[str, Any] = {"prompt": prompt, "system": EXPLAIN_SYSTEM}
        context = [t for t in targets if t in known]
        if context:
            args["context_paths"] = context
        steps.append(_step("explain", "ai.generate", args))
    elif kind == "search" and (pattern := search_pattern(prompt)):
        search_args: dict[str, Any] = {"pattern": pattern}
        if targets and targets[0].endswith("/"):
            search_args["prefix"] = targets[0]
        steps.append(_step("search", "vfs.search", search_args))
    if not steps:
        steps.append(_step("answer", "ai.generate", {"prompt": prompt}))
    return {"steps": steps}


def _step(
    step_id: str, tool: str, args: dict[str, Any], needs: Sequence[str] = ()
) -> dict[str, Any]:
    return {"id": step_id, "tool": tool, "args": args, "needs": list(needs)}

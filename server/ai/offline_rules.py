"""The offline provider's intents and plans: exact operations only, else ``ModelRequired``.

``classify`` and ``plan_for`` read the request with ``server.ai.offline_grammar``. A request
it recognises gets a plan of deterministic tools only (``vfs.*``, ``text.replace``,
``code.rename``, ``project.summary``); never ``ai.generate`` or ``ai.edit``. Anything else
("refactor utils.js", "write tests", "explain ...") raises ``ModelRequired`` (422
``model_required``) from ``plan_for``: the offline provider never plans a run that writes
text it made up or "succeeds" with canned text.

Paths are resolved against the project's files: an exact path, a folder, or a unique file
or folder name (``utils.js`` -> ``src/utils.js``). Pure and deterministic.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from server.ai.offline_grammar import Operation, parse
from server.errors import ModelRequired

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

MAX_TARGETS = 20
LISTING_COMPLETE_BELOW = 200  # server.ai.budget.LISTING_MAX_FILES: a shorter listing is whole
CAN_DO = (
    "search (literal or regex)",
    "replace quoted text",
    "rename an identifier across files",
    "move or rename a file",
    "delete files",
    "list files",
    "create a file with content given in quotes or a fenced block",
    "summarize the project's structure",
)
_INTENTS = {
    "search": "search",
    "replace": "edit_files",
    "rename": "edit_files",
    "move": "edit_files",
    "delete": "edit_files",
    "create": "create_file",
    "list": "explain",
    "summary": "explain",
}
_RE2_SPECIAL = frozenset("\\.^$|?*+()[]{}")


def model_required() -> ModelRequired:
    return ModelRequired(
        "This request needs a language model: the offline provider only does what it can do "
        "exactly (" + "; ".join(CAN_DO) + "). Configure Gemini with STRETTO_GEMINI_API_KEY "
        "(or --gemini-api-key) and restart the server.",
        {"provider": "offline", "configure": "STRETTO_GEMINI_API_KEY", "can": list(CAN_DO)},
    )


def resolve(path: str, files: Sequence[str]) -> str:
    """``path`` as the project knows it: exact, a folder, or a unique file or folder name."""
    if path in files:
        return path
    folder = path.rstrip("/") + "/"
    if any(f.startswith(folder) for f in files):
        return folder
    if path.endswith("/"):
        nested = {f[: f.index("/" + folder) + len(folder) + 1] for f in files if "/" + folder in f}
        return nested.pop() if len(nested) == 1 else path
    named = [f for f in files if PurePosixPath(f).name == path]
    return named[0] if len(named) == 1 else path


def _under(folder: str, files: Sequence[str]) -> list[str]:
    return [f for f in files if f.startswith(folder)]


def _describe(op: Operation) -> str:
    where = f" in {', '.join(op.targets)}" if op.targets and op.kind != "move" else ""
    return {
        "search": f"Search for {op.old!r}{' (regex)' if op.regex else ''}{where}",
        "replace": f"Replace {op.old!r} with {op.new!r}{where or ' in the project'}",
        "rename": f"Rename the identifier {op.old} to {op.new}{where or ' in the project'}",
        "move": f"Move {', '.join(op.targets)} to {op.dest}",
        "delete": f"Delete {', '.join(op.targets)}",
        "list": f"List the files{where}",
        "create": f"Create {', '.join(op.targets)} with the given content",
        "summary": f"Summarize the structure of {', '.join(op.targets) or 'the project'}",
    }[op.kind]


def _resolved(prompt: str, files: Sequence[str]) -> Operation | None:
    op = parse(prompt, files)
    if op is None:
        return None
    targets = tuple(resolve(t, files) for t in op.targets)
    if op.kind == "create":
        targets = op.targets  # a new file: taken as written
    dest = resolve(op.dest, files) if op.dest.endswith("/") else op.dest
    return Operation(op.kind, op.old, op.new, targets, dest, op.content, op.regex)


def classify(prompt: str, files: Sequence[str]) -> dict[str, Any]:
    """The intent of ``prompt``: ``{intent, confidence, summary, targets}``; ``targets`` are
    the paths the plan works on."""
    op = _resolved(prompt, files)
    if op is None:
        return {
            "intent": "unknown",
            "confidence": 0.0,
            "summary": "Needs a language model: the offline provider cannot do this exactly.",
            "targets": [],
        }
    targets: list[str] = []
    for _, _, args in _steps(op, files):
        for key in ("path", "prefix", "from", "to"):
            if args.get(key) and args[key] not in targets:
                targets.append(args[key])
    return {
        "intent": _INTENTS[op.kind],
        "confidence": 0.95,
        "summary": _describe(op),
        "targets": targets,
    }


def re2_escape(text: str) -> str:
    """``text`` as an RE2 pattern matching it literally."""
    return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in text)


def _scope(target: str) -> dict[str, str]:
    """The ``path`` or ``prefix`` arg of a target; ``{}`` (the whole project) for ``""``."""
    if not target:
        return {}
    return {"prefix": target} if target.endswith("/") else {"path": target}


def _files_of(target: str, files: Sequence[str]) -> list[str] | None:
    """The files of a folder target when the listing surely holds them all (else None)."""
    if not target.endswith("/"):
        return [target]
    if len(files) >= LISTING_COMPLETE_BELOW:
        return None
    found = _under(target, files)
    return found if 0 < len(found) <= MAX_TARGETS else None


def _steps(op: Operation, files: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, tool, args) of each step."""
    targets = op.targets or ("",)
    if op.kind == "search":
        pattern = op.old if op.regex else re2_escape(op.old)
        return [
            ("search", "vfs.search", {"pattern": pattern, **({"prefix": t} if t else {})})
            for t in targets
        ]
    if op.kind == "replace":
        steps: list[tuple[str, str, dict[str, Any]]] = []
        for target in targets:
            per_file = _files_of(target, files) if target else None
            scopes = [{"path": f} for f in per_file] if per_file else [_scope(target)]
            steps.extend(
                ("replace", "text.replace", {"old": op.old, "new": op.new, **s}) for s in scopes
            )
        return steps
    if op.kind == "rename":
        return [
            ("rename", "code.rename", {"old": op.old, "new": op.new, **(_scope(t) if t else {})})
            for t in targets
        ]
    if op.kind == "move":
        return [("move", "vfs.move", {"from": src, "to": dst}) for src, dst in _moves(op, files)]
    if op.kind == "delete":
        paths: list[str] = []
        for target in op.targets:
            under = _under(target, files) if target.endswith("/") else [target]
            paths.extend(under or [target.rstrip("/")])  # an empty folder: fails not_found
        return [("delete", "vfs.delete", {"path": p}) for p in dict.fromkeys(paths)]
    if op.kind == "list":
        return [("list", "vfs.list", {"prefix": t} if t else {}) for t in targets]
    if op.kind == "create":
        return [("write", "vfs.write", {"path": op.targets[0], "content": op.content})]
    return [("summary", "project.summary", _scope(t) if t else {}) for t in targets]


def _moves(op: Operation, files: Sequence[str]) -> list[tuple[str, str]]:
    src, dst = op.targets[0], op.dest
    if src.endswith("/"):
        folder = dst.rstrip("/") + "/"
        pairs = [(f, folder + f[len(src) :]) for f in _under(src, files)]
        return pairs or [(src.rstrip("/"), dst.rstrip("/"))]  # an empty folder: fails not_found
    if dst.endswith("/"):
        return [(src, dst + PurePosixPath(src).name)]
    return [(src, dst)]


def plan_for(intent: Mapping[str, Any], prompt: str, files: Sequence[str]) -> dict[str, Any]:
    """A plan of exact tools for ``prompt``; raises ``ModelRequired`` when there is none."""
    op = _resolved(prompt, files)
    if op is None:
        raise model_required()
    raw = _steps(op, files)
    if not raw:
        raise model_required()
    steps = []
    for index, (kind, tool, args) in enumerate(raw, start=1):
        step_id = kind if len(raw) == 1 else f"{kind}_{index}"
        steps.append({"id": step_id, "tool": tool, "args": args, "needs": []})
    return {"steps": steps}
